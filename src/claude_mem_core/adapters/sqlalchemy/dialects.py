"""The few places where PostgreSQL and SQLite differ: engines, inserts and upserts, row
locks and the translation of driver errors into claude-mem errors (full-text search is in
:mod:`.search`)."""

from __future__ import annotations

import select
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from claude_mem_core import errors

POSTGRES = "postgresql"
SQLITE = "sqlite"

# SQLite waits this long for another writer's lock before giving up (PRAGMA busy_timeout).
SQLITE_BUSY_TIMEOUT_MS = 30_000


# --------------------------------------------------------------------------- engines


def normalize_url(url: str | URL) -> URL:
    """Accept plain ``postgresql://`` / ``sqlite://`` URLs and pick the async drivers."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if parsed.get_driver_name() not in ("psycopg", "psycopg_async"):
            parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        if parsed.get_driver_name() != "aiosqlite":
            parsed = parsed.set(drivername="sqlite+aiosqlite")
    else:
        raise errors.ConfigurationError(
            f"unsupported database URL scheme {parsed.drivername!r}: use postgresql:// or sqlite://"
        )
    return parsed


def backend_name(url: str | URL) -> str:
    return normalize_url(url).get_backend_name()


def create_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """An async engine configured the way this adapter relies on.

    * PostgreSQL: a pool of ten (plus ten overflow) whose checkouts are checked without a
      round trip (see :func:`_idle_connection_alive`), so a restarted server costs one
      discarded connection instead of one failed request per pooled connection.
      (``pool_pre_ping`` would cost a round trip per unit of work.)
    * SQLite: foreign keys on (off by default in SQLite), WAL so readers never block the
      writer, and ``BEGIN IMMEDIATE`` for every transaction, so two writers queue on the
      busy timeout instead of failing with "database is locked" when a read lock cannot
      be upgraded.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == POSTGRES:
        options: dict[str, Any] = {}
        if "poolclass" not in kwargs:
            # Ten kept connections cover a worker's default eight jobs in flight plus its
            # reconciler without opening a connection per unit of work (overflow
            # connections are closed on return, so a pool smaller than the load churns).
            options.update(pool_size=10, max_overflow=10, pool_recycle=1800)
        options.update(kwargs)
        engine = create_async_engine(parsed, **options)
        event.listen(engine.sync_engine, "checkout", _check_out_live_connection)
        return engine

    try:
        import aiosqlite  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise errors.MissingExtra("The SQLite storage", "sqlite") from e
    options = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}
    options.update(kwargs)
    engine = create_async_engine(parsed, **options)
    in_memory = parsed.database in (None, "", ":memory:")
    _install_sqlite_hooks(engine, wal=not in_memory)
    return engine


async def close_engine(engine: AsyncEngine) -> None:
    """Close ``engine`` for good: its idle connections now, one still in use when it comes
    back, and a later caller gets ``StorageUnavailable``.

    ``AsyncEngine.dispose`` alone is not enough: it only swaps in a fresh pool, so a late
    caller (a poller still running while the app stops) would open a connection there that
    nobody closes, and a connection checked out during the dispose is returned to the old
    pool and left open; both are finalised unclosed later, in whatever code runs then."""

    def refuse(*_: object) -> None:
        raise errors.StorageUnavailable("the storage was closed")

    def close_on_return(_dbapi_connection: object, record: Any) -> None:
        if record is not None:
            record.invalidate()  # closes the driver connection

    event.listen(engine.sync_engine, "do_connect", refuse)
    event.listen(engine.sync_engine.pool, "checkin", close_on_return)
    await engine.dispose()


def _idle_connection_alive(driver_connection: Any) -> bool:
    """Whether an idle pooled psycopg connection is still usable, without a round trip.

    An idle connection has nothing to read: the driver consumed every reply up to
    ReadyForQuery. Readable means the server closed it (restart, ``idle_session_timeout``,
    ``pg_terminate_backend``: EOF, usually after a FATAL message) or sent something
    unsolicited; either way the connection is discarded rather than trusted.
    """
    try:
        pgconn = driver_connection.pgconn
        if driver_connection.closed or pgconn.status != 0:  # psycopg.pq.ConnStatus.OK
            return False
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
    except Exception:  # a connection that cannot even be inspected is not reused
        return False
    return not readable


