"""The SQLAlchemy (async Core) storage adapter for PostgreSQL and SQLite.

One unit of work is one connection and one transaction. (On PostgreSQL the transaction
opens at the first statement that writes or locks; plain reads before it run in autocommit,
which under READ COMMITTED sees exactly what the transaction would, and spares a read-only
unit of work its ``BEGIN`` and ``COMMIT``.) Repositories are thin: each method is one or two
statements, scoped by team (and project) in SQL, and the hot ones are built once
(:class:`_Statements`). Idempotent adds use ``INSERT … ON CONFLICT DO NOTHING RETURNING``
and read the winning row only when nothing was returned, in the same transaction, which is
race-safe on PostgreSQL (the insert waits for a concurrent inserter to commit, and the next
READ COMMITTED statement sees its row) and trivially so on SQLite (``BEGIN IMMEDIATE``
serialises writers).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, cast

import attrs
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, CursorResult, RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from claude_mem_core import errors
from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy import search as search_sql
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.driver import driver_sql
from claude_mem_core.domain.fusion import pack_vector, unpack_vector
from claude_mem_core.domain.models import (
    AgentEvent,
    ApiKey,
    AuditEntry,
    GenerationJob,
    JobEvent,
    JobEventType,
    JobStatus,
    JobType,
    Observation,
    ObservationSource,
    ObservationSourceType,
    Project,
    ServerSession,
    SessionGenerationStatus,
    SourceType,
    Team,
)
from claude_mem_core.domain.passages import Passage
from claude_mem_core.domain.redaction import PROJECT_SETTING, SERVER_EVENT_METADATA
from claude_mem_core.domain.tokens import Query
from claude_mem_core.ports.storage import (
    FreshEvent,
    FreshMemory,
    JobFilter,
    Page,
    PassageText,
    SearchHit,
    UnitOfWork,
)

_SEQ_RETRIES = 5


def _columns(table: sa.Table) -> list[sa.Column[Any]]:
    # content_search is PostgreSQL-only and internal: never read it back.
    return [c for c in table.columns if c.key != "content_search"]


# --------------------------------------------------------------------------- row mapping


def _team(r: RowMapping) -> Team:
    return Team(
        id=r["id"],
        name=r["name"],
        metadata=r["metadata"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _project(r: RowMapping) -> Project:
    return Project(
        id=r["id"],
        team_id=r["team_id"],
        name=r["name"],
        metadata=r["metadata"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _api_key(r: RowMapping) -> ApiKey:
    return ApiKey(
        id=r["id"],
        key_hash=r["key_hash"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        actor_id=r["actor_id"],
        name=r["name"],
        scopes=r["scopes"],
        revoked_at=r["revoked_at"],
        expires_at=r["expires_at"],
        last_used_at=r["last_used_at"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _session(r: RowMapping) -> ServerSession:
    return ServerSession(
        id=r["id"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        external_session_id=r["external_session_id"],
        idempotency_key=r["idempotency_key"],
        content_session_id=r["content_session_id"],
        agent_id=r["agent_id"],
        agent_type=r["agent_type"],
        platform_source=r["platform_source"],
        generation_status=SessionGenerationStatus(r["generation_status"]),
        metadata=r["metadata"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        last_generated_at=r["last_generated_at"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _event(r: RowMapping) -> AgentEvent:
    return AgentEvent(
        id=r["id"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        server_session_id=r["server_session_id"],
        source_adapter=r["source_adapter"],
        source_event_id=r["source_event_id"],
        idempotency_key=r["idempotency_key"],
        event_type=r["event_type"],
        payload=r["payload"],
        metadata=r["metadata"],
        occurred_at=r["occurred_at"],
        received_at=r["received_at"],
        created_at=r["created_at"],
    )


def _job(r: RowMapping) -> GenerationJob:
    return GenerationJob(
        id=r["id"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        agent_event_id=r["agent_event_id"],
        source_type=SourceType(r["source_type"]),
        source_id=r["source_id"],
        server_session_id=r["server_session_id"],
        job_type=JobType(r["job_type"]),
        status=JobStatus(r["status"]),
        idempotency_key=r["idempotency_key"],
        transport_id=r["transport_id"],
        attempts=r["attempts"],
        max_attempts=r["max_attempts"],
        next_attempt_at=r["next_attempt_at"],
        locked_at=r["locked_at"],
        locked_by=r["locked_by"],
        completed_at=r["completed_at"],
        failed_at=r["failed_at"],
        cancelled_at=r["cancelled_at"],
        last_error=r["last_error"],
        payload=r["payload"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _job_event(r: RowMapping) -> JobEvent:
    return JobEvent(
        id=r["id"],
        generation_job_id=r["generation_job_id"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        event_type=JobEventType(r["event_type"]),
        status_after=JobStatus(r["status_after"]),
        attempt=r["attempt"],
        details=r["details"],
        created_at=r["created_at"],
    )


def _observation(r: RowMapping) -> Observation:
    return Observation(
        id=r["id"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        server_session_id=r["server_session_id"],
        kind=r["kind"],
        type=r["type"],
        title=r["title"],
        subtitle=r["subtitle"],
        narrative=r["narrative"],
        facts=r["facts"],
        concepts=r["concepts"],
        files_read=r["files_read"],
        files_modified=r["files_modified"],
        content=r["content"],
        generation_key=r["generation_key"],
        metadata=r["metadata"],
        created_by_job_id=r["created_by_job_id"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _source(r: RowMapping) -> ObservationSource:
    return ObservationSource(
        id=r["id"],
        observation_id=r["observation_id"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        source_type=ObservationSourceType(r["source_type"]),
        source_id=r["source_id"],
        agent_event_id=r["agent_event_id"],
        generation_job_id=r["generation_job_id"],
        metadata=r["metadata"],
        created_at=r["created_at"],
    )


def _audit(r: RowMapping) -> AuditEntry:
    return AuditEntry(
        id=r["id"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        actor_id=r["actor_id"],
        api_key_id=r["api_key_id"],
        action=r["action"],
        resource_type=r["resource_type"],
        resource_id=r["resource_id"],
        details=r["details"],
        created_at=r["created_at"],
    )


def _job_values(job: GenerationJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "team_id": job.team_id,
        "project_id": job.project_id,
        "agent_event_id": job.agent_event_id,
        "source_type": job.source_type.value,
        "source_id": job.source_id,
        "server_session_id": job.server_session_id,
        "job_type": job.job_type.value,
        "idempotency_key": job.idempotency_key,
        "created_at": job.created_at,
        **_job_mutable_values(job),
    }


_JOB_MUTABLE = (
    "status",
    "transport_id",
    "attempts",
    "max_attempts",
    "next_attempt_at",
    "locked_at",
    "locked_by",
    "completed_at",
    "failed_at",
    "cancelled_at",
    "last_error",
    "payload",
    "updated_at",
)


def _job_mutable_values(job: GenerationJob) -> dict[str, Any]:
    return {
        "status": job.status.value,
        "transport_id": job.transport_id,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "next_attempt_at": job.next_attempt_at,
        "locked_at": job.locked_at,
        "locked_by": job.locked_by,
        "completed_at": job.completed_at,
        "failed_at": job.failed_at,
        "cancelled_at": job.cancelled_at,
        "last_error": job.last_error,
        "payload": job.payload,
        "updated_at": job.updated_at,
    }


# --------------------------------------------------------------------------- statements


def _p(name: str) -> sa.BindParameter[Any]:
    return sa.bindparam(name)


_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def _pg_rows_insert(
    table: sa.Table,
    names: Sequence[str],
    *,
    conflict: str = "",
    computed: Mapping[str, str] | None = None,
) -> sa.TextClause:
    """PostgreSQL: insert many rows from ONE parameter, a JSON array of row objects.

    ``INSERT … SELECT … FROM json_to_recordset(:rows)`` has one fixed text whatever the
    row count, so psycopg converts it once and the server prepares it once; a multi-row
    ``VALUES`` has a new text (and 10-20 parameters per row, each parsed and adapted on
    the client) for every batch size. Rows go in in array order (``computed`` columns are
    SQL expressions over the row ``r``), and ``RETURNING id`` names the rows inserted.
    """
    columns = {c.key: c for c in table.columns}
    quote = _PG_DIALECT.identifier_preparer.quote
    extra = dict(computed or {})
    definitions = ", ".join(f"{quote(n)} {columns[n].type.compile(_PG_DIALECT)}" for n in names)
    targets = ", ".join(quote(n) for n in [*names, *extra])
    values = ", ".join([*(f"r.{quote(n)}" for n in names), *extra.values()])
    return sa.text(
        f"INSERT INTO {quote(table.name)} ({targets}) SELECT {values} "
        f"FROM ROWS FROM (json_to_recordset(CAST(:rows AS json)) AS ({definitions})) "
        f"WITH ORDINALITY AS r({', '.join(quote(n) for n in names)}, ord) "
        f"ORDER BY r.ord {conflict} RETURNING id"
    )


def _json_default(value: object) -> str:
    if isinstance(value, datetime):  # as UTCDateTime stores it
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _rows_json(rows: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(rows, default=_json_default, separators=(",", ":"))


def _params_json(rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, str]:
    return {param: _rows_json(values) for param, values in rows.items()}


@attrs.frozen
class _Bulk:
    """How to insert many rows of one table on PostgreSQL (see :func:`_pg_rows_insert`);
    the statement is built from the first row's keys and kept."""

    table: sa.Table
    conflict: str = ""
    computed: Mapping[str, str] = attrs.field(factory=dict)
    statements: dict[tuple[str, ...], sa.TextClause] = attrs.field(factory=dict, eq=False)

    def statement(self, names: Sequence[str]) -> sa.TextClause:
        key = tuple(n for n in names if n in self.table.c)
        stmt = self.statements.get(key)
        if stmt is None:
            stmt = self.statements[key] = _pg_rows_insert(
                self.table, key, conflict=self.conflict, computed=self.computed
            )
        return stmt


