"""What every use case needs: who is calling, and the ports to act through."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from attrs import field, frozen

from claude_mem_core.domain.prices import PRICES
from claude_mem_core.domain.rate_limits import NO_LIMITS, RateLimits
from claude_mem_core.domain.redaction import DEFAULT_REDACTOR, Redactor
from claude_mem_core.domain.scopes import ALL
from claude_mem_core.domain.tenancy import TenantScope
from claude_mem_core.ports.clock import Clock, IdSource, SystemClock, UuidSource
from claude_mem_core.ports.queue import JobQueue
from claude_mem_core.ports.storage import Storage
from claude_mem_core.ports.tracing import NOOP_TRACER, Tracer

if TYPE_CHECKING:
    from claude_mem_core.services.embedding import SemanticRecall


def _scopes(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


@frozen(kw_only=True)
class Caller:
    """The authenticated principal of one call.

    ``team_id`` bounds everything; ``project_id`` is set for project-scoped keys and then
    bounds everything further. Embedded callers have every scope; the library's (from a
    :class:`Scope`) are bound to its project, so a sibling project's row is "not found".
    """

    team_id: str
    project_id: str | None = None
    api_key_id: str | None = None
    actor_id: str | None = None
    request_id: str | None = None
    scopes: frozenset[str] = field(default=frozenset({ALL}), converter=_scopes)

    @classmethod
    def embedded(
        cls, team_id: str, *, project_id: str | None = None, actor_id: str = "system:embedded"
    ) -> Caller:
        return cls(team_id=team_id, project_id=project_id, actor_id=actor_id)

    @property
    def scope(self) -> TenantScope:
        """The rows this caller may see: its team's, and only its project's if it has one."""
        return TenantScope(self.team_id, self.project_id)


SessionPolicy = str  # "per-event" | "debounce" | "end-of-session"
SESSION_POLICIES = ("per-event", "debounce", "end-of-session")


@frozen(kw_only=True)
class PipelineOptions:
    max_attempts: int = 3
    session_policy: SessionPolicy = "per-event"
    debounce_seconds: float = 5.0
    lease_seconds: float = 30.0
    # How often a worker renews the lease of a job it is processing; None: a third of
    # the lease (a live worker's job is never taken over, a dead one's after one lease).
    heartbeat_seconds: float | None = None
    max_batch: int = 500
    # Credentials in event payloads are replaced by typed markers at ingest, unless turned
    # off here (for the whole server) or in a project's metadata (per project, either way;
    # see ``domain.redaction.PROJECT_SETTING``).
    redact_secrets: bool = True
    redactor: Redactor = field(default=DEFAULT_REDACTOR, eq=False)
    # Reconciliation republishes at most this many stranded queued jobs per pass.
    reconcile_batch: int = 100
    # How long the change feed behind the live stream keeps its entries (a cursor older
    # than that is refused): CLAUDE_MEM_STREAM_RETAIN_HOURS.
    stream_retain_seconds: float = 7 * 24 * 3600.0
    # What provider calls cost (``domain/prices.py``; CLAUDE_MEM_PRICES adds or overrides).
    prices: Mapping[tuple[str, str], tuple[float, float]] = field(default=PRICES, eq=False)
    # Calls per minute each paid provider may get from all workers together
    # (``domain/rate_limits.py``): CLAUDE_MEM_PROVIDER_RPM; none by default.
    provider_rpm: RateLimits = NO_LIMITS

    @property
    def heartbeat_interval(self) -> float:
        if self.heartbeat_seconds is not None:
            return self.heartbeat_seconds
        return self.lease_seconds / 3


@frozen(kw_only=True)
class Deps:
    """The ports a service acts through. ``queue`` is None when nothing consumes jobs yet
    (rows stay ``queued`` until a worker's reconciliation picks them up). ``semantic`` is
    None unless semantic recall is configured (``services.embedding``). ``tracer``: spans
    (``ports/tracing.py``), none by default."""

    storage: Storage
    queue: JobQueue | None = None
    clock: Clock = field(factory=SystemClock)
    ids: IdSource = field(factory=UuidSource)
    options: PipelineOptions = field(factory=PipelineOptions)
    jitter: Callable[[], float] = field(default=random.random)
    semantic: SemanticRecall | None = None
    tracer: Tracer = field(default=NOOP_TRACER, eq=False)
