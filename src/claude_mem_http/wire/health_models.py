"""The health, readiness and information answers as wire classes (api.md §5, decision 9):
what the server says of itself, never a host, port or key."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from claude_mem_http.wire.models import optional

QueueEngine = Literal["memory", "taskiq", "disabled"]
Probe = Literal["ok", "error"]
RedisMode = Literal["external", "managed", "docker"]


@attrs.frozen
class Alive:
    """GET /healthz: the process answers (nothing else is checked)."""

    status: Literal["ok"]
    runtime: str


@attrs.frozen
class QueueLane:
    kind: str
    name: str
    waiting: int
    unavailable: bool


@attrs.frozen
class RedisStatus:
    """Only with the Redis queue: the reference's object, without host, port or prefix."""

    status: Probe
    mode: RedisMode


@attrs.frozen
class QueueHealth:
    engine: QueueEngine
    status: Literal["ok", "error", "disabled"]
    lanes: list[QueueLane]
    redis: RedisStatus | None = attrs.field(default=None, metadata=optional())


@attrs.frozen
class AiHealth:
    provider: str
    auth_method: str
    last_interaction: None


@attrs.frozen
class StorageHealth:
    engine: str
    status: Probe


@attrs.frozen
class GenerationHealth:
    embedded: bool


@attrs.frozen
class Health:
    """GET /api/health (200, or 503 when degraded)."""

    status: Literal["ok", "degraded"]
    runtime: Literal["server-beta"]
    version: str
    uptime: float
    managed: bool
    pid: int
    initialized: bool
    mcp_ready: bool
    ai: AiHealth
    storage: StorageHealth
    queue: QueueHealth
    generation: GenerationHealth


@attrs.frozen
class Ready:
    status: Literal["ready"]
    mcp_ready: bool


@attrs.frozen
class NotReady:
    status: Literal["initializing", "degraded"]
    message: str


@attrs.frozen
class SchemaStatus:
    initialized: bool
    schema_version: str | None
    engine: str


@attrs.frozen
class QueueInfo:
    engine: QueueEngine


@attrs.frozen
class Boundary:
    status: Literal["active", "disabled", "errored"]
    reason: str
    details: dict[str, Any] | None = attrs.field(default=None, metadata=optional())


@attrs.frozen
class Boundaries:
    queue_manager: Boundary
    generation_worker_manager: Boundary
    provider_registry: Boundary
    event_broadcaster: Boundary


@attrs.frozen
class SemanticRecallInfo:
    enabled: bool
    model: str | None


@attrs.frozen
class Info:
    """GET /v1/info."""

    name: Literal["claude-mem-server"]
    runtime: Literal["server-beta"]
    version: str
    auth_mode: str
    postgres: SchemaStatus
    storage: SchemaStatus
    queue: QueueInfo
    provider: str
    boundaries: Boundaries
    queue_lanes: list[QueueLane]
    semantic_recall: SemanticRecallInfo
