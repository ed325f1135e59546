"""The outbox: job rows written in the producer's transaction, published after commit.

A job that cannot be published stays ``queued`` and is found again by reconciliation, so
publishing is best effort and never loses work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

from attrs import frozen

from claude_mem_core.domain import keys
from claude_mem_core.domain.models import (
    AgentEvent,
    GenerationJob,
    JobEvent,
    JobEventType,
    JobStatus,
    JobType,
    ServerSession,
    SourceType,
)
from claude_mem_core.errors import ClaudeMemError
from claude_mem_core.ports.queue import EVENT_LANE, SUMMARY_LANE, QueueMessage
from claude_mem_core.ports.storage import UnitOfWork
from claude_mem_core.services.context import Caller, Deps

log = logging.getLogger("claude_mem.outbox")

Transport = Literal["enqueued", "queued_only", "skipped"]


@frozen(kw_only=True)
class CreatedJob:
    job: GenerationJob
    created: bool


def lane_for(job: GenerationJob) -> str:
    return SUMMARY_LANE if job.source_type is SourceType.SESSION_SUMMARY else EVENT_LANE


def job_event(
    deps: Deps, job: GenerationJob, event_type: JobEventType, details: dict[str, Any]
) -> JobEvent:
    """The job-log entry recording ``job`` as it now is (for ``add`` or ``add_many``)."""
    return JobEvent(
        id=deps.ids.new_id(),
        generation_job_id=job.id,
        team_id=job.team_id,
        project_id=job.project_id,
        event_type=event_type,
        status_after=job.status,
        attempt=job.attempts,
        details=details,
        created_at=deps.clock.now(),
    )


async def append_job_event(
    uow: UnitOfWork,
    deps: Deps,
    job: GenerationJob,
    event_type: JobEventType,
    details: dict[str, Any],
) -> None:
    await uow.job_events.add(job_event(deps, job, event_type, details))


def new_event_job(deps: Deps, caller: Caller, event: AgentEvent) -> GenerationJob:
    """The queued job row for ``event`` (what :func:`create_event_job` inserts)."""
    job_id = deps.ids.new_id()
    source_id = event.id
    payload = {
        "kind": "event",
        "team_id": event.team_id,
        "project_id": event.project_id,
        "source_type": SourceType.AGENT_EVENT.value,
        "source_id": source_id,
        "generation_job_id": job_id,
        "agent_event_id": event.id,
        "api_key_id": caller.api_key_id,
        "actor_id": caller.actor_id,
        "source_adapter": event.source_adapter,
        "request_id": caller.request_id,
    }
    return _new_job(
        deps,
        job_id=job_id,
        team_id=event.team_id,
        project_id=event.project_id,
        source_type=SourceType.AGENT_EVENT,
        source_id=source_id,
        job_type=JobType.GENERATE_FOR_EVENT,
        agent_event_id=event.id,
        server_session_id=event.server_session_id,
        transport_kind="event",
        payload=payload,
    )


async def create_event_job(
    uow: UnitOfWork, deps: Deps, caller: Caller, event: AgentEvent, *, source: str
) -> CreatedJob:
    return await _create(uow, deps, new_event_job(deps, caller, event), source=source)


async def create_summary_job(
    uow: UnitOfWork,
    deps: Deps,
    caller: Caller,
    session: ServerSession,
    *,
    source: str,
    source_adapter: str = "api",
) -> CreatedJob:
    job_id = deps.ids.new_id()
    payload = {
        "kind": "summary",
        "team_id": session.team_id,
        "project_id": session.project_id,
        "source_type": SourceType.SESSION_SUMMARY.value,
        "source_id": session.id,
        "generation_job_id": job_id,
        "server_session_id": session.id,
        "api_key_id": caller.api_key_id,
        "actor_id": caller.actor_id,
        "source_adapter": source_adapter,
        "request_id": caller.request_id,
    }
    job = _new_job(
        deps,
        job_id=job_id,
        team_id=session.team_id,
        project_id=session.project_id,
        source_type=SourceType.SESSION_SUMMARY,
        source_id=session.id,
        job_type=JobType.GENERATE_SESSION_SUMMARY,
        agent_event_id=None,
        server_session_id=session.id,
        transport_kind="summary",
        payload=payload,
    )
    return await _create(uow, deps, job, source=source)


def _new_job(
    deps: Deps,
    *,
    job_id: str,
    team_id: str,
    project_id: str,
    source_type: SourceType,
    source_id: str,
    job_type: JobType,
    agent_event_id: str | None,
    server_session_id: str | None,
    transport_kind: keys.QueueKind,
    payload: dict[str, Any],
) -> GenerationJob:
    now = deps.clock.now()
    return GenerationJob(
        id=job_id,
        team_id=team_id,
        project_id=project_id,
        agent_event_id=agent_event_id,
        source_type=source_type,
        source_id=source_id,
        server_session_id=server_session_id,
        job_type=job_type,
        status=JobStatus.QUEUED,
        idempotency_key=keys.generation_job_key(
            team_id=team_id,
            project_id=project_id,
            source_type=source_type.value,
            source_id=source_id,
            job_type=job_type.value,
        ),
        transport_id=keys.transport_id(
            transport_kind,
            team_id=team_id,
            project_id=project_id,
            source_type=source_type.value,
            source_id=source_id,
        ),
        max_attempts=deps.options.max_attempts,
        payload=payload,
        created_at=now,
        updated_at=now,
    )


async def _create(
    uow: UnitOfWork, deps: Deps, candidate: GenerationJob, *, source: str
) -> CreatedJob:
    job, created = await uow.jobs.add(candidate)
    # A replay finds the stored job and leaves it, its payload and its log alone.
    if created:
        await append_job_event(uow, deps, job, JobEventType.QUEUED, {"source": source})
    return CreatedJob(job=job, created=created)


def message_for(job: GenerationJob) -> QueueMessage:
    return QueueMessage(
        job_id=job.id,
        transport_id=job.transport_id or job.id,
        lane=lane_for(job),
        payload=dict(job.payload),
    )


async def publish(deps: Deps, job: GenerationJob, *, delay: float = 0.0) -> Transport:
    """Publish a committed queued job. Failure leaves it to reconciliation."""
    if deps.queue is None or job.status is not JobStatus.QUEUED:
        return "queued_only"
    try:
        await deps.queue.publish(message_for(job), delay=delay)
    except ClaudeMemError as exc:
        log.warning("publish of job %s failed, left queued for reconciliation: %s", job.id, exc)
        return "queued_only"
    return "enqueued"


async def publish_for_policy(deps: Deps, jobs: Sequence[GenerationJob]) -> dict[str, Transport]:
    """Publish event jobs as the session policy says (summary jobs always go at once)."""
    policy = deps.options.session_policy
    outcome: dict[str, Transport] = {}
    if policy == "debounce":
        # One message per session, whose delay restarts with each event (a true debounce);
        # imported here because debounce builds on the generation service, which uses us.
        from claude_mem_core.services import debounce

        session_jobs = [
            j for j in jobs if j.source_type is SourceType.AGENT_EVENT and j.server_session_id
        ]
        if session_jobs:
            outcome.update(await debounce.publish_debounced(deps, session_jobs))
        jobs = [j for j in jobs if j.id not in outcome]
    due: list[tuple[GenerationJob, float]] = []
    for job in jobs:
        is_event = job.source_type is SourceType.AGENT_EVENT
        if is_event and policy == "end-of-session" and job.server_session_id is not None:
            outcome[job.id] = "queued_only"  # the session's summary job will cover it
            continue
        delay = deps.options.debounce_seconds if is_event and policy == "debounce" else 0.0
        due.append((job, delay))
    if len(due) == 1:
        job, delay = due[0]
        outcome[job.id] = await publish(deps, job, delay=delay)
    elif due:
        outcome.update(await publish_many(deps, due))
    return outcome


async def publish_many(
    deps: Deps, jobs: Sequence[tuple[GenerationJob, float]]
) -> dict[str, Transport]:
    """Publish committed queued jobs, each with its delay, in one call to the queue (one
    round trip on Redis). A failure leaves all of them to reconciliation."""
    outcome: dict[str, Transport] = {}
    messages: list[tuple[QueueMessage, float]] = []
    for job, delay in jobs:
        if deps.queue is None or job.status is not JobStatus.QUEUED:
            outcome[job.id] = "queued_only"
        else:
            messages.append((message_for(job), delay))
    if not messages or deps.queue is None:
        return outcome
    try:
        await deps.queue.publish_many(messages)
    except ClaudeMemError as exc:
        log.warning(
            "publish of %d jobs failed, left queued for reconciliation: %s", len(messages), exc
        )
        sent: Transport = "queued_only"
    else:
        sent = "enqueued"
    for message, _ in messages:
        outcome[message.job_id] = sent
    return outcome
