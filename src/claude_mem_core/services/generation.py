"""Use case: turn one queued generation job into observations (or a summary).

The database row is the truth; the queue message only says "look at job X". Every step
re-reads the row, so a duplicate delivery, a redelivery after a crash, or an operator's
cancel in the middle all end with exactly one set of observations or none:

1. load the row (with its event, in the same read), check the message's scope against it
   and the key that caused it;
2. claim it (queued → processing, compare-and-set, with a lease) and read its inputs (the
   events), in that same unit of work;
3. call the provider outside any transaction;
4. in one transaction: complete the row only if this worker still holds it, then insert
   observations keyed by generation key, their sources, the job event and the audit rows.

Steps 2 and 4 are each one :meth:`JobRepository.advance` call where nothing else is
written with them (one statement on PostgreSQL, so a job costs three statements and no
``BEGIN``/``COMMIT``). When ``advance`` declines (a summary's session status, a batch, or
a row that clashes with a stored one, e.g. a generation key taken by an earlier run), the
same step runs statement by statement, with ``ON CONFLICT`` reads of the stored rows.

The claim's audit row (``generation_job.processing``, dated at the claim) is written with
the job's outcome, in the same multi-row insert as the others, not in the claim's
transaction: the job event log records the claim itself at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from attrs import frozen

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
from claude_mem_core.errors import ClaudeMemError, ProviderError
from claude_mem_core.generation import parser, prompt, render
from claude_mem_core.generation.modes import CODE_MODE, Mode
from claude_mem_core.generation.privacy import strip_tags
from claude_mem_core.ports.provider import GenerationRequest, GenerationResult, Provider
from claude_mem_core.ports.queue import QueueMessage
from claude_mem_core.ports.storage import JobFilter, Page, UnitOfWork
from claude_mem_core.services import (
    dedup,
    embedding,
    outbox,
    provider_gate,
    supersession,
    usage,
)
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.tenancy import audit, audit_entry

log = logging.getLogger("claude_mem.generation")

Outcome = Literal[
    "completed",
    "skipped",
    "retry_scheduled",
    "failed",
    "missing",
    "busy",
    "lost_lease",
    "held",  # left queued by the provider gate (a budget spent, a provider's pause)
]


AlsoInTransaction = Callable[[UnitOfWork, list[str]], Awaitable[None]]

T = TypeVar("T")


class LeaseLost(Exception):
    """The claim of a job was lost while its provider call ran (cancelled, released or
    taken over by another worker): its results must not be written."""


async def holding_lease(deps: Deps, jobs: Sequence[GenerationJob], work: Awaitable[T]) -> T:
    """Run ``work`` (a provider call) while renewing the lease of the claimed ``jobs``
    every ``heartbeat_interval`` seconds, so a slow call is never taken over from a live
    worker, while a dead worker's job is taken over one lease after its last beat.

    Each renewal is fenced (:meth:`JobRepository.renew_lease`): when the first job's claim
    is found lost, ``work`` is cancelled and :class:`LeaseLost` raised. A renewal that
    fails (the database is briefly unreachable) is tried again at the next beat."""
    task = asyncio.ensure_future(work)
    stop = asyncio.Event()
    lost = False
    beat = deps.options.heartbeat_interval

    async def keep() -> None:
        nonlocal lost
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=beat)
            if stop.is_set():
                return
            try:
                now = deps.clock.now()
                async with deps.storage.unit_of_work() as uow:
                    held = [await uow.jobs.renew_lease(job, now=now) for job in jobs]
            except ClaudeMemError as exc:
                log.warning("could not renew the lease of job %s: %s", jobs[0].id, exc)
                continue
            if not held[0]:
                log.warning("job %s: claim lost while generating; discarding", jobs[0].id)
                lost = True
                task.cancel()
                return

    keeper = asyncio.create_task(keep(), name=f"claude-mem-lease-{jobs[0].id}")
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if lost and (current is None or not current.cancelling()):
            raise LeaseLost(jobs[0].id) from None
        raise
    finally:
        # Stopped between beats, not cancelled mid-renewal (the query would be cancelled
        # on the server, which can take a while).
        stop.set()
        if not task.done():
            task.cancel()
        await asyncio.gather(keeper, return_exceptions=True)


@frozen(kw_only=True)
class ProcessResult:
    job_id: str
    outcome: Outcome
    observation_ids: tuple[str, ...] = ()
    error: str | None = None


def caller_for(job: GenerationJob) -> Caller:
    """The caller a job acts for: the key, actor and request recorded when it was queued."""
    payload = job.payload
    return Caller(
        team_id=job.team_id,
        project_id=job.project_id,
        api_key_id=payload.get("api_key_id")
        if isinstance(payload.get("api_key_id"), str)
        else None,
        actor_id=payload.get("actor_id") if isinstance(payload.get("actor_id"), str) else None,
        request_id=payload.get("request_id")
        if isinstance(payload.get("request_id"), str)
        else None,
    )


class Generator:
    """Processes generation jobs with one provider. Stateless between jobs.

    ``process`` runs one job end to end. Its steps (``refusal``, ``claim``, ``fail_now``,
    ``draft_observation``, ``persist``, ``record_failure``) are public so that a batching
    strategy (``services.debounce``) can compose them for several jobs at once.
    """

    # Project names are cached per (team, project): projects are never renamed or deleted
    # through the storage port, and the name only labels the prompt.
    PROJECT_NAME_CACHE = 10_000

    def __init__(
        self, deps: Deps, provider: Provider, *, worker_id: str, mode: Mode = CODE_MODE
    ) -> None:
        self.deps = deps
        self.provider = provider
        self.worker_id = worker_id
        self.mode = mode
        self._project_names: dict[tuple[str, str], str] = {}

    async def handle(self, message: QueueMessage) -> None:
        """Queue handler: never raises for a job-level failure (those are job states)."""
        await self.process(message.job_id, message.payload)

    async def process(self, job_id: str, payload: dict[str, Any] | None = None) -> ProcessResult:
        deps = self.deps
        now = deps.clock.now()
        events: Sequence[AgentEvent] = ()
        project_name: str | None = None
        ticket: provider_gate.Ticket | None = None
        held: GenerationJob | None = None
        async with deps.storage.unit_of_work() as uow:
            # The job's event is read with it: it never changes (and is only used once the
            # job is claimed).
            found = await uow.jobs.get_unscoped_with_event(job_id)
            if found is None:
                return ProcessResult(job_id=job_id, outcome="missing")
            job, event = found
            refusal = await self.refusal(uow, job, payload or job.payload)
            if refusal is not None:
                if job.status.terminal:
                    return ProcessResult(job_id=job_id, outcome="skipped")
                await self.fail_now(uow, job, refusal, classification=refusal)
                return ProcessResult(job_id=job_id, outcome="failed", error=refusal)
            # Before the claim, so that a held job uses up no attempt (services/provider_gate).
            gate = await self._gate(uow, job, event)
            if not isinstance(gate, provider_gate.Admit):
                held = await self._hold(uow, job, gate)
                claimed = None
            else:
                ticket = gate.ticket
                claimed = await self.claim(uow, job, now, audit_now=False, alone=ticket is None)
                if claimed is None:
                    await provider_gate.release(uow, ticket)
            if claimed is not None:
                events, project_name = await self.inputs(uow, claimed, event=event)
        if not isinstance(gate, provider_gate.Admit):
            return await self._after_hold(job, gate, held)
        if claimed is None:
            status = job.status
            outcome: Outcome = "skipped" if status.terminal else "busy"
            return ProcessResult(job_id=job_id, outcome=outcome)
        pending = (self.processing_audit(claimed, now),)
        try:
            return await self._generate(claimed, events, project_name, pending, ticket)
        except LeaseLost:
            await provider_gate.release_now(deps, ticket)
            return await self.lost_claim(claimed, pending)
        except ProviderError as exc:
            await provider_gate.note_failure(deps, self.provider, ticket, exc)
            return await self.record_failure(
                claimed,
                str(exc),
                exc.kind,
                exc.retryable,
                retry_after=exc.retry_after,
                audit_entries=pending,
            )
        except ClaudeMemError as exc:
            await provider_gate.release_now(deps, ticket)
            return await self.record_failure(
                claimed, str(exc), "unknown", False, audit_entries=pending
            )
        except BaseException:
            await provider_gate.release_now(deps, ticket)
            raise

    async def _gate(
        self, uow: UnitOfWork, job: GenerationJob, event: AgentEvent | None
    ) -> provider_gate.Decision:
        """The provider gate for ``job`` when it is about to be claimed; admitted without
        a look otherwise (the claim will decline it)."""
        claimable = job.status is JobStatus.QUEUED or (
            job.status is JobStatus.PROCESSING
            and machine.lease_expired(
                job, now=self.deps.clock.now(), lease_seconds=self.deps.options.lease_seconds
            )
        )
        if not claimable or not provider_gate.gated(self.provider):
            return provider_gate.Admit()

        async def prompt_tokens() -> int:
            if event is None or job.source_type is SourceType.SESSION_SUMMARY:
                return provider_gate.PROBE_TOKENS
            build = prompt.build_observation_prompt(
                [event],
                project_id=job.project_id,
                team_id=job.team_id,
                job_id=job.id,
                server_session_id=job.server_session_id,
                project_name=await self.project_name(uow, job.team_id, job.project_id),
                mode=self.mode,
            )
            return len(build.prompt) // 4

        return await provider_gate.admit(
            uow, self.deps, self.provider, job, prompt_tokens=prompt_tokens
        )

    async def _hold(
        self, uow: UnitOfWork, job: GenerationJob, gate: provider_gate.Decision
    ) -> GenerationJob | None:
        if isinstance(gate, provider_gate.Hold):
            return await provider_gate.hold(uow, self.deps, job, gate, worker_id=self.worker_id)
        return None

    async def _after_hold(
        self, job: GenerationJob, gate: provider_gate.Decision, held: GenerationJob | None
    ) -> ProcessResult:
        """Wake a held job at its hold's end; try a busy one again shortly."""
        if isinstance(gate, provider_gate.Busy):
            await outbox.publish(self.deps, job, delay=gate.retry_in)
            return ProcessResult(job_id=job.id, outcome="busy")
        if held is not None:
            await provider_gate.publish_held(self.deps, held)
        reason = gate.reason if isinstance(gate, provider_gate.Hold) else None
        return ProcessResult(job_id=job.id, outcome="held", error=reason)

    async def refusal(
        self, uow: UnitOfWork, job: GenerationJob, payload: dict[str, Any]
    ) -> str | None:
        """The message must name the row's own tenant, and the key that caused the job
        must still be valid when the job runs."""
        if payload.get("team_id") != job.team_id or payload.get("project_id") != job.project_id:
            await audit(
                uow,
                self.deps,
                caller_for(job),
                "generation_job.scope_violation",
                project_id=job.project_id,
                resource_id=job.id,
                details={
                    "reason": "scope_mismatch",
                    "payloadTeamId": payload.get("team_id"),
                    "payloadProjectId": payload.get("project_id"),
                },
            )
            return "scope_mismatch"
        key_id = job.payload.get("api_key_id")
        if isinstance(key_id, str) and key_id:
            key = await uow.api_keys.get_unscoped(key_id)
            if key is None or not key.is_usable(self.deps.clock.now()):
                await audit(
                    uow,
                    self.deps,
                    caller_for(job),
                    "generation_job.revoked_key",
                    project_id=job.project_id,
                    resource_id=job.id,
                    details={"reason": "revoked_key", "apiKeyId": key_id},
                )
                return "revoked_key"
        return None

    async def fail_now(
        self, uow: UnitOfWork, job: GenerationJob, reason: str, *, classification: str
    ) -> None:
        error = {"reason": reason, "classification": classification}
        target = machine.transition(
            job, JobStatus.FAILED, now=self.deps.clock.now(), last_error=error
        )
        if await uow.jobs.compare_and_set(job, target):
            await outbox.append_job_event(
                uow, self.deps, target, JobEventType.FAILED, {**error, "workerId": self.worker_id}
            )

    async def claim(
        self,
        uow: UnitOfWork,
        job: GenerationJob,
        now: Any,
        *,
        audit_now: bool = True,
        alone: bool = False,
    ) -> GenerationJob | None:
        """Claim ``job`` for this worker (taking over an expired lease). With ``audit_now``
        False the caller writes :meth:`processing_audit` itself, with the job's outcome.
        ``alone``: the caller writes nothing more in ``uow`` (it may only read), so the
        claim may be written on its own (:meth:`JobRepository.advance`)."""
        lease = self.deps.options.lease_seconds
        current = job
        if current.status is JobStatus.PROCESSING:
            if not machine.lease_expired(current, now=now, lease_seconds=lease):
                return None  # another worker holds a live lease
            released = machine.release_expired(current, now=now)
            if not await uow.jobs.compare_and_set(current, released):
                return None
            await outbox.append_job_event(
                uow,
                self.deps,
                released,
                JobEventType.RETRY_SCHEDULED
                if released.status is JobStatus.QUEUED
                else JobEventType.FAILED,
                {"source": "lease_expired", "workerId": self.worker_id},
            )
            current = released
        if current.status is not JobStatus.QUEUED or not machine.can_transition(
            current, JobStatus.PROCESSING
        ):
            return None
        claimed = machine.transition(
            current, JobStatus.PROCESSING, now=now, worker_id=self.worker_id
        )
        logged = outbox.job_event(
            self.deps, claimed, JobEventType.PROCESSING, {"workerId": self.worker_id}
        )
        written = None
        if alone and not audit_now and not _is_summary(claimed):
            # The claim is this unit of work's last write: one call (one statement, no
            # transaction of its own on PostgreSQL); None sends it the usual way.
            written = await uow.jobs.advance(current, claimed, event=logged)
        if written is None:
            written = await uow.jobs.compare_and_set(current, claimed, event=logged)
        if not written:
            return None
        if audit_now:
            await uow.audit.add(self.processing_audit(claimed, now))
        await _set_summary_status(uow, claimed, SessionGenerationStatus.PROCESSING, now)
        return claimed

    def processing_audit(self, claimed: GenerationJob, at: datetime) -> AuditEntry:
        """The audit row of a claim (``generation_job.processing``), dated ``at``."""
        return audit_entry(
            self.deps,
            caller_for(claimed),
            "generation_job.processing",
            project_id=claimed.project_id,
            resource_id=claimed.id,
            details={
                "sourceType": claimed.source_type.value,
                "sourceId": claimed.source_id,
                "attempt": claimed.attempts,
                "workerId": self.worker_id,
            },
            at=at,
        )

    async def project_name(self, uow: UnitOfWork, team_id: str, project_id: str) -> str | None:
        key = (team_id, project_id)
        name = self._project_names.get(key)
        if name is None:
            project = await uow.projects.get(team_id, project_id)
            if project is None:
                return None
            if len(self._project_names) >= self.PROJECT_NAME_CACHE:
                self._project_names.clear()
            name = self._project_names[key] = project.name
        return name

    async def inputs(
        self, uow: UnitOfWork, job: GenerationJob, *, event: AgentEvent | None = None
    ) -> tuple[Sequence[AgentEvent], str | None]:
        """What the prompt is built from: the job's events and its project's name.
        ``event``: the job's agent event, when the caller has read it already."""
        project_name = await self.project_name(uow, job.team_id, job.project_id)
        events: Sequence[AgentEvent] = []
        if job.source_type is SourceType.SESSION_SUMMARY:
            if job.server_session_id is not None:
                events = await uow.events.list_for_session(
                    job.team_id, job.project_id, job.server_session_id
                )
        elif event is not None and event.id == job.agent_event_id:
            events = [event]
        elif job.agent_event_id is not None:
            events = await uow.events.get_many(job.team_id, job.project_id, [job.agent_event_id])
        return events, project_name

    async def _generate(
        self,
        job: GenerationJob,
        events: Sequence[AgentEvent],
        project_name: str | None,
        pending: Sequence[AuditEntry],
        ticket: provider_gate.Ticket | None = None,
    ) -> ProcessResult:
        summary = job.source_type is SourceType.SESSION_SUMMARY
        build = (prompt.build_summary_prompt if summary else prompt.build_observation_prompt)(
            events,
            project_id=job.project_id,
            team_id=job.team_id,
            job_id=job.id,
            server_session_id=job.server_session_id,
            project_name=project_name,
            mode=self.mode,
        )
        if build.skipped_all or not events:
            # Nothing left to send after privacy stripping: no provider call at all.
            await provider_gate.release_now(self.deps, ticket)
            return await self.persist(
                job, [], None, private=build.had_private_content, audit_entries=pending
            )
        result = await holding_lease(
            self.deps,
            [job],
            self.provider.generate(
                GenerationRequest(
                    prompt=build.prompt,
                    purpose="summary" if summary else "observations",
                    events=events,
                    allowed_types=self.mode.types,
                )
            ),
        )
        await usage.record_call(
            self.deps,
            [job],
            result,
            purpose="summary" if summary else "observations",
            ticket=ticket,
        )
        if summary:
            parsed_summary = parser.parse_summary(result.text)
            if isinstance(parsed_summary, parser.ParseFailure):
                return await self.record_failure(
                    job, parsed_summary.reason, "parse_error", False, audit_entries=pending
                )
            content = "" if parsed_summary.skipped else render.summary_content(parsed_summary)
            drafts = []
            if content:
                drafts.append(self._draft_summary(job, parsed_summary, content, result))
            return await self.persist(
                job, drafts, result, private=build.had_private_content, audit_entries=pending
            )
        parsed = parser.parse_observations(result.text, self.mode)
        if isinstance(parsed, parser.ParseFailure):
            return await self.record_failure(
                job, parsed.reason, "parse_error", False, audit_entries=pending
            )
        drafts = []
        for item in parsed.observations:
            index = item.index
            content = render.observation_content(item)
            if content:
                drafts.append(self.draft_observation(job, index, item, content, result))
        return await self.persist(
            job,
            drafts,
            result,
            private=build.had_private_content,
            audit_entries=pending,
            events=events,
        )

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
    ) -> ProcessResult:
        """Store the drafts and complete ``job`` in one transaction, if this worker still
        holds it. ``also`` runs in that same transaction once the job is completed, with the
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
            stored = await self._store(
                job,
                drafts,
                result,
                private=private,
                also=also,
                audit_entries=audit_entries,
                events=events,
            )
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
            if also is None and not _is_summary(job):
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
                )
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
            entries += self._created_audit(job, drafts, stored, provider, model, caller)
            if also is not None:
                await also(uow, ids)
            entries.append(self._completed_audit(job, ids, provider, model))
            await uow.audit.add_many(entries)
            await _set_summary_status(uow, job, SessionGenerationStatus.COMPLETED, now)
            if _is_summary(job) and self.deps.options.session_policy == "end-of-session":
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
    ) -> list[AuditEntry]:
        return [
            audit_entry(
                self.deps,
                caller,
                "observation.created",
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

    async def lost_claim(
        self, job: GenerationJob, audit_entries: Sequence[AuditEntry] = ()
    ) -> ProcessResult:
        """The claim of ``job`` was lost mid-call: nothing of its results is written, only
        the claim's audit row (when it was deferred), as a completion that lost would."""
        if audit_entries:
            async with self.deps.storage.unit_of_work() as uow:
                await uow.audit.add_many(audit_entries)
        return ProcessResult(job_id=job.id, outcome="lost_lease")

    async def record_failure(
        self,
        job: GenerationJob,
        reason: str,
        classification: str,
        retryable: bool,
        *,
        retry_after: float | None = None,
        audit_entries: Sequence[AuditEntry] = (),
    ) -> ProcessResult:
        """Retry ``job`` later or fail it, if this worker still holds it. ``audit_entries``
        (the claim's, when it was deferred) are written in any case."""
        deps = self.deps
        now = deps.clock.now()
        reason = strip_tags(reason).text[:2000]
        error = {"reason": reason, "classification": classification}
        async with deps.storage.unit_of_work() as uow:
            await uow.audit.add_many(audit_entries)
            current = await uow.jobs.get(job.team_id, job.id)
            if (
                current is None
                or current.status is not JobStatus.PROCESSING
                or (current.locked_by != self.worker_id or current.attempts != job.attempts)
            ):
                return ProcessResult(job_id=job.id, outcome="lost_lease", error=reason)
            if retryable and machine.can_transition(current, JobStatus.QUEUED):
                delay = machine.retry_delay_seconds(current.attempts) * (0.5 + deps.jitter())
                if retry_after is not None:
                    delay = max(delay, retry_after)
                target = machine.transition(
                    current,
                    JobStatus.QUEUED,
                    now=now,
                    next_attempt_at=now + timedelta(seconds=delay),
                    last_error=error,
                )
                event_type = JobEventType.RETRY_SCHEDULED
            else:
                target = machine.transition(current, JobStatus.FAILED, now=now, last_error=error)
                event_type = JobEventType.FAILED
                delay = 0.0
            if not await uow.jobs.compare_and_set(current, target):
                return ProcessResult(job_id=job.id, outcome="lost_lease", error=reason)
            await outbox.append_job_event(
                uow, deps, target, event_type, {**error, "workerId": self.worker_id}
            )
            if target.status is JobStatus.FAILED:
                await _set_summary_status(
                    uow, job, SessionGenerationStatus.FAILED, now, error=reason
                )
        if target.status is JobStatus.QUEUED:
            await outbox.publish(deps, target, delay=delay)
            return ProcessResult(job_id=job.id, outcome="retry_scheduled", error=reason)
        log.warning("generation job %s failed (%s): %s", job.id, classification, reason)
        return ProcessResult(job_id=job.id, outcome="failed", error=reason)


