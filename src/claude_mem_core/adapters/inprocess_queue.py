"""The in-process queue: the embedded default (``memory://`` queue URL).

Messages wait in this process until :meth:`consume` hands them to a handler: the facade's
``drain()`` does that, and the embedded server runs it in a background task. Publishing the
same transport id again while it is still waiting does not add a second message, which is
also what makes debounced publishing coalesce.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from claude_mem_core.ports.queue import JobHandler, QueueMessage


class InProcessQueue:
    name = "memory"

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._waiting: dict[str, tuple[float, QueueMessage]] = {}
        self._monotonic = monotonic
        self._arrived = asyncio.Event()
        self.published = 0

    async def publish(self, message: QueueMessage, *, delay: float = 0.0) -> None:
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
                await handler(message)
            except BaseException:
                # Undelivered: put it back so a later consume (or reconciliation) retries.
                self._waiting.setdefault(message.transport_id, (self._monotonic(), message))
                raise
            handled += 1
        return handled

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
