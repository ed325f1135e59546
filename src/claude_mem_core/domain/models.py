"""Domain records: frozen, keyword-only attrs classes with no I/O.

Timestamps are timezone-aware UTC datetimes truncated to milliseconds, because the wire
format speaks epoch milliseconds and a round trip through storage must be exact.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from attrs import field, frozen

JSONObject = dict[str, Any]


class ObservationKind(enum.StrEnum):
    """The kinds this package writes itself. An observation's ``kind`` is any kind string
    (a memory may be a ``decision``, a ``note``…); these three come back as members of
    this enum (:func:`known_kind`), so ``kind is ObservationKind.SUMMARY`` holds."""

    OBSERVATION = "observation"
    SUMMARY = "summary"
    MANUAL = "manual"


_KNOWN_KINDS = {k.value: k for k in ObservationKind}


def known_kind(kind: str) -> str:
    """``kind`` as the :class:`ObservationKind` member of that value if there is one,
    else unchanged."""
    return _KNOWN_KINDS.get(kind, kind)


class SourceType(enum.StrEnum):
    AGENT_EVENT = "agent_event"
    SESSION_SUMMARY = "session_summary"
    OBSERVATION_REINDEX = "observation_reindex"


class ObservationSourceType(enum.StrEnum):
    AGENT_EVENT = "agent_event"
    SESSION_SUMMARY = "session_summary"
    OBSERVATION_REINDEX = "observation_reindex"
    MANUAL = "manual"


class JobType(enum.StrEnum):
    GENERATE_FOR_EVENT = "observation_generate_for_event"
    GENERATE_SESSION_SUMMARY = "observation_generate_session_summary"
    REINDEX = "observation_reindex"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class JobEventType(enum.StrEnum):
    QUEUED = "queued"
    ENQUEUED = "enqueued"
    PROCESSING = "processing"
    RETRY_SCHEDULED = "retry_scheduled"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SessionGenerationStatus(enum.StrEnum):
    IDLE = "idle"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class EventSourceAdapter(enum.StrEnum):
    """Values accepted for ``sourceType`` on ingest (stored as ``source_adapter``)."""

    HOOK = "hook"
    WORKER = "worker"
    PROVIDER = "provider"
    SERVER = "server"
    API = "api"
    # Events that arrive through the legacy /api/sessions/* routes (never a /v1 sourceType).
    CLAUDE_CODE_COMPAT = "claude-code-compat"


def _frozen_scopes(value: Any) -> frozenset[str]:
    return frozenset(value)


@frozen(kw_only=True)
class Team:
    id: str
    name: str
    metadata: JSONObject = field(factory=dict)
    created_at: datetime
    updated_at: datetime


@frozen(kw_only=True)
class Project:
    id: str
    team_id: str
    name: str
    metadata: JSONObject = field(factory=dict)
    # Days its sessions and events are kept after their last activity (None: until erased);
    # ``services/retention.py`` erases what is older.
    retain_days: int | None = None
    created_at: datetime
    updated_at: datetime


@frozen(kw_only=True)
class ApiKey:
    """A stored API key. Only the SHA-256 of the raw key is ever kept."""

    id: str
    key_hash: str = field(repr=False)
    team_id: str | None
    project_id: str | None
    actor_id: str
    name: str | None = None
    scopes: frozenset[str] = field(converter=_frozen_scopes)
    revoked_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    created_at: datetime
    updated_at: datetime

    def is_usable(self, now: datetime) -> bool:
        """A key works while it is neither revoked nor expired."""
        return self.refusal(now) is None

    def refusal(self, now: datetime) -> str | None:
        """Why the key is refused at ``now`` (revoked, expired), or None if it works."""
        if self.revoked_at is not None:
            return REVOKED_KEY
        if self.expires_at is not None and self.expires_at <= now:
            return EXPIRED_KEY
        return None


UNKNOWN_KEY = "Unknown API key"
REVOKED_KEY = "API key has been revoked"
EXPIRED_KEY = "API key has expired"


@frozen(kw_only=True)
class ServerSession:
    id: str
    team_id: str
    project_id: str
    external_session_id: str | None = None
    idempotency_key: str | None = None
    content_session_id: str | None = None
    agent_id: str | None = None
    agent_type: str | None = None
    platform_source: str | None = None
    generation_status: SessionGenerationStatus = SessionGenerationStatus.IDLE
    metadata: JSONObject = field(factory=dict)
    started_at: datetime
    ended_at: datetime | None = None
    last_generated_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


@frozen(kw_only=True)
class AgentEvent:
    id: str
    team_id: str
    project_id: str
    server_session_id: str | None = None
    source_adapter: str
    source_event_id: str | None = None
    idempotency_key: str
    event_type: str
    payload: Any = field(factory=dict)
    metadata: JSONObject = field(factory=dict)
    occurred_at: datetime
    received_at: datetime
    created_at: datetime


@frozen(kw_only=True)
class GenerationJob:
    """A row of the outbox: one unit of generation work and its lifecycle.

    Status changes go through :mod:`claude_mem_core.domain.jobs`, never by hand.
    """

    id: str
    team_id: str
    project_id: str
    agent_event_id: str | None = None
    source_type: SourceType
    source_id: str
    server_session_id: str | None = None
    job_type: JobType
    status: JobStatus = JobStatus.QUEUED
    idempotency_key: str
    transport_id: str | None = None
    attempts: int = 0
    max_attempts: int = 3
    next_attempt_at: datetime | None = None
    locked_at: datetime | None = None
    locked_by: str | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    cancelled_at: datetime | None = None
    last_error: JSONObject | None = None
    payload: JSONObject = field(factory=dict)
    created_at: datetime
    updated_at: datetime


@frozen(kw_only=True)
class JobEvent:
    """One line of a job's lifecycle log."""

    id: str
    generation_job_id: str
    team_id: str
    project_id: str
    event_type: JobEventType
    status_after: JobStatus
    attempt: int = 0
    details: JSONObject = field(factory=dict)
    created_at: datetime


