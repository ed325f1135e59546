"""The queue contract: one suite every :class:`JobQueue` adapter must pass.

What the pipeline relies on: a published message reaches a consumer with its payload
intact; delivery is at least once (a consumer that fails leaves the message to be
delivered again); delays hold a message back and a re-publish of a waiting transport id
restarts its delay without adding a second message (debounce); a re-publish of a message
still waiting adds nothing (reconciliation does that); ``depth()`` counts waiting messages
per lane.

Subclass :class:`QueueContract` in a test module and provide a ``harness`` fixture: a
:class:`QueueHarness` that drives one adapter's consuming side (adapters consume
differently: the in-process queue hands messages to a handler, the Redis queue to taskiq's
receiver). :class:`InProcessHarness` and :class:`RedisStreamHarness` drive the adapters of
this package. The class has no ``Test`` prefix, so pytest collects it only where it is
subclassed.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable

import pytest

from claude_mem_core.adapters.inprocess_queue import InProcessQueue
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


class QueueHarness:
    """Drives one adapter: consume what is due, let time pass, recover unacknowledged."""

    queue: JobQueue

    async def consume(self, handler: Handler, *, max_messages: int | None = None) -> int:
        """Hand due messages to ``handler`` until none is left (or ``max_messages``);
        a message is acknowledged only once ``handler`` returned, so an error leaves it
        unacknowledged (and is raised)."""
        raise NotImplementedError

    async def advance(self, seconds: float) -> None:
        raise NotImplementedError

    async def recover(self) -> None:
        """Make messages a failed consumer left unacknowledged deliverable again."""

    async def close(self) -> None:
        await self.queue.close()


class InProcessHarness(QueueHarness):
    def __init__(self) -> None:
        self.now = 1000.0
        self.inprocess = InProcessQueue(monotonic=lambda: self.now)
        self.queue = self.inprocess

    async def consume(self, handler: Handler, *, max_messages: int | None = None) -> int:
        return await self.inprocess.consume(handler, max_messages=max_messages)

    async def advance(self, seconds: float) -> None:
        self.now += seconds


class RedisStreamHarness(QueueHarness):
    """The Redis queue under a fresh key prefix (all its keys deleted on close). Consumes
    as a worker's broker does: read, decode the taskiq message, acknowledge."""

    def __init__(self, url: str) -> None:
        from claude_mem_core.adapters.taskiq_queue import TaskiqQueue

        self.redis_queue = TaskiqQueue.from_url(url, prefix=f"cmtest_{secrets.token_hex(4)}")
        self.queue = self.redis_queue

    async def consume(self, handler: Handler, *, max_messages: int | None = None) -> int:
        from claude_mem_core.adapters.taskiq_queue import message_from_taskiq

        broker = self.redis_queue.broker
        await broker.declare_groups()
        await broker.promote_due()
        handled = 0
        while max_messages is None or handled < max_messages:
            entries = await broker.receive("contract", count=1, block_ms=None)
            if not entries:
                break
            for entry in entries:
                await handler(message_from_taskiq(broker.formatter.loads(entry.data)))
                await broker.ack_many([entry])
                handled += 1
        return handled

    async def advance(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def recover(self) -> None:
        # What a worker does for a consumer that died: claim its unacknowledged entries.
        broker = self.redis_queue.broker
        await broker.hand_back(await broker.claim_stale("contract-2", min_idle_ms=0))

    async def close(self) -> None:
        await self.redis_queue.delete_all_keys()
        await self.redis_queue.close()


class Recorder:
    def __init__(self, fail_first: int = 0) -> None:
        self.seen: list[QueueMessage] = []
        self.fail_first = fail_first

    async def __call__(self, msg: QueueMessage) -> None:
        if self.fail_first > 0:
            self.fail_first -= 1
            raise RuntimeError("handler crashed")
        self.seen.append(msg)


class QueueContract:
    """The behaviour every queue adapter shares (needs a ``harness`` fixture)."""

    async def test_published_message_is_delivered_with_its_payload_intact(
        self, harness: QueueHarness
    ) -> None:
        sent = message(1)
        await harness.queue.publish(sent)
        seen = Recorder()
        assert await harness.consume(seen) == 1
        assert seen.seen == [sent]
        assert await harness.consume(seen) == 0  # acknowledged: not delivered again

    async def test_both_lanes_deliver_and_depth_counts_per_lane(
        self, harness: QueueHarness
    ) -> None:
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

    async def test_a_failing_handler_leaves_the_message_for_redelivery(
        self, harness: QueueHarness
    ) -> None:
        await harness.queue.publish(message(1))
        crashing = Recorder(fail_first=1)
        with pytest.raises(RuntimeError, match="handler crashed"):
            await harness.consume(crashing)
        assert sum((await harness.queue.depth()).values()) == 1  # not acknowledged
        await harness.recover()
        assert await harness.consume(crashing) == 1
        assert [m.job_id for m in crashing.seen] == ["job-1"]
        assert sum((await harness.queue.depth()).values()) == 0

    async def test_a_delayed_message_waits_for_its_delay(self, harness: QueueHarness) -> None:
        await harness.queue.publish(message(1), delay=0.4)
        assert (await harness.queue.depth()).get(EVENT_LANE, 0) == 1
        seen = Recorder()
        assert await harness.consume(seen) == 0
        await harness.advance(0.5)
        assert await harness.consume(seen) == 1
        assert seen.seen[0].job_id == "job-1"

    async def test_republishing_a_delayed_transport_id_restarts_its_delay_once(
        self, harness: QueueHarness
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

    async def test_publishing_now_makes_a_delayed_message_due(self, harness: QueueHarness) -> None:
        await harness.queue.publish(message(1), delay=60)
        await harness.queue.publish(message(1))
        seen = Recorder()
        deadline = time.monotonic() + 2
        while not seen.seen and time.monotonic() < deadline:
            await harness.consume(seen)
        assert [m.job_id for m in seen.seen] == ["job-1"]

    async def test_republishing_a_waiting_message_does_not_duplicate_it(
        self, harness: QueueHarness
    ) -> None:
        await harness.queue.publish(message(1))
        await harness.queue.publish(message(1))
        seen = Recorder()
        assert await harness.consume(seen) == 1
        # Once received it is no longer waiting: publishing again delivers again.
        await harness.queue.publish(message(1))
        assert await harness.consume(seen) == 1

    async def test_publish_many_publishes_each_message_as_publish_would(
        self, harness: QueueHarness
    ) -> None:
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

    async def test_ping_answers(self, harness: QueueHarness) -> None:
        await harness.queue.ping()
