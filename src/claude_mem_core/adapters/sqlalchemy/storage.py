"""The SQLAlchemy (async Core) storage adapter for PostgreSQL and SQLite.

One unit of work is one connection and one transaction. (On PostgreSQL the transaction
opens at the first statement that writes or locks; plain reads before it run in autocommit,
which under READ COMMITTED sees exactly what the transaction would, and spares a read-only
unit of work its ``BEGIN`` and ``COMMIT``.) Repositories are thin: each method is one or two
statements, scoped by team (and project) in SQL, and the hot ones are built once
(:mod:`.statements`). Idempotent adds use ``INSERT … ON CONFLICT DO NOTHING RETURNING``
and read the winning row only when nothing was returned, in the same transaction, which is
race-safe on PostgreSQL (the insert waits for a concurrent inserter to commit, and the next
READ COMMITTED statement sees its row) and trivially so on SQLite (``BEGIN IMMEDIATE``
serialises writers).

This module holds :class:`SqlAlchemyStorage`, which wires the pieces: the unit of work
(:mod:`.unit_of_work`), one repository module per aggregate, the one-statement group writes
(:mod:`.group_writes`) and the row mapping (:mod:`.rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from claude_mem_core import errors
from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy.group_writes import (
    add_fresh_events_pg,
    add_fresh_events_sqlite,
    add_fresh_memories_pg,
    add_fresh_memories_sqlite,
)

# Re-exported for the migrations that index stored rows (alembic/versions/0003): migrations
# are frozen history, so the names they import stay importable from here.
from claude_mem_core.adapters.sqlalchemy.rows import event_from_row, observation_from_row
from claude_mem_core.adapters.sqlalchemy.unit_of_work import _UnitOfWorkContext
from claude_mem_core.ports.change_feed import ChangeFeed
from claude_mem_core.ports.clock import Clock, SystemClock
from claude_mem_core.ports.storage import FreshEvent, FreshMemory, UnitOfWork

if TYPE_CHECKING:
    from claude_mem_core.adapters.sqlalchemy.resident_search import ResidentSearch


class SqlAlchemyStorage:
    """:class:`~claude_mem_core.ports.storage.Storage` on PostgreSQL or SQLite."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Clock | None = None,
        search_snapshot_postings: int | None = None,
    ) -> None:
        """``search_snapshot_postings``: PostgreSQL only, how many postings the search
        snapshots held in memory may hold together (``resident_search``; None: its
        default, 0: search in SQL only)."""
        dialect = engine.dialect.name
        if dialect not in (dialects.POSTGRES, dialects.SQLITE):
            raise errors.ConfigurationError(f"unsupported database dialect {dialect!r}")
        self._engine = engine
        self._dialect = dialect
        self._clock: Clock = clock or SystemClock()
        self.name = "postgres" if dialect == dialects.POSTGRES else "sqlite"
        self._change_feed: ChangeFeed | None = None
        self.resident_search = _resident_search(engine, dialect, search_snapshot_postings)

    @classmethod
    def from_url(
        cls,
        url: str | URL,
        *,
        clock: Clock | None = None,
        search_snapshot_postings: int | None = None,
        **engine_options: Any,
    ) -> SqlAlchemyStorage:
        """Build the engine with :func:`dialects.create_engine` (pool, PRAGMAs, BEGIN IMMEDIATE)."""
        return cls(
            dialects.create_engine(url, **engine_options),
            clock=clock,
            search_snapshot_postings=search_snapshot_postings,
        )

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def unit_of_work(self) -> AbstractAsyncContextManager[UnitOfWork]:
        return _UnitOfWorkContext(
            self._engine, self._dialect, self._clock, resident=self.resident_search
        )

    def change_feed(self) -> ChangeFeed:
        if self._change_feed is None:
            from claude_mem_core.adapters.sqlalchemy.change_feed import SqlChangeFeed

            self._change_feed = SqlChangeFeed(self._engine, self._dialect)
        return self._change_feed

    async def add_fresh_events(self, items: Sequence[FreshEvent]) -> set[str]:
        if not items:
            return set()
        if self._dialect == dialects.POSTGRES:
            return await add_fresh_events_pg(self._engine, items)
        return await add_fresh_events_sqlite(self.unit_of_work(), items, now=self._clock.now())

    async def add_fresh_memories(self, items: Sequence[FreshMemory]) -> set[str]:
        if not items:
            return set()
        if self._dialect == dialects.POSTGRES:
            written = await add_fresh_memories_pg(self._engine, items)
            if self.resident_search is not None:
                for item in items:
                    self.resident_search.written(
                        item.observation.team_id, item.observation.project_id
                    )
            return written
        return await add_fresh_memories_sqlite(self.unit_of_work(), items, now=self._clock.now())

    async def check_schema(self) -> None:
        from claude_mem_core import migrations

        try:
            async with self._engine.connect() as conn:
                current = await conn.run_sync(migrations.revision_of)
        except (exc.SQLAlchemyError, OSError) as e:
            raise dialects.translate_error(e) from e
        migrations.require_head(current)

    async def ping(self) -> None:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (exc.SQLAlchemyError, OSError) as e:
            error = dialects.translate_error(e)
            if not isinstance(error, errors.StorageUnavailable):
                error = errors.StorageUnavailable(error.message)
            raise error from e

    async def close(self) -> None:
        if self.resident_search is not None:
            await self.resident_search.close()
        await dialects.close_engine(self._engine)


def _resident_search(
    engine: AsyncEngine, dialect: str, postings: int | None
) -> ResidentSearch | None:
    """PostgreSQL's search snapshots, unless turned off (or numpy is missing: the
    ``postgres`` extra brings it)."""
    if dialect != dialects.POSTGRES or postings == 0:
        return None
    try:
        from claude_mem_core.adapters.sqlalchemy.resident_search import ResidentSearch
    except ImportError:
        return None
    if postings is None:
        return ResidentSearch(engine)
    return ResidentSearch(engine, budget=postings)


__all__ = ["SqlAlchemyStorage", "event_from_row", "observation_from_row"]
