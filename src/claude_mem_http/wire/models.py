"""The wire's response shapes as attrs classes: the one definition the server builds its
JSON from (:mod:`.responses`), the OpenAPI document describes (:mod:`.attrs_schema`) and
the client decodes with (:mod:`.converter`).

Attribute names are snake_case; the converter spells them camelCase on the wire (the
server-beta names), or as ``wire_name`` says where camelCase is not the reference's name.
Every ``*_epoch`` attribute is integer milliseconds since the Unix epoch. An attribute
marked ``omit_if_none`` is left out of the JSON object when it is None (and is optional in
the document); every other attribute is always present, null or not.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import attrs

from claude_mem_core.domain.budgets import Period
from claude_mem_core.ports.ledger import UsageGrouping

JobStatusName = Literal["queued", "processing", "completed", "failed", "cancelled"]
JobSourceType = Literal["agent_event", "session_summary", "observation_reindex"]
ObservationSourceTypeName = Literal[
    "agent_event", "session_summary", "observation_reindex", "manual"
]
TransportName = Literal["enqueued", "queued_only", "skipped"]
HeldReason = Literal["budget", "rate_limit"]
GenerationStatusName = Literal["idle", "processing", "completed", "failed"]
ErasedKind = Literal["event", "session", "project"]


def described(text: str, **schema: Any) -> dict[str, Any]:
    """Field metadata: the document's description of the field (and any JSON-schema
    keywords its type does not say, e.g. ``minimum``)."""
    return {"schema": {"description": text, **schema}}


def optional(description: str | None = None, *, null_is_sent: bool = False) -> dict[str, Any]:
    """Field metadata: the attribute is left out of the JSON object while None (an optional
    wire member; its default is None). ``null_is_sent``: the server may also send it as
    null (the document allows both; a decoder reads both as None)."""
    metadata: dict[str, Any] = {"omit_if_none": True, "null_is_sent": null_is_sent}
    if description is not None:
        metadata["schema"] = {"description": description}
    return metadata


_HELD_REASON = (
    "why a queued job waits for its next attempt: its project's budget is spent, or its "
    "provider asked every worker to wait; null otherwise"
)


@attrs.frozen
class Event:
    id: str
    project_id: str
    team_id: str
    server_session_id: str | None
    source_adapter: str
    source_event_id: str | None
    event_type: str
    payload: Any
    metadata: dict[str, Any]
    occurred_at_epoch: int
    received_at_epoch: int
    created_at_epoch: int


@attrs.frozen
class JobSummary:
    id: str
    status: JobStatusName
    bullmq_job_id: str | None
    source_type: JobSourceType
    source_id: str
    transport: TransportName
    created_at_epoch: int
    updated_at_epoch: int


@attrs.frozen
class JobWaitStatus:
    id: str
    status: JobStatusName
    transport: TransportName
    bullmq_job_id: str | None
    source_type: JobSourceType
    source_id: str
    attempts: int
    max_attempts: int
    created_at_epoch: int
    updated_at_epoch: int


@attrs.frozen
class JobStatus:
    id: str
    project_id: str
    team_id: str
    source_type: JobSourceType
    source_id: str
    agent_event_id: str | None
    server_session_id: str | None
    job_type: str
    status: JobStatusName
    bullmq_job_id: str | None
    attempts: int
    max_attempts: int
    next_attempt_at_epoch: int | None
    completed_at_epoch: int | None
    failed_at_epoch: int | None
    cancelled_at_epoch: int | None
    last_error: dict[str, Any] | None
    held_reason: HeldReason | None = attrs.field(metadata=described(_HELD_REASON))
    created_at_epoch: int
    updated_at_epoch: int


@attrs.frozen
class JobListEntry:
    id: str
    project_id: str
    team_id: str
    source_type: JobSourceType
    source_id: str
    status: JobStatusName
    attempts: int
    max_attempts: int
    created_at_epoch: int
    completed_at_epoch: int | None
    failed_at_epoch: int | None
    last_error: dict[str, Any] | None
    held_reason: HeldReason | None = attrs.field(metadata=described(_HELD_REASON))
    # Only with ?include=payload.
    payload: dict[str, Any] | None = attrs.field(default=None, metadata=optional())


@attrs.frozen
class Session:
    id: str
    project_id: str
    team_id: str
    external_session_id: str | None
    content_session_id: str | None
    agent_id: str | None
    agent_type: str | None
    platform_source: str | None
    generation_status: GenerationStatusName
    metadata: dict[str, Any]
    started_at_epoch: int
    ended_at_epoch: int | None
    last_generated_at_epoch: int | None
    created_at_epoch: int
    updated_at_epoch: int


@attrs.frozen
class Observation:
    id: str
    project_id: str
    team_id: str
    server_session_id: str | None
    kind: str = attrs.field(
        metadata=described(
            "observation, summary, manual, or the kind a memory was written with (decision, note…)"
        )
    )
    type: str | None
    title: str | None
    content: str
    metadata: dict[str, Any]
    created_at_epoch: int
    updated_at_epoch: int
    # Our additions: how often the fact was generated, and what replaced it.
    occurrences: int = attrs.field(
        metadata=described(
            "How many times this fact was generated: the same generated observation from "
            "another event is stored once, linked to each event",
            minimum=1,
        )
    )
    superseded_by: str | None = attrs.field(
        metadata=described("The newer observation that replaced this one, or null")
    )
    superseded_at_epoch: int | None


@attrs.frozen
class Evidence:
    """A passage of an event that matched the query."""

    excerpt: str
    event_id: str | None
    score: float


@attrs.frozen
class SearchHit(Observation):
    """An observation as search and context return it: the wire's fields, plus the
    evidence (our addition)."""

    score: float
    # Semantic recall on: the best cosine of the hit's passages with the query; else null.
    similarity: float | None
    excerpt: str
    evidence: list[Evidence]


@attrs.frozen
class ObservationSource:
    id: str
    source_type: ObservationSourceTypeName
    source_id: str
    generation_job_id: str | None
    created_at_epoch: int


@attrs.frozen
class ObservationWithSource(Observation):
    generation_key: str | None
    created_by_job_id: str | None
    source: ObservationSource


@attrs.frozen
class Project:
    id: str
    team_id: str
    name: str
    metadata: dict[str, Any]
    retain_days: int | None = attrs.field(
        metadata=described(
            "days its sessions and events are kept after their last activity; null: until erased"
        )
    )
    created_at_epoch: int
    updated_at_epoch: int


@attrs.frozen
class Erasure:
    """What an erase removed: ids and counts, never content."""

    kind: ErasedKind
    id: str
    team_id: str
    project_id: str
    erased_at_iso: str = attrs.field(
        metadata={**described("ISO 8601, UTC"), "wire_name": "erasedAt"}
    )
    erased_at_epoch: int
    removed: dict[str, int] = attrs.field(
        metadata=described(
            "rows removed, by kind (events, sessions, observations, sources, passages, "
            "vectors, jobs, jobEvents, statistics, tombstones)"
        )
    )
    requeued_jobs: int = attrs.field(
        metadata=described("running jobs of the session sent back to the queue")
    )
    cancelled_jobs: int
    revoked_keys: int = attrs.field(metadata=described("a project's keys, revoked"))
    complete: bool = attrs.field(
        metadata=described(
            "false while a project's rows are still being purged in the background (it is "
            "already gone to every read and write)"
        )
    )


@attrs.frozen
class UsageRow:
    group: str = attrs.field(
        metadata=described("a UTC day (YYYY-MM-DD), provider/model, project id, or total")
    )
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float = attrs.field(metadata=described("the sum of the known estimates"))
    unpriced_calls: int = attrs.field(metadata=described("calls whose cost is not known"))


@attrs.frozen
class Budget:
    """A project's budget and its current UTC period."""

    period: Period
    token_limit: int | None
    usd_limit: float | None
    period_start_epoch: int
    period_end_epoch: int
    spent_tokens: int
    spent_usd: float
    reserved_tokens: int = attrs.field(metadata=described("estimates of calls in flight"))
    reserved_usd: float
    remaining_tokens: int | None
    remaining_usd: float | None
    calls: int = attrs.field(metadata=described("calls settled in this period"))
    exhausted: bool


