"""Use case: store agent events durably, each with its generation job, in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from attrs import field, frozen

from claude_mem_core.domain import keys
from claude_mem_core.domain.models import (
    AgentEvent,
    EventSourceAdapter,
    GenerationJob,
    JobEventType,
)
from claude_mem_core.domain.scopes import Need, require
from claude_mem_core.errors import FieldIssue, InvalidInput, NotFound
from claude_mem_core.generation.privacy import strip_tags_in_json
from claude_mem_core.ports.clock import truncate_ms
from claude_mem_core.ports.storage import UnitOfWork
from claude_mem_core.services import outbox
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.tenancy import audit, project_visible, require_project

SOURCE_ADAPTERS = frozenset(a.value for a in EventSourceAdapter)
MAX_EPOCH_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
# Ids and event types are keys and labels, not content: a 10 kB "eventType" is a client bug
# that would otherwise be indexed, audited and sent to the provider.
MAX_IDENTIFIER_LENGTH = 256


@frozen(kw_only=True)
class EventInput:
    """One event as a caller sends it (``source_adapter`` is the wire's ``sourceType``)."""

    project_id: str
    source_adapter: str
    event_type: str
    occurred_at: datetime
    server_session_id: str | None = None
    source_event_id: str | None = None
    payload: Any = field(factory=dict)
    metadata: dict[str, Any] = field(factory=dict)

    @classmethod
    def from_epoch_ms(cls, occurred_at_epoch: int, **fields: Any) -> EventInput:
        return cls(occurred_at=epoch_ms_to_datetime(occurred_at_epoch), **fields)


def epoch_ms_to_datetime(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


@frozen(kw_only=True)
class IngestedEvent:
    event: AgentEvent
    job: GenerationJob | None
    created: bool
    transport: outbox.Transport


def validate(item: EventInput, prefix: str = "") -> list[FieldIssue]:
    issues: list[FieldIssue] = []

    def need_text(name: str, value: object, *, optional: bool = False) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str) or not value.strip():
            issues.append(FieldIssue(prefix + name, "must be a non-empty string"))
        elif len(value) > MAX_IDENTIFIER_LENGTH:
            issues.append(
                FieldIssue(prefix + name, f"must be at most {MAX_IDENTIFIER_LENGTH} characters")
            )

    need_text("project_id", item.project_id)
    need_text("event_type", item.event_type)
    need_text("server_session_id", item.server_session_id, optional=True)
    need_text("source_event_id", item.source_event_id, optional=True)
    if item.source_adapter not in SOURCE_ADAPTERS:
        issues.append(
            FieldIssue(
                prefix + "source_adapter", f"must be one of {', '.join(sorted(SOURCE_ADAPTERS))}"
            )
        )
    occurred_at = cast(object, item.occurred_at)
    if not isinstance(occurred_at, datetime) or occurred_at.tzinfo is None:
        issues.append(FieldIssue(prefix + "occurred_at", "must be a timezone-aware datetime"))
    if not isinstance(cast(object, item.metadata), dict):
        issues.append(FieldIssue(prefix + "metadata", "must be an object"))
    return issues


def candidate(deps: Deps, caller: Caller, item: EventInput) -> AgentEvent:
    """The event row ``item`` would insert (its id is new; a replay finds the stored one)."""
    occurred_at = truncate_ms(item.occurred_at)
    # Private content never reaches storage (nor, therefore, a provider).
    payload = strip_tags_in_json(item.payload if item.payload is not None else {}).value
    now = deps.clock.now()
    try:
        idempotency_key = keys.agent_event_key(
            team_id=caller.team_id,
            project_id=item.project_id,
            source_adapter=item.source_adapter,
            source_event_id=item.source_event_id,
            server_session_id=item.server_session_id,
            event_type=item.event_type,
            occurred_at=occurred_at,
            payload=payload,
        )
    except (TypeError, ValueError):  # NaN, infinities, sets, other objects: not JSON
        raise InvalidInput.field(
            "payload", "must be JSON (no NaN, infinities or objects)"
        ) from None
    return AgentEvent(
        id=deps.ids.new_id(),
        team_id=caller.team_id,
        project_id=item.project_id,
        server_session_id=item.server_session_id,
        source_adapter=item.source_adapter,
        source_event_id=item.source_event_id,
        idempotency_key=idempotency_key,
        event_type=item.event_type,
        payload=payload,
        metadata=dict(item.metadata),
        occurred_at=occurred_at,
        received_at=now,
        created_at=now,
    )


async def _ingest_one(
    uow: UnitOfWork,
    deps: Deps,
    caller: Caller,
    item: EventInput,
    *,
    generate: bool,
    job_source: str,
) -> tuple[AgentEvent, GenerationJob | None, bool, bool]:
    await require_project(uow, caller, item.project_id)
    if item.server_session_id is not None:
        session = await uow.sessions.get(caller.team_id, item.server_session_id)
        if session is None or session.project_id != item.project_id:
            raise NotFound("Session not found")
    event, created = await uow.events.add(candidate(deps, caller, item))
    job: GenerationJob | None = None
    job_created = False
    if generate:
        made = await outbox.create_event_job(uow, deps, caller, event, source=job_source)
        job, job_created = made.job, made.created
    return event, job, created, job_created


def received_details(event: AgentEvent, job: GenerationJob | None, created: bool) -> dict[str, Any]:
    """The details of an ``event.received`` audit row."""
    return {
        "sourceAdapter": event.source_adapter,
        "sourceEventId": event.source_event_id,
        "eventType": event.event_type,
        "serverSessionId": event.server_session_id,
        "generationJobId": job.id if job else None,
        "replay": not created,
    }


async def ingest_event(
    deps: Deps,
    caller: Caller,
    item: EventInput,
    *,
    generate: bool = True,
    job_source: str = "http_post_v1_events",
) -> IngestedEvent:
    """Store one event (idempotently) and, if ``generate``, its generation job."""
    require(caller.scopes, Need.WRITE_EVENTS)
    issues = validate(item)
    if issues:
        raise InvalidInput(issues)
    async with deps.storage.unit_of_work() as uow:
        event, job, created, job_created = await _ingest_one(
            uow, deps, caller, item, generate=generate, job_source=job_source
        )
        await audit(
            uow,
            deps,
            caller,
            "event.received",
            project_id=event.project_id,
            resource_id=event.id,
            details=received_details(event, job, created),
        )
    transport: outbox.Transport = "skipped"
    if job is not None:
        # A replay re-publishes only a job that is still waiting: publishing is idempotent
        # downstream, and a queued row may have missed its first delivery.
        transport = (await outbox.publish_for_policy(deps, [job]))[job.id]
    del job_created
    return IngestedEvent(event=event, job=job, created=created, transport=transport)


async def ingest_batch(
    deps: Deps,
    caller: Caller,
    items: Sequence[EventInput],
    *,
    generate: bool = True,
    job_source: str = "http_post_v1_events_batch",
) -> list[IngestedEvent]:
    """Store up to ``max_batch`` events all-or-nothing, in input order."""
    require(caller.scopes, Need.WRITE_EVENTS)
    limit = deps.options.max_batch
    if not items:
        raise InvalidInput.field("events", "must contain at least one event")
    if len(items) > limit:
        raise InvalidInput.field("events", f"must contain at most {limit} events")
    issues = [issue for n, item in enumerate(items) for issue in validate(item, f"{n}.")]
    if issues:
        raise InvalidInput(issues)
    # Scope pre-check before any write: one foreign project refuses the whole batch.
    for item in items:
        if not project_visible(caller, item.project_id):
            raise NotFound("Project not found")
    results: list[tuple[AgentEvent, GenerationJob | None, bool]] = []
    async with deps.storage.unit_of_work() as uow:
        for project_id in dict.fromkeys(item.project_id for item in items):
            await require_project(uow, caller, project_id)
        session_ids = dict.fromkeys(i.server_session_id for i in items if i.server_session_id)
        for session_id in session_ids:
            session = await uow.sessions.get(caller.team_id, session_id)
            projects = {i.project_id for i in items if i.server_session_id == session_id}
            if session is None or projects != {session.project_id}:
                raise NotFound("Session not found")
        # One statement per table for the whole batch, with the outcome of one add per
        # item in order (a repeated event within the batch is a replay of the first).
        stored = await uow.events.add_many([candidate(deps, caller, item) for item in items])
        batch_jobs: list[GenerationJob | None] = [None] * len(stored)
        if generate:
            made = await uow.jobs.add_many(
                [outbox.new_event_job(deps, caller, event) for event, _ in stored]
            )
            batch_jobs = [job for job, _ in made]
            await uow.job_events.add_many(
                [
                    outbox.job_event(deps, job, JobEventType.QUEUED, {"source": job_source})
                    for job, created in made
                    if created
                ]
            )
        results = [
            (event, job, created) for (event, created), job in zip(stored, batch_jobs, strict=True)
        ]
        await audit(
            uow,
            deps,
            caller,
            "event.batch_received",
            resource_id=None,
            details={
                "eventCount": len(items),
                "generationJobIds": [job.id for _, job, _ in results if job is not None],
            },
        )
    jobs = [job for _, job, _ in results if job is not None]
    outcome = await outbox.publish_for_policy(deps, jobs)
    return [
        IngestedEvent(
            event=event,
            job=job,
            created=created,
            transport=outcome[job.id] if job is not None else "skipped",
        )
        for event, job, created in results
    ]
