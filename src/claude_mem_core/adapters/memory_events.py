"""Sessions and agent events of the in-memory storage: what coding agents report."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from claude_mem_core.adapters.memory_state import (
    Repo,
    in_scope,
    is_deleted,
    require_project,
    require_session,
)
from claude_mem_core.domain.models import AgentEvent, ServerSession, SessionGenerationStatus
from claude_mem_core.domain.redaction import SERVER_EVENT_METADATA


class MemorySessions(Repo):
    async def add(self, session: ServerSession) -> tuple[ServerSession, bool]:
        require_project(self._tx, session.team_id, session.project_id)
        for existing in self._tx.read("sessions").values():
            if existing.project_id != session.project_id:
                continue
            same_key = (
                session.idempotency_key is not None
                and existing.idempotency_key == session.idempotency_key
            )
            same_external = (
                session.external_session_id is not None
                and existing.external_session_id == session.external_session_id
            )
            if same_key or same_external:
                return existing, False
        self._tx.write("sessions")[session.id] = session
        return session, True

    async def get(self, team_id: str, session_id: str) -> ServerSession | None:
        session: ServerSession | None = self._tx.read("sessions").get(session_id)
        if session is None or not in_scope(session, team_id):
            return None
        return None if is_deleted(self._tx, session.project_id) else session

    async def find_by_idempotency_key(
        self, team_id: str, project_id: str, key: str
    ) -> ServerSession | None:
        for s in self._tx.read("sessions").values():
            if in_scope(s, team_id, project_id) and s.idempotency_key == key:
                found: ServerSession = s
                return found
        return None

    async def save(self, session: ServerSession) -> None:
        current = await self.get(session.team_id, session.id)
        if current is not None and current.project_id == session.project_id:
            self._tx.write("sessions")[session.id] = session

    async def set_generation_status(
        self,
        team_id: str,
        project_id: str,
        session_id: str,
        status: SessionGenerationStatus,
        *,
        now: datetime,
        error: str | None = None,
    ) -> None:
        current = await self.get(team_id, session_id)
        if current is None or current.project_id != project_id:
            return
        metadata = dict(current.metadata)
        if status is SessionGenerationStatus.FAILED:
            metadata["lastGenerationError"] = error
        updated = attrs.evolve(
            current,
            generation_status=status,
            metadata=metadata,
            last_generated_at=now
            if status is SessionGenerationStatus.COMPLETED
            else current.last_generated_at,
            updated_at=now,
        )
        self._tx.write("sessions")[session_id] = updated


class MemoryEvents(Repo):
    async def add(self, event: AgentEvent) -> tuple[AgentEvent, bool]:
        require_project(self._tx, event.team_id, event.project_id)
        require_session(self._tx, event.team_id, event.project_id, event.server_session_id)
        for existing in self._tx.read("events").values():
            if existing.idempotency_key == event.idempotency_key:
                # The keys the server set at the first write describe the stored payload.
                extra = {k: v for k, v in event.metadata.items() if k not in SERVER_EVENT_METADATA}
                if extra:
                    merged = attrs.evolve(existing, metadata={**existing.metadata, **extra})
                    self._tx.write("events")[existing.id] = merged
                    return merged, False
                return existing, False
        self._tx.write("events")[event.id] = event
        return event, True

    async def add_many(self, events: Sequence[AgentEvent]) -> Sequence[tuple[AgentEvent, bool]]:
        return [await self.add(event) for event in events]

    async def get(self, team_id: str, event_id: str) -> AgentEvent | None:
        event: AgentEvent | None = self._tx.read("events").get(event_id)
        if event is None or not in_scope(event, team_id):
            return None
        return None if is_deleted(self._tx, event.project_id) else event

    async def get_many(
        self, team_id: str, project_id: str, event_ids: Sequence[str]
    ) -> Sequence[AgentEvent]:
        table = self._tx.read("events")
        found = [table.get(i) for i in event_ids]
        return [e for e in found if e is not None and in_scope(e, team_id, project_id)]

    async def list_for_session(
        self, team_id: str, project_id: str, session_id: str, *, limit: int = 500
    ) -> Sequence[AgentEvent]:
        rows = [
            e
            for e in self._tx.read("events").values()
            if in_scope(e, team_id, project_id) and e.server_session_id == session_id
        ]
        rows.sort(key=lambda e: (e.occurred_at, e.created_at, e.id))
        return rows[:limit]
