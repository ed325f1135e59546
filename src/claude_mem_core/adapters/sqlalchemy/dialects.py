"""The few places where PostgreSQL and SQLite differ: engines, upserts, full-text search,
and the translation of driver errors into claude-mem errors."""

from __future__ import annotations

import math
import re
import select
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from claude_mem_core import errors
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.domain.search import SearchQuery

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
        if error.connection_invalidated or isinstance(
            error, exc.OperationalError | exc.InterfaceError
        ):
            return errors.StorageUnavailable(f"database unavailable: {_first_line(text)}")
        return errors.StorageError(f"database error: {_first_line(text)}")
    if isinstance(error, OSError | TimeoutError):
        return errors.StorageUnavailable(f"database unavailable: {type(error).__name__}")
    return errors.StorageError(f"database error: {type(error).__name__}")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


# --------------------------------------------------------------------------- upserts


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
    stmt: postgresql.Insert | sqlite.Insert
    stmt = postgresql.insert(table) if dialect_name == POSTGRES else sqlite.insert(table)
    if values is not None:
        stmt = stmt.values(values)
    stmt = stmt.on_conflict_do_nothing(index_elements=index_elements, index_where=index_where)
    return stmt.returning(table.c.id)


# --------------------------------------------------------------------------- search

_FTS = sa.table(t.FTS_TABLE, sa.column("observation_id", sa.Text), sa.column("content", sa.Text))


def fts5_phrases(terms: Sequence[str]) -> list[str]:
    """Each term as an FTS5 string literal (embedded double quotes doubled).

    A quoted string is always a phrase of plain tokens to FTS5, so ``NEAR(``, ``*``, ``"``,
    ``OR`` or ``col:`` in user text can never become query syntax. Terms without a single
    letter or digit would be empty phrases and are dropped.
    """
    phrases = ['"' + term.replace('"', '""') + '"' for term in terms if re.search(r"[^\W_]", term)]
    return list(dict.fromkeys(phrases))


def idf(total: int, df: int) -> float:
    """BM25's idf, always positive: rarer terms weigh more, a term in every row still counts."""
    return math.log(1.0 + (total - df + 0.5) / (df + 0.5))


def sqlite_term_hits(phrases: Sequence[str], team_id: str, project_id: str) -> sa.Subquery:
    """One ``(observation_id, term)`` row per matching term and observation in scope.

    Each phrase is its own MATCH so the score can count which terms a row matches, the way
    the PostgreSQL query does; bm25() alone would let document length outweigh a matched
    term, and clamps very common terms to nothing.
    """
    obs = t.observations
    per_term = [
        sa.select(
            _FTS.c.observation_id.label("observation_id"), sa.literal(i, sa.Integer).label("term")
        ).where(sa.literal_column(t.FTS_TABLE).op("MATCH")(sa.bindparam(f"phrase_{i}", phrase)))
        for i, phrase in enumerate(phrases)
    ]
    union = sa.union_all(*per_term).subquery("per_term")
    return (
        sa.select(union.c.observation_id, union.c.term)
        .join(obs, obs.c.id == union.c.observation_id)
        .where(obs.c.team_id == team_id, obs.c.project_id == project_id)
        .subquery("hits")
    )


def sqlite_document_frequencies(hits: sa.Subquery) -> sa.Select[Any]:
    return sa.select(hits.c.term, sa.func.count().label("df")).group_by(hits.c.term)


def sqlite_ranked(
    columns: Sequence[sa.Column[Any]], hits: sa.Subquery, weights: Sequence[float], limit: int
) -> sa.Select[Any]:
    """Rows scored by the summed idf of the terms they match; newest first among equals."""
    obs = t.observations
    weight = sa.case(
        *(
            (hits.c.term == i, sa.bindparam(f"idf_{i}", w, type_=sa.Float))
            for i, w in enumerate(weights)
        ),
        else_=0.0,
    )
    scores = (
        sa.select(hits.c.observation_id, sa.func.sum(weight).label("score"))
        .group_by(hits.c.observation_id)
        .subquery("scores")
    )
    return (
        sa.select(*columns, sa.cast(scores.c.score, sa.Float).label("score"))
        .select_from(scores.join(obs, obs.c.id == scores.c.observation_id))
        .order_by(scores.c.score.desc(), obs.c.updated_at.desc(), obs.c.id)
        .limit(limit)
    )


