"""The storage port: a unit of work over repositories.

``async with storage.unit_of_work() as uow:`` opens one transaction; everything written
through ``uow``'s repositories commits together when the block exits normally and rolls back
if it raises. That is what makes "event + job + job event in one transaction" expressible.

Rules every adapter keeps (the contract suite checks them):

* Every read that is not explicitly ``unscoped`` filters by team (and project where given)
  in the query itself; a row of another tenant is indistinguishable from a missing row.
* ``add`` methods that take an idempotency key insert or return the existing row, with a
  flag telling which; they never raise on a duplicate key.
* ``add_many`` methods behave exactly like calling ``add`` for each item in order, in the
  same unit of work (a later item with the same key as an earlier one finds the earlier
  one), but adapters write all the rows in one statement per table where they can.
* ``JobRepository.compare_and_set`` writes a new job row only if the stored row still has the
  expected status, attempts and lock owner, so concurrent claims have exactly one winner.
* Records come back equal to what was written (timestamps are millisecond-precise UTC).
* A project marked deleted (``ErasureRepository.mark_project_deleted``) is missing to
  ``projects.get`` / ``find_by_name`` / ``list`` and to the by-id reads of its events,
  sessions, jobs and observations, and its search finds nothing, from the moment the mark
  commits; its rows are then purged in bounded batches
  (``ErasureRepository.purge_project``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from attrs import frozen

from claude_mem_core.domain.models import (
    AgentEvent,
    ApiKey,
    AuditEntry,
    GenerationJob,
    JobEvent,
    JobStatus,
    JSONObject,
    Observation,
    ObservationSource,
    Project,
    ServerSession,
    SessionGenerationStatus,
    SourceType,
    Team,
)
from claude_mem_core.domain.passages import Passage
from claude_mem_core.ports.budgets import (
    BudgetRepository,
    GateReads,
    ProviderPauseRepository,
    ProviderRateRepository,
)
from claude_mem_core.ports.change_feed import ChangeFeed
from claude_mem_core.ports.erasure import ErasedRows, ErasureRepository
from claude_mem_core.ports.export_reads import ExportReadRepository
from claude_mem_core.ports.ledger import LedgerEntry, LedgerRepository
from claude_mem_core.ports.search import (
    Evidence,
    PassageText,
    SearchHit,
    SearchIndexRepository,
    SearchVectorRepository,
)


@frozen(kw_only=True)
class Page:
    limit: int = 50
    offset: int = 0


@frozen(kw_only=True)
class JobFilter:
    team_id: str
    project_id: str | None = None
    status: JobStatus | None = None
    source_type: SourceType | None = None
    since: datetime | None = None


@frozen(kw_only=True)
class FreshEvent:
    """An event with the rows that are written with it when it is new: its generation job
    (if any), the job's first log entry (``seq`` 1), and its audit row. ``key_id``: the API
    key it is written under, which must still work (not revoked, not expired) at the write.
    ``large``: the event came in a body of megabytes; an adapter that encodes it (to JSON,
    say) does so off the event loop."""

    event: AgentEvent
    job: GenerationJob | None = None
    job_event: JobEvent | None = None
    audit: AuditEntry
    key_id: str | None = None
    large: bool = False


@frozen(kw_only=True)
class FreshMemory:
    """A memory (an observation written by its caller, no generation job) with the rows
    written with it: its source link, its search passages and its audit row. ``key_id``:
    the API key it is written under, which must still work at the write."""

    observation: Observation
    source: ObservationSource
    passages: tuple[Passage, ...] = ()
    audit: AuditEntry
    key_id: str | None = None


class TeamRepository(Protocol):
    async def add(self, team: Team) -> None: ...
    async def get(self, team_id: str) -> Team | None: ...
    async def find_by_name(self, name: str) -> Team | None: ...
    async def list(self, page: Page) -> tuple[Sequence[Team], int]: ...


class ProjectRepository(Protocol):
    """Projects of a team. A project marked deleted is not found by any of these reads."""

    async def add(self, project: Project) -> None:
        """Insert; raises ``NotFound`` when the team does not exist."""

    async def get(self, team_id: str, project_id: str) -> Project | None: ...
    async def find_by_name(self, team_id: str, name: str) -> Project | None: ...
    async def list(self, team_id: str, page: Page) -> tuple[Sequence[Project], int]: ...
    async def set_retention(
        self, team_id: str, project_id: str, days: int | None, *, at: datetime
    ) -> Project | None:
        """Set how many days the project keeps its sessions and events (None: until
        erased); the project as now stored, or None when it is not the team's (or is
        deleted)."""


class ApiKeyRepository(Protocol):
    async def add(self, key: ApiKey) -> None: ...
    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        """Unscoped by design: this is how a request finds its tenant."""

    async def get_unscoped(self, key_id: str) -> ApiKey | None: ...
    async def list(
        self, team_id: str | None, project_id: str | None, page: Page
    ) -> tuple[Sequence[ApiKey], int]:
        """Keys of a team (all teams when ``team_id`` is None), newest first."""

    async def save(self, key: ApiKey) -> None:
        """Overwrite mutable fields (revoked_at, expires_at, last_used_at, updated_at)."""

    async def record_use(self, used_at: Mapping[str, datetime]) -> None:
        """Set ``last_used_at`` of each key id to the given time unless it is already
        later; nothing else (a concurrent revocation is never overwritten). Unknown ids
        are ignored."""


class SessionRepository(Protocol):
    async def add(self, session: ServerSession) -> tuple[ServerSession, bool]:
        """Insert, or return the existing session with the same (project, idempotency key)
        or (project, external id) unchanged. The flag is True when a row was inserted."""

    async def get(self, team_id: str, session_id: str) -> ServerSession | None: ...
    async def find_by_idempotency_key(
        self, team_id: str, project_id: str, key: str
    ) -> ServerSession | None: ...
    async def save(self, session: ServerSession) -> None:
        """Overwrite ended_at, generation_status, metadata, last_generated_at, updated_at."""

    async def set_generation_status(
        self,
        team_id: str,
        project_id: str,
        session_id: str,
        status: SessionGenerationStatus,
        *,
        now: datetime,
        error: str | None = None,
    ) -> None: ...


class EventRepository(Protocol):
    async def add(self, event: AgentEvent) -> tuple[AgentEvent, bool]:
        """Insert, or return the stored event with the same idempotency key, its metadata
        shallow-merged with the new one (nothing else changes), except the keys the
        server sets at the first write (``domain.redaction.SERVER_EVENT_METADATA``),
        which keep their stored values."""

    async def add_many(self, events: Sequence[AgentEvent]) -> Sequence[tuple[AgentEvent, bool]]:
        """``add`` for each event in order; one result per event, in input order."""

    async def get(self, team_id: str, event_id: str) -> AgentEvent | None: ...
    async def get_many(
        self, team_id: str, project_id: str, event_ids: Sequence[str]
    ) -> Sequence[AgentEvent]: ...
    async def list_for_session(
        self, team_id: str, project_id: str, session_id: str, *, limit: int = 500
    ) -> Sequence[AgentEvent]:
        """The session's events, oldest first."""


