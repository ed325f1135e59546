"""Use case: turn one queued generation job into observations (or a summary).

The database row is the truth; the queue message only says "look at job X". Every step
re-reads the row, so a duplicate delivery, a redelivery after a crash, or an operator's
cancel in the middle all end with exactly one set of observations or none:

1. load the row (with its event and, for a paid provider, the provider gate's reads, in
   the same read), check the message's scope against it and the key that caused it;
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

The other steps live beside this module: ``services/leases.py`` (the lease kept while the
provider call runs), ``services/generation_persist.py`` (drafting and storing the results),
``services/job_outcome.py`` (what a job ends in) and ``services/reconcile.py`` (work the
queue lost).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from claude_mem_core.domain import jobs as machine
from claude_mem_core.domain.models import (
    AgentEvent,
    AuditEntry,
    GenerationJob,
    JobEventType,
    JobStatus,
    SessionGenerationStatus,
    SourceType,
)
from claude_mem_core.errors import ClaudeMemError, ProviderError
from claude_mem_core.generation import parser, prompt, render
from claude_mem_core.generation.modes import CODE_MODE, Mode
from claude_mem_core.generation.privacy import strip_tags
from claude_mem_core.ports.budgets import GateReads
from claude_mem_core.ports.provider import GenerationRequest, Provider
from claude_mem_core.ports.queue import QueueMessage
from claude_mem_core.ports.storage import UnitOfWork
from claude_mem_core.services import outbox, provider_gate, usage
from claude_mem_core.services.context import Deps
from claude_mem_core.services.generation_persist import GenerationPersistence
from claude_mem_core.services.job_outcome import (
    Outcome,
    ProcessResult,
    caller_for,
    is_summary,
    set_summary_status,
)
from claude_mem_core.services.leases import LeaseLost, holding_lease
from claude_mem_core.services.tenancy import audit, audit_entry

log = logging.getLogger("claude_mem.generation")


class Generator(GenerationPersistence):
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
        reads: GateReads | None = None
        async with deps.storage.unit_of_work() as uow:
            # The job's event is read with it: it never changes (and is only used once the
            # job is claimed). So are the provider gate's reads, for a paid provider: what
            # they say could as well have changed just after a read of their own.
            if provider_gate.gated(self.provider):
                read = await uow.jobs.get_for_generation(
                    job_id, provider=self.provider.name, now=now
                )
                if read is None:
                    return ProcessResult(job_id=job_id, outcome="missing")
                job, event, reads = read
            else:
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
            if job.status is JobStatus.PROCESSING and machine.lease_expired(
                job, now=now, lease_seconds=deps.options.lease_seconds
            ):
                # Its worker died: release the job (and give back its call's reservation)
                # before the gate reserves for it again.
                taken_over = await self.take_over(uow, job, now)
                if taken_over is None:
                    return ProcessResult(job_id=job_id, outcome="busy")
                job = taken_over
            # Before the claim, so that a held job uses up no attempt (services/provider_gate).
            gate = await self._gate(uow, job, event, reads)
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
        self,
        uow: UnitOfWork,
        job: GenerationJob,
        event: AgentEvent | None,
        reads: GateReads | None = None,
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
            uow, self.deps, self.provider, job, prompt_tokens=prompt_tokens, reads=reads
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
            released = await self.take_over(uow, current, now)
            if released is None:
                return None
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
        if alone and not audit_now and not is_summary(claimed):
            # The claim is this unit of work's last write: one call (one statement, no
            # transaction of its own on PostgreSQL); None sends it the usual way.
            written = await uow.jobs.advance(current, claimed, event=logged)
        if written is None:
            written = await uow.jobs.compare_and_set(current, claimed, event=logged)
        if not written:
            return None
        if audit_now:
            await uow.audit.add(self.processing_audit(claimed, now))
        await set_summary_status(uow, claimed, SessionGenerationStatus.PROCESSING, now)
        return claimed

    async def take_over(
        self, uow: UnitOfWork, job: GenerationJob, now: Any
    ) -> GenerationJob | None:
        """Release ``job``, whose lease expired, back to queued (or failed, out of
        attempts), and give back the reservation its dead worker's call held. None if
        another worker changed it first."""
        released = machine.release_expired(job, now=now)
        if not await uow.jobs.compare_and_set(job, released):
            return None
        await uow.budgets.release_for_job(job.id)
        await outbox.append_job_event(
            uow,
            self.deps,
            released,
            JobEventType.RETRY_SCHEDULED
            if released.status is JobStatus.QUEUED
            else JobEventType.FAILED,
            {"source": "lease_expired", "workerId": self.worker_id},
        )
        return released

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
        entry = usage.ledger_entry(
            self.deps, [job], result, purpose="summary" if summary else "observations"
        )
        if entry is None:
            await provider_gate.release_now(self.deps, ticket)
        elif summary or (ticket is not None and not ticket.done):
            # A reservation is settled with the row; a summary completes the long way.
            await usage.record_entry(self.deps, entry, result, ticket=ticket)
            entry = None
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
        try:
            parsed = parser.parse_observations(result.text, self.mode)
            drafts = []
            if not isinstance(parsed, parser.ParseFailure):
                for item in parsed.observations:
                    index = item.index
                    content = render.observation_content(item)
                    if content:
                        drafts.append(self.draft_observation(job, index, item, content, result))
        except Exception:
            if entry is not None:  # the call's tokens were spent all the same
                await usage.record_entry(self.deps, entry, result)
            raise
        if isinstance(parsed, parser.ParseFailure):
            if entry is not None:
                await usage.record_entry(self.deps, entry, result)
            return await self.record_failure(
                job, parsed.reason, "parse_error", False, audit_entries=pending
            )
        return await self.persist(
            job,
            drafts,
            result,
            private=build.had_private_content,
            audit_entries=pending,
            events=events,
            ledger=entry,
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
                await set_summary_status(
                    uow, job, SessionGenerationStatus.FAILED, now, error=reason
                )
        if target.status is JobStatus.QUEUED:
            await outbox.publish(deps, target, delay=delay)
            return ProcessResult(job_id=job.id, outcome="retry_scheduled", error=reason)
        log.warning("generation job %s failed (%s): %s", job.id, classification, reason)
        return ProcessResult(job_id=job.id, outcome="failed", error=reason)
