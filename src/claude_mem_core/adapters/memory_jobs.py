"""Generation jobs and their event log in the in-memory storage: queueing, leases, status
changes, and the one-step write of a finished job's memories."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from claude_mem_core.adapters.memory_budgets import MemoryBudgets
from claude_mem_core.adapters.memory_events import MemoryEvents
from claude_mem_core.adapters.memory_ledger import MemoryLedger
from claude_mem_core.adapters.memory_observations import (
    MemoryAudit,
    MemoryObservations,
    MemorySources,
)
from claude_mem_core.adapters.memory_search import MemorySearchIndex
from claude_mem_core.adapters.memory_state import (
    Repo,
    in_scope,
    is_deleted,
    paged,
    require_project,
    require_session,
)
from claude_mem_core.domain.models import (
    AgentEvent,
    AuditEntry,
    GenerationJob,
    JobEvent,
    JobStatus,
    Observation,
    ObservationSource,
)
from claude_mem_core.domain.passages import Passage
from claude_mem_core.errors import InvalidInput, NotFound
from claude_mem_core.ports.budgets import GateReads
from claude_mem_core.ports.ledger import LedgerEntry
from claude_mem_core.ports.storage import JobFilter, Page


def _job_filter(job: GenerationJob, where: JobFilter) -> bool:
    return (
        in_scope(job, where.team_id, where.project_id)
        and (where.status is None or job.status is where.status)
        and (where.source_type is None or job.source_type is where.source_type)
        and (where.since is None or job.created_at >= where.since)
    )


class MemoryJobs(Repo):
    async def add(self, job: GenerationJob) -> tuple[GenerationJob, bool]:
        require_project(self._tx, job.team_id, job.project_id)
        if job.agent_event_id is not None:
            event = self._tx.read("events").get(job.agent_event_id)
            if event is None or event.team_id != job.team_id or event.project_id != job.project_id:
                raise NotFound("Event not found")
        require_session(self._tx, job.team_id, job.project_id, job.server_session_id)
        for existing in self._tx.read("jobs").values():
            if existing.idempotency_key == job.idempotency_key or (
                job.transport_id is not None and existing.transport_id == job.transport_id
            ):
                return existing, False
        self._tx.write("jobs")[job.id] = job
        return job, True

    async def add_many(self, jobs: Sequence[GenerationJob]) -> Sequence[tuple[GenerationJob, bool]]:
        return [await self.add(job) for job in jobs]

    async def get(self, team_id: str, job_id: str) -> GenerationJob | None:
        job: GenerationJob | None = self._tx.read("jobs").get(job_id)
        if job is None or not in_scope(job, team_id):
            return None
        return None if is_deleted(self._tx, job.project_id) else job

    async def get_unscoped(self, job_id: str) -> GenerationJob | None:
        job: GenerationJob | None = self._tx.read("jobs").get(job_id)
        return job

    async def get_unscoped_with_event(
        self, job_id: str
    ) -> tuple[GenerationJob, AgentEvent | None] | None:
        job = await self.get_unscoped(job_id)
        if job is None:
            return None
        found = (
            await MemoryEvents(self._tx).get_many(job.team_id, job.project_id, [job.agent_event_id])
            if job.agent_event_id is not None
            else []
        )
        return job, found[0] if found else None

    async def get_for_generation(
        self, job_id: str, *, provider: str, now: datetime
    ) -> tuple[GenerationJob, AgentEvent | None, GateReads] | None:
        found = await self.get_unscoped_with_event(job_id)
        if found is None:
            return None
        job, event = found
        reads = await MemoryBudgets(self._tx).gate_reads(
            job.team_id, job.project_id, provider, now=now
        )
        return job, event, reads

    async def compare_and_set(
        self, expected: GenerationJob, new: GenerationJob, *, event: JobEvent | None = None
    ) -> bool:
        if event is not None and (event.generation_job_id, event.team_id, event.project_id) != (
            new.id,
            new.team_id,
            new.project_id,
        ):
            raise InvalidInput("compare_and_set logs an event of the same job only")
        current: GenerationJob | None = self._tx.read("jobs").get(expected.id)
        if (
            current is None
            or current.team_id != expected.team_id
            or current.project_id != expected.project_id
            or current.status is not expected.status
            or current.attempts != expected.attempts
            or current.locked_by != expected.locked_by
        ):
            return False
        # Identity and provenance columns never change through a status write.
        self._tx.write("jobs")[expected.id] = attrs.evolve(
            new,
            team_id=current.team_id,
            project_id=current.project_id,
            idempotency_key=current.idempotency_key,
            created_at=current.created_at,
        )
        if event is not None:
            await MemoryJobEvents(self._tx).add(event)
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
        if ledger and self._tx.read("projects").get(new.project_id) is None:
            return None  # the ledger's row would be refused: the caller writes it apart
        keys = {(o.team_id, o.project_id, o.generation_key) for o in observations}
        prints = {(o.team_id, o.project_id, o.fingerprint) for o in observations}
        if any(
            (o.team_id, o.project_id, o.generation_key) in keys
            or (o.team_id, o.project_id, o.fingerprint) in prints
            for o in self._tx.read("observations").values()
            if o.generation_key is not None or o.fingerprint is not None
        ):
            return None  # a clash: the caller goes the long way, which finds the stored rows
        written = await self.compare_and_set(expected, new, event=event)
        if written:
            await MemoryObservations(self._tx).add_many(observations)
            await MemorySources(self._tx).add_many(sources)
            await MemorySearchIndex(self._tx).add(passages)
        await MemoryAudit(self._tx).add_many([*audit_always, *(audit if written else ())])
        for entry in ledger:
            await MemoryLedger(self._tx).add(entry)
        return written

    async def save_payload(self, job: GenerationJob) -> None:
        current: GenerationJob | None = await self.get(job.team_id, job.id)
        if current is not None and current.project_id == job.project_id:
            self._tx.write("jobs")[job.id] = attrs.evolve(
                current, payload=job.payload, updated_at=job.updated_at
            )

    async def list(self, where: JobFilter, page: Page) -> tuple[Sequence[GenerationJob], int]:
        rows = [j for j in self._tx.read("jobs").values() if _job_filter(j, where)]
        rows.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return paged(rows, page)

    async def list_due(
        self, *, now: datetime, lease_expired_before: datetime, limit: int
    ) -> Sequence[GenerationJob]:
        rows = [
            j
            for j in self._tx.read("jobs").values()
            if (
                j.status is JobStatus.QUEUED
                and (j.next_attempt_at is None or j.next_attempt_at <= now)
            )
            or (
                j.status is JobStatus.PROCESSING
                and j.locked_at is not None
                and j.locked_at < lease_expired_before
            )
        ]
        rows.sort(key=lambda j: (j.created_at, j.id))
        return rows[:limit]

    async def renew_lease(self, job: GenerationJob, *, now: datetime) -> bool:
        current: GenerationJob | None = self._tx.read("jobs").get(job.id)
        if (
            current is None
            or (current.team_id, current.project_id) != (job.team_id, job.project_id)
            or current.status is not JobStatus.PROCESSING
            or current.attempts != job.attempts
            or current.locked_by != job.locked_by
        ):
            return False
        self._tx.write("jobs")[job.id] = attrs.evolve(current, locked_at=now)
        return True

    async def mark_republished(
        self, job_ids: Sequence[str], *, now: datetime, untouched_since: datetime
    ) -> set[str]:
        marked: set[str] = set()
        for job_id in dict.fromkeys(job_ids):
            current: GenerationJob | None = self._tx.read("jobs").get(job_id)
            if current is None or current.status is not JobStatus.QUEUED:
                continue
            if (current.next_attempt_at or current.updated_at) > untouched_since:
                continue
            self._tx.write("jobs")[job_id] = attrs.evolve(current, next_attempt_at=now)
            marked.add(job_id)
        return marked

    async def count_by_status(self, team_id: str | None) -> dict[JobStatus, int]:
        counts = dict.fromkeys(JobStatus, 0)
        for job in self._tx.read("jobs").values():
            if in_scope(job, team_id):
                counts[job.status] += 1
        return counts

    async def completed_event_ids(
        self, team_id: str, project_id: str, event_ids: Sequence[str]
    ) -> set[str]:
        wanted = set(event_ids)
        return {
            j.agent_event_id
            for j in self._tx.read("jobs").values()
            if in_scope(j, team_id, project_id)
            and j.status is JobStatus.COMPLETED
            and j.agent_event_id in wanted
        }


class MemoryJobEvents(Repo):
    async def add(self, event: JobEvent) -> None:
        job = self._tx.read("jobs").get(event.generation_job_id)
        if job is None or job.team_id != event.team_id or job.project_id != event.project_id:
            raise NotFound("Generation job not found")
        self._tx.write("job_events")[event.id] = event

    async def add_many(self, events: Sequence[JobEvent]) -> None:
        for event in events:
            await self.add(event)

    async def list(self, team_id: str, job_id: str) -> Sequence[JobEvent]:
        rows = [
            e
            for e in self._tx.read("job_events").values()
            if in_scope(e, team_id) and e.generation_job_id == job_id
        ]
        # Insertion order breaks created_at ties: dicts keep it.
        order = {eid: n for n, eid in enumerate(self._tx.read("job_events"))}
        rows.sort(key=lambda e: (e.created_at, order[e.id]))
        return rows
