"""claude-mem: a memory engine for coding agents.

Events in, searchable observations out. ``open_memory`` runs the whole pipeline in this
process; the HTTP server (``claude_mem_http``) and the worker (``claude_mem_worker``) are
thin shells over the same services.
"""

from claude_mem_core.domain.models import (
    AgentEvent,
    ApiKey,
    AuditEntry,
    GenerationJob,
    JobEvent,
    JobStatus,
    Observation,
    ObservationKind,
    Project,
    Scope,
    ServerSession,
    Team,
)
from claude_mem_core.errors import (
    ClaudeMemError,
    ConfigurationError,
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    MissingExtra,
    NotFound,
    ProviderError,
    SchemaNotReady,
    StorageUnavailable,
)
from claude_mem_core.facade import Memory, open_memory
from claude_mem_core.services.context import Caller, PipelineOptions
from claude_mem_core.services.ingest import EventInput

__all__ = [
    "AgentEvent",
    "ApiKey",
    "AuditEntry",
    "Caller",
    "ClaudeMemError",
    "ConfigurationError",
    "Conflict",
    "EventInput",
    "Forbidden",
    "GenerationJob",
    "Gone",
    "InvalidInput",
    "JobEvent",
    "JobStatus",
    "Memory",
    "MissingExtra",
    "NotFound",
    "Observation",
    "ObservationKind",
    "PipelineOptions",
    "Project",
    "ProviderError",
    "SchemaNotReady",
    "Scope",
    "ServerSession",
    "StorageUnavailable",
    "Team",
    "open_memory",
]
