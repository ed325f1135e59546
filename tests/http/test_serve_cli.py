"""``claude-mem serve`` as a real process: embedded default, refusal on an unmigrated
configured database, unsafe settings, clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest
from serve_process import free_port, spawn_serve


async def test_embedded_serve_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = await spawn_serve(tmp_path, "--port", str(port))
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert f"http://127.0.0.1:{port}" in line.decode(), line
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
            async with http.get(f"http://127.0.0.1:{port}/api/readiness") as resp:
                assert resp.status == 200
            async with http.get(f"http://127.0.0.1:{port}/v1/info") as resp:
                info = await resp.json()
                assert info["queue"]["engine"] == "memory"
                assert info["boundaries"]["generationWorkerManager"]["status"] == "active"
        assert (tmp_path / "data" / "claude-mem.db").exists()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_unmigrated_configured_database_is_refused(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'configured.db'}"
    proc = await spawn_serve(
        tmp_path, "--port", str(free_port()), CLAUDE_MEM_SERVER_DATABASE_URL=url
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "claude-mem migrate" in err.decode()
    assert "Traceback" not in err.decode()


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--host", "0.0.0.0"], {"CLAUDE_MEM_AUTH_MODE": "local-dev"}, "local-dev"),
        ([], {"CLAUDE_MEM_QUEUE_ENGINE": "redis"}, "CLAUDE_MEM_REDIS_URL"),
    ],
)
async def test_unsafe_settings_are_refused(
    tmp_path: Path, args: list[str], env: dict[str, str], needle: str
) -> None:
    proc = await spawn_serve(tmp_path, *args, "--port", str(free_port()), **env)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode != 0 and needle in err.decode()
