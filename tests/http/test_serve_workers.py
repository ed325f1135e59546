"""``claude-mem serve --workers N`` as real processes: N servers on one port, a dead one
replaced, all stopped together, none left behind when the supervisor is killed, and a
clear refusal where processes cannot share the storage."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from serve_process import free_port, spawn_serve

from claude_mem_core.testing.databases import create_postgres_database, drop_postgres_database


async def _spawn(tmp_path: Path, *args: str, **env: str) -> asyncio.subprocess.Process:
    return await spawn_serve(tmp_path, *args, stdout=asyncio.subprocess.DEVNULL, **env)


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


async def _eventually(check: object, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not true within {within} s")


async def _healthy(port: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"no healthy server on port {port} within {within} s")


async def _answers(port: int, times: int) -> None:
    """``times`` requests, each on a new connection (so each may reach another process)."""
    for _ in range(times):
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as resp,
        ):
            assert resp.status == 200


@pytest.fixture
async def shared_storage(postgres_base_url: str, redis_url: str) -> AsyncIterator[dict[str, str]]:
    url = await create_postgres_database(postgres_base_url)
    try:
        yield {
            "CLAUDE_MEM_SERVER_DATABASE_URL": url,
            "CLAUDE_MEM_QUEUE_ENGINE": "redis",
            "CLAUDE_MEM_REDIS_URL": redis_url,
            "CLAUDE_MEM_QUEUE_REDIS_PREFIX": f"workers-{uuid.uuid4().hex[:8]}",
            "CLAUDE_MEM_GENERATION_DISABLED": "true",
        }
    finally:
        await drop_postgres_database(url)


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_worker_failing_at_start_stops_the_supervisor(
    tmp_path: Path, shared_storage: dict[str, str]
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        proc = await _spawn(tmp_path, "--workers", "2", "--port", str(port), **shared_storage)
        _, err = await asyncio.wait_for(proc.communicate(), 40)
    finally:
        taken.close()
    assert proc.returncode == 1
    assert "cannot listen" in err.decode() and "exited at start" in err.decode()


async def test_workers_are_refused_on_the_embedded_default(tmp_path: Path) -> None:
    proc = await _spawn(tmp_path, "--workers", "2", "--port", str(free_port()))
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "PostgreSQL" in err.decode() and "CLAUDE_MEM_QUEUE_ENGINE=redis" in err.decode()
    assert "Traceback" not in err.decode()


async def test_a_bad_workers_setting_names_the_variable(tmp_path: Path) -> None:
    proc = await _spawn(tmp_path, "--port", str(free_port()), CLAUDE_MEM_SERVER_WORKERS="several")
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "CLAUDE_MEM_SERVER_WORKERS" in err.decode() and "Traceback" not in err.decode()


@pytest.mark.postgres
@pytest.mark.redis
async def test_workers_share_the_port_a_dead_one_is_replaced_and_sigterm_stops_all(
    tmp_path: Path, shared_storage: dict[str, str]
) -> None:
    port = free_port()
    proc = await _spawn(tmp_path, "--workers", "2", "--port", str(port), **shared_storage)
    try:
        await _healthy(port)
        await _eventually(lambda: len(_children(proc.pid)) == 2)
        first = _children(proc.pid)
        await _answers(port, 10)

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        await _eventually(
            lambda: len(_children(proc.pid)) == 2 and victim not in _children(proc.pid)
        )
        await _healthy(port)
        await _answers(port, 10)

        workers = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 40) == 0
        await _eventually(lambda: not any(_alive(pid) for pid in workers))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.postgres
@pytest.mark.redis
async def test_workers_stop_when_their_supervisor_is_killed(
    tmp_path: Path, shared_storage: dict[str, str]
) -> None:
    port = free_port()
    proc = await _spawn(tmp_path, "--workers", "2", "--port", str(port), **shared_storage)
    workers: set[int] = set()
    try:
        await _healthy(port)
        await _eventually(lambda: len(_children(proc.pid)) == 2)
        workers = _children(proc.pid)
        proc.kill()
        await proc.wait()
        await _eventually(lambda: not any(_alive(pid) for pid in workers))
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
