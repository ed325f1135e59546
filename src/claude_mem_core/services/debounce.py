"""Session policies on the consuming side: debounce coalescing.

**debounce** — ingest still writes one job row per event (the outbox contract), but the
events of one session that are waiting when the window closes become ONE provider call:

* publishing (:func:`publish_debounced`) sends one message per *session*, delayed by the
  window, under a session transport id; every new event re-publishes it, which restarts the
  delay on queues that support it (the in-process queue and the Redis queue both do);
* the consumer (:class:`SessionBatcher`) takes the session's queued, due event jobs (the
  message's own job among them, oldest first, at most ``max_batch``), claims them all,
  sends their events in one prompt, stores the observations under the oldest job (the
  *lead*; generation keys use its id) and completes the others as covered by the lead, with
  source links from every observation to every covered event.

Even with per-event delayed publishing (the outbox today), the first message to fire after
the window collects everything its session has queued, so events still coalesce; later
messages find their jobs completed and do nothing.

(**end-of-session** needs nothing here: the generator completes a session's held event jobs
in the summary job's own transaction.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs

from claude_mem_core.domain import jobs as machine
from claude_mem_core.domain import keys
from claude_mem_core.domain.models import (
    GenerationJob,
    JobEventType,
    JobStatus,
    ObservationSource,
    ObservationSourceType,
    SourceType,
)
from claude_mem_core.errors import ClaudeMemError, ProviderError
from claude_mem_core.generation import parser, prompt, render
from claude_mem_core.ports.provider import GenerationRequest
from claude_mem_core.ports.queue import EVENT_LANE, QueueMessage
from claude_mem_core.ports.storage import JobFilter, Page, UnitOfWork
from claude_mem_core.services import outbox, provider_gate, usage
from claude_mem_core.services.context import Deps
from claude_mem_core.services.generation import Generator
from claude_mem_core.services.job_outcome import ProcessResult, caller_for
from claude_mem_core.services.leases import LeaseLost, holding_lease
from claude_mem_core.services.tenancy import audit

log = logging.getLogger("claude_mem.debounce")

SESSION_SOURCE_TYPE = "server_session"


# -- publishing -------------------------------------------------------------------------------


def session_transport_id(job: GenerationJob) -> str:
    """One transport id per session (``evtb_…``): re-publishing it restarts the delay."""
    return keys.transport_id(
        "event-batch",
        team_id=job.team_id,
        project_id=job.project_id,
        source_type=SESSION_SOURCE_TYPE,
        source_id=job.server_session_id or job.source_id,
    )


def session_message(job: GenerationJob) -> QueueMessage:
    """The debounced message for ``job``'s session; it names the newest job so a consumer
    can find the session (and check the tenant) from the row."""
    payload: dict[str, Any] = {
        **job.payload,
        "kind": "event-batch",
        "server_session_id": job.server_session_id,
        "generation_job_id": job.id,
    }
    return QueueMessage(
        job_id=job.id, transport_id=session_transport_id(job), lane=EVENT_LANE, payload=payload
    )


async def publish_debounced(
    deps: Deps, jobs: Sequence[GenerationJob]
) -> dict[str, outbox.Transport]:
    """Debounce publishing: one delayed message per session (events without a session are
    just delayed). Meant for ``outbox.publish_for_policy`` under the debounce policy."""
    window = deps.options.debounce_seconds
    outcome: dict[str, outbox.Transport] = {}
    newest: dict[str, GenerationJob] = {}
    for job in jobs:
        if job.source_type is SourceType.AGENT_EVENT and job.server_session_id is not None:
            newest[job.server_session_id] = job
        else:
            outcome[job.id] = await outbox.publish(deps, job, delay=window)
    for job in newest.values():
        state: outbox.Transport = "queued_only"
        if deps.queue is not None and job.status is JobStatus.QUEUED:
            try:
                await deps.queue.publish(session_message(job), delay=window)
                state = "enqueued"
            except ClaudeMemError as exc:
                log.warning("debounced publish for job %s failed, left queued: %s", job.id, exc)
        for other in jobs:
            if other.server_session_id == job.server_session_id and other.id not in outcome:
                outcome[other.id] = state
    return outcome


# -- shared helpers ---------------------------------------------------------------------------


async def queued_session_jobs(
    uow: UnitOfWork,
    deps: Deps,
    team_id: str,
    project_id: str,
    session_id: str,
    *,
    due_only: bool = True,
    limit: int = 50,
    scan_limit: int = 1000,
) -> list[GenerationJob]:
    """The session's queued event jobs, oldest first. (Scans the project's queued event
    jobs: the job repository has no per-session listing yet.)"""
    now = deps.clock.now()
    rows, _ = await uow.jobs.list(
        JobFilter(
            team_id=team_id,
            project_id=project_id,
            status=JobStatus.QUEUED,
            source_type=SourceType.AGENT_EVENT,
        ),
        Page(limit=scan_limit),
    )
    found = [
        job
        for job in rows
        if job.server_session_id == session_id
        and (not due_only or job.next_attempt_at is None or job.next_attempt_at <= now)
    ]
    found.sort(key=lambda job: (job.created_at, job.id))
    return found[:limit]


async def release_claimed(
    deps: Deps, job: GenerationJob, *, worker_id: str, reason: str, source: str
) -> GenerationJob | None:
    """Give a job this worker claimed but did not finish back to the queue (shutdown, lost
    batch lead). The interrupted try does not count as an attempt. Returns the queued row,
    or None when the job is no longer ours."""
    deps_now = deps.clock.now()
    async with deps.storage.unit_of_work() as uow:
        current = await uow.jobs.get(job.team_id, job.id)
        if (
            current is None
            or current.status is not JobStatus.PROCESSING
            or current.locked_by != worker_id
        ):
            return None
        uncounted = attrs.evolve(current, attempts=max(current.attempts - 1, 0))
        if not machine.can_transition(uncounted, JobStatus.QUEUED):
            return None
        target = machine.transition(
            uncounted,
            JobStatus.QUEUED,
            now=deps_now,
            next_attempt_at=deps_now,
            last_error={"reason": reason, "classification": "interrupted"},
        )
        if not await uow.jobs.compare_and_set(current, target):
            return None
        await outbox.append_job_event(
            uow,
            deps,
            target,
            JobEventType.QUEUED,
            {"source": source, "reason": reason, "workerId": worker_id},
        )
    await outbox.publish(deps, target)
    return target


async def release_held(deps: Deps, job_id: str, *, worker_id: str) -> int:
    """Release the job ``job_id`` (and, for a debounced session, its siblings) that this
    worker holds. Returns how many jobs went back to ``queued``."""
    async with deps.storage.unit_of_work() as uow:
        job = await uow.jobs.get_unscoped(job_id)
        if job is None:
            return 0
        held: list[GenerationJob] = [job]
        if (
            deps.options.session_policy == "debounce"
            and job.source_type is SourceType.AGENT_EVENT
            and job.server_session_id is not None
        ):
            rows, _ = await uow.jobs.list(
                JobFilter(
                    team_id=job.team_id,
                    project_id=job.project_id,
                    status=JobStatus.PROCESSING,
                    source_type=SourceType.AGENT_EVENT,
                ),
                Page(limit=1000),
            )
            held += [
                row
                for row in rows
                if row.id != job.id
                and row.server_session_id == job.server_session_id
                and row.locked_by == worker_id
            ]
    released = 0
    for row in held:
        if row.status is JobStatus.PROCESSING and row.locked_by == worker_id:
            done = await release_claimed(
                deps, row, worker_id=worker_id, reason="worker shutdown", source="worker_shutdown"
            )
            released += done is not None
    return released


# -- debounce: one provider call per session window ---------------------------------------


async def _probe_tokens() -> int:
    """A batch's first call in a budget period is estimated before its prompt is built."""
    return provider_gate.PROBE_TOKENS


