"""The change feed on PostgreSQL and SQLite (revision 0011 writes it, by triggers).

A read is two short statements on a pooled connection, returned at once: the feed rows
after the position, then the rows they name, one ``IN`` query per table (their projects
live). On PostgreSQL only rows of transactions below the current snapshot's ``xmin`` are
read (every one of those has ended, so no row can still commit behind them), ordered by
(txid, position); on SQLite the serial is commit order.

In-process wake-ups: a connection that committed is flagged (SQLAlchemy's ``commit`` event,
which fires before the commit) and the wake-up is sent when the pool gets it back, after
the commit, so a reader woken finds the rows. A read-only unit of work commits too: its
wake-up only costs the reader one empty read.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine

from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.rows import _columns, _event, _job, _observation
from claude_mem_core.adapters.sqlalchemy.tenant_filter import admitted
from claude_mem_core.domain.tenancy import TenantScope
from claude_mem_core.ports.change_feed import START, Change, ChangeKind, FeedPosition, Record

_WROTE = "claude_mem_feed_wrote"

_LOADERS: dict[ChangeKind, tuple[sa.Table, Callable[[Any], Record]]] = {
    ChangeKind.EVENT: (t.agent_events, _event),
    ChangeKind.OBSERVATION: (t.observations, _observation),
    ChangeKind.SUMMARY: (t.observations, _observation),
    ChangeKind.JOB: (t.observation_generation_jobs, _job),
}

# The oldest transaction still running when the statement's snapshot was taken.
_XMIN = sa.literal_column("pg_snapshot_xmin(pg_current_snapshot())::text::bigint", sa.BigInteger)


class SqlChangeFeed:
    """:class:`~claude_mem_core.ports.change_feed.ChangeFeed` of one engine (one per
    storage: it holds the engine's commit listeners)."""

    def __init__(self, engine: AsyncEngine, dialect_name: str) -> None:
        self._engine = engine
        self._postgres = dialect_name == dialects.POSTGRES
        self._wakes: list[Callable[[], None]] = []
        self._listening = False

    async def head(self) -> FeedPosition:
        f = t.change_feed.c
        if self._postgres:
            stmt = sa.select(_XMIN)
        else:
            stmt = sa.select(sa.func.coalesce(sa.func.max(f.position), 0))
        async with self._connection() as conn:
            value = int((await conn.execute(stmt)).scalar_one())
        return FeedPosition(value, 0) if self._postgres else FeedPosition(0, value)

    async def read(
        self,
        after: FeedPosition,
        *,
        team_id: str | None = None,
        project_id: str | None = None,
        kinds: Collection[ChangeKind] | None = None,
        limit: int = 100,
    ) -> Sequence[Change]:
        f = t.change_feed.c
        stmt = sa.select(f.position, f.txid, f.team_id, f.project_id, f.kind, f.row_id)
        if self._postgres:
            stmt = stmt.where(
                sa.tuple_(f.txid, f.position) > sa.tuple_(after.txid, after.serial),
                f.txid < _XMIN,
            ).order_by(f.txid, f.position)
        else:
            stmt = stmt.where(f.position > after.serial).order_by(f.position)
        stmt = stmt.where(admitted(TenantScope(team_id, project_id), f))
        if kinds is not None:
            stmt = stmt.where(f.kind.in_(sorted(kinds)))
        async with self._connection() as conn:
            entries = (await conn.execute(stmt.limit(limit))).mappings().all()
            records = await self._load(conn, entries)
        changes = []
        for e in entries:
            kind = ChangeKind(e["kind"])
            record = records.get((kind, e["row_id"]))
            if record is not None and (record.team_id, record.project_id) != (
                e["team_id"],
                e["project_id"],
            ):
                record = None
            changes.append(
                Change(
                    position=FeedPosition(int(e["txid"] or 0), int(e["position"])),
                    kind=kind,
                    team_id=e["team_id"],
                    project_id=e["project_id"],
                    row_id=e["row_id"],
                    record=record,
                )
            )
        return changes

    async def prune(self, *, before: datetime, limit: int = 10_000) -> int:
        f = t.change_feed.c
        h = t.change_feed_horizon.c
        oldest = sa.select(f.position).where(f.changed_at < before)
        if self._postgres:
            oldest = oldest.where(f.txid < _XMIN).order_by(f.txid, f.position)
        else:
            oldest = oldest.order_by(f.position)
        gone_stmt = (
            sa.delete(t.change_feed)
            .where(f.position.in_(oldest.limit(limit).scalar_subquery()))
            .returning(f.txid, f.position)
        )
        try:
            async with self._engine.begin() as conn:
                gone = (await conn.execute(gone_stmt)).all()
                if not gone:
                    return 0
                newest = max(FeedPosition(int(txid or 0), int(serial)) for txid, serial in gone)
                # Only ever raised: of two pruners at once, the later position stays.
                await conn.execute(
                    sa.update(t.change_feed_horizon)
                    .where(
                        h.id == 1,
                        sa.tuple_(h.txid, h.serial) < sa.tuple_(newest.txid, newest.serial),
                    )
                    .values(txid=newest.txid, serial=newest.serial, pruned_at=before)
                )
        except (exc.SQLAlchemyError, OSError) as e:
            raise dialects.translate_error(e) from e
        return len(gone)

    async def horizon(self) -> FeedPosition:
        h = t.change_feed_horizon.c
        async with self._connection() as conn:
            row = (await conn.execute(sa.select(h.txid, h.serial).where(h.id == 1))).first()
        return START if row is None else FeedPosition(int(row[0]), int(row[1]))

    async def _load(
        self, conn: Any, entries: Sequence[Any]
    ) -> dict[tuple[ChangeKind, str], Record]:
        wanted: dict[ChangeKind, set[str]] = {}
        for e in entries:
            wanted.setdefault(ChangeKind(e["kind"]), set()).add(e["row_id"])
        found: dict[tuple[ChangeKind, str], Record] = {}
        for kind, ids in wanted.items():
            table, to_record = _LOADERS[kind]
            stmt = sa.select(*_columns(table)).where(
                table.c.id.in_(sorted(ids)), t.live_project(table)
            )
            for row in (await conn.execute(stmt)).mappings():
                found[(kind, row["id"])] = to_record(row)
        return found

    def _connection(self) -> _FeedConnection:
        return _FeedConnection(self._engine)

    def on_commit(self, wake: Callable[[], None]) -> Callable[[], None]:
        if not self._listening:
            self._listening = True
            sa.event.listen(self._engine.sync_engine, "commit", _flag_commit)
            sa.event.listen(self._engine.sync_engine.pool, "checkin", self._checked_in)
        self._wakes.append(wake)

        def unsubscribe() -> None:
            if wake in self._wakes:
                self._wakes.remove(wake)

        return unsubscribe

    def _checked_in(self, dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(_WROTE, False):
            for wake in tuple(self._wakes):
                wake()


def _flag_commit(conn: sa.Connection) -> None:
    conn.info[_WROTE] = True


class _FeedConnection:
    """A pooled connection for one read, driver errors translated; never committed (so it
    wakes no reader)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: Any = None

    async def __aenter__(self) -> Any:
        try:
            self._conn = await self._engine.connect()
        except (exc.SQLAlchemyError, OSError) as e:
            raise dialects.translate_error(e) from e
        return _Translating(self._conn)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._conn.close()


class _Translating:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, stmt: sa.Executable) -> Any:
        try:
            return await self._conn.execute(stmt)
        except (exc.SQLAlchemyError, OSError) as e:
            raise dialects.translate_error(e) from e
