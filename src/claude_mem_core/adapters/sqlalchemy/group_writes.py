"""Writes of a whole group in one statement on PostgreSQL, each a statement of data-modifying
CTEs that is its own transaction: fresh events with their jobs, job-log entries and audit
rows (``add_fresh_events_pg``), fresh memories with their sources, passages and audit rows
(``add_fresh_memories_pg``), and a job's advance with everything it writes (``_pg_advance``,
run by ``JobRepo.advance``). The SQLite counterparts of the fresh writes go through one unit
of work, item by item."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine

from claude_mem_core.adapters.sqlalchemy import dialects, passage_writes
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.bulk import (
    _PG_DIALECT,
    _params_json,
    _pg_recordset,
    _rows_json,
)
from claude_mem_core.adapters.sqlalchemy.events import EventRepo
from claude_mem_core.adapters.sqlalchemy.rows import (
    _JOB_MUTABLE,
    _audit_values,
    _event_values,
    _job_event_values,
    _job_values,
    _observation_values,
    _source_values,
)
from claude_mem_core.adapters.sqlalchemy.scopes import _by_scope
from claude_mem_core.domain.models import AgentEvent
from claude_mem_core.domain.redaction import PROJECT_SETTING
from claude_mem_core.ports.storage import FreshEvent, FreshMemory, UnitOfWork


def _pg_fresh_events(names: Mapping[str, Sequence[str]]) -> sa.TextClause:
    """PostgreSQL: :meth:`SqlAlchemyStorage.add_fresh_events` as ONE statement.

    Data-modifying CTEs: the events go in unless their key is taken (or is an erased
    event's), their project or session is out of scope (or the project is being erased),
    or the API key they are written under no longer works; the
    jobs, job-log entries and audit rows go in only for the events that did (each row
    names its event in ``fresh_event``). Run on its own, the
    statement is its own transaction: an item's rows are written all together or not at
    all, with one round trip and no BEGIN or COMMIT.
    """
    quote = _PG_DIALECT.identifier_preparer.quote

    def targets(table: sa.Table) -> str:
        return ", ".join(quote(n) for n in names[table.name])

    def values(table: sa.Table) -> str:
        return ", ".join(f"r.{quote(n)}" for n in names[table.name])

    def dependent(cte: str, table: sa.Table, param: str, extra: str = "", more: str = "") -> str:
        return (
            f"{cte} AS (INSERT INTO {quote(table.name)} ({targets(table)}{extra}) "
            f"SELECT {values(table)}{more} "
            f"FROM {_pg_recordset(table, names[table.name], param, 'fresh_event')} "
            "WHERE r.fresh_event IN (SELECT id FROM ev) ORDER BY r.ord RETURNING 1)"
        )

    e, j, je, a = (
        t.agent_events,
        t.observation_generation_jobs,
        t.observation_generation_job_events,
        t.audit_log,
    )
    sql = (
        f"WITH ev AS (INSERT INTO {quote(e.name)} ({targets(e)}) SELECT {values(e)} "
        f"FROM {_pg_recordset(e, names[e.name], 'events', 'fresh_key')} "
        f"WHERE EXISTS (SELECT 1 FROM {quote(t.projects.name)} AS p "
        "WHERE p.id = r.project_id AND p.team_id = r.team_id AND p.deleted_at IS NULL "
        # A project with its own ingest settings: the event was built with the server's.
        f"AND (p.metadata -> '{PROJECT_SETTING}') IS NULL) "
        # An erased event's key: the ordinary path refuses it (``errors.Gone``).
        f"AND NOT EXISTS (SELECT 1 FROM {quote(t.erased_events.name)} AS x "
        "WHERE x.team_id = r.team_id AND x.project_id = r.project_id "
        "AND x.idempotency_key = r.idempotency_key) "
        # The key the event is written under must still work now, checked in the very
        # statement that writes (callers may have taken the key from a cache).
        "AND (r.fresh_key IS NULL OR EXISTS ("
        f"SELECT 1 FROM {quote(t.api_keys.name)} AS k WHERE k.id = r.fresh_key "
        "AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()))) "
        "AND (r.server_session_id IS NULL OR EXISTS ("
        f"SELECT 1 FROM {quote(t.server_sessions.name)} AS s WHERE s.id = r.server_session_id "
        "AND s.team_id = r.team_id AND s.project_id = r.project_id)) "
        "ORDER BY r.ord ON CONFLICT (idempotency_key) DO NOTHING RETURNING id), "
        # A new event's job, and its job's first log entry, are new too: no ON CONFLICT,
        # so a clash would fail the statement rather than leave an item half-written.
        + dependent("jb", j, "jobs")
        + ", "
        + dependent("je", je, "job_events", extra=", seq", more=", 1")
        + ", "
        + dependent("au", a, "audit")
        + " SELECT id FROM ev"
    )
    return sa.text(sql)


_FRESH_EVENTS: dict[tuple[tuple[str, ...], ...], sa.TextClause] = {}


def _pg_advance() -> sa.TextClause:
    """PostgreSQL: :meth:`JobRepo.advance` as ONE statement, every value in a JSON parameter.

    ``upd`` is the guarded compare-and-set (its row lock serialises concurrent writers of
    the job, and a loser's re-evaluated WHERE no longer matches); the job event, the
    observations, their sources and their search passages go in only with it,
    ``audit_always`` and the ``ledger`` rows in any case. No
    ``ON CONFLICT``: a clash (a generation key or the event's seq taken) fails the whole
    statement, so it writes everything or nothing. Rows are read with
    ``json_populate_record[set]`` over the table's own row type, which keeps the text
    short enough (< 4 kB) for psycopg to cache its conversion.
    """
    quote = _PG_DIALECT.identifier_preparer.quote
    j, je = t.observation_generation_jobs, t.observation_generation_job_events

    def insert(cte: str, table: sa.Table, param: str, where: str) -> str:
        names = ", ".join(quote(n) for n in _ADVANCE_COLUMNS[table.name])
        return (
            f"{cte} AS (INSERT INTO {quote(table.name)} ({names}) SELECT {names} "
            f"FROM json_populate_recordset(NULL::{quote(table.name)}, CAST(:{param} AS json)) "
            f"WHERE {where} RETURNING 1)"
        )

    guard = ("id", "team_id", "project_id", "status", "attempts")
    matches = " AND ".join(f"j.{quote(n)} = g.{quote(n)}" for n in guard)
    event = ", ".join(quote(n) for n in _ADVANCE_COLUMNS[je.name])
    won = "EXISTS (SELECT 1 FROM upd)"
    return sa.text(
        f"WITH upd AS (UPDATE {quote(j.name)} AS j "
        f"SET {', '.join(f'{quote(n)} = n.{quote(n)}' for n in _JOB_MUTABLE)} "
        f"FROM json_populate_record(NULL::{quote(j.name)}, CAST(:guard AS json)) AS g, "
        f"json_populate_record(NULL::{quote(j.name)}, CAST(:job AS json)) AS n "
        f"WHERE {matches} AND j.locked_by IS NOT DISTINCT FROM g.locked_by RETURNING j.id), "
        f"ev AS (INSERT INTO {quote(je.name)} ({event}, seq) SELECT {event}, "
        f"(SELECT coalesce(max(s.seq), 0) + 1 FROM {quote(je.name)} AS s "
        "WHERE s.generation_job_id = e.generation_job_id) "
        f"FROM json_populate_record(NULL::{quote(je.name)}, CAST(:event AS json)) AS e "
        f"WHERE {won} RETURNING 1), "
        + insert("ob", t.observations, "observations", won)
        + ", "
        + insert("so", t.observation_sources, "sources", won)
        + ", "
        + insert("au", t.audit_log, "audit", won)
        + ", "
        + insert("aa", t.audit_log, "audit_always", "true")
        + ", "
        + insert("lg", t.token_ledger, "ledger", "true")
        + ", "
        + passage_writes.pg_passage_ctes(":passages", ":passage_stats", ":passage_terms", won)
        + " SELECT (SELECT count(*) FROM upd) AS updated"
    )


# The columns :func:`_pg_advance` writes: those the ``_…_values`` helpers give.
_ADVANCE_COLUMNS = {
    table.name: [c.key for c in table.columns if c.key not in ("content_search", "seq")]
    for table in (
        t.observations,
        t.observation_sources,
        t.audit_log,
        t.observation_generation_job_events,
        t.token_ledger,
    )
}


def _pg_fresh_memories() -> sa.TextClause:
    """PostgreSQL: :meth:`SqlAlchemyStorage.add_fresh_memories` as ONE statement, its own
    transaction (no BEGIN, no COMMIT: one round trip for the whole group).

    ``chk`` tells, for each memory, whether its project is its team's, its session (if
    any) is of that project, and the API key it is written under still works. Only if
    every memory passes are the observations, their sources, their audit rows and their
    search passages (with the statistics, :func:`passage_writes.pg_passage_ctes`) written:
    the statistics are computed for the whole group beforehand, so the group goes in whole
    or not at all, and the caller writes the memories that passed again without the
    others. The answer is ``chk``: each memory's id and verdict.
    """
    quote = _PG_DIALECT.identifier_preparer.quote
    won = "NOT EXISTS (SELECT 1 FROM chk WHERE NOT chk.ok)"

    def insert(cte: str, table: sa.Table, param: str) -> str:
        names = ", ".join(quote(n) for n in _ADVANCE_COLUMNS[table.name])
        return (
            f"{cte} AS (INSERT INTO {quote(table.name)} ({names}) SELECT {names} "
            f"FROM json_populate_recordset(NULL::{quote(table.name)}, CAST(:{param} AS json)) "
            f"WHERE {won} RETURNING 1)"
        )

    return sa.text(
        "WITH chk AS MATERIALIZED (SELECT c.id, ("
        f"EXISTS (SELECT 1 FROM {quote(t.projects.name)} AS p "
        "WHERE p.id = c.project_id AND p.team_id = c.team_id AND p.deleted_at IS NULL) "
        "AND (c.key_id IS NULL OR EXISTS ("
        f"SELECT 1 FROM {quote(t.api_keys.name)} AS k WHERE k.id = c.key_id "
        "AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()))) "
        "AND (c.server_session_id IS NULL OR EXISTS ("
        f"SELECT 1 FROM {quote(t.server_sessions.name)} AS s WHERE s.id = c.server_session_id "
        "AND s.team_id = c.team_id AND s.project_id = c.project_id))) AS ok "
        "FROM json_to_recordset(CAST(:checks AS json)) AS c(id text, team_id text, "
        "project_id text, server_session_id text, key_id text)), "
        + insert("ob", t.observations, "observations")
        + ", "
        + insert("so", t.observation_sources, "sources")
        + ", "
        + insert("au", t.audit_log, "audit")
        + ", "
        + passage_writes.pg_passage_ctes(":passages", ":passage_stats", ":passage_terms", won)
        + " SELECT id, ok FROM chk"
    )


_FRESH_MEMORIES: dict[str, sa.TextClause] = {}


async def add_fresh_events_sqlite(
    unit_of_work: AbstractAsyncContextManager[UnitOfWork],
    items: Sequence[FreshEvent],
    *,
    now: datetime,
) -> set[str]:
    """:meth:`SqlAlchemyStorage.add_fresh_events` item by item, in one unit of work."""
    written: set[str] = set()
    async with unit_of_work as uow:
        db = cast(EventRepo, uow.events)._db
        # Keys of erased events, one read per project for the group (only events with a
        # source event id can replay one).
        erased: dict[tuple[str, str], set[str]] = {}
        for scope, group in _by_scope(
            [i.event for i in items if i.event.source_event_id is not None]
        ).items():
            keys = [e.idempotency_key for e in group]
            erased[scope] = await uow.erasure.erased_keys(*scope, keys)
        for item in items:
            event = item.event
            project = await uow.projects.get(event.team_id, event.project_id)
            if project is None or PROJECT_SETTING in project.metadata:
                continue  # out of scope, or built without the project's own settings
            if event.server_session_id is not None:
                session = await uow.sessions.get(event.team_id, event.server_session_id)
                if session is None or session.project_id != event.project_id:
                    continue
            if item.key_id is not None:
                key = await uow.api_keys.get_unscoped(item.key_id)
                if key is None or not key.is_usable(now):
                    continue
            if event.idempotency_key in erased.get((event.team_id, event.project_id), ()):
                continue  # an erased event's key: the ordinary path refuses it
            inserted = await db.run(
                db.sql.event_insert,
                _event_values(event),
                not_found="project_id must belong to team_id",
            )
            if inserted.first() is None:  # the key is taken: a replay
                continue
            if item.job is not None:
                await uow.jobs.add(item.job)
            if item.job_event is not None:
                await uow.job_events.add(item.job_event)
            await uow.audit.add(item.audit)
            written.add(event.id)
    return written


async def add_fresh_events_pg(engine: AsyncEngine, items: Sequence[FreshEvent]) -> set[str]:
    """:meth:`SqlAlchemyStorage.add_fresh_events` on PostgreSQL: one statement
    (:func:`_pg_fresh_events`), its own transaction."""

    def linked(values: dict[str, Any], event: AgentEvent) -> dict[str, Any]:
        values["fresh_event"] = event.id
        return values

    rows: dict[str, list[dict[str, Any]]] = {
        "events": [{**_event_values(i.event), "fresh_key": i.key_id} for i in items],
        "jobs": [linked(_job_values(i.job), i.event) for i in items if i.job],
        "job_events": [
            linked(_job_event_values(i.job_event), i.event) for i in items if i.job_event
        ],
        "audit": [linked(_audit_values(i.audit), i.event) for i in items],
    }
    tables = {
        "events": t.agent_events,
        "jobs": t.observation_generation_jobs,
        "job_events": t.observation_generation_job_events,
        "audit": t.audit_log,
    }
    # Columns from the first row (every row of a table has the same keys); a table
    # with no rows inserts nothing, so any column list does.
    names = {
        tables[param].name: tuple(
            n for n in (rows[param][0] if rows[param] else {"id": None}) if n in table.c
        )
        for param, table in tables.items()
    }
    key = tuple(names.values())
    statement = _FRESH_EVENTS.get(key)
    if statement is None:
        statement = _FRESH_EVENTS[key] = _pg_fresh_events(names)
    params = (
        # Megabytes of JSON take tens of milliseconds to encode: not on the event loop.
        await asyncio.to_thread(_params_json, rows)
        if any(i.large for i in items)
        else _params_json(rows)
    )
    try:
        async with engine.connect() as conn:
            _transaction = await conn.begin()
            driver: Any = (await conn.get_raw_connection()).driver_connection
            await driver.set_autocommit(True)  # one statement: its own transaction
            try:
                result = await conn.execute(statement, params)
                written = {str(v) for v in result.scalars()}
                await conn.commit()
            finally:
                if not driver.closed:
                    await driver.set_autocommit(False)
    except (exc.SQLAlchemyError, OSError) as e:
        raise dialects.translate_error(e, not_found="project_id must belong to team_id") from e
    return written


async def add_fresh_memories_sqlite(
    unit_of_work: AbstractAsyncContextManager[UnitOfWork],
    items: Sequence[FreshMemory],
    *,
    now: datetime,
) -> set[str]:
    """:meth:`SqlAlchemyStorage.add_fresh_memories` in one unit of work; ``now`` (the
    storage's clock) decides whether a key has expired."""
    written: set[str] = set()
    async with unit_of_work as uow:
        projects: dict[tuple[str, str], bool] = {}
        keys: dict[str, bool] = {}
        fresh: list[FreshMemory] = []
        for item in items:
            o = item.observation
            scope = (o.team_id, o.project_id)
            if scope not in projects:
                projects[scope] = await uow.projects.get(*scope) is not None
            if not projects[scope]:
                continue
            if o.server_session_id is not None:
                session = await uow.sessions.get(o.team_id, o.server_session_id)
                if session is None or session.project_id != o.project_id:
                    continue
            if item.key_id is not None:
                if item.key_id not in keys:
                    key = await uow.api_keys.get_unscoped(item.key_id)
                    keys[item.key_id] = key is not None and key.is_usable(now)
                if not keys[item.key_id]:
                    continue
            fresh.append(item)
        await uow.observations.add_many([i.observation for i in fresh])
        await uow.sources.add_many([i.source for i in fresh])
        await uow.search.add([p for i in fresh for p in i.passages])
        await uow.audit.add_many([i.audit for i in fresh])
        written.update(i.observation.id for i in fresh)
    return written


async def add_fresh_memories_pg(engine: AsyncEngine, items: Sequence[FreshMemory]) -> set[str]:
    """:meth:`SqlAlchemyStorage.add_fresh_memories` on PostgreSQL: one statement
    (:func:`_pg_fresh_memories`) per try, its own transaction."""
    statement = _FRESH_MEMORIES.get("pg")
    if statement is None:
        statement = _FRESH_MEMORIES["pg"] = _pg_fresh_memories()
    remaining = list(items)
    while remaining:
        checks = [
            {
                "id": i.observation.id,
                "team_id": i.observation.team_id,
                "project_id": i.observation.project_id,
                "server_session_id": i.observation.server_session_id,
                "key_id": i.key_id,
            }
            for i in remaining
        ]
        params = {
            "checks": _rows_json(checks),
            "observations": _rows_json([_observation_values(i.observation) for i in remaining]),
            "sources": _rows_json([_source_values(i.source) for i in remaining]),
            "audit": _rows_json([_audit_values(i.audit) for i in remaining]),
            **passage_writes.pg_passage_params([p for i in remaining for p in i.passages]),
        }
        try:
            async with engine.connect() as conn:
                _transaction = await conn.begin()
                driver: Any = (await conn.get_raw_connection()).driver_connection
                await driver.set_autocommit(True)  # one statement: its own transaction
                try:
                    verdicts = {
                        str(r[0]): bool(r[1]) for r in await conn.execute(statement, params)
                    }
                    await conn.commit()
                finally:
                    if not driver.closed:
                        await driver.set_autocommit(False)
        except (exc.SQLAlchemyError, OSError) as e:
            raise dialects.translate_error(e, not_found="project_id must belong to team_id") from e
        passed = [i for i in remaining if verdicts.get(i.observation.id)]
        if len(passed) == len(remaining):
            return {i.observation.id for i in passed}
        # Nothing was written: again without the memories out of scope (a key revoked
        # meanwhile can fail the next try too; each try leaves one out at least).
        remaining = passed
    return set()
