"""Statements run straight on the psycopg connection (PostgreSQL only).

SQLAlchemy's execution layer costs more CPU per statement than the rest of a short read's
Python; hot statements (search, read audit) go to psycopg directly. Whenever something
listens to the engine's cursor events or echoes its statements, they go through SQLAlchemy
instead, so that listeners see them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection

Params = Mapping[str, Any]

# psycopg converts a statement's ``%(name)s`` placeholders on every execution unless the
# statement is at most 4 kB (then the conversion is cached). Search statements are 6-12
# kB and run on every query: the conversion was a fifth of the server's CPU per search.
# The limit is a module setting psycopg reads at each call; raised where it exists.
_CACHED_STATEMENT_CHARS = 32_768


def _cache_long_statements() -> None:
    try:
        from psycopg import _queries
    except ImportError:  # not installed: SQLite only
        return
    if getattr(_queries, "MAX_CACHED_STATEMENT_LENGTH", _CACHED_STATEMENT_CHARS) < (
        _CACHED_STATEMENT_CHARS
    ):
        _queries.MAX_CACHED_STATEMENT_LENGTH = _CACHED_STATEMENT_CHARS


_cache_long_statements()

# While a statement runs, psycopg's asyncio wait wakes the event loop every 0.1 s and
# re-arms its reader and timer (its reason: letting Ctrl-C in; asyncio delivers
# cancellation and signals to the awaiting task anyway). A search taking 300 ms on a
# loaded 2-core machine paid three wake-ups: about 0.4 ms of server CPU per query (10%).
# A timeout given to a wait still bounds it: psycopg sleeps the smaller of the two. The
# default is raised where psycopg has it.
ASYNC_WAIT_INTERVAL_S = 60.0


def _quiet_async_waits() -> None:
    try:
        from psycopg import AsyncConnection
    except ImportError:  # not installed: SQLite only
        return
    import inspect

    wait: Any = AsyncConnection.wait
    positional = [
        p.name
        for p in inspect.signature(wait).parameters.values()
        if p.default is not p.empty and p.kind is not p.KEYWORD_ONLY
    ]
    defaults = wait.__defaults__ or ()
    if "interval" not in positional or len(positional) != len(defaults):
        return
    at = positional.index("interval")
    if isinstance(defaults[at], float | int) and defaults[at] < ASYNC_WAIT_INTERVAL_S:
        wait.__defaults__ = (*defaults[:at], ASYNC_WAIT_INTERVAL_S, *defaults[at + 1 :])


_quiet_async_waits()


async def driver_sql(
    conn: AsyncConnection,
    sql: str,
    params: Params,
    *,
    rows: bool = True,
    prepare: bool | None = None,
) -> Sequence[Sequence[Any]]:
    """Run a PostgreSQL statement written for psycopg (``%(name)s`` placeholders; ``params``
    is a mapping, maybe empty, so ``%%`` in its literals always means ``%``); its rows as
    plain tuples (none when ``rows`` is false: a statement that returns nothing).
    ``prepare``: psycopg's (``None``: prepared after a few executions on a connection).

    Straight on the psycopg connection, unless something listens to the engine's cursor
    events or echoes statements: then through SQLAlchemy, which shows them to it
    (``exec_driver_sql`` hands the same text and parameters to the same cursor). Errors
    are raised as SQLAlchemy would raise them (``dialects.translate_error`` maps them).
    """
    sync = conn.sync_connection
    if sync is None or sync.dispatch.before_cursor_execute or sync.engine.echo:
        result = await conn.exec_driver_sql(sql, params)
        return result.all() if rows else ()
    import psycopg  # only ever reached on PostgreSQL

    # A live Connection holds its pooled connection: no await (nor greenlet hop) to reach it.
    pooled = sync.connection if not (sync.closed or sync.invalidated) else None
    driver: Any = (pooled or await conn.get_raw_connection()).driver_connection
    try:
        # Binary results: the same Python values, parsed with less work (timestamps).
        cursor = await driver.execute(sql, params, prepare=prepare, binary=True)
        found: Sequence[Sequence[Any]] = await cursor.fetchall() if rows else ()
    except psycopg.Error as e:
        raise exc.DBAPIError.instance(sql, params, e, psycopg.Error) from e
    return found
