"""The connection of one unit of work (:class:`_Db`): it runs statements with driver errors
translated at the boundary, opens the PostgreSQL transaction at the first statement that
writes or locks, and remembers the parent scopes already checked; ``_page`` applies a page
to a select."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import CursorResult, RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy.bulk import _Bulk, _rows_json
from claude_mem_core.adapters.sqlalchemy.rows import _columns
from claude_mem_core.adapters.sqlalchemy.statements import _statements
from claude_mem_core.ports.clock import Clock, SystemClock
from claude_mem_core.ports.storage import Page


class _Db:
    """The connection of one unit of work, with error translation at the boundary.

    ``scoped`` remembers the (kind, id, team, project) of rows this unit of work has
    already read or checked: scopes never change and rows are deleted only by an erase
    (which empties it), so a second check of the same parent in one transaction would be
    a wasted round trip (the foreign keys still guard the parent's existence at insert
    time).
    """

    def __init__(
        self,
        conn: AsyncConnection,
        dialect_name: str,
        driver: Any | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.conn = conn
        # What "now" is for checks made in Python (a key's expiry on SQLite); SQL that
        # checks in the database uses the database's clock.
        self.clock: Clock = clock or SystemClock()
        self.dialect = dialect_name
        self.sql = _statements(dialect_name)
        self.scoped: set[tuple[str, str, str | None, str | None]] = set()
        # PostgreSQL only: the psycopg connection, in autocommit until the first write.
        self.lazy_driver = driver

    async def _before(self, stmt: sa.Executable, *, writes: bool = False) -> None:
        """Open the transaction at the first statement that writes or locks.

        Plain reads before it run in autocommit: under READ COMMITTED every statement
        takes its own snapshot anyway, so they see exactly what they would inside the
        transaction, and a unit of work that only reads costs one round trip per read
        instead of two more for BEGIN and COMMIT.
        """
        if not writes and isinstance(stmt, sa.Select) and stmt._for_update_arg is None:
            return
        await self.begin_writes()

    async def begin_writes(self) -> None:
        """Open the transaction now (PostgreSQL, once): before a first write, also one that
        does not go through ``run`` (statements sent straight to the driver)."""
        driver = self.lazy_driver
        if driver is None:
            return
        self.lazy_driver = None
        try:
            await driver.set_autocommit(False)  # psycopg sends BEGIN with the next statement
        except Exception as e:
            raise dialects.translate_error(e) from e

    async def _run(
        self,
        stmt: sa.Executable,
        params: Mapping[str, Any] | list[Mapping[str, Any]] | None,
        *,
        not_found: str | None,
        writes: bool = False,
    ) -> CursorResult[Any]:
        if self.lazy_driver is not None:
            await self._before(stmt, writes=writes)
        try:
            return await self.conn.execute(stmt, params)
        except (exc.SQLAlchemyError, OSError) as e:
            raise dialects.translate_error(e, not_found=not_found) from e

    async def execute(
        self, stmt: sa.Executable, *, not_found: str | None = None
    ) -> CursorResult[Any]:
        return await self._run(stmt, None, not_found=not_found)

    async def run(
        self,
        stmt: sa.Executable,
        params: Mapping[str, Any],
        *,
        not_found: str | None = None,
        writes: bool = False,
    ) -> CursorResult[Any]:
        """Execute a prebuilt statement with bound parameters (its compiled form is cached).
        ``writes``: a SELECT that writes (data-modifying CTEs) opens the transaction."""
        return await self._run(stmt, params, not_found=not_found, writes=writes)

    async def run_alone(
        self, stmt: sa.Executable, params: Mapping[str, Any], *, not_found: str | None = None
    ) -> CursorResult[Any]:
        """Execute a write that is its unit of work's only one. On PostgreSQL, when nothing
        has been written yet, it runs in autocommit: one statement, its own transaction,
        without the round trips of ``BEGIN`` and ``COMMIT``; a failed one leaves nothing
        behind. Elsewhere (or after a write) it is :meth:`run`."""
        if self.lazy_driver is None:
            return await self._run(stmt, params, not_found=not_found, writes=True)
        try:
            return await self.conn.execute(stmt, params)
        except (exc.SQLAlchemyError, OSError) as e:
            raise dialects.translate_error(e, not_found=not_found) from e

    async def run_many(
        self,
        stmt: sa.Executable,
        rows: Sequence[Mapping[str, Any]],
        *,
        not_found: str | None = None,
    ) -> CursorResult[Any]:
        """Execute a prebuilt statement for several parameter sets at once. An INSERT …
        RETURNING becomes one multi-row ``VALUES`` statement (SQLAlchemy's insertmanyvalues,
        up to 1000 rows a statement), so the rows cost one round trip."""
        return await self._run(stmt, list(rows), not_found=not_found)

    async def inserted_ids(
        self,
        stmt: sa.Executable,
        rows: Sequence[Mapping[str, Any]],
        *,
        bulk: _Bulk | None = None,
        not_found: str | None = None,
    ) -> set[str]:
        """Insert ``rows`` with ``stmt`` (an ``INSERT … RETURNING id``, maybe ``ON
        CONFLICT DO NOTHING``), or several with ``bulk`` (PostgreSQL's one-parameter form)
        where there is one; the ids of the rows really inserted."""
        if len(rows) == 1:
            result = await self.run(stmt, rows[0], not_found=not_found)
        elif bulk is not None and self.dialect == dialects.POSTGRES:
            result = await self.run(
                bulk.statement(list(rows[0])), {"rows": _rows_json(rows)}, not_found=not_found
            )
        else:
            result = await self.run_many(stmt, rows, not_found=not_found)
        return {str(v) for v in result.scalars()}

    async def row(self, stmt: sa.Executable, params: Mapping[str, Any]) -> RowMapping | None:
        return (await self.run(stmt, params)).mappings().one_or_none()

    async def rows(self, stmt: sa.Executable, params: Mapping[str, Any]) -> Sequence[RowMapping]:
        return (await self.run(stmt, params)).mappings().all()

    async def write(
        self, stmt: sa.Executable, *, not_found: str | None = None, savepoint: bool = False
    ) -> CursorResult[Any]:
        """Run a statement that may violate a constraint, translating the error.

        On PostgreSQL a failed statement aborts the whole transaction, so after a refused
        write the unit of work is over (services let the error end it). A caller that wants
        to recover and go on in the same transaction asks for a ``savepoint`` (two extra
        round trips, so only where it is needed).
        """
        if not savepoint or self.dialect != dialects.POSTGRES:
            return await self.execute(stmt, not_found=not_found)
        await self._before(stmt)
        try:
            async with self.conn.begin_nested():
                return await self.conn.execute(stmt)
        except (exc.SQLAlchemyError, OSError) as e:
            raise dialects.translate_error(e, not_found=not_found) from e

    async def one_or_none(self, stmt: sa.Select[Any]) -> RowMapping | None:
        return (await self.execute(stmt)).mappings().one_or_none()

    async def all(self, stmt: sa.Select[Any]) -> Sequence[RowMapping]:
        return (await self.execute(stmt)).mappings().all()

    async def count(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
        stmt = sa.select(sa.func.count()).select_from(table).where(*where)
        return int((await self.execute(stmt)).scalar_one())

    async def exists(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> bool:
        stmt = sa.select(sa.literal(1)).select_from(table).where(*where).limit(1)
        return (await self.execute(stmt)).first() is not None

    def select(self, table: sa.Table) -> sa.Select[Any]:
        return sa.select(*_columns(table))

    def locked(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        return dialects.locked(self.dialect, stmt)


def _page(stmt: sa.Select[Any], page: Page) -> sa.Select[Any]:
    return stmt.limit(page.limit).offset(page.offset)
