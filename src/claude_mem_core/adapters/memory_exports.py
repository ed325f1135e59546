"""Export and import reads of the in-memory storage: keyset pages of a project and the
owners of ids."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from claude_mem_core.adapters.memory_state import Repo, in_scope
from claude_mem_core.domain.export_format import Counts
from claude_mem_core.domain.models import AgentEvent, Observation, ObservationSource, ServerSession
from claude_mem_core.ports.export_reads import Cursor


class MemoryExportReads(Repo):
    """Keyset pages of a project (export) and id lookups (import); sorted per read (this
    is a fake: the SQL adapters read along an index)."""

    def _after(
        self,
        table: str,
        team_id: str,
        project_id: str,
        at: Callable[[Any], datetime],
        after: Cursor | None,
        limit: int,
    ) -> list[Any]:
        rows = [r for r in self._tx.read(table).values() if in_scope(r, team_id, project_id)]
        rows.sort(key=lambda r: (at(r), r.id))
        if after is not None:
            rows = [r for r in rows if (at(r), r.id) > after]
        return rows[:limit]

    async def counts(self, team_id: str, project_id: str) -> Counts:
        def count(table: str) -> int:
            return sum(1 for r in self._tx.read(table).values() if in_scope(r, team_id, project_id))

        return Counts(
            sessions=count("sessions"), events=count("events"), observations=count("observations")
        )

    async def sessions_page(
        self, team_id: str, project_id: str, *, after: Cursor | None, limit: int
    ) -> Sequence[ServerSession]:
        return self._after("sessions", team_id, project_id, lambda r: r.created_at, after, limit)

    async def events_page(
        self, team_id: str, project_id: str, *, after: Cursor | None, limit: int
    ) -> Sequence[AgentEvent]:
        return self._after("events", team_id, project_id, lambda r: r.occurred_at, after, limit)

    async def observations_page(
        self, team_id: str, project_id: str, *, after: Cursor | None, limit: int
    ) -> Sequence[Observation]:
        return self._after(
            "observations", team_id, project_id, lambda r: r.created_at, after, limit
        )

    async def sources_of(
        self, team_id: str, project_id: str, observation_ids: Sequence[str]
    ) -> Sequence[ObservationSource]:
        wanted = set(observation_ids)
        return [
            s
            for s in self._tx.read("sources").values()
            if s.observation_id in wanted and in_scope(s, team_id, project_id)
        ]

    async def owners(self, kind: str, ids: Sequence[str]) -> Mapping[str, tuple[str, str]]:
        table = self._tx.read(_EXPORT_TABLES[kind])
        return {i: (row.team_id, row.project_id) for i in ids if (row := table.get(i)) is not None}


_EXPORT_TABLES = {
    "session": "sessions",
    "event": "events",
    "observation": "observations",
    "source": "sources",
}
