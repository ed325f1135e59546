"""The queue contract (``claude_mem_core.testing.queue_contracts``) over every queue adapter
the pipeline can run on: the in-process queue, and the Redis queue (a taskiq broker) on
the real Redis (marker ``redis``, a unique key prefix per test, its keys deleted after).

taskiq's ``InMemoryBroker`` is not a target: it runs tasks inline at kick time, with no
stream, no acknowledgement and no delay, so it is not a queue the pipeline could run on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from claude_mem_core.testing.queue_contracts import (
    InProcessHarness,
    QueueContract,
    QueueHarness,
    RedisStreamHarness,
)


class TestInProcessQueue(QueueContract):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[QueueHarness]:
        made = InProcessHarness()
        try:
            yield made
        finally:
            await made.close()


@pytest.mark.redis
class TestRedisQueue(QueueContract):
    @pytest.fixture
    async def harness(self, redis_url: str) -> AsyncIterator[QueueHarness]:
        made = RedisStreamHarness(redis_url)
        try:
            yield made
        finally:
            await made.close()
