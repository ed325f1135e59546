"""The queue contract, over every queue adapter the pipeline can run on.

What the pipeline relies on: a published message reaches a consumer with its payload
intact; delivery is at least once (a consumer that fails leaves the message to be
delivered again); delays hold a message back and a re-publish of a waiting transport id
restarts its delay without adding a second message (debounce); ``depth()`` counts waiting
messages per lane.

Runs over the in-process queue and over :class:`TaskiqQueue` on the real Redis (marker
``redis``, a unique key prefix per test, all its keys deleted afterwards). taskiq's
``InMemoryBroker`` is not a target: it runs tasks inline at kick time, with no stream, no
group, no acknowledgement and no delay, so it cannot exercise any of the Redis-specific
behaviour below (delayed set, waiting markers, consumer group, pending list).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.errors import QueueError
from claude_mem_core.ports.queue import EVENT_LANE, SUMMARY_LANE, JobQueue, QueueMessage

Handler = Callable[[QueueMessage], Awaitable[None]]


def message(n: int, *, lane: str = EVENT_LANE, transport: str | None = None) -> QueueMessage:
    return QueueMessage(
        job_id=f"job-{n}",
        transport_id=transport or f"evt_{n:064x}",
        lane=lane,
        payload={
            "kind": "event",
            "team_id": "team-ü",
            "generation_job_id": f"job-{n}",
            "api_key_id": None,
            "nested": {"list": [1, 2.5, "três", True, None], "empty": {}},
        },
    )


class Harness:
    """Drives one adapter: consume what is due, let time pass, recover unacknowledged."""

    queue: JobQueue

    async def consume(self, handler: Handler, *, max_messages: int | None = None) -> int:
        raise NotImplementedError

    async def advance(self, seconds: float) -> None:
        raise NotImplementedError

    async def recover(self) -> None:
        """Make messages a failed consumer left unacknowledged deliverable again."""

    async def close(self) -> None:
        await self.queue.close()


class InProcessHarness(Harness):
    def __init__(self) -> None:
        self.now = 1000.0
        self.inprocess = InProcessQueue(monotonic=lambda: self.now)
        self.queue = self.inprocess

    async def consume(self, handler: Handler, *, max_messages: int | None = None) -> int:
        return await self.inprocess.consume(handler, max_messages=max_messages)

    async def advance(self, seconds: float) -> None:
        self.now += seconds


class RedisHarness(Harness):
    def __init__(self, url: str) -> None:
        from claude_mem_core.adapters.taskiq_queue import TaskiqQueue

        self.redis_queue = TaskiqQueue.from_url(url, prefix=f"cmtest_{secrets.token_hex(4)}")
        self.queue = self.redis_queue

    async def consume(self, handler: Handler, *, max_messages: int | None = None) -> int:
        await self.redis_queue.promote_due()
        handled = 0
        while max_messages is None or handled < max_messages:
            deliveries = await self.redis_queue.receive("contract", count=1, block_ms=None)
            if not deliveries:
                break
            for delivery in deliveries:
                assert delivery.message is not None, delivery.error
                await handler(delivery.message)  # an error leaves it unacknowledged
                await delivery.ack()
                handled += 1
        return handled

    async def advance(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def recover(self) -> None:
        # What the worker does for a consumer that died: claim its unacknowledged entries.
        claimed = await self.redis_queue.claim_stale("contract-2", min_idle_ms=0)
        for delivery in claimed:
            await delivery.requeue()

    async def close(self) -> None:
        await self.redis_queue.delete_all_keys()
        await self.redis_queue.close()


@pytest.fixture(params=["inprocess", pytest.param("redis", marks=pytest.mark.redis)])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    made: Harness
    if request.param == "inprocess":
        made = InProcessHarness()
    else:
        made = RedisHarness(request.getfixturevalue("redis_url"))
    try:
        yield made
    finally:
        await made.close()


class Recorder:
    def __init__(self, fail_first: int = 0) -> None:
        self.seen: list[QueueMessage] = []
        self.fail_first = fail_first

    async def __call__(self, msg: QueueMessage) -> None:
        if self.fail_first > 0:
            self.fail_first -= 1
            raise RuntimeError("handler crashed")
        self.seen.append(msg)


async def test_published_message_is_delivered_with_its_payload_intact(harness: Harness) -> None:
    sent = message(1)
    await harness.queue.publish(sent)
    seen = Recorder()
    assert await harness.consume(seen) == 1
    assert seen.seen == [sent]
    assert await harness.consume(seen) == 0  # acknowledged: not delivered again


async def test_both_lanes_deliver_and_depth_counts_per_lane(harness: Harness) -> None:
    await harness.queue.publish(message(1))
    await harness.queue.publish(message(2))
    await harness.queue.publish(message(3, lane=SUMMARY_LANE, transport="sum_3"))
    depth = await harness.queue.depth()
    assert depth.get(EVENT_LANE, 0) == 2
    assert depth.get(SUMMARY_LANE, 0) == 1
    seen = Recorder()
    assert await harness.consume(seen) == 3
    assert {m.job_id for m in seen.seen} == {"job-1", "job-2", "job-3"}
    after = await harness.queue.depth()
    assert after.get(EVENT_LANE, 0) == 0
    assert after.get(SUMMARY_LANE, 0) == 0


async def test_a_failing_handler_leaves_the_message_for_redelivery(harness: Harness) -> None:
    await harness.queue.publish(message(1))
    crashing = Recorder(fail_first=1)
    with pytest.raises(RuntimeError, match="handler crashed"):
        await harness.consume(crashing)
    assert sum((await harness.queue.depth()).values()) == 1  # not acknowledged
    await harness.recover()
    assert await harness.consume(crashing) == 1
    assert [m.job_id for m in crashing.seen] == ["job-1"]
    assert sum((await harness.queue.depth()).values()) == 0


async def test_a_delayed_message_waits_for_its_delay(harness: Harness) -> None:
    await harness.queue.publish(message(1), delay=0.4)
    assert (await harness.queue.depth()).get(EVENT_LANE, 0) == 1
    seen = Recorder()
    assert await harness.consume(seen) == 0
    await harness.advance(0.5)
    assert await harness.consume(seen) == 1
    assert seen.seen[0].job_id == "job-1"


async def test_republishing_a_delayed_transport_id_restarts_its_delay_once(
    harness: Harness,
) -> None:
    await harness.queue.publish(message(1, transport="evtb_session"), delay=0.4)
    await harness.advance(0.25)
    await harness.queue.publish(message(2, transport="evtb_session"), delay=0.4)
    await harness.advance(0.25)  # 0.5 s after the first publish, 0.25 s after the second
    seen = Recorder()
    assert await harness.consume(seen) == 0
    await harness.advance(0.3)
    assert await harness.consume(seen) == 1
    assert [m.job_id for m in seen.seen] == ["job-2"]  # the newest message, once


async def test_publishing_now_makes_a_delayed_message_due(harness: Harness) -> None:
    await harness.queue.publish(message(1), delay=60)
    await harness.queue.publish(message(1))
    seen = Recorder()
    deadline = time.monotonic() + 2
    while not seen.seen and time.monotonic() < deadline:
        await harness.consume(seen)
    assert [m.job_id for m in seen.seen] == ["job-1"]


async def test_republishing_a_waiting_message_does_not_duplicate_it(harness: Harness) -> None:
    await harness.queue.publish(message(1))
    await harness.queue.publish(message(1))
    seen = Recorder()
    assert await harness.consume(seen) == 1
    # Once received it is no longer waiting: publishing again delivers again.
    await harness.queue.publish(message(1))
    assert await harness.consume(seen) == 1


async def test_publish_many_publishes_each_message_as_publish_would(harness: Harness) -> None:
    await harness.queue.publish(message(1))  # already waiting: not added again
    await harness.queue.publish_many(
        [
            (message(1), 0.0),
            (message(2), 0.0),
            (message(3, lane=SUMMARY_LANE, transport="sum_3"), 0.0),
            (message(4), 0.4),
        ]
    )
    depth = await harness.queue.depth()
    assert depth.get(EVENT_LANE, 0) == 3
    assert depth.get(SUMMARY_LANE, 0) == 1
    seen = Recorder()
    assert await harness.consume(seen) == 3
    assert sorted(m.job_id for m in seen.seen) == ["job-1", "job-2", "job-3"]
    assert [m for m in seen.seen if m.job_id == "job-2"] == [message(2)]
    await harness.advance(0.5)
    assert await harness.consume(seen) == 1
    assert seen.seen[-1] == message(4)
    await harness.queue.publish_many([])


async def test_ping_answers(harness: Harness) -> None:
    await harness.queue.ping()


# -- Redis specifics ------------------------------------------------------------------------


@pytest.fixture
async def redis_queue(redis_url: str) -> AsyncIterator[Any]:
    from claude_mem_core.adapters.taskiq_queue import TaskiqQueue

    queue = TaskiqQueue.from_url(redis_url, prefix=f"cmtest_{secrets.token_hex(4)}")
    try:
        yield queue
    finally:
        await queue.delete_all_keys()
        await queue.close()


@pytest.mark.redis
async def test_messages_are_taskiq_messages_for_the_generate_task(redis_queue: Any) -> None:
    from taskiq.formatters.json_formatter import JSONFormatter

    await redis_queue.publish(message(7))
    [delivery] = await redis_queue.receive("c", count=5, block_ms=None)
    decoded = JSONFormatter().loads(delivery.data)
    assert decoded.task_name == "claude_mem.generate"
    assert decoded.kwargs == {
        "job_id": "job-7",
        "transport_id": message(7).transport_id,
        "lane": EVENT_LANE,
        "payload": message(7).payload,
    }
    assert delivery.stream == f"{redis_queue.prefix}:{EVENT_LANE}"
    await delivery.ack()


@pytest.mark.redis
async def test_a_message_published_before_any_worker_started_is_not_lost(
    redis_url: str, redis_queue: Any
) -> None:
    from claude_mem_core.adapters.taskiq_queue import TaskiqQueue

    await redis_queue.publish(message(1))  # no consumer exists yet
    consumer = TaskiqQueue.from_url(redis_url, prefix=redis_queue.prefix)
    try:
        await consumer.startup()
        deliveries = await consumer.receive("late-worker", count=5, block_ms=200)
        assert [d.message.job_id for d in deliveries if d.message] == ["job-1"]
    finally:
        await consumer.close()


@pytest.mark.redis
async def test_a_dead_consumers_message_can_be_claimed(redis_queue: Any) -> None:
    await redis_queue.publish(message(1))
    [taken] = await redis_queue.receive("dies", count=1, block_ms=None)
    assert await redis_queue.pending() == {EVENT_LANE: 1, SUMMARY_LANE: 0}
    assert await redis_queue.claim_stale("other", min_idle_ms=60_000) == []
    await asyncio.sleep(0.05)
    [again] = await redis_queue.claim_stale("other", min_idle_ms=10)
    assert again.message == taken.message
    await again.ack()
    assert await redis_queue.pending() == {EVENT_LANE: 0, SUMMARY_LANE: 0}
    assert await redis_queue.depth() == {EVENT_LANE: 0, SUMMARY_LANE: 0}


@pytest.mark.redis
async def test_the_queue_recovers_when_redis_loses_its_keys(redis_queue: Any) -> None:
    await redis_queue.publish(message(1))
    assert await redis_queue.delete_all_keys() > 0  # what a restart without persistence does
    assert await redis_queue.receive("w", count=5, block_ms=None) == []  # group recreated
    await redis_queue.publish(message(2))
    deliveries = await redis_queue.receive("w", count=5, block_ms=200)
    assert [d.message.job_id for d in deliveries if d.message] == ["job-2"]


@pytest.mark.redis
async def test_an_undecodable_entry_is_reported_not_raised(redis_queue: Any) -> None:
    await redis_queue.startup()
    await redis_queue._redis.xadd(redis_queue.stream_for(EVENT_LANE), {b"data": b"not json"})
    [delivery] = await redis_queue.receive("w", count=5, block_ms=None)
    assert delivery.message is None
    assert delivery.error
    await delivery.ack()


@pytest.mark.redis
async def test_publishing_survives_redis_forgetting_its_scripts(redis_queue: Any) -> None:
    await redis_queue.publish(message(1))
    await redis_queue._redis.script_flush()
    await redis_queue.publish(message(2))
    await redis_queue._redis.script_flush()
    await redis_queue.publish_many([(message(3), 0.0), (message(4), 0.0)])
    deliveries = await redis_queue.receive("w", count=10, block_ms=None)
    assert sorted(d.message.job_id for d in deliveries if d.message) == [
        "job-1",
        "job-2",
        "job-3",
        "job-4",
    ]


@pytest.mark.redis
async def test_the_producer_needs_no_taskiq_until_a_broker_is_asked_for(
    redis_url: str,
) -> None:
    import subprocess
    import sys

    # A fresh interpreter: importing and publishing must not load taskiq (nor pydantic).
    code = (
        "import asyncio, sys\n"
        "from claude_mem_core.adapters.taskiq_queue import TaskiqQueue\n"
        "from claude_mem_core.ports.queue import QueueMessage\n"
        "async def main():\n"
        f"    q = TaskiqQueue.from_url({redis_url!r}, prefix='cmtest_lazy_' + sys.argv[1])\n"
        "    m = QueueMessage(job_id='j', transport_id='t', lane=q.streams[0].split(':')[-1],"
        " payload={})\n"
        "    await q.publish(m)\n"
        "    loaded = sorted(n for n in sys.modules if n.split('.')[0] in ('taskiq', 'pydantic'))\n"
        "    await q.delete_all_keys()\n"
        "    await q.close()\n"
        "    print(loaded)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, secrets.token_hex(4)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_unreachable_redis_is_a_queue_error_naming_the_host_but_not_the_password() -> None:
    from claude_mem_core.adapters.taskiq_queue import TaskiqQueue

    queue = TaskiqQueue.from_url(
        "redis://user:s3cret-pw@127.0.0.1:1/0", prefix="cmtest_down", connect_timeout=0.5
    )
    try:
        actions: list[Callable[[], Awaitable[Any]]] = [
            queue.ping,
            lambda: queue.publish(message(1)),
            queue.depth,
        ]
        for action in actions:
            with pytest.raises(QueueError) as caught:
                await action()
            text = str(caught.value)
            assert "is Redis running at 127.0.0.1:1/0" in text
            assert "s3cret" not in text
    finally:
        await queue.close()


@pytest.mark.redis
async def test_server_side_memory_publishes_under_the_configured_prefix(
    redis_url: str, tmp_path: Path
) -> None:
    """The server and the worker read the same CLAUDE_MEM_QUEUE_REDIS_PREFIX; a server that
    published under another prefix would leave every job to reconciliation and fill an
    unconsumed stream."""
    from claude_mem_core.adapters.taskiq_queue import TaskiqQueue
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import open_memory_from_settings

    settings = Settings.from_env(
        {
            "CLAUDE_MEM_DATA_DIR": str(tmp_path),
            "CLAUDE_MEM_QUEUE_ENGINE": "redis",
            "CLAUDE_MEM_REDIS_URL": redis_url,
            "CLAUDE_MEM_QUEUE_REDIS_PREFIX": "cm_prefix_check",
            "CLAUDE_MEM_SERVER_PROVIDER": "offline",
            "CLAUDE_MEM_DOCKER": "0",
        }
    )
    async with open_memory_from_settings(settings) as memory:
        queue = memory.deps.queue
        assert isinstance(queue, TaskiqQueue)
        assert queue.prefix == "cm_prefix_check"