@attrs.frozen
class Usage:
    """Token ledger sums: rows by group, their total, the date of the price table, and the
    project's budget (null without one, or for a team-wide report)."""

    team_id: str
    project_id: str | None
    since_epoch: int
    until_epoch: int
    group_by: UsageGrouping
    rows: list[UsageRow]
    total: UsageRow
    prices_as_of: str
    budget: Budget | None


# -- error bodies -------------------------------------------------------------------------


@attrs.frozen
class Error:
    """Every error answer: its name and a message. Some add members (see the others)."""

    # Open: a few errors add a member of their own (a 410's ``field``, the compat routes').
    ALLOWS_MORE_MEMBERS: ClassVar[bool] = True

    error: str
    message: str


@attrs.frozen
class ValidationIssue:
    path: list[str | int]
    message: str
    code: str


@attrs.frozen
class ValidationError:
    error: Literal["ValidationError"]
    message: str
    issues: list[ValidationIssue]


@attrs.frozen
class EventConflict:
    """409 of an event whose ``sourceEventId`` was used for another payload."""

    error: Literal["Conflict"]
    message: str
    event_id: str = attrs.field(metadata=described("the stored event"))
    source_event_id: str | None
    index: int | None = attrs.field(
        default=None, metadata=optional("the attempt's position in a batch")
    )


@attrs.frozen
class CursorGone:
    """410 of a stream cursor older than the feed keeps: start again without it."""

    error: Literal["Gone"]
    message: str
    field: str


@attrs.frozen
class EventGone:
    """410 of an event whose ``sourceEventId`` names an erased event."""

    error: Literal["Gone"]
    message: str
    source_event_id: str | None = attrs.field(
        metadata=described("the replayed id: it names an erased event")
    )
    index: int | None = attrs.field(
        default=None, metadata=optional("the event's position in a batch")
    )


# The classes the OpenAPI document's response components are generated from (with the
# classes they hold); every route answering with one of them names it.
RESPONSE_CLASSES: list[type] = [
    Error,
    ValidationError,
    EventConflict,
    EventGone,
    Event,
    JobSummary,
    JobWaitStatus,
    JobStatus,
    JobListEntry,
    Session,
    Observation,
    SearchHit,
    ObservationWithSource,
    Project,
    Erasure,
    Usage,
]
