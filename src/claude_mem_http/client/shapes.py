"""The JSON bodies the client sends and returns, typed: keys spelled as on the wire
(api.md §3-§5). The client returns the route's body as it came; these ``TypedDict`` shapes
only describe it."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

SourceType = Literal["hook", "worker", "provider", "server", "api"]


class Session(TypedDict):
    id: str
    projectId: str
    teamId: str
    externalSessionId: str | None
    contentSessionId: str | None
    agentId: str | None
    agentType: str | None
    platformSource: str | None
    generationStatus: str
    metadata: dict[str, Any]
    startedAtEpoch: int | None
    endedAtEpoch: int | None
    lastGeneratedAtEpoch: int | None
    createdAtEpoch: int
    updatedAtEpoch: int


class Event(TypedDict):
    id: str
    projectId: str
    teamId: str
    serverSessionId: str | None
    sourceAdapter: str
    sourceEventId: str | None
    eventType: str
    payload: Any
    metadata: dict[str, Any]
    occurredAtEpoch: int
    receivedAtEpoch: int
    createdAtEpoch: int


class JobSummary(TypedDict):
    id: str
    status: str
    bullmqJobId: str | None
    sourceType: str
    sourceId: str
    transport: str
    createdAtEpoch: int
    updatedAtEpoch: int
    attempts: NotRequired[int]
    maxAttempts: NotRequired[int]


class JobStatus(TypedDict):
    id: str
    projectId: str
    teamId: str
    sourceType: str
    sourceId: str
    agentEventId: str | None
    serverSessionId: str | None
    jobType: str
    status: str
    bullmqJobId: str | None
    attempts: int
    maxAttempts: int
    nextAttemptAtEpoch: int | None
    completedAtEpoch: int | None
    failedAtEpoch: int | None
    cancelledAtEpoch: int | None
    lastError: dict[str, Any] | None
    createdAtEpoch: int
    updatedAtEpoch: int


class JobListEntry(TypedDict):
    id: str
    projectId: str
    teamId: str
    sourceType: str
    sourceId: str
    status: str
    attempts: int
    maxAttempts: int
    createdAtEpoch: int
    completedAtEpoch: int | None
    failedAtEpoch: int | None
    lastError: dict[str, Any] | None
    payload: NotRequired[dict[str, Any]]


class Observation(TypedDict):
    id: str
    projectId: str
    teamId: str
    serverSessionId: str | None
    kind: str
    content: str
    metadata: dict[str, Any]
    createdAtEpoch: int
    updatedAtEpoch: int


class SessionBody(TypedDict):
    session: Session


class EndSessionBody(TypedDict):
    session: Session
    generationJob: NotRequired[JobSummary]


class EventBody(TypedDict):
    event: Event
    generationJob: NotRequired[JobSummary | None]
    waitTimedOut: NotRequired[bool]


class EventBatchBody(TypedDict):
    events: list[EventBody]
    waitTimedOut: NotRequired[bool]


class EventObservationsBody(TypedDict):
    eventId: str
    observations: list[dict[str, Any]]


class MemoryBody(TypedDict):
    memory: Observation


class Evidence(TypedDict):
    excerpt: str
    eventId: str | None
    score: float


class SearchHit(Observation):
    """An observation as search and context return it, with its evidence."""

    score: float
    similarity: float | None  # with semantic recall on; None otherwise
    excerpt: str
    evidence: list[Evidence]


class SearchBody(TypedDict):
    observations: list[SearchHit]


class RecentMemoriesBody(TypedDict):
    memories: list[Observation]


class ContextBody(TypedDict):
    observations: list[SearchHit]
    context: str


class JobBody(TypedDict):
    generationJob: JobStatus


class JobPageBody(TypedDict):
    jobs: list[JobListEntry]
    total: int
    limit: int
    offset: int
    requestId: NotRequired[str]


class RetryBody(TypedDict):
    generationJob: JobStatus
    retriedCount: int
    alreadyQueued: bool
    requestId: str | None


class CancelBody(TypedDict):
    generationJob: JobStatus
    alreadyCancelled: bool
    requestId: str | None


class ProjectPageBody(TypedDict):
    projects: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


class EventInput(TypedDict, total=False):
    """One element of a batch, as sent (``projectId``, ``sourceType``, ``eventType`` and
    ``occurredAtEpoch`` are required by the server)."""

    projectId: str
    sourceType: SourceType
    eventType: str
    occurredAtEpoch: int
    serverSessionId: str | None
    contentSessionId: str | None
    memorySessionId: str | None
    sourceEventId: str | None
    payload: Any
    metadata: dict[str, Any]
