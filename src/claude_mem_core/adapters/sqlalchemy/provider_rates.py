"""Provider rate windows on SQL (``ports/budgets.py``, ``ProviderRateRepository``).

Counting a call is one guarded UPDATE (``calls < limit``) of the provider's row for the
window: PostgreSQL re-checks the WHERE on the row's newest version after waiting for a
concurrent writer's lock, and SQLite has one writer at a time, so of N workers counting
at once exactly those that fit get through. The row is made first with an INSERT that
does nothing if it exists; the worker whose INSERT made it also forgets the provider's
windows older than an hour (once per provider and minute, so the table stays small)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.connection import _Db

# Windows older than this before the one being counted are forgotten.
WINDOWS_KEPT = timedelta(hours=1)


class ProviderRateRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def take(self, provider: str, window: datetime, *, limit: int) -> bool:
        c = t.provider_rate_windows.c
        opened = await self._db.write(
            dialects.insert(self._db.dialect, t.provider_rate_windows)
            .values(provider=provider, window_start=window, calls=0)
            .on_conflict_do_nothing(index_elements=["provider", "window_start"])
            .returning(c.calls)  # a row back: this INSERT made it (rowcount is not reliable)
        )
        if opened.first() is not None:
            await self._db.write(
                sa.delete(t.provider_rate_windows).where(
                    c.provider == provider, c.window_start < window - WINDOWS_KEPT
                )
            )
        counted = await self._db.write(
            sa.update(t.provider_rate_windows)
            .where(c.provider == provider, c.window_start == window, c.calls < limit)
            .values(calls=c.calls + 1)
        )
        return counted.rowcount == 1

    async def calls(self, provider: str, window: datetime) -> int:
        c = t.provider_rate_windows.c
        row = await self._db.one_or_none(
            sa.select(c.calls).where(c.provider == provider, c.window_start == window)
        )
        return int(row["calls"]) if row is not None else 0
