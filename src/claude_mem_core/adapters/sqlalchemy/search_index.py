"""The search-index repository: passages written with their observations, and the scoped
search, whose audit row the search statement itself writes on PostgreSQL (elsewhere
``AuditRepo.add_read`` does, with the result count and ids)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import exc

from claude_mem_core import errors
from claude_mem_core.adapters.sqlalchemy import dialects, passage_writes
from claude_mem_core.adapters.sqlalchemy import search as search_sql
from claude_mem_core.adapters.sqlalchemy.audit import AuditRepo
from claude_mem_core.adapters.sqlalchemy.connection import _Db
from claude_mem_core.adapters.sqlalchemy.rows import _audit_values, _observation
from claude_mem_core.domain.models import AuditEntry
from claude_mem_core.domain.passages import Passage
from claude_mem_core.domain.tokens import Query
from claude_mem_core.ports.search import SearchHit

if TYPE_CHECKING:  # numpy is only imported where PostgreSQL is used
    from claude_mem_core.adapters.sqlalchemy.resident_search import ResidentSearch


class SearchIndexRepo:
    def __init__(self, db: _Db, resident: ResidentSearch | None = None) -> None:
        self._db = db
        self._resident = resident

    async def add(self, passages: Sequence[Passage]) -> None:
        if not passages:
            return
        await self._db.begin_writes()
        await passage_writes.add_passages(self._db.conn, passages)
        if self._resident is not None:
            for team_id, project_id in {(p.team_id, p.project_id) for p in passages}:
                self._resident.written(team_id, project_id)

    async def search(
        self,
        team_id: str,
        project_id: str,
        query: Query,
        *,
        limit: int,
        audit: AuditEntry | None = None,
        kind: str | None = None,
    ) -> Sequence[SearchHit]:
        values: dict[str, Any] | None = None
        if audit is not None:
            if "\x00" in team_id or "\x00" in project_id:
                raise errors.NotFound("Project not found")  # no stored id holds NUL
            if self._db.conn.dialect.name == dialects.POSTGRES:
                from psycopg.types.json import Jsonb

                values = _audit_values(audit)
                values["audit_id"] = values.pop("id")
                values["details"] = Jsonb(values["details"])
                at = values["created_at"]
                values["created_at"] = at.replace(tzinfo=UTC) if at.tzinfo is None else at
        # Straight on the connection: a PostgreSQL unit of work that has not written yet
        # stays in autocommit (see _Db._before), so the statement, audit row included, is
        # its own transaction, committed when it returns.
        try:
            answered = await self._resident_search(
                team_id, project_id, query, max(limit, 0), values, kind
            )
            if answered is None:
                answered = await search_sql.search(
                    self._db.conn,
                    team_id,
                    project_id,
                    query,
                    max(limit, 0),
                    audit=values,
                    kind=kind,
                )
        except errors.NotFound as e:
            raise errors.NotFound("Project not found") from e
        found, audited = answered
        hits = [
            SearchHit(
                observation=_observation(row),  # type: ignore[arg-type]
                score=score,
                evidence=tuple(evidence),
            )
            for row, score, evidence in found
        ]
        if audit is not None and audited is None:
            details = {
                **audit.details,
                "resultCount": len(hits),
                "observationIds": [h.observation.id for h in hits],
            }
            try:
                audited = await AuditRepo(self._db).add_read(attrs.evolve(audit, details=details))
            except errors.NotFound as e:
                raise errors.NotFound("Project not found") from e
        if audited is False:
            raise errors.Forbidden("Invalid API key or insufficient scope")
        return hits

    async def _resident_search(
        self,
        team_id: str,
        project_id: str,
        query: Query,
        limit: int,
        audit: dict[str, Any] | None,
        kind: str | None,
    ) -> tuple[search_sql.Found, bool | None] | None:
        """Through the project's snapshot in memory (PostgreSQL), when there is a current
        one and this unit of work has not written (its own writes are not in any
        snapshot); None: search in SQL."""
        resident = self._resident
        if resident is None or self._db.lazy_driver is None or limit <= 0:
            return None
        if "\x00" in team_id or "\x00" in project_id or query.is_empty:
            return None
        try:
            return await resident.search(
                self._db.conn, team_id, project_id, query, limit, audit=audit, kind=kind
            )
        except (exc.SQLAlchemyError, OSError) as e:
            raise dialects.translate_error(e, not_found="project_id must belong to team_id") from e
