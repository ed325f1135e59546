"""Group commit for memories: concurrent ``add_memory`` calls share one write.

Written one transaction each, a memory costs a project check, an insert of the
observation, its search passages and statistics, its source link, its audit row and a
commit: a round trip each. While a group is being written, the memories that arrive queue
up; the next group writes them all in one call of :meth:`Storage.add_fresh_memories` (on
PostgreSQL one statement, its own transaction). Nothing waits on a timer: under no load a
group is one memory, written at once.

Each call still gets what :func:`memories.add_memory` gives: its own observation, a
``memory.write`` audit row with its own caller and request id, and a reply only after its
rows are committed. The storage leaves out memories out of scope (unknown project,
foreign session) and those whose API key no longer works; they are written on their own,
which answers each as ``add_memory`` does ("not found", "forbidden"). If the group's write
fails (a value the database refuses), each memory of the group is written on its own, so
one bad memory never fails its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from attrs import define, field

from claude_mem_core.domain.models import Observation
from claude_mem_core.errors import ClaudeMemError, Forbidden
from claude_mem_core.ports.storage import FreshMemory
from claude_mem_core.services import memories
from claude_mem_core.services.context import Caller, Deps

log = logging.getLogger(__name__)

DEFAULT_MAX_GROUP = 64
DEFAULT_MAX_IN_FLIGHT = 1


@define(kw_only=True, eq=False)
class _Pending:
    caller: Caller
    fresh: FreshMemory  # built on arrival, overlapping the group being written
    reply: asyncio.Future[Observation]


@define(eq=False)
class GroupCommitMemories:
    """Writes concurrent memories in groups (see the module docstring). ``max_group``
    bounds the memories of one write, ``max_in_flight`` the groups written at once."""

    deps: Deps
    max_group: int = DEFAULT_MAX_GROUP
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    _waiting: list[_Pending] = field(factory=list, init=False)
    _in_flight: int = field(default=0, init=False)
    _tasks: set[asyncio.Task[None]] = field(factory=set, init=False)

    async def add(self, caller: Caller, item: memories.MemoryInput) -> Observation:
        """Store one memory, as :func:`memories.add_memory`."""
        # Everything that needs no database fails here, before joining a group.
        fresh = memories.fresh_memory(self.deps, caller, item)
        reply: asyncio.Future[Observation] = asyncio.get_running_loop().create_future()
        reply.add_done_callback(_retrieve)  # a caller gone: no unretrieved-exception warning
        self._waiting.append(_Pending(caller=caller, fresh=fresh, reply=reply))
        self._start_writers()
        # shield: a caller that goes away must not cancel its neighbours' write; its own
        # memory is then stored, as it would be had the commit won the race.
        return await asyncio.shield(reply)

    async def drain(self) -> None:
        """Wait until every accepted memory is written (for shutdown)."""
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

    async def _write(self, group: list[_Pending]) -> None:
        released = False

        def release() -> None:
            # The slot is given back as soon as the group's write is done: the replies
            # (and the writes of left-out memories) overlap the next group's write.
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

    async def _write_group(self, group: list[_Pending], release: Callable[[], None]) -> None:
        written: set[str] = set()
        try:
            written = await self.deps.storage.add_fresh_memories([p.fresh for p in group])
        except ClaudeMemError as e:
            log.info("group of %d memories failed (%s); writing each on its own", len(group), e)
        release()
        for pending in group:
            if pending.fresh.observation.id in written:
                _settle(pending, pending.fresh.observation)
        for pending in group:
            if not pending.reply.done():
                await self._write_alone(pending)

    async def _write_alone(self, pending: _Pending) -> None:
        try:
            await self._check_key(pending.caller)
            result = await memories.write_memory(self.deps, pending.caller, pending.fresh)
        except Exception as e:
            if not pending.reply.done():
                pending.reply.set_exception(e)
        else:
            _settle(pending, result)

    async def _check_key(self, caller: Caller) -> None:
        """Refuse a caller whose key stopped working: it may have been taken from memory
        (``CoalescedKeyLookup.verify_known``), and ``write_memory`` does not look at keys."""
        if caller.api_key_id is None:
            return
        async with self.deps.storage.unit_of_work() as uow:
            key = await uow.api_keys.get_unscoped(caller.api_key_id)
        if key is None or not key.is_usable(self.deps.clock.now()):
            raise Forbidden("Invalid API key or insufficient scope")


def _retrieve(reply: asyncio.Future[Observation]) -> None:
    if not reply.cancelled():
        reply.exception()


def _settle(pending: _Pending, result: Observation) -> None:
    if not pending.reply.done():
        pending.reply.set_result(result)
