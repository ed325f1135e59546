"""Black box: `claude-mem serve` and `claude-mem worker` as real processes on PostgreSQL and
Redis, driven only through the CLI and HTTP, the way an operator and an agent would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from claude_mem_core.testing import databases

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

CLI = [sys.executable, "-m", "claude_mem_core.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def database(postgres_base_url: str) -> AsyncIterator[str]:
    url = await databases.create_postgres_database(postgres_base_url, migrated=False)
    try:
        yield url
    finally:
        await databases.drop_postgres_database(url)


@pytest.fixture
def env(database: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    prefix = f"cm_e2e_{uuid.uuid4().hex[:10]}"
    values = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CLAUDE_MEM_") and "API_KEY" not in k
    }
    values.update(
        CLAUDE_MEM_DATA_DIR=str(tmp_path),
        CLAUDE_MEM_SERVER_DATABASE_URL=database,
        CLAUDE_MEM_QUEUE_ENGINE="redis",
        CLAUDE_MEM_REDIS_URL=redis_url,
        CLAUDE_MEM_QUEUE_REDIS_PREFIX=prefix,
        CLAUDE_MEM_SERVER_PROVIDER="offline",
        CLAUDE_MEM_SERVER_PORT=str(_free_port()),
        CLAUDE_MEM_DOCKER="0",
    )
    yield values
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [*CLI, "--json", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def spawn(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([*CLI, *args], env=env, stdout=handle, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], log: Path) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"{proc.args} ignored SIGTERM:\n{log.read_text()[-2000:]}")
    return int(proc.returncode)


async def until(predicate: Any, *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_operator_and_agent_walk_through_the_whole_product(
    env: dict[str, str], tmp_path: Path
) -> None:
    unmigrated = subprocess.run(
        [*CLI, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert unmigrated.returncode == 1 and "claude-mem migrate" in unmigrated.stderr
    cli(env, "migrate")
    team = cli(env, "teams", "create", "acme")
    project = cli(env, "projects", "create", "--team", team["id"], "webapp")
    key = cli(env, "api-key", "create", "--team", team["id"], "--project", project["id"])

    base = f"http://127.0.0.1:{env['CLAUDE_MEM_SERVER_PORT']}"
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    server = spawn({**env, "CLAUDE_MEM_GENERATION_DISABLED": "true"}, "serve", log=server_log)
    worker = spawn(env, "worker", "--concurrency", "4", log=worker_log)
    headers = {"Authorization": f"Bearer {key['key']}"}
    try:
        async with aiohttp.ClientSession(base, headers=headers) as http:

            async def healthy() -> bool:
                try:
                    async with http.get("/healthz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await until(healthy, within=30, what=f"the server ({server_log.read_text()[-500:]})")

            async with http.post(
                "/v1/sessions/start",
                json={"projectId": project["id"], "externalSessionId": "claude-session-1"},
            ) as resp:
                assert resp.status == 201, await resp.text()
                session = (await resp.json())["session"]
            jobs: list[str] = []
            events: list[str] = []
            for n, path in enumerate(["auth/middleware.py", "auth/callback.py"]):
                async with http.post(
                    "/v1/events",
                    json={
                        "projectId": project["id"],
                        "sourceType": "hook",
                        "eventType": "tool_use",
                        "occurredAtEpoch": int(time.time() * 1000) + n,
                        "serverSessionId": session["id"],
                        "sourceEventId": f"tu_{n}",
                        "payload": {
                            "tool_name": "Edit",
                            "tool_input": {
                                "file_path": path,
                                "old_string": "redirect(login)",
                                "new_string": "redirect(login, keep_query=True)",
                            },
                        },
                    },
                ) as resp:
                    assert resp.status == 201, await resp.text()
                    body = await resp.json()
                    assert body["generationJob"]["transport"] == "enqueued"
                    jobs.append(body["generationJob"]["id"])
                    events.append(body["event"]["id"])

            async def status_of(job_id: str) -> str:
                async with http.get(f"/v1/jobs/{job_id}") as resp:
                    return str((await resp.json())["generationJob"]["status"])

            async def all_completed() -> bool:
                return all([await status_of(j) == "completed" for j in jobs])

            await until(
                all_completed, within=60, what=f"event jobs ({worker_log.read_text()[-1000:]})"
            )
            async with http.post(
                "/v1/search",
                json={"projectId": project["id"], "query": "which file did we edit in auth?"},
            ) as resp:
                found = (await resp.json())["observations"]
            assert {"auth/middleware.py", "auth/callback.py"} <= {
                f for o in found for f in o["metadata"].get("files_modified", [])
            } or any("auth/middleware.py" in o["content"] for o in found)
            async with http.get(f"/v1/events/{events[0]}/observations") as resp:
                linked = (await resp.json())["observations"]
            assert len(linked) == 1

            async with http.post(f"/v1/sessions/{session['id']}/end") as resp:
                assert resp.status == 200
                summary_job = (await resp.json())["generationJob"]["id"]
            jobs.append(summary_job)
            await until(all_completed, within=60, what="the summary job")
            async with http.get(f"/v1/sessions/{session['id']}") as resp:
                assert (await resp.json())["session"]["generationStatus"] == "completed"

            cli(env, "api-key", "revoke", key["id"])
            async with http.get(f"/v1/jobs/{summary_job}") as resp:
                assert resp.status == 403
    finally:
        server_code = stop(server, server_log)
        worker_code = stop(worker, worker_log)
    assert server_code == 0, server_log.read_text()[-2000:]
    assert worker_code == 0, worker_log.read_text()[-2000:]
