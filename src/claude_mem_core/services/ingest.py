"""Use case: store agent events durably, each with its generation job, in one transaction."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from attrs import field, frozen

from claude_mem_core.domain import keys, redaction
from claude_mem_core.domain.models import (
    AgentEvent,
    EventSourceAdapter,
    GenerationJob,
    JobEventType,
    Project,
)
from claude_mem_core.domain.scopes import Need, require
from claude_mem_core.errors import EventConflict, FieldIssue, Gone, InvalidInput, NotFound
from claude_mem_core.generation.privacy import strip_tags_in_json
from claude_mem_core.ports.clock import truncate_ms
from claude_mem_core.ports.storage import UnitOfWork
from claude_mem_core.services import outbox
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.tenancy import (
    audit,
    audit_entry,
    project_visible,
    require_project,
)

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
    # Not part of the wire: the size of the request body this event came in, when a server
    # knows it. Large ones are prepared (stripped, redacted, hashed) off the event loop.
    received_bytes: int | None = None

    @property
    def is_large(self) -> bool:
        return self.received_bytes is not None and self.received_bytes > LARGE_EVENT_BYTES

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


def redacts(deps: Deps, project: Project | None) -> bool:
    """Whether events of ``project`` are redacted (its own setting, else the server's)."""
    return redaction.enabled_for(
        project.metadata if project is not None else None, default=deps.options.redact_secrets
    )


# Above this many bytes of request body, preparing an event (privacy stripping, redaction,
# hashing: CPU work linear in its size) runs in a worker thread, so one large body never
# holds the event loop that serves every other request.
LARGE_EVENT_BYTES = 64 * 1024


T = TypeVar("T")
_large_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


async def off_loop(work: Callable[[], T]) -> T:
    """``work()`` in a worker thread, one at a time per event loop: threads share the GIL,
    so a second would not finish sooner, and each one lengthens the loop's waits for it
    (measured: four 5 MB bodies at once held /healthz up to 190 ms; one at a time, under
    the 100 ms the bench asks). All of a large body's work takes this one slot: decoding
    it, preparing its events, encoding the answer."""
    loop = asyncio.get_running_loop()
    slot = _large_slots.get(loop)
    if slot is None:
        slot = _large_slots[loop] = asyncio.Semaphore(1)
    async with slot:
        return await asyncio.to_thread(work)


async def prepared(
    deps: Deps, caller: Caller, item: EventInput, *, redact: bool | None = None
) -> AgentEvent:
    """:func:`candidate`, off the event loop when ``item`` came in a large body."""
    if item.is_large:
        return await off_loop(lambda: candidate(deps, caller, item, redact=redact))
    return candidate(deps, caller, item, redact=redact)


def candidate(
    deps: Deps, caller: Caller, item: EventInput, *, redact: bool | None = None
) -> AgentEvent:
    """The event row ``item`` would insert (its id is new; a replay finds the stored one).

    ``redact``: whether credentials are redacted from the payload (default: the server's
    setting; callers that read the project pass :func:`redacts`)."""
    occurred_at = truncate_ms(item.occurred_at)
    received = item.payload if item.payload is not None else {}
    # Private content never reaches storage (nor, therefore, a provider).
    payload = strip_tags_in_json(received).value
    now = deps.clock.now()
    try:
        # The key hashes the payload before redaction: it does not change with the
        # redaction settings (and stays the reference server's key).
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
        # Only an event with a source id can be replayed with another payload: hash the
        # payload as received, so neither stripping nor redaction can make an identical
        # replay look different.
        digest = keys.payload_digest(received) if item.source_event_id else None
    except (TypeError, ValueError):  # NaN, infinities, sets, other objects: not JSON
        raise InvalidInput.field(
            "payload", "must be JSON (no NaN, infinities or objects)"
        ) from None
    # The server's own metadata keys are never the caller's to set.
    metadata = {k: v for k, v in item.metadata.items() if k not in redaction.SERVER_EVENT_METADATA}
    if deps.options.redact_secrets if redact is None else redact:
        # Credentials never reach storage nor a provider (after <private> stripping).
        redacted = deps.options.redactor.redact_json(payload)
        payload = redacted.value
        if redacted.counts:
            metadata[redaction.REDACTIONS_KEY] = redacted.counts
    if digest is not None:
        metadata[redaction.RECEIVED_DIGEST_KEY] = digest
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
        metadata=metadata,
        occurred_at=occurred_at,
        received_at=now,
        created_at=now,
    )


def conflicts(stored: AgentEvent, attempt: AgentEvent) -> bool:
    """Whether ``attempt``, a replay of ``stored`` (same idempotency key), came with another
    payload. Events stored before payloads were hashed count as identical."""
    theirs = stored.metadata.get(redaction.RECEIVED_DIGEST_KEY)
    ours = attempt.metadata.get(redaction.RECEIVED_DIGEST_KEY)
    return isinstance(theirs, str) and isinstance(ours, str) and theirs != ours


class _Conflicts(Exception):
    """Raised inside a unit of work to roll back an attempt that conflicts (nothing of it
    is kept, not even its metadata); the conflicts are audited after the rollback."""

    def __init__(self, found: list[tuple[int, AgentEvent, EventInput]]) -> None:
        super().__init__("conflicting replay")
        self.found = found


