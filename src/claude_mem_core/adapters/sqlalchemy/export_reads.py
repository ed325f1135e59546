"""Keyset-paged reads of a whole project (export) and the id lookups of an import.

Each page is one statement: ``WHERE team, project AND (t, id) > (cursor) ORDER BY t, id
LIMIT n``. Events are paged by ``occurred_at``, which the index
``idx_agent_events_team_project`` (team, project, occurred_at) serves; observations by
``created_at`` (``idx_observations_team_project``); sessions, few per project, by
``created_at``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.connection import _Db
from claude_mem_core.adapters.sqlalchemy.rows import _event, _observation, _session, _source
from claude_mem_core.adapters.sqlalchemy.tenant_filter import of_tenant
from claude_mem_core.domain.export_format import Counts
from claude_mem_core.domain.models import AgentEvent, Observation, ObservationSource, ServerSession
from claude_mem_core.ports.export_reads import Cursor

_OWNED_TABLES: dict[str, sa.Table] = {
    "session": t.server_sessions,
    "event": t.agent_events,
    "observation": t.observations,
    "source": t.observation_sources,
}

# Ids per lookup statement: well under SQLite's bound-parameter limit.
_IDS_PER_STATEMENT = 500


class ExportReadRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def _page(
        self,
        table: sa.Table,
        moment: sa.ColumnElement[Any],
        team_id: str,
        project_id: str,
        after: Cursor | None,
        limit: int,
        to_record: Callable[[RowMapping], Any],
    ) -> list[Any]:
        c = table.c
        stmt = self._db.select(table).where(of_tenant(team_id, project_id, c))
        if after is not None:
            at, last_id = after
            # Spelled out rather than a row comparison: both engines then use the index's
            # leading columns and the range on the time.
            stmt = stmt.where(moment >= at, sa.or_(moment > at, c.id > last_id))
        stmt = stmt.order_by(moment, c.id).limit(limit)
        return [to_record(r) for r in await self._db.all(stmt)]

    async def counts(self, team_id: str, project_id: str) -> Counts:
        def count(table: sa.Table) -> sa.ScalarSelect[Any]:
            return (
                sa.select(sa.func.count())
                .select_from(table)
                .where(of_tenant(team_id, project_id, table.c))
                .scalar_subquery()
            )

        stmt = sa.select(
            count(t.server_sessions).label("sessions"),
            count(t.agent_events).label("events"),
            count(t.observations).label("observations"),
        )
        row = (await self._db.execute(stmt)).mappings().one()
        return Counts(
            sessions=int(row["sessions"]),
            events=int(row["events"]),
            observations=int(row["observations"]),
        )

    async def sessions_page(
        self, team_id: str, project_id: str, *, after: Cursor | None, limit: int
    ) -> Sequence[ServerSession]:
        table = t.server_sessions
        return await self._page(
            table, table.c.created_at, team_id, project_id, after, limit, _session
        )

    async def events_page(
        self, team_id: str, project_id: str, *, after: Cursor | None, limit: int
    ) -> Sequence[AgentEvent]:
        table = t.agent_events
        return await self._page(
            table, table.c.occurred_at, team_id, project_id, after, limit, _event
        )

    async def observations_page(
        self, team_id: str, project_id: str, *, after: Cursor | None, limit: int
    ) -> Sequence[Observation]:
        table = t.observations
        return await self._page(
            table, table.c.created_at, team_id, project_id, after, limit, _observation
        )

    async def sources_of(
        self, team_id: str, project_id: str, observation_ids: Sequence[str]
    ) -> Sequence[ObservationSource]:
        c = t.observation_sources.c
        found: list[ObservationSource] = []
        for start in range(0, len(observation_ids), _IDS_PER_STATEMENT):
            chunk = list(observation_ids[start : start + _IDS_PER_STATEMENT])
            stmt = self._db.select(t.observation_sources).where(
                of_tenant(team_id, project_id, c), c.observation_id.in_(chunk)
            )
            found.extend(_source(r) for r in await self._db.all(stmt))
        return found

    async def owners(self, kind: str, ids: Sequence[str]) -> Mapping[str, tuple[str, str]]:
        table = _OWNED_TABLES[kind]
        c = table.c
        found: dict[str, tuple[str, str]] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _IDS_PER_STATEMENT):
            chunk = unique[start : start + _IDS_PER_STATEMENT]
            stmt = sa.select(c.id, c.team_id, c.project_id).where(c.id.in_(chunk))
            for r in await self._db.all(stmt):
                found[r["id"]] = (r["team_id"], r["project_id"])
        return found


__all__ = ["ExportReadRepo"]