class JobRepository(Protocol):
    async def add(self, job: GenerationJob) -> tuple[GenerationJob, bool]:
        """Insert, or return the stored job with the same idempotency key untouched."""

    async def add_many(self, jobs: Sequence[GenerationJob]) -> Sequence[tuple[GenerationJob, bool]]:
        """``add`` for each job in order; one result per job, in input order."""

    async def get(self, team_id: str, job_id: str) -> GenerationJob | None: ...
    async def get_unscoped(self, job_id: str) -> GenerationJob | None:
        """For the worker, which must compare the row's scope with the message's."""

    async def get_unscoped_with_event(
        self, job_id: str
    ) -> tuple[GenerationJob, AgentEvent | None] | None:
        """``get_unscoped`` and, in the same read, the job's agent event (in the job's own
        team and project; None when the job has none or it is not found there)."""

    async def get_for_generation(
        self, job_id: str, *, provider: str, now: datetime
    ) -> tuple[GenerationJob, AgentEvent | None, GateReads] | None:
        """``get_unscoped_with_event`` and, in the same read, what the provider gate reads
        for the job's project (``BudgetRepository.gate_reads`` for ``provider`` at
        ``now``): a paid job's first step, in one statement where the backend can."""

    async def compare_and_set(
        self, expected: GenerationJob, new: GenerationJob, *, event: JobEvent | None = None
    ) -> bool:
        """Write ``new`` iff the stored row (same id, team, project) still has
        ``expected``'s status, attempts and locked_by. Returns whether it was written.

        ``event`` (of the same job) is appended to the job's log iff the row was written,
        as ``job_events.add`` would, in the same statement where the adapter can."""

    async def advance(
        self,
        expected: GenerationJob,
        new: GenerationJob,
        *,
        event: JobEvent,
        observations: Sequence[Observation] = (),
        sources: Sequence[ObservationSource] = (),
        audit: Sequence[AuditEntry] = (),
        audit_always: Sequence[AuditEntry] = (),
        passages: Sequence[Passage] = (),
        ledger: Sequence[LedgerEntry] = (),
    ) -> bool | None:
        """A job's step in one go: ``compare_and_set(expected, new, event=event)`` and, only
        if it wrote, the new ``observations`` (of this job's scope and session), their
        ``sources``, their search ``passages`` and the ``audit`` rows; ``audit_always`` and
        the token ``ledger`` rows are written either way.

        True: all written. False: the stored row had changed; only ``audit_always`` and
        ``ledger`` were written. None: nothing was written and the caller does the step
        with the other methods. An adapter may always answer None, and must when a row
        would clash with a stored one (an observation's generation key is taken, the
        event's ``seq`` too).

        On PostgreSQL, in a unit of work that has not written yet, it is one statement
        committed at once, on its own (it stays even if the unit of work fails later), so
        it is meant as the unit of work's last write; once the unit of work has written,
        PostgreSQL answers None. Elsewhere it joins the unit of work's transaction."""

    async def save_payload(self, job: GenerationJob) -> None: ...
    async def list(self, where: JobFilter, page: Page) -> tuple[Sequence[GenerationJob], int]:
        """Newest first, with the total matching count."""

    async def list_due(
        self, *, now: datetime, lease_expired_before: datetime, limit: int
    ) -> Sequence[GenerationJob]:
        """Unscoped, for reconciliation: queued rows due now (next_attempt_at null or past)
        and processing rows whose lease started before ``lease_expired_before``."""

    async def renew_lease(self, job: GenerationJob, *, now: datetime) -> bool:
        """Restart the lease of ``job`` (a claim, as the claimer holds it) at ``now``: set
        the stored row's ``locked_at`` iff it is still ``processing`` with ``job``'s
        attempts and locked_by. False means the claim is lost (cancelled, released, or
        taken over) and the claimer must not write its results. A fenced heartbeat."""

    async def mark_republished(
        self, job_ids: Sequence[str], *, now: datetime, untouched_since: datetime
    ) -> set[str]:
        """Unscoped, for reconciliation: of these jobs, the ``queued`` rows not published
        since ``untouched_since`` (``next_attempt_at``, or ``updated_at`` when it is null,
        at or before it) get ``next_attempt_at = now``; returns their ids. Atomic per row,
        so of two reconcilers racing, one wins each job: only the winner publishes it."""

    async def count_by_status(self, team_id: str | None) -> dict[JobStatus, int]: ...
    async def completed_event_ids(
        self, team_id: str, project_id: str, event_ids: Sequence[str]
    ) -> set[str]:
        """Which of these events already have a completed event job."""


