"""The hot statements of the SQLAlchemy storage, built once per dialect (:class:`_Statements`,
through ``_statements``) with bound parameters, so SQLAlchemy finds their compiled form in
its cache; ``_p`` names a bound parameter."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.rows import _JOB_MUTABLE, _columns
from claude_mem_core.adapters.sqlalchemy.tenant_filter import bound


def _p(name: str) -> sa.BindParameter[Any]:
    return sa.bindparam(name)


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

        # A project marked deleted (being erased) is missing, and so are its rows read by id.
        self.project_get = select(p).where(
            p.c.id == _p("id"), bound(p.c, project=None), p.c.deleted_at.is_(None)
        )
        self.api_key_by_hash = select(k).where(k.c.key_hash == _p("key_hash"))
        self.api_key_by_id = select(k).where(k.c.id == _p("id"))
        self.session_get = select(ss).where(
            ss.c.id == _p("id"), bound(ss.c, project=None), t.live_project(ss)
        )
        self.session_in_scope = exists(
            ss,
            ss.c.id == _p("id"),
            bound(ss.c),
        )
        self.job_in_scope = exists(j, j.c.id == _p("id"), bound(j.c))

        self.event_insert = dialects.insert_ignore(dialect, e, index_elements=["idempotency_key"])
        events_by_keys = select(e).where(
            e.c.idempotency_key.in_(sa.bindparam("keys", expanding=True)),
            bound(e.c),
        )
        self.events_by_keys_locked = dialects.locked(dialect, events_by_keys)
        self.event_set_metadata = (
            sa.update(e).where(e.c.id == _p("w_id")).values(metadata=_p("metadata"))
        )
        self.event_get = select(e).where(
            e.c.id == _p("id"), bound(e.c, project=None), t.live_project(e)
        )
        self.events_many = select(e).where(
            bound(e.c),
            e.c.id.in_(sa.bindparam("ids", expanding=True)),
        )
        self.events_of_session = (
            select(e)
            .where(
                bound(e.c),
                e.c.server_session_id == _p("session_id"),
            )
            .order_by(e.c.occurred_at, e.c.received_at, e.c.id)
            .limit(_p("limit"))
        )

        self.job_insert = dialects.insert_ignore(dialect, j)
        self.job_by_key = select(j).where(
            j.c.idempotency_key == _p("w_key"),
            bound(j.c, team="w_team_id", project="w_project_id"),
        )
        self.jobs_by_keys = select(j).where(
            j.c.idempotency_key.in_(sa.bindparam("keys", expanding=True)),
            bound(j.c),
        )
        self.job_get = select(j).where(
            j.c.id == _p("id"), bound(j.c, project=None), t.live_project(j)
        )
        self.job_get_unscoped = select(j).where(j.c.id == _p("id"))
        # The SET clause comes from the parameters named like columns; the guard's
        # parameters are prefixed so they never collide with them.
        self.job_compare_and_set = sa.update(j).where(
            j.c.id == _p("w_id"),
            bound(j.c, team="w_team_id", project="w_project_id"),
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
        # No conflict target: a generation key (a replay) or a fingerprint (the same fact
        # again, revision 0016) taken by a stored row; the caller reads which.
        self.observation_insert_ignore = dialects.insert_ignore(dialect, o)
        self.observation_by_key = select(o).where(
            bound(o.c),
            o.c.generation_key == _p("generation_key"),
        )
        self.observations_by_keys = select(o).where(
            bound(o.c),
            o.c.generation_key.in_(sa.bindparam("keys", expanding=True)),
        )
        self.observations_by_fingerprints = select(o).where(
            bound(o.c),
            o.c.fingerprint.in_(sa.bindparam("fingerprints", expanding=True)),
        )

        self.source_insert = dialects.insert_ignore(
            dialect, s, index_elements=["observation_id", "source_type", "source_id"]
        )
        locked_source = select(s).where(
            s.c.observation_id == _p("observation_id"),
            s.c.source_type == _p("source_type"),
            s.c.source_id == _p("source_id"),
            bound(s.c),
        )
        self.source_locked = dialects.locked(dialect, locked_source)

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
                bound(j.c, team="w_team_id", project="w_project_id"),
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