async def postgres_lexeme_queries(conn: AsyncConnection, query: SearchQuery) -> list[str]:
    """Each term through ``plainto_tsquery`` (never ``to_tsquery``: user text is not syntax),
    returned as tsquery text. Stop words come back empty and are dropped; terms that stem to
    the same lexemes ("fix", "fixed") count once."""
    terms = [term for term in query.terms if term]
    if not terms:
        return []
    row = (
        await conn.execute(
            sa.select(
                *(
                    sa.cast(
                        sa.func.plainto_tsquery(
                            sa.literal_column("'english'::regconfig"),
                            sa.bindparam(f"term_{i}", term, type_=sa.Text),
                        ),
                        sa.Text,
                    )
                    for i, term in enumerate(terms)
                )
            )
        )
    ).one()
    return list(dict.fromkeys(text for text in row if text))


def postgres_search(
    columns: Sequence[sa.Column[Any]],
    team_id: str,
    project_id: str,
    lexeme_queries: Sequence[str],
    limit: int,
) -> sa.Select[Any]:
    """Rows matching any term, scored by the sum of BM25-style idf of the terms they match
    (counted within the project); newer rows first among equal scores.

    One statement in three steps, so only the ``limit`` winners are ever read whole: the
    GIN index finds matching ids with one flag per term, an aggregate over those flags gives
    each term's document frequency, and the top ids by score join back to their rows.
    (``ts_rank`` over every match cost more than the rest together and only broke ties.)
    """
    obs = t.observations
    search = obs.c.content_search
    tsqueries = [
        sa.cast(sa.bindparam(f"tsq_{i}", q, type_=sa.Text), postgresql.TSQUERY)
        for i, q in enumerate(lexeme_queries)
    ]
    any_term = sa.cast(
        sa.bindparam("tsq_any", " | ".join(f"({q})" for q in lexeme_queries), type_=sa.Text),
        postgresql.TSQUERY,
    )
    scope = sa.and_(obs.c.team_id == team_id, obs.c.project_id == project_id)
    matched = (
        sa.select(
            obs.c.id,
            obs.c.updated_at,
            *(
                sa.case((search.op("@@")(q), 1), else_=0).label(f"m_{i}")
                for i, q in enumerate(tsqueries)
            ),
        )
        .where(scope, search.op("@@")(any_term))
        .cte("matched")
        .prefix_with("MATERIALIZED")
    )
    total = sa.select(sa.func.count()).select_from(obs).where(scope).scalar_subquery()
    frequencies = sa.select(
        sa.cast(total, sa.Float).label("total"),
        *(
            sa.cast(sa.func.sum(matched.c[f"m_{i}"]), sa.Float).label(f"df_{i}")
            for i in range(len(tsqueries))
        ),
    ).cte("frequencies")
    # Materialised too: with stale statistics the planner may otherwise re-aggregate the
    # frequencies once per matched row (seen: 8.9k loops, 6 s at 20k rows).
    frequencies = frequencies.prefix_with("MATERIALIZED")
    score: sa.ColumnElement[Any] = sa.literal(0.0, sa.Float)
    for i in range(len(tsqueries)):
        df = frequencies.c[f"df_{i}"]
        idf = sa.func.ln(1.0 + (frequencies.c.total - df + 0.5) / (df + 0.5))
        score = score + matched.c[f"m_{i}"] * idf
    top = (
        sa.select(matched.c.id, matched.c.updated_at, sa.cast(score, sa.Float).label("score"))
        .select_from(matched.join(frequencies, sa.true()))
        .order_by(sa.literal_column("score").desc(), matched.c.updated_at.desc(), matched.c.id)
        .limit(limit)
        .subquery("top")
    )
    return (
        sa.select(*columns, top.c.score)
        .select_from(top.join(obs, obs.c.id == top.c.id))
        .order_by(top.c.score.desc(), top.c.updated_at.desc(), top.c.id)
    )
