"""The erasure repository: events, sessions and projects removed with everything derived
from them (``ports.storage.ErasureRepository``; the use cases are ``services/erase.py``).

An event or a session goes in the caller's unit of work, all of it or nothing. The search
statistics of the removed passages are taken out in that same transaction, exactly:
``search_stats`` and ``search_terms`` rows of the project are read locked (a concurrent
writer of the project waits, as writers wait for each other), their shards summed, the
removed passages subtracted, and the sums written back as one row per project and term
(shard 0; a term no passage holds any more is deleted). A project is marked deleted in one
short statement pair, then purged a bounded batch of one table at a time
(:meth:`ErasureRepo.purge_project`), so SQLite's single writer is never held long.

Statements here run rarely, so they are built per call (not cached like
:mod:`.statements`); every list of ids is cut into chunks of :data:`CHUNK`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from claude_mem_core.adapters.sqlalchemy import dialects, supersession
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.connection import _Db
from claude_mem_core.adapters.sqlalchemy.passage_writes import change_stamp
from claude_mem_core.adapters.sqlalchemy.tenant_filter import of_tenant
from claude_mem_core.ports.erasure import ErasedRows

# Ids per statement: far below SQLite's and PostgreSQL's limits on bound parameters.
CHUNK = 500

_ACTIVE_JOBS = ("queued", "processing")
T = TypeVar("T")
_SUMMARY_SOURCE = "session_summary"


def _chunks(ids: Sequence[T], size: int = CHUNK) -> Iterator[list[T]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


class ErasureRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    # -- reading ------------------------------------------------------------------------

    async def _ids(self, stmt: sa.Select[Any]) -> list[str]:
        return [str(v) for v in (await self._db.execute(stmt)).scalars()]

    async def _numbers(self, stmt: sa.Select[Any]) -> list[int]:
        return [int(v) for v in (await self._db.execute(stmt)).scalars()]

    async def _events(
        self, team_id: str, project_id: str, event_ids: Sequence[str]
    ) -> list[RowMapping]:
        e = t.agent_events.c
        found: list[RowMapping] = []
        for chunk in _chunks(sorted(set(event_ids))):
            stmt = sa.select(
                e.id, e.server_session_id, e.idempotency_key, e.source_adapter, e.source_event_id
            ).where(of_tenant(team_id, project_id, e), e.id.in_(chunk))
            found.extend(await self._db.all(stmt))
        return found

    async def _event_jobs(
        self, team_id: str, project_id: str, event_ids: Sequence[str]
    ) -> set[str]:
        j = t.observation_generation_jobs.c
        found: set[str] = set()
        for chunk in _chunks(event_ids):
            found.update(
                await self._ids(
                    sa.select(j.id).where(
                        j.agent_event_id.in_(chunk),
                        of_tenant(team_id, project_id, j),
                    )
                )
            )
        return found

    async def _summary_jobs(
        self, team_id: str, project_id: str, session_ids: Sequence[str]
    ) -> set[str]:
        j = t.observation_generation_jobs.c
        found: set[str] = set()
        for chunk in _chunks(session_ids):
            found.update(
                await self._ids(
                    sa.select(j.id).where(
                        of_tenant(team_id, project_id, j),
                        j.source_type == _SUMMARY_SOURCE,
                        j.source_id.in_(chunk),
                    )
                )
            )
        return found

    async def _derived(
        self,
        team_id: str,
        project_id: str,
        *,
        event_ids: Sequence[str],
        session_ids: Sequence[str],
        job_ids: Sequence[str],
    ) -> set[str]:
        """The observations derived from these events (a source link, or made by one of
        ``job_ids``: their jobs and their sessions' summary jobs) and the summaries of
        these sessions (linked to the session as their source)."""
        s, o = t.observation_sources.c, t.observations.c
        found: set[str] = set()
        for chunk in _chunks(event_ids):
            found.update(
                await self._ids(
                    sa.select(s.observation_id).where(
                        s.agent_event_id.in_(chunk),
                        of_tenant(team_id, project_id, s),
                    )
                )
            )
        for chunk in _chunks(session_ids):
            found.update(
                await self._ids(
                    sa.select(s.observation_id).where(
                        s.source_type == _SUMMARY_SOURCE,
                        s.source_id.in_(chunk),
                        of_tenant(team_id, project_id, s),
                    )
                )
            )
        for chunk in _chunks(job_ids):
            found.update(
                await self._ids(
                    sa.select(o.id).where(
                        o.created_by_job_id.in_(chunk),
                        of_tenant(team_id, project_id, o),
                    )
                )
            )
        return found

    # -- removing -----------------------------------------------------------------------

    async def _delete(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
        result = await self._db.execute(sa.delete(table).where(*where))
        return max(int(result.rowcount or 0), 0)

    async def _remove_observations(
        self, team_id: str, project_id: str, observation_ids: Sequence[str]
    ) -> ErasedRows:
        """Remove observations with their sources, passages and vectors, and take the
        passages out of the project's statistics."""
        p, v, s, o = (
            t.search_passages.c,
            t.search_vectors.c,
            t.observation_sources.c,
            t.observations.c,
        )
        passages = vectors = sources = observations = 0
        removed: list[RowMapping] = []
        for chunk in _chunks(sorted(observation_ids)):
            rows = await self._db.all(
                sa.select(p.id, p.length, p.tf).where(
                    p.observation_id.in_(chunk), of_tenant(team_id, project_id, p)
                )
            )
            removed.extend(rows)
            for ids in _chunks([r["id"] for r in rows]):
                vectors += await self._delete(t.search_vectors, v.passage_id.in_(ids))
                passages += await self._delete(t.search_passages, p.id.in_(ids))
            sources += await self._delete(
                t.observation_sources,
                s.observation_id.in_(chunk),
                of_tenant(team_id, project_id, s),
            )
            observations += await self._delete(
                t.observations, o.id.in_(chunk), of_tenant(team_id, project_id, o)
            )
        await self._subtract_statistics(team_id, project_id, removed)
        return ErasedRows(
            observations=observations, sources=sources, passages=passages, vectors=vectors
        )

    async def _subtract_statistics(
        self, team_id: str, project_id: str, passages: Sequence[RowMapping]
    ) -> None:
        """Take ``passages`` (rows with ``length`` and ``tf``) out of ``search_stats`` and
        ``search_terms`` (see the module docstring). Locks are taken as writers take them:
        the project's statistics first, then its terms in ascending order."""
        if not passages:
            return
        db = self._db
        st, tt = t.search_stats, t.search_terms
        scope_st = (of_tenant(team_id, project_id, st.c),)
        rows = await db.all(db.locked(sa.select(st).where(*scope_st).order_by(st.c.shard)))
        if rows:
            count = sum(int(r["passages"]) for r in rows) - len(passages)
            tokens = sum(int(r["tokens"]) for r in rows) - sum(int(p["length"]) for p in passages)
            await self._delete(st, *scope_st)
            if count > 0:
                await db.execute(
                    sa.insert(st).values(
                        team_id=team_id,
                        project_id=project_id,
                        shard=0,
                        passages=count,
                        tokens=max(tokens, 0),
                        min_length=min(int(r["min_length"]) for r in rows),
                        max_passages=max(int(r["max_passages"]) for r in rows),
                        changes=change_stamp(db.dialect),
                    )
                )
        df = Counter(term for p in passages for term in (p["tf"] or {}))
        for chunk in _chunks(sorted(df)):
            scope_tt = (of_tenant(team_id, project_id, tt.c),)
            stored = await db.all(
                db.locked(
                    sa.select(tt.c.term, tt.c.df, tt.c.max_tf)
                    .where(*scope_tt, tt.c.term.in_(chunk))
                    .order_by(tt.c.term, tt.c.shard)
                )
            )
            totals: dict[str, list[float]] = {}
            for r in stored:
                entry = totals.setdefault(r["term"], [0, 0.0])
                entry[0] += int(r["df"])
                entry[1] = max(entry[1], float(r["max_tf"]))
            await self._delete(tt, *scope_tt, tt.c.term.in_(chunk))
            kept = [
                {
                    "team_id": team_id,
                    "project_id": project_id,
                    "term": term,
                    "shard": 0,
                    "df": int(total) - df[term],
                    "max_tf": most,
                }
                for term, (total, most) in sorted(totals.items())
                if int(total) - df[term] > 0
            ]
            if kept:
                await db.execute(sa.insert(tt).values(kept))

    async def _remove_jobs(self, job_ids: Sequence[str]) -> ErasedRows:
        je, j = t.observation_generation_job_events, t.observation_generation_jobs
        job_events = jobs = 0
        for chunk in _chunks(sorted(job_ids)):
            job_events += await self._delete(je, je.c.generation_job_id.in_(chunk))
            jobs += await self._delete(j, j.c.id.in_(chunk))
        return ErasedRows(jobs=jobs, job_events=job_events)

    async def _remember(
        self, team_id: str, project_id: str, events: Sequence[RowMapping], at: datetime
    ) -> None:
        """Record the keys of the erased events that came with a source event id."""
        rows = [
            {
                "team_id": team_id,
                "project_id": project_id,
                "idempotency_key": e["idempotency_key"],
                "event_id": e["id"],
                "source_adapter": e["source_adapter"],
                "source_event_id": e["source_event_id"],
                "erased_at": at,
            }
            for e in events
            if e["source_event_id"] is not None
        ]
        if not rows:
            return
        stmt = dialects.insert(self._db.dialect, t.erased_events).on_conflict_do_nothing()
        await self._db.run_many(stmt, rows)

    async def _erase(
        self,
        team_id: str,
        project_id: str,
        events: Sequence[RowMapping],
        *,
        at: datetime,
        session_id: str | None = None,
    ) -> ErasedRows:
        event_ids = [str(e["id"]) for e in events]
        sessions = {str(e["server_session_id"]) for e in events if e["server_session_id"]}
        if session_id is not None:
            sessions.add(session_id)
        session_ids = sorted(sessions)
        # The summary jobs' observations are summaries of these sessions: derived too.
        derived_jobs = await self._event_jobs(team_id, project_id, event_ids)
        summary_jobs = await self._summary_jobs(team_id, project_id, session_ids)
        observations = await self._derived(
            team_id,
            project_id,
            event_ids=event_ids,
            session_ids=session_ids,
            job_ids=sorted(derived_jobs | summary_jobs),
        )
        if session_id is not None:
            o = t.observations.c
            observations.update(
                await self._ids(
                    sa.select(o.id).where(
                        of_tenant(team_id, project_id, o),
                        o.server_session_id == session_id,
                    )
                )
            )
        # Supersession (adapters/sqlalchemy/supersession.py): subjects locked before writing,
        await supersession.lock_subjects_of(self._db, team_id, project_id, sorted(observations))
        removed = await self._remove_observations(team_id, project_id, sorted(observations))
        # A session's own jobs (its summary job) go with the session, not with an event.
        removed += await self._remove_jobs(
            sorted(derived_jobs | (summary_jobs if session_id is not None else set()))
        )
        await self._remember(team_id, project_id, events, at)
        e = t.agent_events.c
        erased_events = 0
        for chunk in _chunks(sorted(event_ids)):
            erased_events += await self._delete(
                t.agent_events, e.id.in_(chunk), of_tenant(team_id, project_id, e)
            )
        # and what the removed observations superseded is current again.
        await supersession.restore(self._db, team_id, project_id, sorted(observations), at=at)
        # Rows this unit of work checked may be gone now: check them again if named.
        self._db.scoped.clear()
        return removed + ErasedRows(events=erased_events)

    # -- the port -----------------------------------------------------------------------

    async def erase_events(
        self, team_id: str, project_id: str, event_ids: Sequence[str], *, at: datetime
    ) -> ErasedRows:
        if not event_ids:
            return ErasedRows()
        await self._db.begin_writes()
        events = await self._events(team_id, project_id, event_ids)
        if not events:
            return ErasedRows()
        return await self._erase(team_id, project_id, events, at=at)

    async def erase_session(
        self, team_id: str, project_id: str, session_id: str, *, at: datetime
    ) -> ErasedRows:
        await self._db.begin_writes()
        ss, e = t.server_sessions.c, t.agent_events.c
        scope = (ss.id == session_id, of_tenant(team_id, project_id, ss))
        if not await self._db.exists(t.server_sessions, *scope):
            return ErasedRows()
        event_ids = await self._ids(
            sa.select(e.id).where(
                of_tenant(team_id, project_id, e), e.server_session_id == session_id
            )
        )
        events = await self._events(team_id, project_id, event_ids)
        removed = await self._erase(team_id, project_id, events, at=at, session_id=session_id)
        return removed + ErasedRows(sessions=await self._delete(t.server_sessions, *scope))

    async def erased_keys(
        self, team_id: str, project_id: str, idempotency_keys: Sequence[str]
    ) -> set[str]:
        x = t.erased_events.c
        found: set[str] = set()
        for chunk in _chunks(sorted(set(idempotency_keys))):
            found.update(
                await self._ids(
                    sa.select(x.idempotency_key).where(
                        of_tenant(team_id, project_id, x),
                        x.idempotency_key.in_(chunk),
                    )
                )
            )
        return found

    async def mark_project_deleted(self, team_id: str, project_id: str, *, at: datetime) -> bool:
        p, j = t.projects.c, t.observation_generation_jobs.c
        await self._db.begin_writes()
        marked = await self._db.execute(
            sa.update(t.projects)
            .where(p.id == project_id, p.team_id == team_id, p.deleted_at.is_(None))
            .values(deleted_at=at, updated_at=at)
        )
        if not marked.rowcount:
            return False
        # Its search statistics go now (a few rows): its passages score nothing from here
        # on, so a search finds nothing while they are purged.
        st = t.search_stats.c
        await self._delete(t.search_stats, of_tenant(team_id, project_id, st))
        # Cancelled as the state machine would (domain/jobs.py: queued or processing to
        # cancelled), in one statement: a worker holding one loses its compare-and-set.
        await self._db.execute(
            sa.update(t.observation_generation_jobs)
            .where(of_tenant(team_id, project_id, j), j.status.in_(_ACTIVE_JOBS))
            .values(
                status="cancelled",
                cancelled_at=at,
                locked_at=None,
                locked_by=None,
                next_attempt_at=None,
                updated_at=at,
            )
        )
        return True

    async def project_deleted_at(self, team_id: str, project_id: str) -> datetime | None:
        p = t.projects.c
        row = await self._db.one_or_none(
            sa.select(p.deleted_at).where(p.id == project_id, p.team_id == team_id)
        )
        return None if row is None else row["deleted_at"]

    async def retained_projects(self) -> Sequence[tuple[str, str, int]]:
        p = t.projects.c
        rows = await self._db.all(
            sa.select(p.team_id, p.id, p.retain_days)
            .where(p.retain_days.is_not(None), p.deleted_at.is_(None))
            .order_by(p.id)
        )
        return [(str(r["team_id"]), str(r["id"]), int(r["retain_days"])) for r in rows]

    async def expired_sessions(
        self, team_id: str, project_id: str, *, before: datetime, limit: int
    ) -> Sequence[str]:
        s = t.server_sessions.c
        e = t.agent_events.c
        recent = (
            sa.select(sa.literal(1))
            .select_from(t.agent_events)
            .where(
                of_tenant(team_id, project_id, e),
                e.server_session_id == s.id,
                e.created_at >= before,
            )
        )
        rows = await self._db.all(
            sa.select(s.id)
            .where(
                of_tenant(team_id, project_id, s),
                s.updated_at < before,
                ~recent.exists(),
            )
            .order_by(s.updated_at, s.id)
            .limit(limit)
        )
        return [str(r["id"]) for r in rows]

    async def expired_loose_events(
        self, team_id: str, project_id: str, *, before: datetime, limit: int
    ) -> Sequence[str]:
        e = t.agent_events.c
        rows = await self._db.all(
            sa.select(e.id)
            .where(
                of_tenant(team_id, project_id, e),
                e.server_session_id.is_(None),
                e.created_at < before,
            )
            .order_by(e.created_at, e.id)
            .limit(limit)
        )
        return [str(r["id"]) for r in rows]

    async def projects_to_purge(self, *, limit: int = 100) -> Sequence[tuple[str, str]]:
        p = t.projects.c
        rows = await self._db.all(
            sa.select(p.team_id, p.id)
            .where(p.deleted_at.is_not(None), p.purged_at.is_(None))
            .order_by(p.deleted_at, p.id)
            .limit(limit)
        )
        return [(str(r["team_id"]), str(r["id"])) for r in rows]

    async def purge_project(
        self, team_id: str, project_id: str, *, limit: int, at: datetime
    ) -> ErasedRows:
        p = t.projects.c
        await self._db.begin_writes()
        row = await self._db.one_or_none(
            sa.select(p.deleted_at, p.purged_at).where(p.id == project_id, p.team_id == team_id)
        )
        if row is None or row["deleted_at"] is None:
            return ErasedRows()
        limit = max(limit, 1)
        # Statistics a write racing the mark may have counted again go at every batch (a
        # few rows), so the project's search stays empty while its passages are purged.
        st = t.search_stats.c
        stats = await self._delete(t.search_stats, of_tenant(team_id, project_id, st))
        # Reservations of its calls in flight (numbers; the project's budget is moot now).
        br = t.budget_reservations.c
        await self._delete(t.budget_reservations, of_tenant(team_id, project_id, br))
        done = await self._purge_step(team_id, project_id, limit)
        if stats:
            done += ErasedRows(statistics=stats)
        if done.total == 0 and row["purged_at"] is None:
            await self._db.execute(
                sa.update(t.projects)
                .where(p.id == project_id, p.team_id == team_id)
                .values(purged_at=at, updated_at=at)
            )
        return done

    async def _purge_step(self, team_id: str, project_id: str, limit: int) -> ErasedRows:
        """One bounded batch: the first table (in dependency order) with rows left."""
        o, s, sp, v = (
            t.observations,
            t.observation_sources,
            t.search_passages,
            t.search_vectors,
        )
        j, je, e, ss = (
            t.observation_generation_jobs,
            t.observation_generation_job_events,
            t.agent_events,
            t.server_sessions,
        )

        def first(table: sa.Table, *where: sa.ColumnElement[bool]) -> sa.Select[Any]:
            return (
                sa.select(table.c.id)
                .where(of_tenant(team_id, project_id, table.c), *where)
                .order_by(table.c.id)
                .limit(limit)
            )

        # Observations a batch at a time: their passages (with vectors), their sources,
        # then the observations themselves (each step at most ``limit`` rows).
        observations = await self._ids(first(o))
        if observations:
            passages = await self._numbers(
                sa.select(sp.c.id).where(sp.c.observation_id.in_(observations)).limit(limit)
            )
            if passages:
                vectors = await self._delete(v, v.c.passage_id.in_(passages))
                count = await self._delete(sp, sp.c.id.in_(passages))
                return ErasedRows(passages=count, vectors=vectors)
            links = await self._ids(
                sa.select(s.c.id).where(s.c.observation_id.in_(observations)).limit(limit)
            )
            if links:
                return ErasedRows(sources=await self._delete(s, s.c.id.in_(links)))
            return ErasedRows(observations=await self._delete(o, o.c.id.in_(observations)))
        jobs = await self._ids(first(j))
        if jobs:
            logged = await self._ids(
                sa.select(je.c.id).where(je.c.generation_job_id.in_(jobs)).limit(limit)
            )
            if logged:
                return ErasedRows(job_events=await self._delete(je, je.c.id.in_(logged)))
            return ErasedRows(jobs=await self._delete(j, j.c.id.in_(jobs)))
        events = await self._ids(first(e))
        if events:
            return ErasedRows(events=await self._delete(e, e.c.id.in_(events)))
        sessions = await self._ids(first(ss))
        if sessions:
            return ErasedRows(sessions=await self._delete(ss, ss.c.id.in_(sessions)))
        return await self._purge_index(team_id, project_id, limit)

    async def _purge_index(self, team_id: str, project_id: str, limit: int) -> ErasedRows:
        """What is left once the rows are gone (a passage always belongs to an
        observation, so none is): statistics, then remembered keys. All zero when the
        project holds nothing any more."""
        st, tt, x = t.search_stats, t.search_terms, t.erased_events
        stats = await self._delete(st, of_tenant(team_id, project_id, st.c))
        terms = await self._ids(
            sa.select(tt.c.term)
            .where(of_tenant(team_id, project_id, tt.c))
            .order_by(tt.c.term)
            .limit(limit)
        )
        if terms:
            stats += await self._delete(
                tt, of_tenant(team_id, project_id, tt.c), tt.c.term.in_(terms)
            )
        if stats:
            return ErasedRows(statistics=stats)
        keys = await self._ids(
            sa.select(x.c.idempotency_key).where(of_tenant(team_id, project_id, x.c)).limit(limit)
        )
        if keys:
            removed = await self._delete(
                x,
                of_tenant(team_id, project_id, x.c),
                x.c.idempotency_key.in_(keys),
            )
            return ErasedRows(tombstones=removed)
        return ErasedRows()
