"""Group commit's queue, shared by events and memories: calls that arrive while a group is
being written form the next group; nothing waits on a timer.

A writer (:class:`GroupWriter`) keeps the calls waiting, starts at most ``max_in_flight``
group writes at a time (of at most ``max_group`` calls each), gives the slot back as soon
as a group's storage write is done (so replies and the writes of left-out calls overlap
the next group), never leaves a caller waiting if a write fails, and shields each caller's
write from its own cancellation (a caller that goes away must not cancel its neighbours'
transaction). What a group is and how it is written belong to the subclass
(:meth:`GroupWriter._write_group`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from attrs import define, field

from claude_mem_core.domain.models import UNKNOWN_KEY
from claude_mem_core.errors import Forbidden
from claude_mem_core.services.context import Caller, Deps

DEFAULT_MAX_GROUP = 64
# One group in flight is best: a second writer mostly starts with a single call, paying a
# round trip per call again, while with one the calls that arrive during a write share
# the next.
DEFAULT_MAX_IN_FLIGHT = 1

R = TypeVar("R")


class Waiting(Protocol[R]):
    """A call waiting for its group: what it asked, and the future of its answer."""

    @property
    def caller(self) -> Caller: ...

    @property
    def reply(self) -> asyncio.Future[R]: ...


P = TypeVar("P", bound=Waiting[Any])


@define(eq=False)
class GroupWriter(Generic[P, R]):
    """Writes concurrent calls in groups (see the module docstring)."""

    deps: Deps
    max_group: int = DEFAULT_MAX_GROUP
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    _waiting: list[P] = field(factory=list, init=False)
    _in_flight: int = field(default=0, init=False)
    _tasks: set[asyncio.Task[None]] = field(factory=set, init=False)

    async def _join(self, pending: P) -> R:
        """Queue ``pending`` for the next group and wait for its answer."""
        pending.reply.add_done_callback(_retrieve)  # a caller gone: no unretrieved warning
        self._waiting.append(pending)
        self._start_writers()
        # shield: a caller that goes away must not cancel its neighbours' write; its own
        # call is then stored, as it would be had the commit won the race.
        result: R = await asyncio.shield(pending.reply)
        return result

    async def drain(self) -> None:
        """Wait until every accepted call is written (for shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _start_writers(self) -> None:
        while self._waiting and self._in_flight < self.max_in_flight:
            group, self._waiting = (
                self._waiting[: self.max_group],
                self._waiting[self.max_group :],
            )
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._write(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _write(self, group: list[P]) -> None:
        released = False

        def release() -> None:
            # The slot is given back as soon as the group's write is done: what follows
            # (publishing, replies, calls written alone) overlaps the next group's write.
            nonlocal released
            if not released:
                released = True
                self._in_flight -= 1
                if self._waiting:
                    self._start_writers()

        try:
            await self._write_group(group, release)
        except BaseException as e:  # never leave a caller waiting forever
            for pending in group:
                if not pending.reply.done():
                    pending.reply.set_exception(e)
            if not isinstance(e, Exception):
                raise
        finally:
            release()

    async def _write_group(self, group: list[P], release: Callable[[], None]) -> None:
        """Write ``group``, settle each call (:func:`settle`), and call ``release`` as soon
        as the group's own storage write is done."""
        raise NotImplementedError

    async def _check_key(self, caller: Caller) -> None:
        """Refuse a caller whose key stopped working before writing its call alone: the
        key may have been taken from memory (``CoalescedKeyLookup.verify_known``), and the
        single-call use cases do not look at keys."""
        if caller.api_key_id is None:
            return
        async with self.deps.storage.unit_of_work() as uow:
            key = await uow.api_keys.get_unscoped(caller.api_key_id)
        refusal = UNKNOWN_KEY if key is None else key.refusal(self.deps.clock.now())
        if refusal is not None:
            raise Forbidden(refusal)


def settle(pending: Waiting[R], result: R) -> None:
    if not pending.reply.done():
        pending.reply.set_result(result)


def fail(pending: Waiting[Any], error: BaseException) -> None:
    if not pending.reply.done():
        pending.reply.set_exception(error)


def _retrieve(reply: asyncio.Future[Any]) -> None:
    if not reply.cancelled():
        reply.exception()