class JobEventRepository(Protocol):
    async def add(self, event: JobEvent) -> None: ...
    async def add_many(self, events: Sequence[JobEvent]) -> None:
        """``add`` for each event in order (a job's events keep their order)."""

    async def list(self, team_id: str, job_id: str) -> Sequence[JobEvent]:
        """Oldest first."""


class ObservationRepository(Protocol):
    async def add(self, observation: Observation) -> tuple[Observation, bool]:
        """Insert, or return unchanged the stored observation with the same (team, project,
        generation key) (a replay), else the one with the same (team, project, fingerprint)
        (the same fact again; ``domain/fingerprint.py``). Race-safe: of two units of work
        adding one fingerprint at once, one inserts and the other gets its row."""

    async def add_many(
        self, observations: Sequence[Observation]
    ) -> Sequence[tuple[Observation, bool]]:
        """``add`` for each observation in order; one result each, in input order."""

    async def add_occurrences(
        self, team_id: str, project_id: str, counts: Mapping[str, int]
    ) -> None:
        """Add ``counts[id]`` to each of these observations' ``occurrences`` (an atomic
        increment, so concurrent writers never lose one). Unknown ids are ignored."""

    async def supersede(
        self, team_id: str, project_id: str, subjects: Collection[str], *, at: datetime
    ) -> Sequence[tuple[str, str]]:
        """Apply the supersession rule (``domain/supersession.py``) to these subjects: of
        each one's current observations, all but the newest (``created_at``, then id) are
        marked superseded by it at ``at``, and their passages weigh
        ``ranking.SUPERSEDED_WEIGHT`` in search. Race-safe: units of work storing
        observations of one subject at once end with one current observation. Answers the
        (superseded id, current id) pairs marked, sorted."""

    async def lock_subjects(self, team_id: str, project_id: str, subjects: Collection[str]) -> None:
        """Hold these subjects until the unit of work ends, so that no other one applies
        the rule to them meanwhile. Taken before the unit of work's other writes (a lock
        taken after row locks could close a cycle with an erase); ``supersede`` takes them
        too, for a caller that wrote nothing else."""

    async def weigh(self, team_id: str, project_id: str, observation_ids: Sequence[str]) -> None:
        """Set these observations' passages' search weight from whether each is
        superseded (an import writes superseded observations as they were)."""

    async def get(
        self, team_id: str, project_id: str, observation_id: str
    ) -> Observation | None: ...
    async def get_in_team(self, team_id: str, observation_id: str) -> Observation | None:
        """The observation with this id in any project of the team (for a team-wide key)."""

    async def list(
        self, team_id: str, project_id: str, page: Page, *, kind: str | None = None
    ) -> tuple[Sequence[Observation], int]:
        """Newest first; only those of ``kind`` when given."""

    async def list_for_source(
        self, team_id: str, project_id: str, source_type: str, source_id: str
    ) -> Sequence[tuple[Observation, ObservationSource]]:
        """Observations linked to a source, oldest first."""

    async def list_for_job(
        self, team_id: str, project_id: str, job_id: str
    ) -> Sequence[Observation]: ...


