"""The generation-job aggregate: the job repository (idempotent adds, the guarded
compare-and-set every transition of a job goes through, ``advance``, leases, listings and
the reconciler's reads) and the job's event log (``JobEventRepo``), whose per-job sequence
number is computed again when a concurrent writer took it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import RowMapping

from claude_mem_core import errors
from claude_mem_core.adapters.sqlalchemy import dialects, passage_writes
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.audit import AuditRepo
from claude_mem_core.adapters.sqlalchemy.budgets import gate_reads_of, paused_subquery
from claude_mem_core.adapters.sqlalchemy.bulk import (
    _PG_DIALECT,
    BULK_JOB_EVENTS,
    BULK_JOBS,
    _rows_json,
)
from claude_mem_core.adapters.sqlalchemy.connection import _Db, _page
from claude_mem_core.adapters.sqlalchemy.driver import driver_sql
from claude_mem_core.adapters.sqlalchemy.group_writes import _pg_advance
from claude_mem_core.adapters.sqlalchemy.ledger import LedgerRepo, ledger_values
from claude_mem_core.adapters.sqlalchemy.observations import ObservationRepo, SourceRepo
from claude_mem_core.adapters.sqlalchemy.rows import (
    _audit_values,
    _columns,
    _event,
    _job,
    _job_event,
    _job_event_values,
    _job_mutable_values,
    _job_values,
    _observation_values,
    _source_values,
)
from claude_mem_core.adapters.sqlalchemy.scopes import (
    _by_scope,
    _check_session_scope,
    _check_session_scopes,
)
from claude_mem_core.adapters.sqlalchemy.search_index import SearchIndexRepo
from claude_mem_core.adapters.sqlalchemy.statements import _p
from claude_mem_core.adapters.sqlalchemy.tenant_filter import admitted, of_tenant
from claude_mem_core.domain.models import (
    AgentEvent,
    AuditEntry,
    GenerationJob,
    JobEvent,
    JobStatus,
    Observation,
    ObservationSource,
    SourceType,
)
from claude_mem_core.domain.passages import Passage
from claude_mem_core.domain.tenancy import TenantScope
from claude_mem_core.ports.budgets import GateReads
from claude_mem_core.ports.ledger import LedgerEntry
from claude_mem_core.ports.storage import JobFilter, Page

_SEQ_RETRIES = 5


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
            stmt = _JOB_WITH_EVENT[self._db.dialect] = _job_with_event()
        row = await self._db.row(stmt, {"id": job_id})
        if row is None:
            return None
        return self._seen(row), self._event_of(row)

    @staticmethod
    def _event_of(row: RowMapping) -> AgentEvent | None:
        if row["event__id"] is None:
            return None
        return _event({k[7:]: v for k, v in row.items() if k.startswith("event__")})  # type: ignore[arg-type]

    async def get_for_generation(
        self, job_id: str, *, provider: str, now: datetime
    ) -> tuple[GenerationJob, AgentEvent | None, GateReads] | None:
        stmt = _JOB_FOR_GENERATION.get(self._db.dialect)
        if stmt is None:
            stmt = _JOB_FOR_GENERATION[self._db.dialect] = _job_for_generation()
        params = {"id": job_id, "provider": provider, "now": now}
        row = await self._db.row(stmt, params)
        if row is None:
            return None
        return self._seen(row), self._event_of(row), gate_reads_of(row, "gate__")

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
        ledger: Sequence[LedgerEntry] = (),
    ) -> bool | None:
        db = self._db
        if db.dialect == dialects.POSTGRES:
            if db.lazy_driver is None:
                return None  # the unit of work has written: its transaction must not abort
            return await self._advance_pg(
                expected, new, event, observations, sources, audit, audit_always, passages, ledger
            )
        # SQLite: one writer at a time, so a clash found first stays absent.
        by_scope = _by_scope(observations)
        for (team, project), group in by_scope.items():
            params = {
                "team_id": team,
                "project_id": project,
                "keys": [o.generation_key for o in group],
                "fingerprints": [o.fingerprint for o in group],
            }
            if await db.rows(db.sql.observations_by_keys, params) or await db.rows(
                db.sql.observations_by_fingerprints, params
            ):
                return None
        written = await self.compare_and_set(expected, new, event=event)
        if written:
            await ObservationRepo(db).add_many(observations)
            await SourceRepo(db).add_many(sources)
            await SearchIndexRepo(db).add(passages)
        await AuditRepo(db).add_many([*audit_always, *(audit if written else ())])
        for entry in ledger:
            await LedgerRepo(db).add(entry)
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
        ledger: Sequence[LedgerEntry],
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
        sql = _ADVANCE_SQL.get("pg")
        if sql is None:
            sql = _ADVANCE_SQL["pg"] = str(_pg_advance().compile(dialect=_PG_DIALECT))
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
            "ledger": _rows_json([ledger_values(e) for e in ledger]),
            **passage_writes.pg_passage_params(passages),
        }
        # Autocommit (nothing written yet): the statement is its own transaction, and a
        # failed one leaves nothing behind, neither written nor aborted. Straight to psycopg
        # (driver_sql): a job runs it twice, and SQLAlchemy's execution layer costs about
        # 0.1 ms of CPU per statement.
        try:
            ((updated,),) = await driver_sql(self._db.conn, sql, params)
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
            .where(c.id == job.id, of_tenant(job.team_id, job.project_id, c))
            .values(payload=job.payload, updated_at=job.updated_at)
        )

    @staticmethod
    def _filter(where: JobFilter) -> list[sa.ColumnElement[bool]]:
        c = t.observation_generation_jobs.c
        clauses = [admitted(TenantScope(where.team_id, where.project_id), c)]
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
                of_tenant(job.team_id, job.project_id, c),
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
        where = admitted(TenantScope(team_id), c)
        stmt = sa.select(c.status, sa.func.count().label("n")).where(where).group_by(c.status)
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
            of_tenant(team_id, project_id, c),
            c.source_type == SourceType.AGENT_EVENT.value,
            c.status == JobStatus.COMPLETED.value,
            c.agent_event_id.in_(list(set(event_ids))),
        )
        return {str(v) for v in (await self._db.execute(stmt)).scalars()}


_JOB_WITH_EVENT: dict[str, sa.Select[Any]] = {}
# JobRepo.advance's statement on PostgreSQL, as psycopg takes it (compiled once).
_ADVANCE_SQL: dict[str, str] = {}
_JOB_FOR_GENERATION: dict[str, sa.Select[Any]] = {}


def _job_with_event() -> sa.Select[Any]:
    """A job (``:id``) and its agent event's columns (``event__…``, NULL without one)."""
    j, e = t.observation_generation_jobs, t.agent_events
    return (
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


def _job_for_generation() -> sa.Select[Any]:
    """:func:`_job_with_event` and the provider gate's reads for the job's project
    (``gate__paused`` and the budget's columns ``gate__…``, NULL without one)."""
    j, b = t.observation_generation_jobs, t.project_budgets
    stmt = _job_with_event()
    return stmt.add_columns(
        paused_subquery().label("gate__paused"),
        *(c.label(f"gate__{c.key}") for c in b.columns),
    ).outerjoin(b, sa.and_(b.c.team_id == j.c.team_id, b.c.project_id == j.c.project_id))


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
            .where(admitted(TenantScope(team_id), je.c), je.c.generation_job_id == job_id)
            .order_by(je.c.created_at, je.c.seq)
        )
        return [_job_event(r) for r in await self._db.all(stmt)]
