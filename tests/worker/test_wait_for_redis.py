"""``claude-mem worker`` waits for Redis at start instead of exiting (backoff, a clear log
line per try, and a stop while waiting). With real processes: tests/faults."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from claude_mem_core.errors import QueueError
from claude_mem_worker.cli import wait_for_queue


class DownQueue:
    location = "127.0.0.1:6390/0"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.pings = 0

    async def ping(self) -> None:
        self.pings += 1
        if self.pings <= self.failures:
            raise QueueError("the Redis queue could not be reached (connection refused)")


async def test_it_retries_with_backoff_until_redis_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = DownQueue(failures=3)
    caplog.set_level(logging.INFO, logger="claude_mem.worker")
    stopped = asyncio.Event()
    q: Any = queue
    assert await wait_for_queue(q, stopped, first=0.01, most=0.02) is True
    assert queue.pings == 4
    lines = [r.getMessage() for r in caplog.records]
    waiting = [line for line in lines if "is not reachable" in line]
    assert len(waiting) == 3
    assert "127.0.0.1:6390/0" in waiting[0] and "retrying in 0.0s" in waiting[0]
    assert "connection refused" in waiting[0]
    assert any("reachable after 3 failed tries" in line for line in lines)


async def test_a_stop_while_waiting_returns_false_at_once() -> None:
    queue = DownQueue(failures=10**6)
    stopped = asyncio.Event()
    q: Any = queue
    waiting = asyncio.create_task(wait_for_queue(q, stopped, first=5.0, most=10.0))
    await asyncio.sleep(0.05)
    stopped.set()
    assert await asyncio.wait_for(waiting, timeout=1.0) is False
    assert queue.pings == 1