_JE = t.observation_generation_job_events.name
BULK_EVENTS = _Bulk(t.agent_events, "ON CONFLICT (idempotency_key) DO NOTHING")
BULK_JOBS = _Bulk(t.observation_generation_jobs, "ON CONFLICT DO NOTHING")
BULK_JOB_EVENTS = _Bulk(
    t.observation_generation_job_events,
    "ON CONFLICT (generation_job_id, seq) DO NOTHING",
    # In one statement every new event of a job gets the same seq: all but the first are
    # left out by the conflict and inserted again (JobEventRepo.add_many).
    {
        "seq": f"(SELECT coalesce(max(s.seq), 0) + 1 FROM {_JE} AS s"
        " WHERE s.generation_job_id = r.generation_job_id)"
    },
)
BULK_OBSERVATIONS = _Bulk(
    t.observations,
    "ON CONFLICT (team_id, project_id, generation_key) WHERE generation_key IS NOT NULL DO NOTHING",
)
BULK_SOURCES = _Bulk(
    t.observation_sources, "ON CONFLICT (observation_id, source_type, source_id) DO NOTHING"
)
BULK_AUDIT = _Bulk(t.audit_log)


def _pg_recordset(table: sa.Table, names: Sequence[str], param: str, link: str = "") -> str:
    """``FROM`` source of rows given as one JSON array parameter (see :func:`_pg_rows_insert`);
    ``link`` names an extra text field the rows carry without inserting it."""
    columns = {c.key: c for c in table.columns}
    quote = _PG_DIALECT.identifier_preparer.quote
    fields = [f"{quote(n)} {columns[n].type.compile(_PG_DIALECT)}" for n in names]
    aliases = [quote(n) for n in names]
    if link:
        fields.append(f"{link} text")
        aliases.append(link)
    return (
        f"ROWS FROM (json_to_recordset(CAST(:{param} AS json)) AS ({', '.join(fields)})) "
        f"WITH ORDINALITY AS r({', '.join(aliases)}, ord)"
    )