def _is_summary(job: GenerationJob) -> bool:
    return job.source_type is SourceType.SESSION_SUMMARY and job.server_session_id is not None


async def _set_summary_status(
    uow: UnitOfWork,
    job: GenerationJob,
    status: SessionGenerationStatus,
    now: datetime,
    *,
    error: str | None = None,
) -> None:
    """A summary job's progress is its session's generation status; other jobs have none."""
    if _is_summary(job) and job.server_session_id is not None:
        await uow.sessions.set_generation_status(
            job.team_id, job.project_id, job.server_session_id, status, now=now, error=error
        )


@frozen(kw_only=True)
class ReconcileReport:
    republished: int = 0
    released: int = 0
    failed: int = 0


async def reconcile(
    deps: Deps,
    *,
    republish_after_seconds: float = 30.0,
    limit: int = 500,
    batch: int | None = None,
) -> ReconcileReport:
    """Find work the queue lost: queued rows that are due and not published for
    ``republish_after_seconds`` are published again; processing rows whose lease expired
    go back to queued (or fail when out of attempts). The database is the source of
    truth, the queue only delivers.

    Each republished row is stamped (``next_attempt_at``) in the same transaction, by a
    guarded write that only one of several racing reconcilers wins, so a stranded job is
    published at most once per ``republish_after_seconds`` however many workers
    reconcile and however often; at most ``batch`` (``PipelineOptions.reconcile_batch``)
    rows a pass, the rest in the next passes."""
    now = deps.clock.now()
    lease = timedelta(seconds=deps.options.lease_seconds)
    untouched_since = now - timedelta(seconds=max(republish_after_seconds, 0.0))
    batch = deps.options.reconcile_batch if batch is None else batch
    republish: list[GenerationJob] = []
    released = failed = 0
    async with deps.storage.unit_of_work() as uow:
        # Queued rows are listed as due at ``untouched_since``: one republished (or given
        # a retry time) since then is not listed, so it cannot crowd the others out.
        due = await uow.jobs.list_due(
            now=untouched_since, lease_expired_before=now - lease, limit=limit
        )
        stranded: list[GenerationJob] = []
        for job in due:
            if job.status is JobStatus.PROCESSING:
                new = machine.release_expired(job, now=now)
                if not await uow.jobs.compare_and_set(job, new):
                    continue
                await outbox.append_job_event(
                    uow,
                    deps,
                    new,
                    JobEventType.QUEUED if new.status is JobStatus.QUEUED else JobEventType.FAILED,
                    {"source": "reconcile_lease_expired", "lockedBy": job.locked_by},
                )
                await audit(
                    uow,
                    deps,
                    caller_for(job),
                    "generation_job.stalled",
                    project_id=job.project_id,
                    resource_id=job.id,
                    details={
                        "lockedBy": job.locked_by,
                        "attempts": job.attempts,
                        "statusAfter": new.status.value,
                    },
                )
                if new.status is JobStatus.QUEUED:
                    released += 1
                    republish.append(new)
                else:
                    failed += 1
                continue
            if _held_by_policy(deps, job):
                continue
            last_touch = job.next_attempt_at or job.updated_at
            if last_touch <= untouched_since and len(stranded) < batch:
                stranded.append(job)
        if stranded:
            won = await uow.jobs.mark_republished(
                [job.id for job in stranded], now=now, untouched_since=untouched_since
            )
            republish += [job for job in stranded if job.id in won]
    # One round trip for all of them (a waiting job's marker keeps it from doubling).
    sent = await outbox.publish_many(deps, [(job, 0.0) for job in republish]) if republish else {}
    published = sum(1 for state in sent.values() if state == "enqueued")
    return ReconcileReport(republished=published, released=released, failed=failed)


def _held_by_policy(deps: Deps, job: GenerationJob) -> bool:
    return (
        deps.options.session_policy == "end-of-session"
        and job.source_type is SourceType.AGENT_EVENT
        and job.server_session_id is not None
    )
