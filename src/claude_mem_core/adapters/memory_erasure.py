"""Erasure and retention in the in-memory storage: erasing events and sessions, marking
projects deleted and purging them a step at a time, and the tombstones of erased events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from claude_mem_core.adapters import memory_supersession as supersession
from claude_mem_core.adapters.memory_state import Repo, Tx, in_scope, is_deleted
from claude_mem_core.domain.models import AgentEvent, JobStatus, ObservationSourceType, SourceType
from claude_mem_core.ports.storage import ErasedRows


def erased_key(tx: Tx, event: AgentEvent) -> bool:
    key = f"{event.team_id}\x00{event.project_id}\x00{event.idempotency_key}"
    return key in tx.read("erased_events")


class MemoryErasure(Repo):
    """Erase as the SQL adapter does (see ``ports.storage.ErasureRepository``); the
    statistics are counted at query time here, so removing passages is enough."""

    def _mine(self, row: Any, team_id: str, project_id: str) -> bool:
        return in_scope(row, team_id, project_id)

    def _remove(self, table: str, keys: Any) -> int:
        keys = [k for k in keys if k in self._tx.read(table)]
        if keys:
            rows = self._tx.write(table)
            for key in keys:
                del rows[key]
        return len(keys)

    def _remove_observations(self, observation_ids: set[str]) -> ErasedRows:
        passages = [
            k for k, p in self._tx.read("passages").items() if p.observation_id in observation_ids
        ]
        ids = {str(int(k) + 1) for k in passages}
        vectors = [k for k in self._tx.read("vectors") if k.split(":", 1)[0] in ids]
        sources = [
            k for k, s in self._tx.read("sources").items() if s.observation_id in observation_ids
        ]
        return ErasedRows(
            vectors=self._remove("vectors", vectors),
            passages=self._remove("passages", passages),
            sources=self._remove("sources", sources),
            observations=self._remove("observations", observation_ids),
        )

    def _remove_jobs(self, job_ids: set[str]) -> ErasedRows:
        logged = [
            k for k, e in self._tx.read("job_events").items() if e.generation_job_id in job_ids
        ]
        # As the SQL schema's foreign key: a link keeps its observation, not the job.
        for key, link in self._tx.read("sources").items():
            if link.generation_job_id in job_ids:
                self._tx.write("sources")[key] = attrs.evolve(link, generation_job_id=None)
        return ErasedRows(
            job_events=self._remove("job_events", logged), jobs=self._remove("jobs", job_ids)
        )

    def _erase(
        self,
        team_id: str,
        project_id: str,
        events: list[AgentEvent],
        *,
        at: datetime,
        session_id: str | None = None,
    ) -> ErasedRows:
        event_ids = {e.id for e in events}
        sessions = {e.server_session_id for e in events if e.server_session_id}
        if session_id is not None:
            sessions.add(session_id)
        jobs = [j for j in self._tx.read("jobs").values() if self._mine(j, team_id, project_id)]
        derived_jobs = {j.id for j in jobs if j.agent_event_id in event_ids}
        summary_jobs = {
            j.id
            for j in jobs
            if j.source_type is SourceType.SESSION_SUMMARY and j.source_id in sessions
        }
        observations = {
            s.observation_id
            for s in self._tx.read("sources").values()
            if self._mine(s, team_id, project_id)
            and (
                s.agent_event_id in event_ids
                or (
                    s.source_type is ObservationSourceType.SESSION_SUMMARY
                    and s.source_id in sessions
                )
            )
        }
        for o in self._tx.read("observations").values():
            if not self._mine(o, team_id, project_id):
                continue
            if o.created_by_job_id in derived_jobs | summary_jobs or (
                session_id is not None and o.server_session_id == session_id
            ):
                observations.add(o.id)
        removed = self._remove_observations(observations)
        supersession.restore(self._tx, team_id, project_id, observations, at=at)
        removed += self._remove_jobs(derived_jobs | (summary_jobs if session_id else set()))
        for event in events:
            if event.source_event_id is not None:
                key = f"{team_id}\x00{project_id}\x00{event.idempotency_key}"
                self._tx.write("erased_events")[key] = {
                    "event_id": event.id,
                    "source_adapter": event.source_adapter,
                    "source_event_id": event.source_event_id,
                    "erased_at": at,
                }
        return removed + ErasedRows(events=self._remove("events", event_ids))

    async def erase_events(
        self, team_id: str, project_id: str, event_ids: Sequence[str], *, at: datetime
    ) -> ErasedRows:
        table = self._tx.read("events")
        events = [
            table[i]
            for i in dict.fromkeys(event_ids)
            if i in table and self._mine(table[i], team_id, project_id)
        ]
        if not events:
            return ErasedRows()
        return self._erase(team_id, project_id, events, at=at)

    async def erase_session(
        self, team_id: str, project_id: str, session_id: str, *, at: datetime
    ) -> ErasedRows:
        session = self._tx.read("sessions").get(session_id)
        if session is None or not self._mine(session, team_id, project_id):
            return ErasedRows()
        events = [
            e
            for e in self._tx.read("events").values()
            if self._mine(e, team_id, project_id) and e.server_session_id == session_id
        ]
        removed = self._erase(team_id, project_id, events, at=at, session_id=session_id)
        return removed + ErasedRows(sessions=self._remove("sessions", [session_id]))

    async def erased_keys(
        self, team_id: str, project_id: str, idempotency_keys: Sequence[str]
    ) -> set[str]:
        table = self._tx.read("erased_events")
        return {k for k in idempotency_keys if f"{team_id}\x00{project_id}\x00{k}" in table}

    async def mark_project_deleted(self, team_id: str, project_id: str, *, at: datetime) -> bool:
        project = self._tx.read("projects").get(project_id)
        if project is None or project.team_id != team_id or is_deleted(self._tx, project_id):
            return False
        self._tx.write("deleted_projects")[project_id] = (at, None)
        self._tx.write("projects")[project_id] = attrs.evolve(project, updated_at=at)
        for job in list(self._tx.read("jobs").values()):
            if self._mine(job, team_id, project_id) and job.status in (
                JobStatus.QUEUED,
                JobStatus.PROCESSING,
            ):
                self._tx.write("jobs")[job.id] = attrs.evolve(
                    job,
                    status=JobStatus.CANCELLED,
                    cancelled_at=at,
                    locked_at=None,
                    locked_by=None,
                    next_attempt_at=None,
                    updated_at=at,
                )
        return True

    async def project_deleted_at(self, team_id: str, project_id: str) -> datetime | None:
        project = self._tx.read("projects").get(project_id)
        marked = self._tx.read("deleted_projects").get(project_id)
        if project is None or project.team_id != team_id or marked is None:
            return None
        deleted_at: datetime = marked[0]
        return deleted_at

    async def retained_projects(self) -> Sequence[tuple[str, str, int]]:
        return [
            (p.team_id, p.id, p.retain_days)
            for p in sorted(self._tx.read("projects").values(), key=lambda p: p.id)
            if p.retain_days is not None and not is_deleted(self._tx, p.id)
        ]

    async def expired_sessions(
        self, team_id: str, project_id: str, *, before: datetime, limit: int
    ) -> Sequence[str]:
        active = {
            e.server_session_id
            for e in self._tx.read("events").values()
            if self._mine(e, team_id, project_id) and e.created_at >= before
        }
        idle = sorted(
            (s.updated_at, s.id)
            for s in self._tx.read("sessions").values()
            if self._mine(s, team_id, project_id) and s.updated_at < before and s.id not in active
        )
        return [session_id for _, session_id in idle[:limit]]

    async def expired_loose_events(
        self, team_id: str, project_id: str, *, before: datetime, limit: int
    ) -> Sequence[str]:
        old = sorted(
            (e.created_at, e.id)
            for e in self._tx.read("events").values()
            if self._mine(e, team_id, project_id)
            and e.server_session_id is None
            and e.created_at < before
        )
        return [event_id for _, event_id in old[:limit]]

    async def projects_to_purge(self, *, limit: int = 100) -> Sequence[tuple[str, str]]:
        projects = self._tx.read("projects")
        pending = sorted(
            (deleted_at, pid)
            for pid, (deleted_at, purged_at) in self._tx.read("deleted_projects").items()
            if purged_at is None
        )
        return [(projects[pid].team_id, pid) for _, pid in pending[:limit]]

    async def purge_project(
        self, team_id: str, project_id: str, *, limit: int, at: datetime
    ) -> ErasedRows:
        marked = self._tx.read("deleted_projects").get(project_id)
        project = self._tx.read("projects").get(project_id)
        if marked is None or project is None or project.team_id != team_id:
            return ErasedRows()
        limit = max(limit, 1)
        # Reservations of its calls in flight (numbers; the project's budget is moot now).
        held = [
            k
            for k, r in self._tx.read("budget_reservations").items()
            if in_scope(r, team_id, project_id)
        ]
        self._remove("budget_reservations", held)
        done = self._purge_step(team_id, project_id, limit)
        if done.total == 0 and marked[1] is None:
            self._tx.write("deleted_projects")[project_id] = (marked[0], at)
        return done

    def _first(self, table: str, team_id: str, project_id: str, limit: int) -> list[str]:
        rows = self._tx.read(table).values()
        return sorted(r.id for r in rows if self._mine(r, team_id, project_id))[:limit]

    def _purge_step(self, team_id: str, project_id: str, limit: int) -> ErasedRows:
        observations = set(self._first("observations", team_id, project_id, limit))
        if observations:
            passages = [
                k for k, p in self._tx.read("passages").items() if p.observation_id in observations
            ][:limit]
            if passages:
                ids = {str(int(k) + 1) for k in passages}
                vectors = [k for k in self._tx.read("vectors") if k.split(":", 1)[0] in ids]
                return ErasedRows(
                    vectors=self._remove("vectors", vectors),
                    passages=self._remove("passages", passages),
                )
            links = sorted(
                k for k, s in self._tx.read("sources").items() if s.observation_id in observations
            )[:limit]
            if links:
                return ErasedRows(sources=self._remove("sources", links))
            return ErasedRows(observations=self._remove("observations", observations))
        jobs = set(self._first("jobs", team_id, project_id, limit))
        if jobs:
            logged = sorted(
                k for k, e in self._tx.read("job_events").items() if e.generation_job_id in jobs
            )[:limit]
            if logged:
                return ErasedRows(job_events=self._remove("job_events", logged))
            return ErasedRows(jobs=self._remove("jobs", jobs))
        for table, field in (("events", "events"), ("sessions", "sessions")):
            found = self._first(table, team_id, project_id, limit)
            if found:
                return ErasedRows(**{field: self._remove(table, found)})
        prefix = f"{team_id}\x00{project_id}\x00"
        keys = sorted(k for k in self._tx.read("erased_events") if k.startswith(prefix))[:limit]
        return ErasedRows(tombstones=self._remove("erased_events", keys))
