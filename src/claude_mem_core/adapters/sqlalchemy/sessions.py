"""The server-session repository: insert-or-get on either natural key (idempotency key,
external session id), scoped reads, saves and the session's generation status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from claude_mem_core import errors
from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.connection import _Db
from claude_mem_core.adapters.sqlalchemy.rows import _merge, _session
from claude_mem_core.adapters.sqlalchemy.tenant_filter import of_tenant
from claude_mem_core.domain.models import ServerSession, SessionGenerationStatus


class SessionRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add(self, session: ServerSession) -> tuple[ServerSession, bool]:
        s = t.server_sessions
        values = {
            "id": session.id,
            "team_id": session.team_id,
            "project_id": session.project_id,
            "external_session_id": session.external_session_id,
            "idempotency_key": session.idempotency_key,
            "content_session_id": session.content_session_id,
            "agent_id": session.agent_id,
            "agent_type": session.agent_type,
            "platform_source": session.platform_source,
            "generation_status": session.generation_status.value,
            "metadata": session.metadata,
            "started_at": session.started_at,
            "ended_at": session.ended_at,
            "last_generated_at": session.last_generated_at,
            "created_at": session.created_at,
            "updated_at": session.updated_at,
        }
        # No conflict target: either natural key (idempotency key, external id) may hit.
        result = await self._db.write(
            dialects.insert_ignore(self._db.dialect, s, values),
            not_found="project_id must belong to team_id",
        )
        if result.first() is not None:
            return session, True
        scope = of_tenant(session.team_id, session.project_id, s.c)
        natural_keys = []
        if session.idempotency_key is not None:
            natural_keys.append(s.c.idempotency_key == session.idempotency_key)
        if session.external_session_id is not None:
            natural_keys.append(s.c.external_session_id == session.external_session_id)
        for key in natural_keys:
            row = await self._db.one_or_none(self._db.select(s).where(scope, key))
            if row is not None:
                return _session(row), False
        if not await self._db.exists(
            t.projects,
            t.projects.c.id == session.project_id,
            t.projects.c.team_id == session.team_id,
        ):
            raise errors.NotFound("project_id must belong to team_id")
        raise errors.Conflict(f"server session {session.id} already exists")

    async def get(self, team_id: str, session_id: str) -> ServerSession | None:
        row = await self._db.row(self._db.sql.session_get, {"id": session_id, "team_id": team_id})
        if row is None:
            return None
        self._db.scoped.add(("session", row["id"], row["team_id"], row["project_id"]))
        return _session(row)

    async def find_by_idempotency_key(
        self, team_id: str, project_id: str, key: str
    ) -> ServerSession | None:
        c = t.server_sessions.c
        stmt = self._db.select(t.server_sessions).where(
            of_tenant(team_id, project_id, c), c.idempotency_key == key
        )
        row = await self._db.one_or_none(stmt)
        return _session(row) if row else None

    async def save(self, session: ServerSession) -> None:
        c = t.server_sessions.c
        await self._db.execute(
            sa.update(t.server_sessions)
            .where(
                c.id == session.id,
                of_tenant(session.team_id, session.project_id, c),
            )
            .values(
                ended_at=session.ended_at,
                generation_status=session.generation_status.value,
                metadata=session.metadata,
                last_generated_at=session.last_generated_at,
                updated_at=session.updated_at,
            )
        )

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
        s = t.server_sessions
        where = (s.c.id == session_id, of_tenant(team_id, project_id, s.c))
        values: dict[str, Any] = {"generation_status": status.value, "updated_at": now}
        if status is SessionGenerationStatus.COMPLETED:
            values["last_generated_at"] = now
        elif status is SessionGenerationStatus.FAILED:
            row = await self._db.one_or_none(self._db.locked(sa.select(s.c.metadata).where(*where)))
            if row is None:
                return
            values["metadata"] = _merge(row["metadata"], {"lastGenerationError": error})
        await self._db.execute(sa.update(s).where(*where).values(**values))
