"""The queue port: delivery of job ids to workers, at least once.

The database is the source of truth for what must run; the queue only carries a
notification "job X is due". Publishing happens after the outbox row commits, and a job
that was never delivered (or whose worker died) is found again by reconciliation, so a
queue may lose messages without losing work. Consumers must therefore be idempotent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from attrs import frozen

from claude_mem_core.domain.models import JSONObject

EVENT_LANE = "server_beta_generate_event"
SUMMARY_LANE = "server_beta_generate_summary"
LANES = (EVENT_LANE, SUMMARY_LANE)


@frozen(kw_only=True)
class QueueMessage:
    """What travels on the queue: the job row id plus the persisted transport payload."""

    job_id: str
    transport_id: str
    lane: str
    payload: JSONObject


JobHandler = Callable[[QueueMessage], Awaitable[None]]


class JobQueue(Protocol):
    """Adapters: in-process (embedded default), taskiq on Redis streams."""

    name: str

    async def publish(self, message: QueueMessage, *, delay: float = 0.0) -> None:
        """Hand ``message`` over for delivery; raise ``QueueError`` if that is impossible.
        Publishing the same transport id twice may deliver twice."""

    async def publish_many(self, messages: Sequence[tuple[QueueMessage, float]]) -> None:
        """Publish several ``(message, delay)`` pairs at once, each exactly as
        :meth:`publish` would (a broker may send them in one round trip). Raises
        ``QueueError`` if they could not be handed over; then any of them may or may not
        have been published (reconciliation finds the others)."""

    async def depth(self) -> dict[str, int]:
        """Messages waiting per lane (best effort, for health and `jobs status`)."""

    async def ping(self) -> None:
        """Raise ``QueueError`` if the broker cannot be reached."""

    async def close(self) -> None: ...


class ConsumableQueue(JobQueue, Protocol):
    """A queue this process can also consume from (the in-process queue)."""

    async def consume(self, handler: JobHandler, *, max_messages: int | None = None) -> int:
        """Deliver waiting messages to ``handler`` until none are left (or ``max_messages``);
        returns how many were handled. A handler error leaves the message undelivered."""
