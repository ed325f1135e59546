"""The bodies routes answer with: the objects around the shapes of :mod:`.models`
(``{"session": …}``, a page of jobs…), as wire classes too, and which route answers with
which (:data:`ROUTE_BODIES`, checked against the OpenAPI document by a test)."""

from __future__ import annotations

from typing import Any, Literal, get_args

import attrs

from claude_mem_http.wire import health_models
from claude_mem_http.wire.attrs_schema import type_schema
from claude_mem_http.wire.models import (
    Budget,
    CursorGone,
    Erasure,
    Event,
    JobListEntry,
    JobStatus,
    JobSummary,
    JobWaitStatus,
    Observation,
    ObservationWithSource,
    Project,
    SearchHit,
    Session,
    TransportName,
    Usage,
    described,
    optional,
)


@attrs.frozen
class SessionBody:
    session: Session


@attrs.frozen
class EndSessionBody:
    session: Session
    generation_job: JobSummary | None = attrs.field(default=None, metadata=optional())


@attrs.frozen
class EventResult:
    """One stored event, and what became of its generation job."""

    event: Event
    replayed: bool = attrs.field(
        metadata=described(
            "true when the event was stored before (an idempotent replay: nothing new is "
            "stored); `transport` then says what this request did with its job, e.g. "
            "queued_only when it was not published again"
        )
    )
    # Absent without a job; null when asked to wait for a job that was not created.
    generation_job: JobSummary | JobWaitStatus | None = attrs.field(
        default=None, metadata=optional(null_is_sent=True)
    )
    wait_timed_out: Literal[True] | None = attrs.field(default=None, metadata=optional())


@attrs.frozen
class EventBatchResult:
    events: list[EventResult]
    wait_timed_out: Literal[True] | None = attrs.field(default=None, metadata=optional())


@attrs.frozen
class EventBody:
    event: Event


@attrs.frozen
class EventObservations:
    event_id: str
    observations: list[ObservationWithSource]


@attrs.frozen
class MemoryBody:
    memory: Observation


@attrs.frozen
class RecentMemories:
    memories: list[Observation]


@attrs.frozen
class SearchBody:
    observations: list[SearchHit]


@attrs.frozen
class ContextBody:
    observations: list[SearchHit]
    context: str


@attrs.frozen
class JobBody:
    generation_job: JobStatus


@attrs.frozen
class JobPage:
    jobs: list[JobListEntry]
    total: int
    limit: int
    offset: int
    # Only GET /v1/jobs names the request.
    request_id: str | None = attrs.field(default=None, metadata=optional())


@attrs.frozen
class RetryBody:
    generation_job: JobStatus
    retried_count: int
    already_queued: bool
    request_id: str


@attrs.frozen
class CancelBody:
    generation_job: JobStatus
    already_cancelled: bool
    request_id: str


@attrs.frozen
class ProjectPage:
    projects: list[Project]
    total: int
    limit: int
    offset: int


@attrs.frozen
class ProjectBody:
    project: Project
    request_id: str | None


@attrs.frozen
class ErasedBody:
    erased: Erasure
    request_id: str


@attrs.frozen
class UsageBody:
    usage: Usage
    request_id: str | None


@attrs.frozen
class BudgetBody:
    budget: Budget | None
    request_id: str | None


@attrs.frozen
class Imported:
    """What an import added, by kind, and what it skipped (the project held it already)."""

    project_id: str
    lines: int
    sessions: int
    events: int
    observations: int
    sources: int
    skipped: int
    jobs: int


@attrs.frozen
class ImportedBody:
    imported: Imported
    request_id: str | None


# -- the legacy hook routes (api.md §4) ------------------------------------------------------


@attrs.frozen
class CompatToolUse:
    """What POST /api/sessions/observations did with one tool use."""

    status: Literal["queued", "skipped"]
    observation_count: int
    session_id: str
    server_session_id: str
    event_id: str | None
    generation_job_id: str | None
    transport: TransportName
    replayed: bool | None = attrs.field(
        default=None,
        metadata=optional("true when the tool use was recorded before (nothing new is stored)"),
    )
    conflict: Literal[True] | None = attrs.field(
        default=None,
        metadata=optional(
            "tool_use_id already used for other content; eventId is the stored event "
            "(nothing stored)"
        ),
    )
    erased: Literal[True] | None = attrs.field(
        default=None,
        metadata=optional(
            "tool_use_id names an erased event; status is skipped and nothing is stored"
        ),
    )