class ObservationSourceRepository(Protocol):
    async def add(self, source: ObservationSource) -> ObservationSource:
        """Insert, or merge metadata into the existing (observation, type, source) link."""

    async def add_many(self, sources: Sequence[ObservationSource]) -> Sequence[ObservationSource]:
        """``add`` for each link in order; one result each, in input order."""


class AuditRepository(Protocol):
    async def add(self, entry: AuditEntry) -> None: ...
    async def add_read(self, entry: AuditEntry) -> bool:
        """The audit row of a read. In a unit of work that has not written yet it may be
        committed at once, on its own (it then stays even if the unit of work fails later);
        committed durably before it returns either way. In a unit of work that has
        written, it is ``add``.

        False, with nothing written, when ``entry.api_key_id`` names a key that is missing,
        revoked or expired: the read must then not be answered (callers may have taken the
        key from memory instead of reading it first)."""

    async def add_many(self, entries: Sequence[AuditEntry]) -> None: ...
    async def list(
        self, team_id: str, *, action: str | None = None, page: Page = Page()
    ) -> tuple[Sequence[AuditEntry], int]:
        """Newest first."""


class UnitOfWork(Protocol):
    """The repositories of one transaction (read-only attributes)."""

    @property
    def teams(self) -> TeamRepository: ...

    @property
    def projects(self) -> ProjectRepository: ...

    @property
    def api_keys(self) -> ApiKeyRepository: ...

    @property
    def sessions(self) -> SessionRepository: ...

    @property
    def events(self) -> EventRepository: ...

    @property
    def jobs(self) -> JobRepository: ...

    @property
    def job_events(self) -> JobEventRepository: ...

    @property
    def observations(self) -> ObservationRepository: ...

    @property
    def sources(self) -> ObservationSourceRepository: ...

    @property
    def search(self) -> SearchIndexRepository: ...

    @property
    def audit(self) -> AuditRepository: ...

    @property
    def vectors(self) -> SearchVectorRepository: ...

    @property
    def ledger(self) -> LedgerRepository: ...

    @property
    def budgets(self) -> BudgetRepository: ...

    @property
    def provider_pauses(self) -> ProviderPauseRepository: ...

    @property
    def provider_rates(self) -> ProviderRateRepository: ...

    @property
    def erasure(self) -> ErasureRepository: ...

    @property
    def exports(self) -> ExportReadRepository: ...