@frozen(kw_only=True)
class Observation:
    """A compact, searchable fact about what an agent did or learned.

    ``kind`` says where it came from (generated observation, session summary, manual
    memory) or what a memory is (any kind string its writer chose: ``decision``,
    ``note``…; known kinds are :class:`ObservationKind` members); ``type`` is the
    observation type of the active mode (``bugfix``, ``decision``...).
    ``content`` is the rendered text that full-text search indexes.
    """

    id: str
    team_id: str
    project_id: str
    server_session_id: str | None = None
    kind: str = field(default=ObservationKind.OBSERVATION, converter=known_kind)
    type: str | None = None
    title: str | None = None
    subtitle: str | None = None
    narrative: str | None = None
    facts: tuple[str, ...] = field(default=(), converter=tuple)
    concepts: tuple[str, ...] = field(default=(), converter=tuple)
    files_read: tuple[str, ...] = field(default=(), converter=tuple)
    files_modified: tuple[str, ...] = field(default=(), converter=tuple)
    content: str
    generation_key: str | None = None
    metadata: JSONObject = field(factory=dict)
    created_by_job_id: str | None = None
    created_at: datetime
    updated_at: datetime
    # Generated observations only (``domain/fingerprint.py``): equal fingerprints in one
    # project are stored once, and ``occurrences`` counts how often the fact was generated.
    fingerprint: str | None = None
    occurrences: int = 1
    # The newer observation that replaced this one, and when (history stays readable).
    superseded_by: str | None = None
    superseded_at: datetime | None = None
    # Generated observations that modified files (``domain/supersession.py``): the key of
    # what they are about; a newer one of the same subject supersedes this one.
    subject: str | None = None


@frozen(kw_only=True)
class ObservationSource:
    """Links an observation to what produced it (an event, a session, a manual write)."""

    id: str
    observation_id: str
    team_id: str
    project_id: str
    source_type: ObservationSourceType
    source_id: str
    agent_event_id: str | None = None
    generation_job_id: str | None = None
    metadata: JSONObject = field(factory=dict)
    created_at: datetime


@frozen(kw_only=True)
class AuditEntry:
    id: str
    team_id: str | None
    project_id: str | None
    actor_id: str | None = None
    api_key_id: str | None = None
    action: str
    resource_type: str
    resource_id: str | None = None
    details: JSONObject = field(factory=dict)
    created_at: datetime


@frozen(kw_only=True)
class Scope:
    """A tenant scope: one project of one team. Every read and write names one."""

    team_id: str
    project_id: str
