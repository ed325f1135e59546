"""The token ledger on SQL (``ports.ledger.LedgerRepository``): one insert per call, and
sums grouped in the database (by UTC day, ``provider/model`` or project)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.connection import _Db
from claude_mem_core.adapters.sqlalchemy.tenant_filter import admitted
from claude_mem_core.domain.tenancy import TenantScope
from claude_mem_core.ports.ledger import LedgerEntry, UsageGrouping, UsageRow

# Built once: every paid call writes one row (its compiled form is cached).
_INSERT = sa.insert(t.token_ledger)


def ledger_values(entry: LedgerEntry) -> dict[str, Any]:
    """The row of ``entry`` (also written by ``JobRepo.advance``)."""
    return {
        "id": entry.id,
        "team_id": entry.team_id,
        "project_id": entry.project_id,
        "job_id": entry.job_id,
        "job_count": entry.job_count,
        "purpose": entry.purpose,
        "provider": entry.provider,
        "model": entry.model,
        "input_tokens": entry.input_tokens,
        "output_tokens": entry.output_tokens,
        "cost_usd": entry.cost_usd,
        "called_at": entry.called_at,
    }


class LedgerRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add(self, entry: LedgerEntry, *, alone: bool = False) -> None:
        values = ledger_values(entry)
        not_found = f"project {entry.project_id} not found"
        if alone:
            await self._db.run_alone(_INSERT, values, not_found=not_found)
        else:
            await self._db.run(_INSERT, values, not_found=not_found, writes=True)

    def _group(self, group_by: UsageGrouping) -> sa.ColumnElement[Any]:
        c = t.token_ledger.c
        if group_by == "project":
            return c.project_id
        if group_by == "model":
            return c.provider + sa.literal("/") + sa.func.coalesce(c.model, sa.literal("-"))
        if self._db.dialect == dialects.POSTGRES:
            return sa.func.to_char(sa.func.timezone("UTC", c.called_at), "YYYY-MM-DD")
        # SQLite stores UTC as fixed-width text that starts with the date.
        return sa.func.substr(sa.cast(c.called_at, sa.Text), 1, 10)

    async def usage(
        self,
        team_id: str,
        project_id: str | None,
        *,
        since: datetime,
        until: datetime,
        group_by: UsageGrouping,
    ) -> Sequence[UsageRow]:
        c = t.token_ledger.c
        group = self._group(group_by).label("grp")
        where = [
            admitted(TenantScope(team_id, project_id), c),
            c.called_at >= since,
            c.called_at < until,
        ]
        stmt = (
            sa.select(
                group,
                sa.func.count().label("calls"),
                sa.func.coalesce(sa.func.sum(c.input_tokens), 0).label("input_tokens"),
                sa.func.coalesce(sa.func.sum(c.output_tokens), 0).label("output_tokens"),
                sa.func.coalesce(sa.func.sum(c.cost_usd), 0.0).label("cost_usd"),
                sa.func.count().filter(c.cost_usd.is_(None)).label("unpriced"),
            )
            .where(*where)
            .group_by(group)
            .order_by(group)
        )
        rows = await self._db.all(stmt)
        return [
            UsageRow(
                group=str(r["grp"]),
                calls=int(r["calls"]),
                input_tokens=int(r["input_tokens"]),
                output_tokens=int(r["output_tokens"]),
                cost_usd=float(r["cost_usd"]),
                unpriced_calls=int(r["unpriced"]),
            )
            for r in rows
        ]
