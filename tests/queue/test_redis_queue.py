"""The Redis queue beyond the shared contract: what travels (taskiq messages for the task
``claude_mem.generate``, routing and the request id in labels), and what the worker's
broker guarantees when taskiq's own receiver reads it: bounded reads, prompt hand-back at
stop, claiming a dead consumer's messages, surviving Redis losing its keys or being down.

Everything runs against the real Redis under a unique key prefix (deleted afterwards),
with :class:`taskiq.receiver.Receiver` as the consumer, as in ``taskiq worker``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from claude_mem_core.adapters.taskiq_queue import (
    TASK_NAME,
    TaskiqQueue,
    message_from_kwargs,
    message_from_taskiq,
)
from claude_mem_core.errors import QueueError
from claude_mem_core.ports.queue import EVENT_LANE, SUMMARY_LANE, QueueMessage
from claude_mem_core.testing.queue_contracts import message

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix() -> str:
    return f"cmtest_{secrets.token_hex(4)}"


@pytest.fixture
async def producer(redis_url: str, prefix: str) -> AsyncIterator[TaskiqQueue]:
    queue = TaskiqQueue.from_url(redis_url, prefix=prefix)
    try:
        yield queue
    finally:
        await queue.delete_all_keys()
        await queue.close()


def consumer_queue(url: str, prefix: str, name: str, **options: Any) -> TaskiqQueue:
    return TaskiqQueue.from_url(url, prefix=prefix, consumer_name=name, **options)


class Running:
    """A worker's broker read by taskiq's receiver, running ``work`` for each message."""

    def __init__(
        self,
        queue: TaskiqQueue,
        work: Callable[[QueueMessage], Awaitable[None]],
        *,
        max_async_tasks: int = 8,
    ) -> None:
        from taskiq.receiver import Receiver

        self.broker = queue.broker
        self.broker.is_worker_process = True
        self.seen: list[QueueMessage] = []
        self.running = 0
        self.most_running = 0

        async def generate(**kwargs: Any) -> None:
            received = message_from_kwargs(kwargs)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            try:
                await work(received)
            finally:
                self.running -= 1
            self.seen.append(received)

        self.broker.register_task(generate, task_name=TASK_NAME)
        self.receiver = Receiver(
            self.broker,
            validate_params=False,
            max_async_tasks=max_async_tasks,
            wait_tasks_timeout=2.0,
        )
        self.finished = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.receiver.listen(self.finished))
        return self

    async def stop(self) -> None:
        self.finished.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, timeout=10)
            self.task = None
        await self.broker.shutdown()

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            await self.stop()


async def until(probe: Callable[[], Any], within: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


async def nothing(_: QueueMessage) -> None:
    return None


# -- what travels --------------------------------------------------------------------------


async def test_messages_are_taskiq_messages_for_the_generate_task(producer: TaskiqQueue) -> None:
    from taskiq.formatters.json_formatter import JSONFormatter

    sent = QueueMessage(
        job_id="job-7",
        transport_id="evt_7",
        lane=EVENT_LANE,
        payload={"kind": "event", "request_id": "req-0007"},
    )
    await producer.publish(sent)
    [entry] = await producer.broker.receive("c", count=5, block_ms=None)
    decoded = JSONFormatter().loads(entry.data)
    decoded.parse_labels()
    assert decoded.task_name == "claude_mem.generate"
    assert decoded.kwargs == {
        "job_id": "job-7",
        "transport_id": "evt_7",
        "lane": EVENT_LANE,
        "payload": {"kind": "event", "request_id": "req-0007"},
    }
    assert decoded.labels["queue_name"] == f"{producer.prefix}:{EVENT_LANE}"
    assert decoded.labels["transport_id"] == "evt_7"
    assert decoded.labels["request_id"] == "req-0007"  # for tracing, from the request
    assert entry.stream == f"{producer.prefix}:{EVENT_LANE}"
    assert entry.transport_id == "evt_7"


async def test_a_message_published_before_any_worker_started_is_not_lost(
    redis_url: str, producer: TaskiqQueue
) -> None:
    await producer.publish(message(1))  # no consumer exists yet
    late = consumer_queue(redis_url, producer.prefix, "late-worker")
    async with Running(late, nothing) as running:
        await until(lambda: _done(running, 1), what="the early message")
    assert [m.job_id for m in running.seen] == ["job-1"]


async def _done(running: Running, count: int) -> bool:
    return len(running.seen) >= count


async def test_publishing_survives_redis_forgetting_its_scripts(producer: TaskiqQueue) -> None:
    await producer.publish(message(1))
    await producer.broker.redis.script_flush()
    await producer.publish(message(2))
    await producer.broker.redis.script_flush()
    await producer.publish_many([(message(3), 0.0), (message(4), 0.0)])
    entries = await producer.broker.receive("w", count=10, block_ms=None)
    assert sorted(decode(producer, e.data).job_id for e in entries) == [
        "job-1",
        "job-2",
        "job-3",
        "job-4",
    ]


def decode(queue: TaskiqQueue, data: bytes) -> QueueMessage:
    return message_from_taskiq(queue.broker.formatter.loads(data))


async def test_a_process_that_never_publishes_does_not_load_taskiq(redis_url: str) -> None:
    # What a server that has not published yet keeps in memory (a fresh interpreter).
    code = (
        "import asyncio, sys\n"
        "from claude_mem_core.adapters.taskiq_queue import TaskiqQueue\n"
        "async def main():\n"
        f"    q = TaskiqQueue.from_url({redis_url!r}, prefix='cmtest_lazy')\n"
        "    await q.close()\n"
        "    print(sorted(n for n in sys.modules if n.split('.')[0] in ('taskiq', 'pydantic')))\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_unreachable_redis_is_a_queue_error_naming_the_host_but_not_the_password() -> None:
    queue = TaskiqQueue.from_url(
        "redis://user:s3cret-pw@127.0.0.1:1/0", prefix="cmtest_down", connect_timeout=0.5
    )
    try:
        actions: list[Callable[[], Awaitable[Any]]] = [
            queue.ping,
            lambda: queue.publish(message(1)),
            lambda: queue.publish_many([(message(2), 0.0), (message(3), 1.0)]),
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


async def test_server_side_memory_publishes_under_the_configured_prefix(
    redis_url: str, tmp_path: Path
) -> None:
    """The server and the worker read the same CLAUDE_MEM_QUEUE_REDIS_PREFIX; a server that
    published under another prefix would leave every job to reconciliation and fill an
    unconsumed stream."""
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


# -- what the worker's broker guarantees under taskiq's receiver ---------------------------


async def test_the_broker_takes_no_more_messages_than_it_has_slots(
    redis_url: str, producer: TaskiqQueue
) -> None:
    """Capacity 2 under a receiver allowed 8 tasks: never more than 2 jobs run, and no more
    than 2 messages are taken from the stream (the rest stay there for other workers)."""
    release = asyncio.Event()
    await producer.publish_many([(message(n), 0.0) for n in range(6)])
    worker = consumer_queue(redis_url, producer.prefix, "w1", capacity=2)
    async with Running(worker, lambda _: release.wait(), max_async_tasks=8) as running:
        await until(lambda: _running(running, 2), what="two jobs running")
        await asyncio.sleep(0.3)  # time for a wrongful third read
        assert running.running == 2
        assert (await producer.pending())[EVENT_LANE] == 2
        release.set()
        await until(lambda: _done(running, 6), what="all six")
    assert running.most_running == 2


async def _running(running: Running, count: int) -> bool:
    return running.running >= count


async def test_a_stopping_worker_hands_back_what_it_took_but_did_not_start(
    redis_url: str, producer: TaskiqQueue
) -> None:
    """Capacity 4, a receiver that runs one job at a time: a read takes up to 4 messages.
    At stop, the 3 not started go straight back to the stream, so another worker takes
    them at once (not after they are claimed as stale)."""
    release = asyncio.Event()
    await producer.publish_many([(message(n), 0.0) for n in range(4)])
    first = consumer_queue(redis_url, producer.prefix, "w1", capacity=4)
    async with Running(first, lambda _: release.wait(), max_async_tasks=1) as running:
        await until(lambda: _running(running, 1), what="the first job")
        assert (await producer.pending())[EVENT_LANE] == 4  # read together
        stopping = asyncio.create_task(running.stop())
        await asyncio.sleep(0.2)
        release.set()
        await stopping
    assert len(running.seen) == 1
    assert await producer.pending() == {EVENT_LANE: 0, SUMMARY_LANE: 0}
    assert (await producer.depth())[EVENT_LANE] == 3
    second = consumer_queue(redis_url, producer.prefix, "w2")
    async with Running(second, nothing) as other:
        await until(lambda: _done(other, 3), within=3, what="the handed-back three")
    assert {m.job_id for m in running.seen + other.seen} == {f"job-{n}" for n in range(4)}


async def test_a_dead_consumers_message_is_claimed_once_stale(
    redis_url: str, producer: TaskiqQueue
) -> None:
    await producer.publish(message(1))
    [taken] = await producer.broker.receive("dies", count=1, block_ms=None)  # never acked
    assert (await producer.pending())[EVENT_LANE] == 1
    survivor = consumer_queue(
        redis_url, producer.prefix, "w2", stale_after_seconds=0.5, claim_interval=0.1
    )
    async with Running(survivor, nothing) as running:
        await asyncio.sleep(0.2)
        assert running.seen == []  # not stale yet: its consumer may still be working
        await until(lambda: _done(running, 1), what="the stale message")
    assert running.seen == [decode(producer, taken.data)]
    assert await producer.pending() == {EVENT_LANE: 0, SUMMARY_LANE: 0}
    assert await producer.depth() == {EVENT_LANE: 0, SUMMARY_LANE: 0}


async def test_processed_messages_are_acknowledged_and_deleted(
    redis_url: str, producer: TaskiqQueue
) -> None:
    await producer.publish_many([(message(n), 0.0) for n in range(5)])
    await producer.publish(message(9, lane=SUMMARY_LANE, transport="sum_9"))
    worker = consumer_queue(redis_url, producer.prefix, "w1")
    async with Running(worker, nothing) as running:
        await until(lambda: _done(running, 6), what="six messages")
        await until(lambda: _settled(producer), what="acknowledgements")
    assert await producer.depth() == {EVENT_LANE: 0, SUMMARY_LANE: 0}


async def _settled(queue: TaskiqQueue) -> bool:
    pending = await queue.pending()
    depth = await queue.depth()
    return sum(pending.values()) == 0 and sum(depth.values()) == 0


async def test_a_delayed_message_is_delivered_when_due(
    redis_url: str, producer: TaskiqQueue
) -> None:
    await producer.publish(message(1), delay=0.4)
    started = time.monotonic()
    worker = consumer_queue(redis_url, producer.prefix, "w1")
    async with Running(worker, nothing) as running:
        await until(lambda: _done(running, 1), what="the delayed message")
    assert time.monotonic() - started >= 0.35


async def test_the_worker_survives_redis_losing_its_keys(
    redis_url: str, producer: TaskiqQueue
) -> None:
    worker = consumer_queue(redis_url, producer.prefix, "w1")
    async with Running(worker, nothing) as running:
        await producer.publish(message(1))
        await until(lambda: _done(running, 1), what="the first message")
        assert await producer.delete_all_keys() > 0  # a restart without persistence
        await asyncio.sleep(1.5)  # the reader meets the missing group and re-creates it
        await producer.publish(message(2))
        await until(lambda: _done(running, 2), within=5, what="a message after the loss")
    assert [m.job_id for m in running.seen] == ["job-1", "job-2"]


async def test_an_undecodable_entry_is_dropped_and_the_next_one_runs(
    redis_url: str, producer: TaskiqQueue
) -> None:
    await producer.startup()
    await producer.broker.redis.xadd(producer.stream_for(EVENT_LANE), {b"data": b"not json"})
    await producer.publish(message(1))
    worker = consumer_queue(redis_url, producer.prefix, "w1")
    async with Running(worker, nothing) as running:
        await until(lambda: _done(running, 1), what="the good message")
        await until(lambda: _settled(producer), what="both entries acknowledged")
    assert [m.job_id for m in running.seen] == ["job-1"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_worker_waits_for_redis_with_backoff_and_stops_while_waiting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="claude_mem.queue.redis")
    url = f"redis://user:s3cret-pw@127.0.0.1:{_closed_port()}/0"
    worker = consumer_queue(url, "cmtest_wait", "w1", connect_timeout=0.2)
    broker = worker.broker
    broker.retry_first, broker.retry_most = 0.1, 0.4
    async with Running(worker, nothing) as running:
        await until(lambda: _tries(caplog, 4), within=10, what="four tries")
        began = time.monotonic()
        await running.stop()
        assert time.monotonic() - began < 3
    lines = [r.getMessage() for r in caplog.records if "is not reachable" in r.getMessage()]
    assert "127.0.0.1:" in lines[0] and "retrying in 0.1s (try 1," in lines[0]
    assert "retrying in 0.2s (try 2," in lines[1]
    assert "retrying in 0.4s (try 3," in lines[2]
    assert "retrying in 0.4s (try 4," in lines[3]
    assert all("s3cret" not in line for line in lines)
    assert not broker.reached


async def _tries(caplog: pytest.LogCaptureFixture, count: int) -> bool:
    return sum("is not reachable" in r.getMessage() for r in caplog.records) >= count


async def test_a_busy_lane_does_not_starve_the_other(redis_url: str, producer: TaskiqQueue) -> None:
    """A backlog of event jobs, then one summary: with one slot, the summary is taken
    within the first reads, not after the whole backlog (lanes are read in turn)."""
    await producer.publish_many([(message(n), 0.0) for n in range(30)])
    await producer.publish(message(99, lane=SUMMARY_LANE, transport="sum_99"))
    worker = consumer_queue(redis_url, producer.prefix, "w1", capacity=1)
    async with Running(worker, nothing, max_async_tasks=1) as running:
        await until(lambda: _done(running, 31), within=10, what="every message")
    order = [m.job_id for m in running.seen]
    assert order.index("job-99") <= 2, order