def _check_out_live_connection(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    # DisconnectionError makes the pool discard this connection and check out another.
    if not _idle_connection_alive(record.driver_connection):
        raise exc.DisconnectionError("pooled connection closed by the server")


def _install_sqlite_hooks(engine: AsyncEngine, *, wal: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (which would BEGIN
        # DEFERRED lazily) so the "begin" hook below decides how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if wal:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


# --------------------------------------------------------------------------- errors

_PG_FK, _PG_UNIQUE, _PG_CHECK, _PG_NOT_NULL = "23503", "23505", "23514", "23502"
_PG_UNDEFINED_TABLE, _PG_UNDEFINED_COLUMN = "42P01", "42703"


def _sqlstate(error: exc.DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


def is_unique_violation(error: BaseException) -> bool:
    if not isinstance(error, exc.IntegrityError):
        return False
    return _sqlstate(error) == _PG_UNIQUE or "UNIQUE constraint failed" in str(error.orig)


def translate_error(error: BaseException, *, not_found: str | None = None) -> errors.ClaudeMemError:
    """Map a SQLAlchemy/driver error to the claude-mem hierarchy (callers ``raise … from``).

    The message never includes bound parameters: they may hold key hashes or user text.
    """
    if isinstance(error, errors.ClaudeMemError):
        return error
    if isinstance(error, exc.IntegrityError):
        state, text = _sqlstate(error), str(error.orig)
        if state == _PG_FK or "FOREIGN KEY constraint failed" in text:
            return errors.NotFound(not_found)
        if state == _PG_UNIQUE or "UNIQUE constraint failed" in text:
            return errors.Conflict("a row with the same unique key already exists")
        if state in (_PG_CHECK, _PG_NOT_NULL) or "constraint failed" in text:
            return errors.InvalidInput(f"rejected by a database constraint: {_first_line(text)}")
        return errors.StorageError(f"integrity error: {_first_line(text)}")
    if isinstance(error, exc.DataError):
        # A value the database cannot hold (e.g. NUL in PostgreSQL text): the caller's input.
        return errors.InvalidInput(
            f"value rejected by the database: {_first_line(str(error.orig))}"
        )
    if isinstance(error, exc.DBAPIError):
        state, text = _sqlstate(error), str(error.orig)
        if state in (_PG_UNDEFINED_TABLE, _PG_UNDEFINED_COLUMN) or "no such table" in text:
            return errors.SchemaNotReady()
        if _unavailable(error, state):
            return errors.StorageUnavailable(f"database unavailable: {_first_line(text)}")
        if state is not None and state.startswith(_PG_PROGRAM_LIMIT):
            # A value too large for a row or an index entry: the caller's input.
            return errors.InvalidInput(f"value too large for the database: {_first_line(text)}")
        return errors.StorageError(f"database error: {_first_line(text)}")
    if isinstance(error, OSError | TimeoutError):
        return errors.StorageUnavailable(f"database unavailable: {type(error).__name__}")
    return errors.StorageError(f"database error: {type(error).__name__}")


# SQLSTATE classes of a server that cannot serve now but may later: connection exceptions,
# insufficient resources, operator intervention (shutdown, cancel), transaction rollback
# (serialization failure, deadlock) and system errors. Any other error with a SQLSTATE
# (an index row too large, a bad statement) is not an outage and is not reported as one.
_PG_TRANSIENT_CLASSES = frozenset({"08", "53", "57", "40", "58"})
_PG_PROGRAM_LIMIT = "54"


def _unavailable(error: exc.DBAPIError, state: str | None) -> bool:
    if error.connection_invalidated:
        return True
    if not isinstance(error, exc.OperationalError | exc.InterfaceError):
        return False
    # No SQLSTATE: the driver lost (or never had) its connection, or SQLite is busy.
    return state is None or state[:2] in _PG_TRANSIENT_CLASSES


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


# --------------------------------------------------------------------------- statements


def insert(dialect_name: str, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's own ``INSERT`` construct (both have ``ON CONFLICT``)."""
    return postgresql.insert(table) if dialect_name == POSTGRES else sqlite.insert(table)


def locked(dialect_name: str, stmt: sa.Select[Any]) -> sa.Select[Any]:
    # FOR UPDATE makes read-merge-write safe on PostgreSQL; SQLite has no row locks and
    # needs none (one writer at a time).
    return stmt.with_for_update() if dialect_name == POSTGRES else stmt


def insert_ignore(
    dialect_name: str,
    table: sa.Table,
    values: dict[str, Any] | None = None,
    *,
    index_elements: Sequence[str] | None = None,
    index_where: sa.ColumnElement[bool] | None = None,
) -> sa.Insert:
    """``INSERT … ON CONFLICT [target] DO NOTHING``: the insert half of insert-or-get.

    Without a target any unique conflict is swallowed (sessions have two natural keys);
    the caller then reads the row that won. ``RETURNING id`` yields a row only when the
    insert happened (``rowcount`` is -1 for inserts under psycopg, so it cannot tell).
    Without ``values`` the statement takes its values from the execution parameters, so
    one construct built at import time serves every call (and hits the compiled cache).
    """
    stmt = insert(dialect_name, table)
    if values is not None:
        stmt = stmt.values(values)
    stmt = stmt.on_conflict_do_nothing(index_elements=index_elements, index_where=index_where)
    return stmt.returning(table.c.id)
