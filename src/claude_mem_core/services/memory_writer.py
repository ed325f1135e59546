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

from attrs import define

from claude_mem_core.domain.models import Observation
from claude_mem_core.errors import ClaudeMemError
from claude_mem_core.ports.storage import FreshMemory
from claude_mem_core.services import memories
from claude_mem_core.services.context import Caller
from claude_mem_core.services.grouping import GroupWriter, fail, settle

log = logging.getLogger(__name__)


@define(kw_only=True, eq=False)
class _Pending:
    caller: Caller
    fresh: FreshMemory  # built on arrival, overlapping the group being written
    reply: asyncio.Future[Observation]


@define(eq=False)
class GroupCommitMemories(GroupWriter[_Pending, Observation]):
    """Writes concurrent memories in groups (see the module docstring). ``max_group``
    bounds the memories of one write, ``max_in_flight`` the groups written at once."""

    async def add(self, caller: Caller, item: memories.MemoryInput) -> Observation:
        """Store one memory, as :func:`memories.add_memory`."""
        # Everything that needs no database fails here, before joining a group.
        fresh = memories.fresh_memory(self.deps, caller, item)
        reply: asyncio.Future[Observation] = asyncio.get_running_loop().create_future()
        return await self._join(_Pending(caller=caller, fresh=fresh, reply=reply))

    async def _write_group(self, group: list[_Pending], release: Callable[[], None]) -> None:
        written: set[str] = set()
        try:
            written = await self.deps.storage.add_fresh_memories([p.fresh for p in group])
        except ClaudeMemError as e:
            log.info("group of %d memories failed (%s); writing each on its own", len(group), e)
        release()
        for pending in group:
            if pending.fresh.observation.id in written:
                settle(pending, pending.fresh.observation)
        for pending in group:
            if not pending.reply.done():
                await self._write_alone(pending)

    async def _write_alone(self, pending: _Pending) -> None:
        try:
            await self._check_key(pending.caller)
            result = await memories.write_memory(self.deps, pending.caller, pending.fresh)
        except Exception as e:
            fail(pending, e)
        else:
            settle(pending, result)