def _pg_fresh_events(names: Mapping[str, Sequence[str]]) -> sa.TextClause:
    """PostgreSQL: :meth:`SqlAlchemyStorage.add_fresh_events` as ONE statement.

    Data-modifying CTEs: the events go in unless their key is taken, their project or
    session is out of scope, or the API key they are written under no longer works; the
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
        "WHERE p.id = r.project_id AND p.team_id = r.team_id "
        # A project with its own ingest settings: the event was built with the server's.
        f"AND (p.metadata -> '{PROJECT_SETTING}') IS NULL) "
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


class _Statements:
    """The hot statements, built once per dialect with bound parameters.

    A construct built per call costs more CPU than the round trip it makes (argument
    coercion and a fresh cache key every time); these are built at first use and run with
    a parameter dict, so SQLAlchemy finds their compiled form in its cache.
    """

    def __init__(self, dialect: str) -> None:
        p, o, s, e = t.projects, t.observations, t.observation_sources, t.agent_events
        j, je, k, ss = (
            t.observation_generation_jobs,
            t.observation_generation_job_events,
            t.api_keys,
            t.server_sessions,
        )

        def select(table: sa.Table) -> sa.Select[Any]:
            return sa.select(*_columns(table))

        def exists(table: sa.Table, *where: sa.ColumnElement[bool]) -> sa.Select[Any]:
            return sa.select(sa.literal(1)).select_from(table).where(*where).limit(1)

        self.project_get = select(p).where(p.c.id == _p("id"), p.c.team_id == _p("team_id"))
        self.api_key_by_hash = select(k).where(k.c.key_hash == _p("key_hash"))
        self.api_key_by_id = select(k).where(k.c.id == _p("id"))
        self.session_get = select(ss).where(ss.c.id == _p("id"), ss.c.team_id == _p("team_id"))
        self.session_in_scope = exists(
            ss,
            ss.c.id == _p("id"),
            ss.c.team_id == _p("team_id"),
            ss.c.project_id == _p("project_id"),
        )
        self.job_in_scope = exists(
            j, j.c.id == _p("id"), j.c.team_id == _p("team_id"), j.c.project_id == _p("project_id")
        )

        self.event_insert = dialects.insert_ignore(dialect, e, index_elements=["idempotency_key"])
        events_by_keys = select(e).where(
            e.c.idempotency_key.in_(sa.bindparam("keys", expanding=True)),
            e.c.team_id == _p("team_id"),
            e.c.project_id == _p("project_id"),
        )
        self.events_by_keys_locked = (
            events_by_keys.with_for_update() if dialect == dialects.POSTGRES else events_by_keys
        )
        self.event_set_metadata = (
            sa.update(e).where(e.c.id == _p("w_id")).values(metadata=_p("metadata"))
        )
        self.event_get = select(e).where(e.c.id == _p("id"), e.c.team_id == _p("team_id"))
        self.events_many = select(e).where(
            e.c.team_id == _p("team_id"),
            e.c.project_id == _p("project_id"),
            e.c.id.in_(sa.bindparam("ids", expanding=True)),
        )
        self.events_of_session = (
            select(e)
            .where(
                e.c.team_id == _p("team_id"),
                e.c.project_id == _p("project_id"),
                e.c.server_session_id == _p("session_id"),
            )
            .order_by(e.c.occurred_at, e.c.received_at, e.c.id)
            .limit(_p("limit"))
        )

        self.job_insert = dialects.insert_ignore(dialect, j)
        self.job_by_key = select(j).where(
            j.c.idempotency_key == _p("w_key"),
            j.c.team_id == _p("w_team_id"),
            j.c.project_id == _p("w_project_id"),
        )
        self.jobs_by_keys = select(j).where(
            j.c.idempotency_key.in_(sa.bindparam("keys", expanding=True)),
            j.c.team_id == _p("team_id"),
            j.c.project_id == _p("project_id"),
        )
        self.job_get = select(j).where(j.c.id == _p("id"), j.c.team_id == _p("team_id"))
        self.job_get_unscoped = select(j).where(j.c.id == _p("id"))
        # The SET clause comes from the parameters named like columns; the guard's
        # parameters are prefixed so they never collide with them.
        self.job_compare_and_set = sa.update(j).where(
            j.c.id == _p("w_id"),
            j.c.team_id == _p("w_team_id"),
            j.c.project_id == _p("w_project_id"),
            j.c.status == _p("w_status"),
            j.c.attempts == _p("w_attempts"),
            j.c.locked_by.is_not_distinct_from(_p("w_locked_by")),
        )

        next_seq = (
            sa.select(sa.func.coalesce(sa.func.max(je.c.seq), 0) + 1)
            .where(je.c.generation_job_id == _p("w_job_id"))
            .scalar_subquery()
        )
        # A conflict on (job, seq) means a concurrent writer took the seq: nothing is
        # returned and the caller recomputes it, with no savepoint (any other violation
        # still raises).
        self.job_event_insert = dialects.insert_ignore(
            dialect, je, {"seq": next_seq}, index_elements=["generation_job_id", "seq"]
        )
        self.job_event_exists = exists(je, je.c.id == _p("id"))
        self.job_compare_and_set_logged = (
            self._compare_and_set_logged(j, je, next_seq) if dialect == dialects.POSTGRES else None
        )

        self.observation_insert = sa.insert(o).returning(o.c.id)
        self.observation_insert_ignore = dialects.insert_ignore(
            dialect,
            o,
            index_elements=["team_id", "project_id", "generation_key"],
            index_where=o.c.generation_key.is_not(None),
        )
        self.observation_by_key = select(o).where(
            o.c.team_id == _p("team_id"),
            o.c.project_id == _p("project_id"),
            o.c.generation_key == _p("generation_key"),
        )
        self.observations_by_keys = select(o).where(
            o.c.team_id == _p("team_id"),
            o.c.project_id == _p("project_id"),
            o.c.generation_key.in_(sa.bindparam("keys", expanding=True)),
        )

        self.source_insert = dialects.insert_ignore(
            dialect, s, index_elements=["observation_id", "source_type", "source_id"]
        )
        locked_source = select(s).where(
            s.c.observation_id == _p("observation_id"),
            s.c.source_type == _p("source_type"),
            s.c.source_id == _p("source_id"),
            s.c.team_id == _p("team_id"),
            s.c.project_id == _p("project_id"),
        )
        self.source_locked = (
            locked_source.with_for_update() if dialect == dialects.POSTGRES else locked_source
        )

        self.audit_insert = sa.insert(t.audit_log)
        # RETURNING makes SQLAlchemy send a list of rows as one multi-row VALUES statement
        # ("insertmanyvalues"); without it psycopg would run one INSERT per row.
        self.audit_insert_many = sa.insert(t.audit_log).returning(t.audit_log.c.id)

    @staticmethod
    def _compare_and_set_logged(
        j: sa.Table, je: sa.Table, next_seq: sa.ScalarSelect[Any]
    ) -> sa.Select[Any]:
        """PostgreSQL: the compare-and-set and the job event it logs, in one statement.

        The event is inserted only from the updated row, so it exists iff the update
        happened; the statement answers how many rows each part wrote (an event whose seq a
        concurrent writer took is not inserted, and the caller appends it again).
        """
        updated = (
            sa.update(j)
            .where(
                j.c.id == _p("w_id"),
                j.c.team_id == _p("w_team_id"),
                j.c.project_id == _p("w_project_id"),
                j.c.status == _p("w_status"),
                j.c.attempts == _p("w_attempts"),
                j.c.locked_by.is_not_distinct_from(_p("w_locked_by")),
            )
            .values({name: sa.bindparam(name, type_=j.c[name].type) for name in _JOB_MUTABLE})
            .returning(j.c.id, j.c.team_id, j.c.project_id)
            .cte("cas_updated")
        )
        row = sa.select(
            sa.bindparam("e_id", type_=sa.Text),
            updated.c.id,
            updated.c.team_id,
            updated.c.project_id,
            next_seq,
            sa.bindparam("e_event_type", type_=sa.Text),
            sa.bindparam("e_status_after", type_=sa.Text),
            sa.bindparam("e_attempt", type_=sa.Integer),
            sa.bindparam("e_details", type_=je.c.details.type),
            sa.bindparam("e_created_at", type_=je.c.created_at.type),
        )
        columns = ["id", "generation_job_id", "team_id", "project_id", "seq", "event_type"]
        columns += ["status_after", "attempt", "details", "created_at"]
        logged = (
            postgresql.insert(je)
            .from_select(columns, row)
            .on_conflict_do_nothing(index_elements=["generation_job_id", "seq"])
            .returning(je.c.id)
            .cte("cas_logged")
        )
        count = sa.func.count
        return sa.select(
            sa.select(count()).select_from(updated).scalar_subquery().label("updated"),
            sa.select(count()).select_from(logged).scalar_subquery().label("logged"),
        )


_STATEMENTS: dict[str, _Statements] = {}


def _statements(dialect: str) -> _Statements:
    sql = _STATEMENTS.get(dialect)
    if sql is None:
        sql = _STATEMENTS[dialect] = _Statements(dialect)
    return sql


# --------------------------------------------------------------------------- plumbing


class _Db:
    """The connection of one unit of work, with error translation at the boundary.

    ``scoped`` remembers the (kind, id, team, project) of rows this unit of work has
    already read or checked: scopes never change and rows are never deleted through the
    port, so a second check of the same parent in one transaction would be a wasted round
    trip (the foreign keys still guard the parent's existence at insert time).
    """

    def __init__(self, conn: AsyncConnection, dialect_name: str, driver: Any | None = None) -> None:
        self.conn = conn
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
        # FOR UPDATE makes read-merge-write safe on PostgreSQL; SQLite has no row locks and
        # needs none (one writer at a time).
        return stmt.with_for_update() if self.dialect == dialects.POSTGRES else stmt


def _page(stmt: sa.Select[Any], page: Page) -> sa.Select[Any]:
    return stmt.limit(page.limit).offset(page.offset)


def _merge(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """Shallow merge, new keys winning: PostgreSQL's ``jsonb || jsonb``."""
    return {**(old or {}), **new}


def _merge_event_metadata(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """A replay's metadata merged into the stored event's, except the keys the server set
    when it first stored the event (they describe the stored payload, not the replay's)."""
    return _merge(old, {k: v for k, v in new.items() if k not in SERVER_EVENT_METADATA})


def _by_scope(items: Sequence[Any]) -> dict[tuple[str, str], list[Any]]:
    """Group records by their (team, project), first appearance first."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for item in items:
        groups.setdefault((item.team_id, item.project_id), []).append(item)
    return groups


_SESSION_SCOPE_ERROR = "server_session_id must belong to project_id and team_id"


async def _check_session_scopes(db: _Db, items: Sequence[Any]) -> None:
    """:func:`_check_session_scope` for each distinct (session, team, project) of ``items``."""
    seen = dict.fromkeys(
        (i.server_session_id, i.team_id, i.project_id) for i in items if i.server_session_id
    )
    for session_id, team, project in seen:
        await _check_session_scope(db, session_id, team, project)


async def _check_session_scope(db: _Db, session_id: str | None, team: str, project: str) -> None:
    # A single-column FK keeps SET NULL on session deletion; the scope is checked here.
    if session_id is None or ("session", session_id, team, project) in db.scoped:
        return
    params = {"id": session_id, "team_id": team, "project_id": project}
    if (await db.run(db.sql.session_in_scope, params)).first() is None:
        raise errors.NotFound(_SESSION_SCOPE_ERROR)
    db.scoped.add(("session", session_id, team, project))


# --------------------------------------------------------------------------- repositories


class TeamRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add(self, team: Team) -> None:
        await self._db.write(
            sa.insert(t.teams).values(
                id=team.id,
                name=team.name,
                metadata=team.metadata,
                created_at=team.created_at,
                updated_at=team.updated_at,
            )
        )

    async def get(self, team_id: str) -> Team | None:
        row = await self._db.one_or_none(self._db.select(t.teams).where(t.teams.c.id == team_id))
        return _team(row) if row else None

    async def find_by_name(self, name: str) -> Team | None:
        c = t.teams.c
        stmt = self._db.select(t.teams).where(c.name == name).order_by(c.created_at, c.id).limit(1)
        row = await self._db.one_or_none(stmt)
        return _team(row) if row else None

    async def list(self, page: Page) -> tuple[Sequence[Team], int]:
        c = t.teams.c
        rows = await self._db.all(
            _page(self._db.select(t.teams).order_by(c.created_at, c.id), page)
        )
        return [_team(r) for r in rows], await self._db.count(t.teams)


class ProjectRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add(self, project: Project) -> None:
        await self._db.write(
            sa.insert(t.projects).values(
                id=project.id,
                team_id=project.team_id,
                name=project.name,
                metadata=project.metadata,
                created_at=project.created_at,
                updated_at=project.updated_at,
            ),
            not_found=f"team {project.team_id} not found",
        )

    async def get(self, team_id: str, project_id: str) -> Project | None:
        row = await self._db.row(self._db.sql.project_get, {"id": project_id, "team_id": team_id})
        return _project(row) if row else None

    async def find_by_name(self, team_id: str, name: str) -> Project | None:
        c = t.projects.c
        stmt = (
            self._db.select(t.projects)
            .where(c.team_id == team_id, c.name == name)
            .order_by(c.created_at, c.id)
            .limit(1)
        )
        row = await self._db.one_or_none(stmt)
        return _project(row) if row else None

    async def list(self, team_id: str, page: Page) -> tuple[Sequence[Project], int]:
        c = t.projects.c
        stmt = self._db.select(t.projects).where(c.team_id == team_id).order_by(c.created_at, c.id)
        rows = await self._db.all(_page(stmt, page))
        return [_project(r) for r in rows], await self._db.count(t.projects, c.team_id == team_id)


class ApiKeyRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add(self, key: ApiKey) -> None:
        await self._db.write(
            sa.insert(t.api_keys).values(
                id=key.id,
                key_hash=key.key_hash,
                team_id=key.team_id,
                project_id=key.project_id,
                actor_id=key.actor_id,
                name=key.name,
                scopes=sorted(key.scopes),
                revoked_at=key.revoked_at,
                expires_at=key.expires_at,
                last_used_at=key.last_used_at,
                created_at=key.created_at,
                updated_at=key.updated_at,
            ),
            not_found="project_id must belong to team_id",
        )

    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        row = await self._db.row(self._db.sql.api_key_by_hash, {"key_hash": key_hash})
        return _api_key(row) if row else None

    async def get_unscoped(self, key_id: str) -> ApiKey | None:
        row = await self._db.row(self._db.sql.api_key_by_id, {"id": key_id})
        return _api_key(row) if row else None

    async def list(
        self, team_id: str | None, project_id: str | None, page: Page
    ) -> tuple[Sequence[ApiKey], int]:
        c = t.api_keys.c
        where: list[sa.ColumnElement[bool]] = []
        if team_id is not None:
            where.append(c.team_id == team_id)
        if project_id is not None:
            where.append(c.project_id == project_id)
        stmt = self._db.select(t.api_keys).where(*where).order_by(c.created_at.desc(), c.id)
        rows = await self._db.all(_page(stmt, page))
        return [_api_key(r) for r in rows], await self._db.count(t.api_keys, *where)

    async def save(self, key: ApiKey) -> None:
        await self._db.execute(
            sa.update(t.api_keys)
            .where(t.api_keys.c.id == key.id)
            .values(
                revoked_at=key.revoked_at,
                expires_at=key.expires_at,
                last_used_at=key.last_used_at,
                updated_at=key.updated_at,
            )
        )

    async def record_use(self, used_at: Mapping[str, datetime]) -> None:
        if not used_at:
            return
        c = t.api_keys.c
        at = sa.bindparam("at", type_=c.last_used_at.type)
        stmt = (
            sa.update(t.api_keys)
            .where(c.id == sa.bindparam("key_id"))
            .where(sa.or_(c.last_used_at.is_(None), c.last_used_at < at))
            .values(last_used_at=at)
        )
        await self._db.run_many(stmt, [{"key_id": k, "at": v} for k, v in sorted(used_at.items())])


class SessionRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add(self, session: ServerSession) -> tuple[ServerSession, bool]:
        s = t.server_sessions
        values = {
            "id": session.id,
            "team_id": session.team_id,
            "project_id": session.project_id,
            "external_session_id": session.external_session_id,
            "idempotency_key": session.idempotency_key,
            "content_session_id": session.content_session_id,
            "agent_id": session.agent_id,
            "agent_type": session.agent_type,
            "platform_source": session.platform_source,
            "generation_status": session.generation_status.value,
            "metadata": session.metadata,
            "started_at": session.started_at,
            "ended_at": session.ended_at,
            "last_generated_at": session.last_generated_at,
            "created_at": session.created_at,
            "updated_at": session.updated_at,
        }
        # No conflict target: either natural key (idempotency key, external id) may hit.
        result = await self._db.write(
            dialects.insert_ignore(self._db.dialect, s, values),
            not_found="project_id must belong to team_id",
        )
        if result.first() is not None:
            return session, True
        scope = (s.c.team_id == session.team_id, s.c.project_id == session.project_id)
        natural_keys = []
        if session.idempotency_key is not None:
            natural_keys.append(s.c.idempotency_key == session.idempotency_key)
        if session.external_session_id is not None:
            natural_keys.append(s.c.external_session_id == session.external_session_id)
        for key in natural_keys:
            row = await self._db.one_or_none(self._db.select(s).where(*scope, key))
            if row is not None:
                return _session(row), False
        if not await self._db.exists(
            t.projects,
            t.projects.c.id == session.project_id,
            t.projects.c.team_id == session.team_id,
        ):
            raise errors.NotFound("project_id must belong to team_id")
        raise errors.Conflict(f"server session {session.id} already exists")

    async def get(self, team_id: str, session_id: str) -> ServerSession | None:
        row = await self._db.row(self._db.sql.session_get, {"id": session_id, "team_id": team_id})
        if row is None:
            return None
        self._db.scoped.add(("session", row["id"], row["team_id"], row["project_id"]))
        return _session(row)

    async def find_by_idempotency_key(
        self, team_id: str, project_id: str, key: str
    ) -> ServerSession | None:
        c = t.server_sessions.c
        stmt = self._db.select(t.server_sessions).where(
            c.team_id == team_id, c.project_id == project_id, c.idempotency_key == key
        )
        row = await self._db.one_or_none(stmt)
        return _session(row) if row else None

    async def save(self, session: ServerSession) -> None:
        c = t.server_sessions.c
        await self._db.execute(
            sa.update(t.server_sessions)
            .where(
                c.id == session.id,
                c.team_id == session.team_id,
                c.project_id == session.project_id,
            )
            .values(
                ended_at=session.ended_at,
                generation_status=session.generation_status.value,
                metadata=session.metadata,
                last_generated_at=session.last_generated_at,
                updated_at=session.updated_at,
            )
        )

    async def set_generation_status(
        self,
        team_id: str,
        project_id: str,
        session_id: str,
        status: SessionGenerationStatus,
        *,
        now: datetime,
        error: str | None = None,
    ) -> None:
        s = t.server_sessions
        where = (s.c.id == session_id, s.c.team_id == team_id, s.c.project_id == project_id)
        values: dict[str, Any] = {"generation_status": status.value, "updated_at": now}
        if status is SessionGenerationStatus.COMPLETED:
            values["last_generated_at"] = now
        elif status is SessionGenerationStatus.FAILED:
            row = await self._db.one_or_none(self._db.locked(sa.select(s.c.metadata).where(*where)))
            if row is None:
                return
            values["metadata"] = _merge(row["metadata"], {"lastGenerationError": error})
        await self._db.execute(sa.update(s).where(*where).values(**values))


def _event_values(event: AgentEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "team_id": event.team_id,
        "project_id": event.project_id,
        "server_session_id": event.server_session_id,
        "source_adapter": event.source_adapter,
        "source_event_id": event.source_event_id,
        "idempotency_key": event.idempotency_key,
        "event_type": event.event_type,
        "payload": event.payload,
        "metadata": event.metadata,
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "created_at": event.created_at,
    }


class EventRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add_many(self, events: Sequence[AgentEvent]) -> Sequence[tuple[AgentEvent, bool]]:
        """One multi-row insert; the events it did not insert (replays, or repeats within
        ``events``) are read back in one locked read per scope, and their metadata merged
        in input order, as consecutive ``add`` calls would."""
        if len(events) <= 1:
            return [await self.add(event) for event in events]
        db = self._db
        await _check_session_scopes(db, events)
        inserted = await db.inserted_ids(
            db.sql.event_insert,
            [_event_values(event) for event in events],
            bulk=BULK_EVENTS,
            not_found="project_id must belong to team_id",
        )
        stored: dict[str, AgentEvent] = {}  # idempotency key -> current row
        for (team, project), group in _by_scope(
            [e for e in events if e.id not in inserted]
        ).items():
            params = {
                "team_id": team,
                "project_id": project,
                "keys": list({e.idempotency_key for e in group}),
            }
            for row in await db.rows(db.sql.events_by_keys_locked, params):
                stored[row["idempotency_key"]] = _event(row)
        results: list[tuple[AgentEvent, bool]] = []
        changed: dict[str, AgentEvent] = {}
        for event in events:
            if event.id in inserted:
                stored[event.idempotency_key] = event
                results.append((event, True))
                continue
            current = stored.get(event.idempotency_key)
            if current is None or (current.team_id, current.project_id) != (
                event.team_id,
                event.project_id,
            ):
                raise errors.Conflict("idempotency key is used by an event of another scope")
            merged = _merge_event_metadata(current.metadata, event.metadata)
            if merged != current.metadata:
                current = attrs.evolve(current, metadata=merged)
                stored[event.idempotency_key] = changed[current.id] = current
            results.append((current, False))
        if changed:
            await db.run_many(
                db.sql.event_set_metadata,
                [{"w_id": e.id, "metadata": e.metadata} for e in changed.values()],
            )
        return results

    async def add(self, event: AgentEvent) -> tuple[AgentEvent, bool]:
        e = t.agent_events
        await _check_session_scope(
            self._db, event.server_session_id, event.team_id, event.project_id
        )
        values = _event_values(event)
        result = await self._db.run(
            self._db.sql.event_insert, values, not_found="project_id must belong to team_id"
        )
        if result.first() is not None:
            return event, True
        where = (
            e.c.idempotency_key == event.idempotency_key,
            e.c.team_id == event.team_id,
            e.c.project_id == event.project_id,
        )
        row = await self._db.one_or_none(self._db.locked(self._db.select(e).where(*where)))
        if row is None:
            raise errors.Conflict("idempotency key is used by an event of another scope")
        stored = _event(row)
        merged = _merge_event_metadata(stored.metadata, event.metadata)
        if merged != stored.metadata:
            await self._db.execute(sa.update(e).where(e.c.id == stored.id).values(metadata=merged))
            stored = _event({**row, "metadata": merged})  # type: ignore[arg-type]
        return stored, False

    async def get(self, team_id: str, event_id: str) -> AgentEvent | None:
        row = await self._db.row(self._db.sql.event_get, {"id": event_id, "team_id": team_id})
        return _event(row) if row else None

    async def get_many(
        self, team_id: str, project_id: str, event_ids: Sequence[str]
    ) -> Sequence[AgentEvent]:
        """In the order of ``event_ids`` (duplicates and unknown ids dropped)."""
        if not event_ids:
            return []
        params = {"team_id": team_id, "project_id": project_id, "ids": list(set(event_ids))}
        found = {r["id"]: _event(r) for r in await self._db.rows(self._db.sql.events_many, params)}
        return [found[i] for i in dict.fromkeys(event_ids) if i in found]

    async def list_for_session(
        self, team_id: str, project_id: str, session_id: str, *, limit: int = 500
    ) -> Sequence[AgentEvent]:
        params = {
            "team_id": team_id,
            "project_id": project_id,
            "session_id": session_id,
            "limit": limit,
        }
        return [_event(r) for r in await self._db.rows(self._db.sql.events_of_session, params)]


class JobRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add_many(self, jobs: Sequence[GenerationJob]) -> Sequence[tuple[GenerationJob, bool]]:
        """One multi-row insert; the jobs it did not insert are answered with the stored
        job of the same idempotency key (one read per scope)."""
        if len(jobs) <= 1:
            return [await self.add(job) for job in jobs]
        db = self._db
        await _check_session_scopes(db, jobs)
        inserted = await db.inserted_ids(
            db.sql.job_insert,
            [_job_values(job) for job in jobs],
            bulk=BULK_JOBS,
            not_found="agent_event source_id must belong to project_id and team_id",
        )
        stored: dict[tuple[str, str, str], GenerationJob] = {}
        for (team, project), group in _by_scope([j for j in jobs if j.id not in inserted]).items():
            params = {
                "team_id": team,
                "project_id": project,
                "keys": list({j.idempotency_key for j in group}),
            }
            for row in await db.rows(db.sql.jobs_by_keys, params):
                stored[(team, project, row["idempotency_key"])] = self._seen(row)
        results: list[tuple[GenerationJob, bool]] = []
        for job in jobs:
            key = (job.team_id, job.project_id, job.idempotency_key)
            if job.id in inserted:
                db.scoped.add(("job", job.id, job.team_id, job.project_id))
                stored[key] = job
                results.append((job, True))
                continue
            existing = stored.get(key)
            if existing is None:
                raise errors.Conflict(f"generation job {job.id} conflicts with a stored job")
            results.append((existing, False))
        return results

    async def add(self, job: GenerationJob) -> tuple[GenerationJob, bool]:
        await _check_session_scope(self._db, job.server_session_id, job.team_id, job.project_id)
        result = await self._db.run(
            self._db.sql.job_insert,
            _job_values(job),
            not_found="agent_event source_id must belong to project_id and team_id",
        )
        if result.first() is not None:
            self._db.scoped.add(("job", job.id, job.team_id, job.project_id))
            return job, True
        params = {
            "w_key": job.idempotency_key,
            "w_team_id": job.team_id,
            "w_project_id": job.project_id,
        }
        row = await self._db.row(self._db.sql.job_by_key, params)
        if row is None:
            raise errors.Conflict(f"generation job {job.id} conflicts with a stored job")
        return self._seen(row), False

    def _seen(self, row: RowMapping) -> GenerationJob:
        self._db.scoped.add(("job", row["id"], row["team_id"], row["project_id"]))
        return _job(row)

    async def get(self, team_id: str, job_id: str) -> GenerationJob | None:
        row = await self._db.row(self._db.sql.job_get, {"id": job_id, "team_id": team_id})
        return self._seen(row) if row else None

    async def get_unscoped(self, job_id: str) -> GenerationJob | None:
        row = await self._db.row(self._db.sql.job_get_unscoped, {"id": job_id})
        return self._seen(row) if row else None

    async def get_unscoped_with_event(
        self, job_id: str
    ) -> tuple[GenerationJob, AgentEvent | None] | None:
        stmt = _JOB_WITH_EVENT.get(self._db.dialect)
        if stmt is None:
            j, e = t.observation_generation_jobs, t.agent_events
            stmt = _JOB_WITH_EVENT[self._db.dialect] = (
                sa.select(*_columns(j), *(c.label(f"event__{c.key}") for c in _columns(e)))
                .select_from(
                    j.outerjoin(
                        e,
                        sa.and_(
                            e.c.id == j.c.agent_event_id,
                            e.c.team_id == j.c.team_id,
                            e.c.project_id == j.c.project_id,
                        ),
                    )
                )
                .where(j.c.id == _p("id"))
            )
        row = await self._db.row(stmt, {"id": job_id})
        if row is None:
            return None
        event = None
        if row["event__id"] is not None:
            event = _event({k[7:]: v for k, v in row.items() if k.startswith("event__")})  # type: ignore[arg-type]
        return self._seen(row), event

    async def compare_and_set(
        self, expected: GenerationJob, new: GenerationJob, *, event: JobEvent | None = None
    ) -> bool:
        if (new.id, new.team_id, new.project_id) != (
            expected.id,
            expected.team_id,
            expected.project_id,
        ):
            raise errors.InvalidInput("compare_and_set cannot change a job's id or scope")
        if event is not None and (event.generation_job_id, event.team_id, event.project_id) != (
            new.id,
            new.team_id,
            new.project_id,
        ):
            raise errors.InvalidInput("compare_and_set logs an event of the same job only")
        # One guarded UPDATE: the row lock it takes makes concurrent claims serialise, and
        # the loser's re-evaluated WHERE no longer matches.
        params = _job_mutable_values(new)
        params.update(
            w_id=expected.id,
            w_team_id=expected.team_id,
            w_project_id=expected.project_id,
            w_status=expected.status.value,
            w_attempts=expected.attempts,
            w_locked_by=expected.locked_by,
        )
        logged_stmt = self._db.sql.job_compare_and_set_logged
        if event is not None and logged_stmt is not None:
            params.update(
                w_job_id=expected.id,
                e_id=event.id,
                e_event_type=event.event_type.value,
                e_status_after=event.status_after.value,
                e_attempt=event.attempt,
                e_details=event.details,
                e_created_at=event.created_at,
            )
            counts = (await self._db.run(logged_stmt, params, writes=True)).one()
            if counts.updated != 1:
                return False
            self._db.scoped.add(("job", new.id, new.team_id, new.project_id))
            if counts.logged != 1:  # a concurrent writer took the seq: append it again
                await JobEventRepo(self._db).add(event)
            return True
        result = await self._db.run(self._db.sql.job_compare_and_set, params)
        if result.rowcount != 1:
            return False
        if event is not None:
            self._db.scoped.add(("job", new.id, new.team_id, new.project_id))
            await JobEventRepo(self._db).add(event)
        # The row exists in this scope: later checks of it as a parent are skipped.
        self._db.scoped.add(("job", new.id, new.team_id, new.project_id))
        return True

    async def advance(
        self,
        expected: GenerationJob,
        new: GenerationJob,
        *,
        event: JobEvent,
        observations: Sequence[Observation] = (),
        sources: Sequence[ObservationSource] = (),
        audit: Sequence[AuditEntry] = (),
        audit_always: Sequence[AuditEntry] = (),
        passages: Sequence[Passage] = (),
    ) -> bool | None:
        db = self._db
        if db.dialect == dialects.POSTGRES:
            if db.lazy_driver is None:
                return None  # the unit of work has written: its transaction must not abort
            return await self._advance_pg(
                expected, new, event, observations, sources, audit, audit_always, passages
            )
        # SQLite: one writer at a time, so a clash found first stays absent.
        by_scope = _by_scope(observations)
        for (team, project), group in by_scope.items():
            params = {
                "team_id": team,
                "project_id": project,
                "keys": [o.generation_key for o in group],
            }
            if await db.rows(db.sql.observations_by_keys, params):
                return None
        written = await self.compare_and_set(expected, new, event=event)
        if written:
            await ObservationRepo(db).add_many(observations)
            await SourceRepo(db).add_many(sources)
            await SearchIndexRepo(db).add(passages)
        await AuditRepo(db).add_many([*audit_always, *(audit if written else ())])
        return written

    async def _advance_pg(
        self,
        expected: GenerationJob,
        new: GenerationJob,
        event: JobEvent,
        observations: Sequence[Observation],
        sources: Sequence[ObservationSource],
        audit: Sequence[AuditEntry],
        audit_always: Sequence[AuditEntry],
        passages: Sequence[Passage],
    ) -> bool | None:
        if (new.id, new.team_id, new.project_id) != (
            expected.id,
            expected.team_id,
            expected.project_id,
        ) or (event.generation_job_id, event.team_id, event.project_id) != (
            new.id,
            new.team_id,
            new.project_id,
        ):
            raise errors.InvalidInput("advance changes one job, in its own scope")
        statement = _ADVANCE.get("pg")
        if statement is None:
            statement = _ADVANCE["pg"] = _pg_advance()
        guard = {
            "id": expected.id,
            "team_id": expected.team_id,
            "project_id": expected.project_id,
            "status": expected.status.value,
            "attempts": expected.attempts,
            "locked_by": expected.locked_by,
        }
        event_values = _job_event_values(event)
        del event_values["w_job_id"]
        params = {
            "guard": _rows_json([guard])[1:-1],
            "job": _rows_json([_job_mutable_values(new)])[1:-1],
            "event": _rows_json([event_values])[1:-1],
            "observations": _rows_json([_observation_values(o) for o in observations]),
            "sources": _rows_json([_source_values(s) for s in sources]),
            "audit": _rows_json([_audit_values(a) for a in audit]),
            "audit_always": _rows_json([_audit_values(a) for a in audit_always]),
            **search_sql.pg_passage_params(passages),
        }
        # Autocommit (nothing written yet): the statement is its own transaction, and a
        # failed one leaves nothing behind, neither written nor aborted.
        try:
            updated = (await self._db.conn.execute(statement, params)).scalar_one()
        except exc.IntegrityError:
            return None  # a clash: the caller's long way finds the stored rows
        except (exc.SQLAlchemyError, OSError) as e:
            raise dialects.translate_error(e) from e
        if updated != 1:
            return False
        self._db.scoped.add(("job", new.id, new.team_id, new.project_id))
        return True

    async def save_payload(self, job: GenerationJob) -> None:
        c = t.observation_generation_jobs.c
        await self._db.execute(
            sa.update(t.observation_generation_jobs)
            .where(c.id == job.id, c.team_id == job.team_id, c.project_id == job.project_id)
            .values(payload=job.payload, updated_at=job.updated_at)
        )

    @staticmethod
    def _filter(where: JobFilter) -> list[sa.ColumnElement[bool]]:
        c = t.observation_generation_jobs.c
        clauses: list[sa.ColumnElement[bool]] = [c.team_id == where.team_id]
        if where.project_id is not None:
            clauses.append(c.project_id == where.project_id)
        if where.status is not None:
            clauses.append(c.status == where.status.value)
        if where.source_type is not None:
            clauses.append(c.source_type == where.source_type.value)
        if where.since is not None:
            clauses.append(c.created_at >= where.since)
        return clauses

    async def list(self, where: JobFilter, page: Page) -> tuple[Sequence[GenerationJob], int]:
        j = t.observation_generation_jobs
        clauses = self._filter(where)
        stmt = self._db.select(j).where(*clauses).order_by(j.c.created_at.desc(), j.c.id)
        rows = await self._db.all(_page(stmt, page))
        return [_job(r) for r in rows], await self._db.count(j, *clauses)

    async def list_due(
        self, *, now: datetime, lease_expired_before: datetime, limit: int
    ) -> Sequence[GenerationJob]:
        j = t.observation_generation_jobs
        c = j.c
        stmt = (
            self._db.select(j)
            .where(
                sa.or_(
                    sa.and_(
                        c.status == JobStatus.QUEUED.value,
                        sa.or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now),
                    ),
                    sa.and_(
                        c.status == JobStatus.PROCESSING.value,
                        c.locked_at < lease_expired_before,
                    ),
                )
            )
            .order_by(c.created_at, c.id)
            .limit(limit)
        )
        return [_job(r) for r in await self._db.all(stmt)]

    async def renew_lease(self, job: GenerationJob, *, now: datetime) -> bool:
        c = t.observation_generation_jobs.c
        locked_by = c.locked_by.is_(None) if job.locked_by is None else c.locked_by == job.locked_by
        result = await self._db.execute(
            sa.update(t.observation_generation_jobs)
            .where(
                c.id == job.id,
                c.team_id == job.team_id,
                c.project_id == job.project_id,
                c.status == JobStatus.PROCESSING.value,
                c.attempts == job.attempts,
                locked_by,
            )
            .values(locked_at=now)
        )
        return result.rowcount == 1

    async def mark_republished(
        self, job_ids: Sequence[str], *, now: datetime, untouched_since: datetime
    ) -> set[str]:
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return set()
        c = t.observation_generation_jobs.c
        # One guarded UPDATE: of two reconcilers, the second re-evaluates the WHERE after
        # the first's row lock and no longer matches the rows the first stamped.
        result = await self._db.execute(
            sa.update(t.observation_generation_jobs)
            .where(
                c.id.in_(ids),
                c.status == JobStatus.QUEUED.value,
                sa.func.coalesce(c.next_attempt_at, c.updated_at) <= untouched_since,
            )
            .values(next_attempt_at=now)
            .returning(c.id)
        )
        return {str(v) for v in result.scalars()}

    async def count_by_status(self, team_id: str | None) -> dict[JobStatus, int]:
        """Every status is present, zero when no job has it."""
        c = t.observation_generation_jobs.c
        where = [] if team_id is None else [c.team_id == team_id]
        stmt = sa.select(c.status, sa.func.count().label("n")).where(*where).group_by(c.status)
        counts = dict.fromkeys(JobStatus, 0)
        for row in await self._db.all(stmt):
            counts[JobStatus(row["status"])] = int(row["n"])
        return counts

    async def completed_event_ids(
        self, team_id: str, project_id: str, event_ids: Sequence[str]
    ) -> set[str]:
        if not event_ids:
            return set()
        c = t.observation_generation_jobs.c
        stmt = sa.select(c.agent_event_id).where(
            c.team_id == team_id,
            c.project_id == project_id,
            c.source_type == SourceType.AGENT_EVENT.value,
            c.status == JobStatus.COMPLETED.value,
            c.agent_event_id.in_(list(set(event_ids))),
        )
        return {str(v) for v in (await self._db.execute(stmt)).scalars()}


def _pg_advance() -> sa.TextClause:
    """PostgreSQL: :meth:`JobRepo.advance` as ONE statement, every value in a JSON parameter.

    ``upd`` is the guarded compare-and-set (its row lock serialises concurrent writers of
    the job, and a loser's re-evaluated WHERE no longer matches); the job event, the
    observations, their sources and their search passages go in only with it,
    ``audit_always`` in any case. No
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
        + search_sql.pg_passage_ctes(":passages", ":passage_stats", ":passage_terms", won)
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
    )
}
_ADVANCE: dict[str, sa.TextClause] = {}


def _pg_fresh_memories() -> sa.TextClause:
    """PostgreSQL: :meth:`SqlAlchemyStorage.add_fresh_memories` as ONE statement, its own
    transaction (no BEGIN, no COMMIT: one round trip for the whole group).

    ``chk`` tells, for each memory, whether its project is its team's, its session (if
    any) is of that project, and the API key it is written under still works. Only if
    every memory passes are the observations, their sources, their audit rows and their
    search passages (with the statistics, :func:`search_sql.pg_passage_ctes`) written:
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
        "WHERE p.id = c.project_id AND p.team_id = c.team_id) "
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
        + search_sql.pg_passage_ctes(":passages", ":passage_stats", ":passage_terms", won)
        + " SELECT id, ok FROM chk"
    )


_FRESH_MEMORIES: dict[str, sa.TextClause] = {}
_JOB_WITH_EVENT: dict[str, sa.Select[Any]] = {}


def _job_event_values(event: JobEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "generation_job_id": event.generation_job_id,
        "team_id": event.team_id,
        "project_id": event.project_id,
        "event_type": event.event_type.value,
        "status_after": event.status_after.value,
        "attempt": event.attempt,
        "details": event.details,
        "created_at": event.created_at,
        "w_job_id": event.generation_job_id,
    }


class JobEventRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add_many(self, events: Sequence[JobEvent]) -> None:
        """One multi-row insert. Rows whose seq was taken (by a concurrent writer, or by an
        earlier event of the same job in this very statement, which computed the same seq)
        are inserted again, still in input order, so a job's events keep their order."""
        if len(events) <= 1:
            for event in events:
                await self.add(event)
            return
        db = self._db
        pending = [_job_event_values(event) for event in events]
        stalled = 0
        while pending:
            inserted = await db.inserted_ids(
                db.sql.job_event_insert,
                pending,
                bulk=BULK_JOB_EVENTS,
                not_found="generation_job_id must belong to project_id and team_id",
            )
            left = [row for row in pending if row["id"] not in inserted]
            stalled = 0 if len(left) < len(pending) else stalled + 1
            if stalled >= _SEQ_RETRIES:
                raise errors.Conflict("job events: no free sequence number after retries")
            pending = left

    async def add(self, event: JobEvent) -> None:
        params = _job_event_values(event)
        for _ in range(_SEQ_RETRIES):
            result = await self._db.run(
                self._db.sql.job_event_insert,
                params,
                not_found="generation_job_id must belong to project_id and team_id",
            )
            if result.first() is not None:
                return
            # Two writers appending to one job's log picked the same seq; the loser
            # recomputes it (ON CONFLICT waited for the winner, whose row is now visible).
        raise errors.Conflict(f"job event {event.id}: no free sequence number after retries")

    async def list(self, team_id: str, job_id: str) -> Sequence[JobEvent]:
        je = t.observation_generation_job_events
        stmt = (
            self._db.select(je)
            .where(je.c.team_id == team_id, je.c.generation_job_id == job_id)
            .order_by(je.c.created_at, je.c.seq)
        )
        return [_job_event(r) for r in await self._db.all(stmt)]


def _observation_values(observation: Observation) -> dict[str, Any]:
    return {
        "id": observation.id,
        "team_id": observation.team_id,
        "project_id": observation.project_id,
        "server_session_id": observation.server_session_id,
        "kind": str(observation.kind),
        "type": observation.type,
        "title": observation.title,
        "subtitle": observation.subtitle,
        "narrative": observation.narrative,
        "facts": list(observation.facts),
        "concepts": list(observation.concepts),
        "files_read": list(observation.files_read),
        "files_modified": list(observation.files_modified),
        "content": observation.content,
        "generation_key": observation.generation_key,
        "metadata": observation.metadata,
        "created_by_job_id": observation.created_by_job_id,
        "created_at": observation.created_at,
        "updated_at": observation.updated_at,
    }


async def _check_job_scope(db: _Db, job_id: str | None, team: str, project: str) -> None:
    if job_id is None or ("job", job_id, team, project) in db.scoped:
        return
    params = {"id": job_id, "team_id": team, "project_id": project}
    if (await db.run(db.sql.job_in_scope, params)).first() is None:
        raise errors.NotFound("created_by_job_id must belong to project_id and team_id")
    db.scoped.add(("job", job_id, team, project))


class ObservationRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add_many(
        self, observations: Sequence[Observation]
    ) -> Sequence[tuple[Observation, bool]]:
        """One multi-row insert; rows it did not insert (same generation key as a stored
        row, or as an earlier row of ``observations``) are answered with the stored row."""
        if len(observations) <= 1:
            return [await self.add(observation) for observation in observations]
        db = self._db
        await _check_session_scopes(db, observations)
        for job_id, team, project in dict.fromkeys(
            (o.created_by_job_id, o.team_id, o.project_id) for o in observations
        ):
            await _check_job_scope(db, job_id, team, project)
        inserted = await db.inserted_ids(
            db.sql.observation_insert_ignore,
            [_observation_values(o) for o in observations],
            bulk=BULK_OBSERVATIONS,
            not_found="project_id must belong to team_id",
        )
        stored: dict[tuple[str, str, str | None], Observation] = {}
        for (team, project), group in _by_scope(
            [o for o in observations if o.id not in inserted]
        ).items():
            params = {
                "team_id": team,
                "project_id": project,
                "keys": list({o.generation_key for o in group}),
            }
            for row in await db.rows(db.sql.observations_by_keys, params):
                stored[(team, project, row["generation_key"])] = _observation(row)
        results: list[tuple[Observation, bool]] = []
        for observation in observations:
            if observation.id in inserted:
                results.append((observation, True))
                continue
            key = (observation.team_id, observation.project_id, observation.generation_key)
            existing = stored.get(key)
            if existing is None:  # pragma: no cover - the conflict target guarantees a row
                raise errors.Conflict(f"observation {observation.id} conflicts with a stored one")
            results.append((existing, False))
        return results

    async def add(self, observation: Observation) -> tuple[Observation, bool]:
        db = self._db
        team, project = observation.team_id, observation.project_id
        await _check_session_scope(db, observation.server_session_id, team, project)
        await _check_job_scope(db, observation.created_by_job_id, team, project)
        values = _observation_values(observation)
        not_found = "project_id must belong to team_id"
        if observation.generation_key is None:
            await db.run(db.sql.observation_insert, values, not_found=not_found)
            return observation, True
        result = await db.run(db.sql.observation_insert_ignore, values, not_found=not_found)
        if result.first() is not None:
            return observation, True
        params = {
            "team_id": team,
            "project_id": project,
            "generation_key": observation.generation_key,
        }
        row = await db.row(db.sql.observation_by_key, params)
        if row is None:  # pragma: no cover - the conflict target guarantees a row
            raise errors.Conflict(f"observation {observation.id} conflicts with a stored one")
        return _observation(row), False

    async def get(self, team_id: str, project_id: str, observation_id: str) -> Observation | None:
        c = t.observations.c
        stmt = self._db.select(t.observations).where(
            c.id == observation_id, c.team_id == team_id, c.project_id == project_id
        )
        row = await self._db.one_or_none(stmt)
        return _observation(row) if row else None

    async def get_in_team(self, team_id: str, observation_id: str) -> Observation | None:
        c = t.observations.c
        stmt = self._db.select(t.observations).where(c.id == observation_id, c.team_id == team_id)
        row = await self._db.one_or_none(stmt)
        return _observation(row) if row else None

    async def list(
        self, team_id: str, project_id: str, page: Page, *, kind: str | None = None
    ) -> tuple[Sequence[Observation], int]:
        c = t.observations.c
        where = [c.team_id == team_id, c.project_id == project_id]
        if kind is not None:
            where.append(c.kind == kind)
        stmt = self._db.select(t.observations).where(*where).order_by(c.created_at.desc(), c.id)
        rows = await self._db.all(_page(stmt, page))
        return [_observation(r) for r in rows], await self._db.count(t.observations, *where)

    async def list_for_source(
        self, team_id: str, project_id: str, source_type: str, source_id: str
    ) -> Sequence[tuple[Observation, ObservationSource]]:
        o, s = t.observations, t.observation_sources
        source_cols = [c.label(f"source__{c.key}") for c in s.columns]
        stmt = (
            sa.select(*_columns(o), *source_cols)
            .select_from(o.join(s, s.c.observation_id == o.c.id))
            .where(
                o.c.team_id == team_id,
                o.c.project_id == project_id,
                s.c.team_id == team_id,
                s.c.project_id == project_id,
                s.c.source_type == source_type,
                s.c.source_id == source_id,
            )
            .order_by(o.c.created_at, o.c.id)
        )
        out: list[tuple[Observation, ObservationSource]] = []
        for r in await self._db.all(stmt):
            source_row = {c.key: r[f"source__{c.key}"] for c in s.columns}
            out.append((_observation(r), _source(source_row)))  # type: ignore[arg-type]
        return out

    async def list_for_job(
        self, team_id: str, project_id: str, job_id: str
    ) -> Sequence[Observation]:
        c = t.observations.c
        stmt = (
            self._db.select(t.observations)
            .where(c.team_id == team_id, c.project_id == project_id, c.created_by_job_id == job_id)
            .order_by(c.created_at, c.id)
        )
        return [_observation(r) for r in await self._db.all(stmt)]


def _source_values(source: ObservationSource) -> dict[str, Any]:
    return {
        "id": source.id,
        "observation_id": source.observation_id,
        "team_id": source.team_id,
        "project_id": source.project_id,
        "agent_event_id": source.agent_event_id,
        "generation_job_id": source.generation_job_id,
        "source_type": source.source_type.value,
        "source_id": source.source_id,
        "metadata": source.metadata,
        "created_at": source.created_at,
    }


_SOURCE_NOT_FOUND = "observation and agent event must belong to project_id and team_id"


class SourceRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add_many(self, sources: Sequence[ObservationSource]) -> Sequence[ObservationSource]:
        """One multi-row insert; a link that already existed (rare: a link is made once)
        has its metadata merged row by row, in input order, as ``add`` would."""
        if len(sources) <= 1:
            return [await self.add(source) for source in sources]
        values = [_source_values(source) for source in sources]
        inserted = await self._db.inserted_ids(
            self._db.sql.source_insert, values, bulk=BULK_SOURCES, not_found=_SOURCE_NOT_FOUND
        )
        return [
            source if source.id in inserted else await self._merge_into_stored(source, row)
            for source, row in zip(sources, values, strict=True)
        ]

    async def add(self, source: ObservationSource) -> ObservationSource:
        values = _source_values(source)
        result = await self._db.run(self._db.sql.source_insert, values, not_found=_SOURCE_NOT_FOUND)
        if result.first() is not None:
            return source
        return await self._merge_into_stored(source, values)

    async def _merge_into_stored(
        self, source: ObservationSource, values: dict[str, Any]
    ) -> ObservationSource:
        s = t.observation_sources
        keys = ("observation_id", "source_type", "source_id", "team_id", "project_id")
        row = await self._db.row(self._db.sql.source_locked, {k: values[k] for k in keys})
        if row is None:
            raise errors.NotFound("observation must belong to project_id and team_id")
        stored = _source(row)
        merged = _merge(stored.metadata, source.metadata)
        if merged != stored.metadata:
            await self._db.execute(sa.update(s).where(s.c.id == stored.id).values(metadata=merged))
            stored = _source({**row, "metadata": merged})  # type: ignore[arg-type]
        return stored


def _audit_values(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "team_id": entry.team_id,
        "project_id": entry.project_id,
        "actor_id": entry.actor_id,
        "api_key_id": entry.api_key_id,
        "action": entry.action,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "details": entry.details,
        "created_at": entry.created_at,
    }


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


class SearchIndexRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add(self, passages: Sequence[Passage]) -> None:
        if not passages:
            return
        await self._db.begin_writes()
        await search_sql.add_passages(self._db.conn, passages)

    async def search(
        self,
        team_id: str,
        project_id: str,
        query: Query,
        *,
        limit: int,
        audit: AuditEntry | None = None,
        kind: str | None = None,
    ) -> Sequence[SearchHit]:
        values: dict[str, Any] | None = None
        if audit is not None:
            if "\x00" in team_id or "\x00" in project_id:
                raise errors.NotFound("Project not found")  # no stored id holds NUL
            if self._db.conn.dialect.name == dialects.POSTGRES:
                from psycopg.types.json import Jsonb

                values = _audit_values(audit)
                values["audit_id"] = values.pop("id")
                values["details"] = Jsonb(values["details"])
                at = values["created_at"]
                values["created_at"] = at.replace(tzinfo=UTC) if at.tzinfo is None else at
        # Straight on the connection: a PostgreSQL unit of work that has not written yet
        # stays in autocommit (see _Db._before), so the statement, audit row included, is
        # its own transaction, committed when it returns.
        try:
            found, audited = await search_sql.search(
                self._db.conn,
                team_id,
                project_id,
                query,
                max(limit, 0),
                audit=values,
                kind=kind,
            )
        except errors.NotFound as e:
            raise errors.NotFound("Project not found") from e
        hits = [
            SearchHit(
                observation=_observation(row),  # type: ignore[arg-type]
                score=score,
                evidence=tuple(evidence),
            )
            for row, score, evidence in found
        ]
        if audit is not None and audited is None:
            details = {
                **audit.details,
                "resultCount": len(hits),
                "observationIds": [h.observation.id for h in hits],
            }
            try:
                audited = await AuditRepo(self._db).add_read(attrs.evolve(audit, details=details))
            except errors.NotFound as e:
                raise errors.NotFound("Project not found") from e
        if audited is False:
            raise errors.Forbidden("Invalid API key or insufficient scope")
        return hits


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
                if row is None or not _api_key(row).is_usable(datetime.now(UTC)):
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
        where = [c.team_id == team_id]
        if action is not None:
            where.append(c.action == action)
        stmt = self._db.select(t.audit_log).where(*where).order_by(c.created_at.desc(), c.id)
        rows = await self._db.all(_page(stmt, page))
        return [_audit(r) for r in rows], await self._db.count(t.audit_log, *where)


class SqlAlchemyUnitOfWork:
    def __init__(self, conn: AsyncConnection, dialect_name: str, driver: Any | None = None) -> None:
        db = _Db(conn, dialect_name, driver)
        self.teams = TeamRepo(db)
        self.projects = ProjectRepo(db)
        self.api_keys = ApiKeyRepo(db)
        self.sessions = SessionRepo(db)
        self.events = EventRepo(db)
        self.jobs = JobRepo(db)
        self.job_events = JobEventRepo(db)
        self.observations = ObservationRepo(db)
        self.sources = SourceRepo(db)
        self.search = SearchIndexRepo(db)
        self.audit = AuditRepo(db)
        self.vectors = SearchVectorRepo(db)


class _UnitOfWorkContext(AbstractAsyncContextManager[UnitOfWork]):
    """Commit on normal exit, roll back on an exception; the connection always returns."""

    def __init__(self, engine: AsyncEngine, dialect_name: str) -> None:
        self._engine = engine
        self._dialect = dialect_name
        self._conn: AsyncConnection | None = None
        self._driver: Any | None = None

    async def __aenter__(self) -> UnitOfWork:
        try:
            conn = await self._engine.connect()
        except (exc.SQLAlchemyError, OSError) as e:
            raise dialects.translate_error(e) from e
        driver: Any | None = None
        try:
            _transaction = await conn.begin()
            if self._dialect == dialects.POSTGRES:
                # Autocommit until the first write (see _Db._before); psycopg sends no
                # BEGIN (and COMMIT is a no-op) while it is on.
                psycopg_conn: Any = (await conn.get_raw_connection()).driver_connection
                await psycopg_conn.set_autocommit(True)
                driver = psycopg_conn
        except (exc.SQLAlchemyError, OSError) as e:
            await conn.close()
            raise dialects.translate_error(e) from e
        except Exception:
            await conn.close()
            raise
        self._conn, self._driver = conn, driver
        return SqlAlchemyUnitOfWork(conn, self._dialect, driver)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        conn, self._conn = self._conn, None
        driver, self._driver = self._driver, None
        if conn is None:  # pragma: no cover - __aenter__ failed
            return False
        try:
            if exc_type is None:
                try:
                    await conn.commit()
                except (exc.SQLAlchemyError, OSError) as e:
                    raise dialects.translate_error(e) from e
            else:
                await conn.rollback()
        finally:
            if driver is not None and not driver.closed:
                try:  # back to the pool in the mode every other user expects
                    await driver.set_autocommit(False)
                except Exception:  # pragma: no cover - a broken connection
                    await conn.invalidate()
            await conn.close()
        return False


class SqlAlchemyStorage:
    """:class:`~claude_mem_core.ports.storage.Storage` on PostgreSQL or SQLite."""

    def __init__(self, engine: AsyncEngine) -> None:
        dialect = engine.dialect.name
        if dialect not in (dialects.POSTGRES, dialects.SQLITE):
            raise errors.ConfigurationError(f"unsupported database dialect {dialect!r}")
        self._engine = engine
        self._dialect = dialect
        self.name = "postgres" if dialect == dialects.POSTGRES else "sqlite"

    @classmethod
    def from_url(cls, url: str | URL, **engine_options: Any) -> SqlAlchemyStorage:
        """Build the engine with :func:`dialects.create_engine` (pool, PRAGMAs, BEGIN IMMEDIATE)."""
        return cls(dialects.create_engine(url, **engine_options))

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def unit_of_work(self) -> AbstractAsyncContextManager[UnitOfWork]:
        return _UnitOfWorkContext(self._engine, self._dialect)

    async def add_fresh_events(self, items: Sequence[FreshEvent]) -> set[str]:
        if not items:
            return set()
        if self._dialect == dialects.POSTGRES:
            return await self._add_fresh_events_pg(items)
        written: set[str] = set()
        async with self.unit_of_work() as uow:
            db = cast(EventRepo, uow.events)._db
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
                    if key is None or not key.is_usable(datetime.now(UTC)):
                        continue
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

    async def _add_fresh_events_pg(self, items: Sequence[FreshEvent]) -> set[str]:
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
            async with self._engine.connect() as conn:
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

    async def add_fresh_memories(self, items: Sequence[FreshMemory]) -> set[str]:
        if not items:
            return set()
        if self._dialect == dialects.POSTGRES:
            return await self._add_fresh_memories_pg(items)
        written: set[str] = set()
        now = datetime.now(UTC)
        async with self.unit_of_work() as uow:
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

    async def _add_fresh_memories_pg(self, items: Sequence[FreshMemory]) -> set[str]:
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
                **search_sql.pg_passage_params([p for i in remaining for p in i.passages]),
            }
            try:
                async with self._engine.connect() as conn:
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
                raise dialects.translate_error(
                    e, not_found="project_id must belong to team_id"
                ) from e
            passed = [i for i in remaining if verdicts.get(i.observation.id)]
            if len(passed) == len(remaining):
                return {i.observation.id for i in passed}
            # Nothing was written: again without the memories out of scope (a key revoked
            # meanwhile can fail the next try too; each try leaves one out at least).
            remaining = passed
        return set()

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
        await self._engine.dispose()