async def _audit_conflicts(deps: Deps, caller: Caller, error: _Conflicts) -> EventConflict:
    """Audit each conflicting attempt (``event.conflict``) and return the error to raise."""
    async with deps.storage.unit_of_work() as uow:
        await uow.audit.add_many(
            [
                audit_entry(
                    deps,
                    caller,
                    "event.conflict",
                    project_id=stored.project_id,
                    resource_id=stored.id,
                    details={
                        "sourceAdapter": item.source_adapter,
                        "sourceEventId": item.source_event_id,
                        "eventType": item.event_type,
                        "serverSessionId": item.server_session_id,
                        **({"index": index} if index >= 0 else {}),
                    },
                )
                for index, stored, item in error.found
            ]
        )
    index, stored, item = error.found[0]
    return EventConflict(
        event_id=stored.id,
        source_event_id=item.source_event_id,
        index=index if index >= 0 else None,
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
    project = await require_project(uow, caller, item.project_id)
    if item.server_session_id is not None:
        session = await uow.sessions.get(caller.team_id, item.server_session_id)
        if session is None or session.project_id != item.project_id:
            raise NotFound("Session not found")
    attempt = await prepared(deps, caller, item, redact=redacts(deps, project))
    event, created = await uow.events.add(attempt)
    if not created and conflicts(event, attempt):
        raise _Conflicts([(-1, event, item)])
    if created:
        await _refuse_erased(uow, [(-1, event)])
    job: GenerationJob | None = None
    job_created = False
    if generate:
        made = await outbox.create_event_job(uow, deps, caller, event, source=job_source)
        job, job_created = made.job, made.created
    return event, job, created, job_created


async def _refuse_erased(uow: UnitOfWork, written: Sequence[tuple[int, AgentEvent]]) -> None:
    """Raise ``Gone`` (the unit of work then rolls back) when one of the events just
    inserted replays an erased event's ``sourceEventId`` (``services/erase.py``). Checked
    after the insert, in its transaction: an erase committed meanwhile is seen too."""
    replayable = [(n, e) for n, e in written if e.source_event_id is not None]
    scopes = dict.fromkeys((e.team_id, e.project_id) for _, e in replayable)
    for team_id, project_id in scopes:
        mine = [(n, e) for n, e in replayable if (e.team_id, e.project_id) == (team_id, project_id)]
        erased = await uow.erasure.erased_keys(
            team_id, project_id, [e.idempotency_key for _, e in mine]
        )
        for n, event in mine:
            if event.idempotency_key in erased:
                raise Gone(source_event_id=event.source_event_id, index=n if n >= 0 else None)


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
    """Store one event (idempotently) and, if ``generate``, its generation job.

    A replay (same ``source_event_id``) with the payload it was first sent with answers
    the stored event; with another payload it raises ``EventConflict`` (and is audited
    as ``event.conflict``), changing nothing. A replay of an erased event raises ``Gone``,
    storing nothing."""
    require(caller.scopes, Need.WRITE_EVENTS)
    issues = validate(item)
    if issues:
        raise InvalidInput(issues)
    try:
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
    except _Conflicts as found:
        raise await _audit_conflicts(deps, caller, found) from None
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
    """Store up to ``max_batch`` events all-or-nothing, in input order (one that replays
    an erased event refuses the whole batch: ``Gone``, with its index)."""
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
    try:
        results = await _write_batch(deps, caller, items, generate=generate, job_source=job_source)
    except _Conflicts as found:
        raise await _audit_conflicts(deps, caller, found) from None
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


async def _write_batch(
    deps: Deps,
    caller: Caller,
    items: Sequence[EventInput],
    *,
    generate: bool,
    job_source: str,
) -> list[tuple[AgentEvent, GenerationJob | None, bool]]:
    async with deps.storage.unit_of_work() as uow:
        redact: dict[str, bool] = {}
        for project_id in dict.fromkeys(item.project_id for item in items):
            redact[project_id] = redacts(deps, await require_project(uow, caller, project_id))
        session_ids = dict.fromkeys(i.server_session_id for i in items if i.server_session_id)
        for session_id in session_ids:
            session = await uow.sessions.get(caller.team_id, session_id)
            projects = {i.project_id for i in items if i.server_session_id == session_id}
            if session is None or projects != {session.project_id}:
                raise NotFound("Session not found")

        # One statement per table for the whole batch, with the outcome of one add per
        # item in order (a repeated event within the batch is a replay of the first).
        def prepare_all() -> list[AgentEvent]:
            return [candidate(deps, caller, i, redact=redact[i.project_id]) for i in items]

        large = any(item.is_large for item in items)
        attempts = await off_loop(prepare_all) if large else prepare_all()
        stored = await uow.events.add_many(attempts)
        found = [
            (n, event, item)
            for n, ((event, created), attempt, item) in enumerate(
                zip(stored, attempts, items, strict=True)
            )
            if not created and conflicts(event, attempt)
        ]
        if found:
            raise _Conflicts(found)
        await _refuse_erased(uow, [(n, e) for n, (e, created) in enumerate(stored) if created])
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
    return results