@attrs.frozen
class CompatSummaryQueued:
    status: Literal["queued"]
    session_id: str
    server_session_id: str
    generation_job_id: str
    transport: TransportName


@attrs.frozen
class CompatSummarySkipped:
    status: Literal["skipped"]
    reason: str


CompatSummary = CompatSummaryQueued | CompatSummarySkipped


# The legacy routes' own 500 answers (what the reference's hooks read).
@attrs.frozen
class CompatNotStored:
    stored: Literal[False]
    reason: str


@attrs.frozen
class CompatSummaryFailed:
    status: Literal["error"]
    reason: str


# (method, path, status) → the body that route answers with. The OpenAPI paths name the
# same classes; a test checks every entry against the document, and the HTTP tests decode
# every real answer of these routes with its class.
ROUTE_BODIES: dict[tuple[str, str, str], Any] = {
    ("post", "/v1/sessions/start", "201"): SessionBody,
    ("post", "/v1/sessions/start", "200"): SessionBody,
    ("get", "/v1/sessions/{id}", "200"): SessionBody,
    ("post", "/v1/sessions/{id}/end", "200"): EndSessionBody,
    ("post", "/v1/events", "201"): EventResult,
    ("post", "/v1/events/batch", "201"): EventBatchResult,
    ("get", "/v1/events/{id}", "200"): EventBody,
    ("get", "/v1/events/{id}/observations", "200"): EventObservations,
    ("post", "/v1/memories", "201"): MemoryBody,
    ("get", "/v1/memories/recent", "200"): RecentMemories,
    ("get", "/v1/memories/{id}", "200"): MemoryBody,
    ("post", "/v1/search", "200"): SearchBody,
    ("post", "/v1/context", "200"): ContextBody,
    ("get", "/v1/jobs", "200"): JobPage,
    ("get", "/v1/jobs/{id}", "200"): JobBody,
    ("post", "/v1/jobs/{id}/retry", "200"): RetryBody,
    ("post", "/v1/jobs/{id}/cancel", "200"): CancelBody,
    ("get", "/v1/teams/{teamId}/jobs", "200"): JobPage,
    ("get", "/v1/projects/{projectId}/jobs", "200"): JobPage,
    ("get", "/v1/projects", "200"): ProjectPage,
    ("put", "/v1/projects/{id}/retention", "200"): ProjectBody,
    ("put", "/v1/projects/{id}/budget", "200"): BudgetBody,
    ("get", "/v1/usage", "200"): UsageBody,
    ("delete", "/v1/events/{id}", "200"): ErasedBody,
    ("delete", "/v1/sessions/{id}", "200"): ErasedBody,
    ("delete", "/v1/projects/{id}", "200"): ErasedBody,
    ("post", "/v1/projects/{id}/import", "200"): ImportedBody,
    ("post", "/api/sessions/observations", "200"): CompatToolUse,
    ("post", "/api/sessions/summarize", "200"): CompatSummary,
    ("post", "/api/sessions/observations", "500"): CompatNotStored,
    ("post", "/api/sessions/summarize", "500"): CompatSummaryFailed,
    ("get", "/v1/stream", "410"): CursorGone,
    ("get", "/healthz", "200"): health_models.Alive,
    ("get", "/api/health", "200"): health_models.Health,
    ("get", "/api/health", "503"): health_models.Health,
    ("get", "/api/readiness", "200"): health_models.Ready,
    ("get", "/api/readiness", "503"): health_models.NotReady,
    ("get", "/v1/info", "200"): health_models.Info,
}


def _classes(tp: Any) -> list[type]:
    return [tp] if attrs.has(tp) else [c for a in get_args(tp) for c in _classes(a)]


# Every class a route answers with (a union's members each), in a stable order.
BODY_CLASSES: list[type] = list(
    dict.fromkeys(c for tp in ROUTE_BODIES.values() for c in _classes(tp))
)


def body_ref(tp: Any) -> dict[str, Any]:
    """The document's schema of a route body: a reference to its class's generated schema,
    or one of several (a union of classes)."""
    return type_schema(tp)
