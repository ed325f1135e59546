"""A worker started while Redis is down waits for it instead of exiting: it logs a clear
line per failed try (backing off, never the password) and still stops at once when asked.

In-process: the worker runtime of ``claude-mem worker`` / ``taskiq worker
claude_mem_worker:broker`` under taskiq's receiver, on the in-memory storage. With real
processes and a Redis that comes up later: tests/faults/test_worker_waits_for_redis.py.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

import pytest
from taskiq.receiver import Receiver

from claude_mem_core.config import Settings
from claude_mem_worker.app import build_worker


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_worker_waiting_for_redis_logs_each_try_and_stops_on_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    env = {
        "CLAUDE_MEM_DATA_DIR": str(tmp_path),
        "CLAUDE_MEM_SERVER_DATABASE_URL": "memory://",
        "CLAUDE_MEM_QUEUE_ENGINE": "redis",
        "CLAUDE_MEM_REDIS_URL": f"redis://:pw-s3cret@127.0.0.1:{_closed_port()}/0",
        "CLAUDE_MEM_SERVER_PROVIDER": "offline",
        "CLAUDE_MEM_DOCKER": "0",
    }
    runtime = build_worker(Settings.from_env(env), env=env)
    broker = runtime.broker
    broker.retry_first, broker.retry_most = 0.1, 0.2
    broker.is_worker_process = True
    finished = asyncio.Event()
    listening = asyncio.create_task(Receiver(broker, max_async_tasks=2).listen(finished))

    async def tries() -> int:
        return sum("is not reachable" in r.getMessage() for r in caplog.records)

    deadline = time.monotonic() + 15
    while await tries() < 3:
        assert time.monotonic() < deadline, "the worker did not retry Redis"
        assert not listening.done(), listening
        await asyncio.sleep(0.05)
    began = time.monotonic()
    finished.set()
    await asyncio.wait_for(listening, timeout=5)
    await broker.shutdown()
    assert time.monotonic() - began < 3

    lines = [r.getMessage() for r in caplog.records]
    waiting = [line for line in lines if "is not reachable" in line]
    assert (
        "retrying in 0.1s (try 1, waiting until it is up or the worker is stopped)" in (waiting[0])
    )
    assert "retrying in 0.2s (try 2," in waiting[1]
    assert any(" starting: " in line for line in lines)
    assert any("stopped before the queue was reachable" in line for line in lines)
    assert not any("s3cret" in line for line in lines)
