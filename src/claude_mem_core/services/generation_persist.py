"""The end of a generation job: its parsed output drafted as observations, then stored
with their sources and audit rows, in the transaction that completes the job.

:class:`GenerationPersistence` is a base of :class:`~claude_mem_core.services.generation.
Generator`; ``services.debounce`` calls its public steps (``draft_observation``,
``persist``) for batches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence, Set
from datetime import datetime
from typing import Any

from claude_mem_core.domain import jobs as machine
from claude_mem_core.domain import keys
from claude_mem_core.domain.fingerprint import fingerprint
from claude_mem_core.domain.models import (
    AgentEvent,
    AuditEntry,
    GenerationJob,
    JobEventType,
    JobStatus,
    Observation,
    ObservationKind,
    ObservationSource,
    ObservationSourceType,
    SessionGenerationStatus,
    SourceType,
)
from claude_mem_core.domain.passages import passages_for
from claude_mem_core.generation.modes import Mode
from claude_mem_core.ports.ledger import LedgerEntry
from claude_mem_core.ports.provider import GenerationResult, Provider
from claude_mem_core.ports.storage import JobFilter, Page, UnitOfWork
from claude_mem_core.services import dedup, embedding, outbox, supersession, usage
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.job_outcome import (
    ProcessResult,
    caller_for,
    is_summary,
    set_summary_status,
)
from claude_mem_core.services.tenancy import audit_entry

# Work that joins the transaction completing a job, given the stored observation ids.
AlsoInTransaction = Callable[[UnitOfWork, list[str]], Awaitable[None]]


class GenerationPersistence:
    """Drafting and storing a job's observations; the generator sets these attributes."""

    deps: Deps
    provider: Provider
    worker_id: str
    mode: Mode

    def _metadata(self, result: GenerationResult, index: int) -> dict[str, Any]:
        return {
            "provider": result.provider,
            "model": result.model,
            "parsedObservationIndex": index,
            "usage": {
                "inputTokens": result.usage.input_tokens,
                "outputTokens": result.usage.output_tokens,
            },
        }

    def draft_observation(
        self, job: GenerationJob, index: int, item: Any, content: str, result: GenerationResult
    ) -> tuple[int, Observation]:
        now = self.deps.clock.now()
        return index, Observation(
            id=self.deps.ids.new_id(),
            team_id=job.team_id,
            project_id=job.project_id,
            server_session_id=job.server_session_id,
            kind=ObservationKind.OBSERVATION,
            type=item.type,
            title=item.title,
            subtitle=item.subtitle,
            narrative=item.narrative,
            facts=item.facts,
            concepts=item.concepts,
            files_read=item.files_read,
            files_modified=item.files_modified,
            content=content,
            generation_key=keys.generation_key(job.id, index, content),
            metadata=self._metadata(result, index),
            created_by_job_id=job.id,
            created_at=now,
            updated_at=now,
            fingerprint=fingerprint(
                type=item.type, title=item.title, facts=item.facts, narrative=item.narrative
            ),
        )

    def _draft_summary(
        self, job: GenerationJob, summary: Any, content: str, result: GenerationResult
    ) -> tuple[int, Observation]:
        now = self.deps.clock.now()
        fields = {
            name: getattr(summary, name)
            for name in ("request", "investigated", "learned", "completed", "next_steps", "notes")
        }
        return 0, Observation(
            id=self.deps.ids.new_id(),
            team_id=job.team_id,
            project_id=job.project_id,
            server_session_id=job.server_session_id,
            kind=ObservationKind.SUMMARY,
            type="summary",
            title=fields["request"],
            narrative=fields["learned"],
            content=content,
            generation_key=keys.generation_key(job.id, 0, content),
            metadata={**fields, **self._metadata(result, 0)},
            created_by_job_id=job.id,
            created_at=now,
            updated_at=now,
        )

    async def persist(
        self,
        job: GenerationJob,
        drafts: list[tuple[int, Observation]],
        result: GenerationResult | None,
        *,
        private: bool,
        also: AlsoInTransaction | None = None,
        audit_entries: Sequence[AuditEntry] = (),
        events: Sequence[AgentEvent] = (),
        ledger: LedgerEntry | None = None,
    ) -> ProcessResult:
        """Store the drafts and complete ``job`` in one transaction, if this worker still
        holds it. ``ledger``: the token ledger's row of the call, written in any case (in
        the one statement that completes the job where there is one, else on its own).
        ``also`` runs in that same transaction once the job is completed, with the
        stored observation ids (batching uses it to complete the jobs a batch covered).
        ``audit_entries`` (the claim's, when it was deferred) are written in any case.
        ``events``: what the drafts were made from; their text is indexed for search with
        the observations (``domain/passages.py``). With semantic recall on, the stored
        observations' passages are then embedded, after that transaction committed (a
        failure there leaves them to the backfill; the job stays completed)."""
        with self.deps.tracer.span(
            "claude_mem.observations.store",
            {"claude_mem.job.id": job.id, "claude_mem.observations": len(drafts)},
        ) as span:
            # ``_store`` empties it when the row went in with the job's completion.
            unwritten = [ledger] if ledger is not None else []
            try:
                stored = await self._store(
                    job,
                    drafts,
                    result,
                    private=private,
                    also=also,
                    audit_entries=audit_entries,
                    events=events,
                    ledger=unwritten,
                )
            finally:
                if unwritten and result is not None:
                    await usage.record_entry(self.deps, unwritten[0], result)
            span.set_attribute("claude_mem.outcome", stored.outcome)
        if stored.observation_ids and self.deps.semantic is not None:
            await embedding.embed_generated(
                self.deps, job.team_id, job.project_id, stored.observation_ids
            )
        return stored

    async def _store(
        self,
        job: GenerationJob,
        drafts: list[tuple[int, Observation]],
        result: GenerationResult | None,
        *,
        private: bool,
        also: AlsoInTransaction | None,
        audit_entries: Sequence[AuditEntry],
        events: Sequence[AgentEvent],
        ledger: list[LedgerEntry],
    ) -> ProcessResult:
        deps = self.deps
        now = deps.clock.now()
        provider = result.provider if result else self.provider.name
        model = result.model if result else None
        caller = caller_for(job)
        entries = list(audit_entries)
        drafts = supersession.with_subjects(dedup.unique_drafts(drafts))
        async with deps.storage.unit_of_work() as uow:
            # Before any other write (services/supersession.py); PostgreSQL then goes the
            # long way below, in this transaction, instead of one statement of its own.
            await supersession.lock(uow, job.team_id, job.project_id, [d for _, d in drafts])
            # Complete first: the compare-and-set fails if the job was cancelled, reclaimed
            # after our lease expired, or finished by someone else, and then nothing of ours
            # is written but the claim's audit row.
            done = machine.transition(job, JobStatus.COMPLETED, now=now)
            spent = result.usage if result else None
            completed = outbox.job_event(
                deps,
                done,
                JobEventType.COMPLETED,
                {
                    "provider": provider,
                    "model": model,
                    "observationCount": len(drafts),  # one stored (or found) per draft
                    "privateContentDetected": private or not drafts,
                    "workerId": self.worker_id,
                    "inputTokens": spent.input_tokens if spent else None,
                    "outputTokens": spent.output_tokens if spent else None,
                },
            )
            observations = [draft for _, draft in drafts]
            if also is None and not is_summary(job):
                # Nothing else goes into this transaction: the whole step in one call (one
                # statement on PostgreSQL); None when it cannot, e.g. a generation key is
                # stored already, and then the long way below finds the stored rows.
                written = await uow.jobs.advance(
                    job,
                    done,
                    event=completed,
                    observations=observations,
                    sources=self._sources(job, drafts, observations, provider, caller, now),
                    audit=[
                        *self._created_audit(job, drafts, observations, provider, model, caller),
                        self._completed_audit(job, [o.id for o in observations], provider, model),
                    ],
                    audit_always=entries,
                    passages=passages_for(observations, events),
                    ledger=ledger,
                )
                if written is not None:
                    ledger.clear()  # written with the job's completion
                if written is False:
                    return ProcessResult(job_id=job.id, outcome="lost_lease")
                if written:
                    await supersession.apply(uow, job.team_id, job.project_id, observations, at=now)
                    return ProcessResult(
                        job_id=job.id,
                        outcome="completed",
                        observation_ids=tuple(o.id for o in observations),
                    )
            if not await uow.jobs.compare_and_set(job, done, event=completed):
                await uow.audit.add_many(entries)
                return ProcessResult(job_id=job.id, outcome="lost_lease")
            added = await uow.observations.add_many(observations)
            stored = [obs for obs, _ in added]
            # The same fact stored already: one more occurrence, and the link below.
            repeated = dedup.repeats(observations, added)
            if repeated:
                await uow.observations.add_occurrences(job.team_id, job.project_id, repeated)
            ids = [obs.id for obs in stored]
            # Only new rows are indexed: a replay finds its observations indexed already.
            inserted = [obs for obs, new in added if new]
            await uow.search.add(passages_for(inserted, events))
            # A newer fact about the same files marks the older ones (not a dedup's row).
            await supersession.apply(uow, job.team_id, job.project_id, inserted, at=now)
            await uow.sources.add_many(self._sources(job, drafts, stored, provider, caller, now))
            entries += self._created_audit(
                job, drafts, stored, provider, model, caller, repeated=set(repeated)
            )
            if also is not None:
                await also(uow, ids)
            entries.append(self._completed_audit(job, ids, provider, model))
            await uow.audit.add_many(entries)
            await set_summary_status(uow, job, SessionGenerationStatus.COMPLETED, now)
            if is_summary(job) and self.deps.options.session_policy == "end-of-session":
                await self._complete_covered_event_jobs(uow, job, now)
        return ProcessResult(job_id=job.id, outcome="completed", observation_ids=tuple(ids))

    def _sources(
        self,
        job: GenerationJob,
        drafts: Sequence[tuple[int, Observation]],
        stored: Sequence[Observation],
        provider: str,
        caller: Caller,
        now: datetime,
    ) -> list[ObservationSource]:
        """The source link of each stored observation (of the draft at the same place)."""
        source_type = (
            ObservationSourceType.SESSION_SUMMARY
            if job.source_type is SourceType.SESSION_SUMMARY
            else ObservationSourceType.AGENT_EVENT
        )
        return [
            ObservationSource(
                id=self.deps.ids.new_id(),
                observation_id=obs.id,
                team_id=job.team_id,
                project_id=job.project_id,
                source_type=source_type,
                source_id=job.source_id,
                agent_event_id=job.agent_event_id,
                generation_job_id=job.id,
                metadata={
                    "provider": provider,
                    "parsedObservationIndex": index,
                    "source_adapter": job.payload.get("source_adapter"),
                    "actor_id": caller.actor_id,
                    "api_key_id": caller.api_key_id,
                },
                created_at=now,
            )
            for (index, _), obs in zip(drafts, stored, strict=True)
        ]

    def _created_audit(
        self,
        job: GenerationJob,
        drafts: Sequence[tuple[int, Observation]],
        stored: Sequence[Observation],
        provider: str,
        model: str | None,
        caller: Caller,
        *,
        repeated: Set[str] = frozenset(),
    ) -> list[AuditEntry]:
        """One row per stored observation: ``observation.created``, or
        ``observation.repeated`` when the draft matched a stored fact (dedup: no new row,
        one more occurrence), so the audit never claims a row was made that was not."""
        return [
            audit_entry(
                self.deps,
                caller,
                "observation.repeated" if obs.id in repeated else "observation.created",
                project_id=job.project_id,
                resource_id=obs.id,
                details={
                    "generationJobId": job.id,
                    "sourceType": job.source_type.value,
                    "sourceId": job.source_id,
                    "provider": provider,
                    "model": model,
                    "kind": str(obs.kind),
                    "parsedObservationIndex": index,
                },
            )
            for (index, _), obs in zip(drafts, stored, strict=True)
        ]

    def _completed_audit(
        self, job: GenerationJob, ids: list[str], provider: str, model: str | None
    ) -> AuditEntry:
        return audit_entry(
            self.deps,
            caller_for(job),
            "generation_job.completed",
            project_id=job.project_id,
            resource_id=job.id,
            details={
                "generationJobId": job.id,
                "provider": provider,
                "model": model,
                "observationCount": len(ids),
                "observationIds": ids,
                "sourceType": job.source_type.value,
            },
        )

    async def _complete_covered_event_jobs(
        self, uow: UnitOfWork, summary: GenerationJob, now: datetime
    ) -> None:
        """Under end-of-session, a session's event jobs wait for its summary, which covers
        them: they end completed (with a job event saying by what), not queued forever."""
        waiting, _ = await uow.jobs.list(
            JobFilter(
                team_id=summary.team_id,
                project_id=summary.project_id,
                status=JobStatus.QUEUED,
                source_type=SourceType.AGENT_EVENT,
            ),
            Page(limit=500),
        )
        for event_job in waiting:
            if event_job.server_session_id != summary.server_session_id:
                continue
            claimed = machine.transition(
                event_job, JobStatus.PROCESSING, now=now, worker_id=self.worker_id
            )
            done = machine.transition(claimed, JobStatus.COMPLETED, now=now)
            if await uow.jobs.compare_and_set(event_job, done):
                await outbox.append_job_event(
                    uow,
                    self.deps,
                    done,
                    JobEventType.COMPLETED,
                    {
                        "source": "covered_by_summary",
                        "summaryJobId": summary.id,
                        "observationCount": 0,
                        "workerId": self.worker_id,
                    },
                )
