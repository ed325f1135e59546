"""The audit-log repository: rows written in the unit of work, and the audit row of a read,
which on PostgreSQL before any write is one autocommit statement that also checks that the
reader's key still works."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

from sqlalchemy import exc

from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.bulk import BULK_AUDIT
from claude_mem_core.adapters.sqlalchemy.connection import _Db, _page
from claude_mem_core.adapters.sqlalchemy.driver import driver_sql
from claude_mem_core.adapters.sqlalchemy.rows import _api_key, _audit, _audit_values
from claude_mem_core.adapters.sqlalchemy.tenant_filter import admitted
from claude_mem_core.domain.models import AuditEntry
from claude_mem_core.domain.tenancy import TenantScope
from claude_mem_core.ports.storage import Page

# The audit row of a read on PostgreSQL, run in autocommit: its own transaction, committed
# (durably) when the statement returns.
_AUDIT_READ = (
    "INSERT INTO audit_log (id, team_id, project_id, actor_id, api_key_id, action, "
    "resource_type, resource_id, details, created_at) SELECT %(id)s::text, %(team_id)s::text, "
    "%(project_id)s::text, %(actor_id)s::text, %(api_key_id)s::text, %(action)s::text, "
    "%(resource_type)s::text, %(resource_id)s::text, %(details)s::jsonb, "
    "%(created_at)s::timestamptz "
    "WHERE %(api_key_id)s::text IS NULL OR EXISTS (SELECT 1 FROM api_keys AS k "
    "WHERE k.id = %(api_key_id)s::text AND k.revoked_at IS NULL "
    "AND (k.expires_at IS NULL OR k.expires_at > now())) RETURNING 1"
)


class AuditRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add(self, entry: AuditEntry) -> None:
        await self._db.run(
            self._db.sql.audit_insert,
            _audit_values(entry),
            not_found="project_id must belong to team_id",
        )

    async def add_read(self, entry: AuditEntry) -> bool:
        db = self._db
        if db.lazy_driver is None:  # SQLite, or a transaction is open: join it, like add
            if entry.api_key_id is not None:
                row = await db.row(db.sql.api_key_by_id, {"id": entry.api_key_id})
                if row is None or not _api_key(row).is_usable(db.clock.now()):
                    return False
            await self.add(entry)
            return True
        # PostgreSQL with nothing written yet: one autocommit statement, no BEGIN/COMMIT,
        # committed when it returns (see the port's docstring).
        from psycopg.types.json import Jsonb

        values = _audit_values(entry)
        values["details"] = Jsonb(values["details"])
        at = values["created_at"]
        values["created_at"] = at.replace(tzinfo=UTC) if at.tzinfo is None else at
        try:
            written = await driver_sql(db.conn, _AUDIT_READ, values)
        except (exc.SQLAlchemyError, OSError) as e:
            raise dialects.translate_error(e, not_found="project_id must belong to team_id") from e
        return bool(written)

    async def add_many(self, entries: Sequence[AuditEntry]) -> None:
        if len(entries) <= 1:
            for entry in entries:
                await self.add(entry)
            return
        await self._db.inserted_ids(
            self._db.sql.audit_insert_many,
            [_audit_values(entry) for entry in entries],
            bulk=BULK_AUDIT,
            not_found="project_id must belong to team_id",
        )

    async def list(
        self, team_id: str, *, action: str | None = None, page: Page = Page()
    ) -> tuple[Sequence[AuditEntry], int]:
        c = t.audit_log.c
        where = [admitted(TenantScope(team_id), c)]
        if action is not None:
            where.append(c.action == action)
        stmt = self._db.select(t.audit_log).where(*where).order_by(c.created_at.desc(), c.id)
        rows = await self._db.all(_page(stmt, page))
        return [_audit(r) for r in rows], await self._db.count(t.audit_log, *where)