__all__ = ["SqlAlchemyStorage", "SqlAlchemyUnitOfWork"]


# Row readers, for the migrations that index stored rows.
observation_from_row = _observation
event_from_row = _event


class SearchVectorRepo:
    """Passage embeddings (``search_vectors``), for optional semantic recall."""

    def __init__(self, db: _Db) -> None:
        self._db = db

    @staticmethod
    def _unembedded(
        model: str, team_id: str | None, project_id: str | None
    ) -> list[sa.ColumnElement[bool]]:
        p, v = t.search_passages.c, t.search_vectors.c
        where = [~sa.exists().where(v.passage_id == p.id, v.model == model)]
        if team_id is not None:
            where.append(p.team_id == team_id)
        if project_id is not None:
            where.append(p.project_id == project_id)
        return where

    async def missing(
        self,
        model: str,
        *,
        team_id: str | None = None,
        project_id: str | None = None,
        observation_ids: Sequence[str] | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> Sequence[PassageText]:
        if limit <= 0 or (observation_ids is not None and not observation_ids):
            return []
        p, o = t.search_passages.c, t.observations.c
        where = self._unembedded(model, team_id, project_id)
        where.append(p.id > after)
        if observation_ids is not None:
            where.append(p.observation_id.in_(list(observation_ids)))
        stmt = (
            sa.select(
                p.id,
                p.team_id,
                p.project_id,
                p.observation_id,
                sa.func.coalesce(p.text, o.content).label("text"),
            )
            .select_from(
                t.search_passages.join(
                    t.observations,
                    sa.and_(
                        o.id == p.observation_id,
                        o.team_id == p.team_id,
                        o.project_id == p.project_id,
                    ),
                )
            )
            .where(*where)
            .order_by(p.id)
            .limit(limit)
        )
        return [
            PassageText(
                id=int(r["id"]),
                team_id=r["team_id"],
                project_id=r["project_id"],
                observation_id=r["observation_id"],
                text=r["text"] or "",
            )
            for r in await self._db.all(stmt)
        ]

    async def count_missing(
        self, model: str, *, team_id: str | None = None, project_id: str | None = None
    ) -> int:
        return await self._db.count(
            t.search_passages, *self._unembedded(model, team_id, project_id)
        )

    async def add(self, model: str, vectors: Mapping[int, Sequence[float]]) -> int:
        if not vectors:
            return 0
        packed = {int(pid): pack_vector(vector) for pid, vector in vectors.items()}
        p, v = t.search_passages.c, t.search_vectors.c
        # The scope comes from the passage itself; an id that names none is skipped.
        passages = await self._db.all(
            sa.select(p.id, p.team_id, p.project_id, p.observation_id).where(p.id.in_(list(packed)))
        )
        if not passages:
            return 0
        insert: postgresql.Insert | sqlite.Insert = (
            postgresql.insert(t.search_vectors)
            if self._db.dialect == dialects.POSTGRES
            else sqlite.insert(t.search_vectors)
        )
        stmt = insert.on_conflict_do_nothing(index_elements=["passage_id", "model"]).returning(
            v.passage_id
        )
        rows = [
            {
                "passage_id": r["id"],
                "model": model,
                "team_id": r["team_id"],
                "project_id": r["project_id"],
                "observation_id": r["observation_id"],
                "vector": packed[int(r["id"])],
            }
            for r in passages
        ]
        result = await self._db.run_many(stmt, rows)
        return len(result.scalars().all())

    async def for_observations(
        self, team_id: str, project_id: str, model: str, observation_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Sequence[float]]]:
        if not observation_ids:
            return {}
        v = t.search_vectors.c
        stmt = sa.select(v.observation_id, v.vector).where(
            v.observation_id.in_(list(observation_ids)),
            v.model == model,
            v.team_id == team_id,
            v.project_id == project_id,
        )
        found: dict[str, list[list[float]]] = {}
        for r in await self._db.all(stmt):
            found.setdefault(r["observation_id"], []).append(unpack_vector(bytes(r["vector"])))
        return found