class SessionBatcher:
    """Queue handler that coalesces a debounced session's queued event jobs.

    Under any other policy, and for summary jobs or events without a session, it is
    exactly :meth:`Generator.process`."""

    def __init__(self, generator: Generator, *, max_batch: int = 50) -> None:
        self.generator = generator
        self.max_batch = max_batch

    @property
    def deps(self) -> Deps:
        return self.generator.deps

    async def handle(self, message: QueueMessage) -> None:
        """A :data:`JobHandler` (for ``InProcessQueue.consume``)."""
        await self.process(message)

    async def process(self, message: QueueMessage) -> list[ProcessResult]:
        """Process what ``message`` stands for; one result per job touched."""
        gen = self.generator
        deps = self.deps
        if deps.options.session_policy != "debounce":
            return [await gen.process(message.job_id, message.payload)]
        async with deps.storage.unit_of_work() as uow:
            job = await uow.jobs.get_unscoped(message.job_id)
            if (
                job is None
                or job.source_type is not SourceType.AGENT_EVENT
                or job.server_session_id is None
                or message.payload.get("team_id") != job.team_id
                or message.payload.get("project_id") != job.project_id
            ):
                batch: list[GenerationJob] = []
            else:
                batch = await queued_session_jobs(
                    uow,
                    deps,
                    job.team_id,
                    job.project_id,
                    job.server_session_id,
                    limit=self.max_batch,
                )
        if len(batch) <= 1:
            # Nothing to coalesce (or a scope mismatch, which process() audits and fails).
            return [await gen.process(message.job_id, message.payload)]
        return await self.process_batch(batch)

    async def process_batch(self, jobs: Sequence[GenerationJob]) -> list[ProcessResult]:
        gen = self.generator
        deps = self.deps
        now = deps.clock.now()
        results: list[ProcessResult] = []
        claimed: list[GenerationJob] = []
        held: list[GenerationJob] = []
        async with deps.storage.unit_of_work() as uow:
            # One provider call for the batch: one pass of the gate, before any claim.
            gate = await provider_gate.admit(
                uow, deps, gen.provider, jobs[0], prompt_tokens=_probe_tokens
            )
            ticket = gate.ticket if isinstance(gate, provider_gate.Admit) else None
            for job in jobs if isinstance(gate, provider_gate.Admit) else ():
                current = await uow.jobs.get(job.team_id, job.id)
                if current is None:
                    continue
                refusal = await gen.refusal(uow, current, current.payload)
                if refusal is not None:
                    if not current.status.terminal:
                        await gen.fail_now(uow, current, refusal, classification=refusal)
                        results.append(
                            ProcessResult(job_id=current.id, outcome="failed", error=refusal)
                        )
                    continue
                taken = await gen.claim(uow, current, now)
                if taken is not None:
                    claimed.append(taken)
            if isinstance(gate, provider_gate.Hold):
                for job in jobs:
                    current = await uow.jobs.get(job.team_id, job.id)
                    if current is not None:
                        done = await provider_gate.hold(
                            uow, deps, current, gate, worker_id=gen.worker_id
                        )
                        held += [done] if done is not None else []
            if not claimed:
                await provider_gate.release(uow, ticket)
            else:
                await provider_gate.transfer(uow, ticket, claimed[0].id)
        if isinstance(gate, provider_gate.Busy):
            await outbox.publish(deps, jobs[0], delay=gate.retry_in)
            return [ProcessResult(job_id=job.id, outcome="busy") for job in jobs]
        if isinstance(gate, provider_gate.Hold):
            for job in held:
                await provider_gate.publish_held(deps, job)
            return [ProcessResult(job_id=job.id, outcome="held", error=gate.reason) for job in jobs]
        if not claimed:
            return results
        try:
            return results + await self._generate(claimed, ticket)
        except ProviderError as exc:
            await provider_gate.note_failure(deps, gen.provider, ticket, exc)
            for job in claimed:
                results.append(
                    await gen.record_failure(
                        job, str(exc), exc.kind, exc.retryable, retry_after=exc.retry_after
                    )
                )
        except ClaudeMemError as exc:
            await provider_gate.release_now(deps, ticket)
            for job in claimed:
                results.append(await gen.record_failure(job, str(exc), "unknown", False))
        except BaseException:
            await provider_gate.release_now(deps, ticket)
            raise
        return results

    async def _generate(
        self, claimed: list[GenerationJob], ticket: provider_gate.Ticket | None = None
    ) -> list[ProcessResult]:
        gen = self.generator
        deps = self.deps
        lead, covered = claimed[0], claimed[1:]
        async with deps.storage.unit_of_work() as uow:
            project = await uow.projects.get(lead.team_id, lead.project_id)
            events = list(
                await uow.events.get_many(
                    lead.team_id,
                    lead.project_id,
                    [job.agent_event_id for job in claimed if job.agent_event_id],
                )
            )
        events.sort(key=lambda event: (event.occurred_at, event.id))
        build = prompt.build_observation_prompt(
            events,
            project_id=lead.project_id,
            team_id=lead.team_id,
            job_id=lead.id,
            server_session_id=lead.server_session_id,
            project_name=project.name if project else None,
            mode=gen.mode,
        )
        covered_results: list[ProcessResult] = []

        async def complete_covered(uow: UnitOfWork, ids: list[str]) -> None:
            # In the lead's own transaction: the batch completes together or not at all.
            covered_results.extend(await self._complete_covered(uow, lead, covered, ids))

        if build.skipped_all or not events:
            await provider_gate.release_now(deps, ticket)
            lead_result = await gen.persist(
                lead, [], None, private=build.had_private_content, also=complete_covered
            )
        else:
            try:
                result = await holding_lease(
                    deps,
                    claimed,
                    gen.provider.generate(
                        GenerationRequest(
                            prompt=build.prompt,
                            purpose="observations",
                            events=events,
                            allowed_types=gen.mode.types,
                        )
                    ),
                )
            except LeaseLost:
                await provider_gate.release_now(deps, ticket)
                await self._release_covered(lead, covered, "lost_lease")
                return [ProcessResult(job_id=lead.id, outcome="lost_lease")]
            await usage.record_call(deps, claimed, result, purpose="observations", ticket=ticket)
            parsed = parser.parse_observations(result.text, gen.mode)
            if isinstance(parsed, parser.ParseFailure):
                return [
                    await gen.record_failure(job, parsed.reason, "parse_error", False)
                    for job in claimed
                ]
            drafts = []
            for item in parsed.observations:
                content = render.observation_content(item)
                if content:
                    drafts.append(gen.draft_observation(lead, item.index, item, content, result))
            lead_result = await gen.persist(
                lead,
                drafts,
                result,
                private=build.had_private_content,
                also=complete_covered,
                events=events,
            )
        if lead_result.outcome != "completed":
            await self._release_covered(lead, covered, lead_result.outcome)
            return [lead_result]
        return [lead_result, *covered_results]

    async def _release_covered(
        self, lead: GenerationJob, covered: Sequence[GenerationJob], outcome: str
    ) -> None:
        for job in covered:
            await release_claimed(
                self.deps,
                job,
                worker_id=self.generator.worker_id,
                reason=f"batch lead {lead.id} ended {outcome}",
                source="debounce_release",
            )

    async def _complete_covered(
        self, uow: UnitOfWork, lead: GenerationJob, covered: list[GenerationJob], ids: list[str]
    ) -> list[ProcessResult]:
        gen = self.generator
        deps = self.deps
        now = deps.clock.now()
        results: list[ProcessResult] = []
        for job in covered:
            current = await uow.jobs.get(job.team_id, job.id)
            if (
                current is None
                or current.status is not JobStatus.PROCESSING
                or current.locked_by != gen.worker_id
                or current.attempts != job.attempts
            ):
                results.append(ProcessResult(job_id=job.id, outcome="lost_lease"))
                continue
            done = machine.transition(current, JobStatus.COMPLETED, now=now)
            if not await uow.jobs.compare_and_set(current, done):
                results.append(ProcessResult(job_id=job.id, outcome="lost_lease"))
                continue
            for observation_id in ids:
                await uow.sources.add(
                    ObservationSource(
                        id=deps.ids.new_id(),
                        observation_id=observation_id,
                        team_id=job.team_id,
                        project_id=job.project_id,
                        source_type=ObservationSourceType.AGENT_EVENT,
                        source_id=job.source_id,
                        agent_event_id=job.agent_event_id,
                        generation_job_id=lead.id,
                        metadata={"coalescedJobId": job.id, "policy": "debounce"},
                        created_at=now,
                    )
                )
            details = {
                "coalescedInto": lead.id,
                "observationCount": 0,
                "observationIds": ids,
                "workerId": gen.worker_id,
                "policy": "debounce",
            }
            await outbox.append_job_event(uow, deps, done, JobEventType.COMPLETED, details)
            await audit(
                uow,
                deps,
                caller_for(done),
                "generation_job.completed",
                project_id=done.project_id,
                resource_id=done.id,
                details={**details, "sourceType": done.source_type.value},
            )
            results.append(ProcessResult(job_id=job.id, outcome="completed"))
        return results
