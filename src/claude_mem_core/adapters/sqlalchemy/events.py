"""The agent-event repository: idempotent adds (one multi-row insert; replays are read back
locked and their metadata merged into the stored event's) and scoped reads by id, by ids and
by session."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import sqlalchemy as sa

from claude_mem_core import errors
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.bulk import BULK_EVENTS
from claude_mem_core.adapters.sqlalchemy.connection import _Db
from claude_mem_core.adapters.sqlalchemy.rows import _event, _event_values, _merge
from claude_mem_core.adapters.sqlalchemy.scopes import (
    _by_scope,
    _check_session_scope,
    _check_session_scopes,
)
from claude_mem_core.adapters.sqlalchemy.tenant_filter import of_tenant
from claude_mem_core.domain.models import AgentEvent
from claude_mem_core.domain.redaction import SERVER_EVENT_METADATA


def _merge_event_metadata(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """A replay's metadata merged into the stored event's, except the keys the server set
    when it first stored the event (they describe the stored payload, not the replay's)."""
    return _merge(old, {k: v for k, v in new.items() if k not in SERVER_EVENT_METADATA})


class EventRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add_many(self, events: Sequence[AgentEvent]) -> Sequence[tuple[AgentEvent, bool]]:
        """One multi-row insert; the events it did not insert (replays, or repeats within
        ``events``) are read back in one locked read per scope, and their metadata merged
        in input order, as consecutive ``add`` calls would."""
        if len(events) <= 1:
            return [await self.add(event) for event in events]
        db = self._db
        await _check_session_scopes(db, events)
        inserted = await db.inserted_ids(
            db.sql.event_insert,
            [_event_values(event) for event in events],
            bulk=BULK_EVENTS,
            not_found="project_id must belong to team_id",
        )
        stored: dict[str, AgentEvent] = {}  # idempotency key -> current row
        for (team, project), group in _by_scope(
            [e for e in events if e.id not in inserted]
        ).items():
            params = {
                "team_id": team,
                "project_id": project,
                "keys": list({e.idempotency_key for e in group}),
            }
            for row in await db.rows(db.sql.events_by_keys_locked, params):
                stored[row["idempotency_key"]] = _event(row)
        results: list[tuple[AgentEvent, bool]] = []
        changed: dict[str, AgentEvent] = {}
        for event in events:
            if event.id in inserted:
                stored[event.idempotency_key] = event
                results.append((event, True))
                continue
            current = stored.get(event.idempotency_key)
            if current is None or (current.team_id, current.project_id) != (
                event.team_id,
                event.project_id,
            ):
                raise errors.Conflict("idempotency key is used by an event of another scope")
            merged = _merge_event_metadata(current.metadata, event.metadata)
            if merged != current.metadata:
                current = attrs.evolve(current, metadata=merged)
                stored[event.idempotency_key] = changed[current.id] = current
            results.append((current, False))
        if changed:
            await db.run_many(
                db.sql.event_set_metadata,
                [{"w_id": e.id, "metadata": e.metadata} for e in changed.values()],
            )
        return results

    async def add(self, event: AgentEvent) -> tuple[AgentEvent, bool]:
        e = t.agent_events
        await _check_session_scope(
            self._db, event.server_session_id, event.team_id, event.project_id
        )
        values = _event_values(event)
        result = await self._db.run(
            self._db.sql.event_insert, values, not_found="project_id must belong to team_id"
        )
        if result.first() is not None:
            return event, True
        where = (
            e.c.idempotency_key == event.idempotency_key,
            of_tenant(event.team_id, event.project_id, e.c),
        )
        row = await self._db.one_or_none(self._db.locked(self._db.select(e).where(*where)))
        if row is None:
            raise errors.Conflict("idempotency key is used by an event of another scope")
        stored = _event(row)
        merged = _merge_event_metadata(stored.metadata, event.metadata)
        if merged != stored.metadata:
            await self._db.execute(sa.update(e).where(e.c.id == stored.id).values(metadata=merged))
            stored = _event({**row, "metadata": merged})  # type: ignore[arg-type]
        return stored, False

    async def get(self, team_id: str, event_id: str) -> AgentEvent | None:
        row = await self._db.row(self._db.sql.event_get, {"id": event_id, "team_id": team_id})
        return _event(row) if row else None

    async def get_many(
        self, team_id: str, project_id: str, event_ids: Sequence[str]
    ) -> Sequence[AgentEvent]:
        """In the order of ``event_ids`` (duplicates and unknown ids dropped)."""
        if not event_ids:
            return []
        params = {"team_id": team_id, "project_id": project_id, "ids": list(set(event_ids))}
        found = {r["id"]: _event(r) for r in await self._db.rows(self._db.sql.events_many, params)}
        return [found[i] for i in dict.fromkeys(event_ids) if i in found]

    async def list_for_session(
        self, team_id: str, project_id: str, session_id: str, *, limit: int = 500
    ) -> Sequence[AgentEvent]:
        params = {
            "team_id": team_id,
            "project_id": project_id,
            "session_id": session_id,
            "limit": limit,
        }
        return [_event(r) for r in await self._db.rows(self._db.sql.events_of_session, params)]
