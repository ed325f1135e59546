"""The in-process queue: the embedded default (``memory://`` queue URL).

Messages wait in this process until :meth:`consume` hands them to a handler: the facade's
``drain()`` does that, and the embedded server runs it in a background task. Publishing the
same transport id again while it is still waiting does not add a second message, which is
also what makes debounced publishing coalesce.

When tracing, each publish is a span, and its context waits beside the message (never in
it) to be the parent of the span that processes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from claude_mem_core.logging_setup import request_logged
from claude_mem_core.ports.queue import JobHandler, QueueMessage
from claude_mem_core.ports.tracing import NOOP_TRACER, Attributes, Tracer

_SYSTEM = "in_process"


def _attributes(message: QueueMessage) -> Attributes:
    request_id = message.payload.get("request_id")
    return {
        "messaging.system": _SYSTEM,
        "messaging.destination.name": message.lane,
        "messaging.message.id": message.transport_id,
        "claude_mem.job.id": message.job_id,
        "claude_mem.request_id": request_id if isinstance(request_id, str) else None,
    }


class InProcessQueue:
    name = "memory"

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._waiting: dict[str, tuple[float, QueueMessage]] = {}
        self._monotonic = monotonic
        self._arrived = asyncio.Event()
        self.published = 0
        self.tracer: Tracer = NOOP_TRACER
        # The publishing span's context of each waiting message, by transport id.
        self._carriers: dict[str, dict[str, str]] = {}

    def trace_with(self, tracer: Tracer) -> None:
        """Trace each publish and each message processed, as the publish's child."""
        self.tracer = tracer

    async def publish(self, message: QueueMessage, *, delay: float = 0.0) -> None:
        if not self.tracer.enabled:
            self._wait(message, delay)
            return
        request_id = message.payload.get("request_id")
        with self.tracer.span(
            f"publish {message.lane}",
            _attributes(message),
            kind="producer",
            request_id=request_id if isinstance(request_id, str) else None,
        ):
            # A message already waiting keeps the context of its first publish (as the
            # Redis broker keeps its first message): the trace of the request behind it.
            if message.transport_id not in self._waiting or not self._carriers.get(
                message.transport_id
            ):
                self._carriers[message.transport_id] = self.tracer.inject()
            self._wait(message, delay)

    def _wait(self, message: QueueMessage, delay: float) -> None:
        due = self._monotonic() + max(delay, 0.0)
        current = self._waiting.get(message.transport_id)
        if current is not None and delay <= 0:
            due = min(due, current[0])
        # A re-publish replaces the waiting message: its delay restarts (debounce).
        self._waiting[message.transport_id] = (due, message)
        self.published += 1
        self._arrived.set()

    async def publish_many(self, messages: Sequence[tuple[QueueMessage, float]]) -> None:
        for message, delay in messages:
            await self.publish(message, delay=delay)

    def _take_due(self) -> QueueMessage | None:
        now = self._monotonic()
        ready = [(due, tid) for tid, (due, _) in self._waiting.items() if due <= now]
        if not ready:
            return None
        _, tid = min(ready)
        return self._waiting.pop(tid)[1]

    async def consume(self, handler: JobHandler, *, max_messages: int | None = None) -> int:
        handled = 0
        while max_messages is None or handled < max_messages:
            message = self._take_due()
            if message is None:
                break
            try:
                await self._handle(handler, message)
            except BaseException:
                # Undelivered: put it back so a later consume (or reconciliation) retries.
                self._waiting.setdefault(message.transport_id, (self._monotonic(), message))
                raise
            handled += 1
        return handled

    async def _handle(self, handler: JobHandler, message: QueueMessage) -> None:
        request_id = message.payload.get("request_id")
        with request_logged(request_id if isinstance(request_id, str) else None):
            if not self.tracer.enabled:
                await handler(message)
                return
            carrier = self._carriers.pop(message.transport_id, {})
            try:
                with self.tracer.span_from(
                    carrier, f"process {message.lane}", _attributes(message), kind="consumer"
                ):
                    await handler(message)
            except BaseException:
                self._carriers.setdefault(message.transport_id, carrier)  # with it, back
                raise

    def next_due_in(self) -> float | None:
        """Seconds until the earliest waiting message is due (None if nothing waits)."""
        if not self._waiting:
            return None
        return max(0.0, min(due for due, _ in self._waiting.values()) - self._monotonic())

    async def wait_for_messages(self, at_most: float) -> None:
        self._arrived.clear()
        if self._waiting:
            wait = self.next_due_in() or 0.0
            if wait <= 0:
                return
            at_most = min(at_most, wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), at_most)

    async def depth(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, message in self._waiting.values():
            counts[message.lane] = counts.get(message.lane, 0) + 1
        return counts

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._waiting.clear()
        self._carriers.clear()