class Storage(Protocol):
    """A storage backend. Adapters: in-memory, SQLAlchemy on SQLite and Postgres."""

    name: str

    def unit_of_work(self) -> AbstractAsyncContextManager[UnitOfWork]: ...

    async def add_fresh_events(self, items: Sequence[FreshEvent]) -> set[str]:
        """Write the items whose event is new, each with all of its rows, in a unit of work of
        its own (on PostgreSQL, one statement); return the ids of the events written.

        An item is left out, with nothing written for it, when its event's idempotency key
        is stored already (also by an earlier item of ``items``) or is the key of an
        erased event (``ErasureRepository.erased_keys``), when its project is not its
        team's or is marked deleted, when its session is missing or of another project,
        when its project's metadata holds its own redaction setting
        (``domain.redaction.PROJECT_SETTING``: the items are built with the server's), or
        when its ``key_id`` names a key that is missing, revoked or expired. Callers give
        those to the ordinary path (``events.add``), which tells a replay from an error.
        """

    async def add_fresh_memories(self, items: Sequence[FreshMemory]) -> set[str]:
        """Write the items in scope, each with all of its rows, in a unit of work of its
        own (on PostgreSQL, usually one statement); return the ids of the observations
        written. The search statistics count exactly the passages written.

        An item is left out, with nothing written for it, when its project is not its
        team's or is marked deleted, when its session is missing or of another project, or
        when its ``key_id`` names a key that is missing, revoked or expired. Callers give
        those to the ordinary path (``add_memory``), which answers each with its error. A
        value the backend refuses raises, with nothing written.
        """

    def change_feed(self) -> ChangeFeed:
        """What commits, in an order a reader resumes from (``ports/change_feed.py``)."""

    async def check_schema(self) -> None:
        """Raise ``SchemaNotReady`` if the backend is not migrated to the expected head."""

    async def ping(self) -> None:
        """Raise ``StorageUnavailable`` if the backend cannot be reached."""

    async def close(self) -> None: ...


__all__ = [
    "ApiKeyRepository",
    "AuditRepository",
    "ErasedRows",
    "ErasureRepository",
    "EventRepository",
    "Evidence",
    "FreshEvent",
    "FreshMemory",
    "JSONObject",
    "JobEventRepository",
    "JobFilter",
    "JobRepository",
    "ObservationRepository",
    "ObservationSourceRepository",
    "Page",
    "PassageText",
    "ProjectRepository",
    "SearchHit",
    "SearchIndexRepository",
    "SearchVectorRepository",
    "SessionRepository",
    "Storage",
    "TeamRepository",
    "UnitOfWork",
]
