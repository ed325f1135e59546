"""In-memory storage: contract-complete, for embedders' tests and ``memory://`` URLs.

One lock serialises units of work (so transactions are trivially isolated), and each unit of
work copies a table the first time it writes to it, so an exception rolls everything back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs

from claude_mem_core.adapters import memory_supersession as supersession
from claude_mem_core.adapters.memory_budgets import (
    BUDGET_TABLES,
    MemoryBudgets,
    MemoryProviderPauses,
)
from claude_mem_core.domain import ranking
from claude_mem_core.domain.export_format import Counts
from claude_mem_core.domain.fusion import pack_vector, unpack_vector
from claude_mem_core.domain.models import (
    AgentEvent,
    ApiKey,
    AuditEntry,
    GenerationJob,
    JobEvent,
    JobStatus,
    Observation,
    ObservationSource,
    ObservationSourceType,
    Project,
    ServerSession,
    SessionGenerationStatus,
    SourceType,
    Team,
)
from claude_mem_core.domain.passages import Origin, Passage
from claude_mem_core.domain.redaction import PROJECT_SETTING, SERVER_EVENT_METADATA
from claude_mem_core.domain.tokens import Query
from claude_mem_core.errors import Forbidden, InvalidInput, NotFound
from claude_mem_core.ports.change_feed import ChangeFeed
from claude_mem_core.ports.clock import Clock, SystemClock
from claude_mem_core.ports.export_reads import Cursor
from claude_mem_core.ports.ledger import LedgerEntry, UsageGrouping, UsageRow
from claude_mem_core.ports.storage import (
    ErasedRows,
    Evidence,
    FreshEvent,
    FreshMemory,
    JobFilter,
    Page,
    PassageText,
    SearchHit,
)

T = TypeVar("T")

TABLES = (
    "teams",
    "projects",
    "api_keys",
    "sessions",
    "events",
    "jobs",
    "job_events",
    "observations",
    "sources",
    "passages",
    "audit",
    "vectors",
    # Erase (services/erase.py): project id -> (deleted at, purged at or None), and
    # "<team>\x00<project>\x00<idempotency key>" -> the erased event's ids.
    "deleted_projects",
    "erased_events",
    # The token ledger (services/usage.py): entry id -> LedgerEntry.
    "ledger",
    # Budgets and provider pauses (adapters/memory_budgets.py).
    *BUDGET_TABLES,
)


class _Tables:
    """The committed state: one dict per table, keyed by id; and the clock that says
    whether a key has expired."""

    def __init__(self, clock: Clock) -> None:
        self.data: dict[str, dict[str, Any]] = {name: {} for name in TABLES}
        self.clock = clock
        # The change feed (adapters/memory_change_feed.py): (kind, team, project, row id)
        # per new event, observation and job status change, appended at commit, so an
        # entry's serial (its index + 1) is commit order; and who to wake after a commit.
        self.feed: list[tuple[str, str, str, str]] = []
        self.feed_at: list[datetime] = []  # when each entry was committed, for pruning
        self.feed_pruned = 0  # entries pruned from the front (kept as blanks: serials stay)
        self.on_commit: list[Callable[[], None]] = []


def _deleted(tx: _Tx, project_id: str) -> bool:
    """Whether the project is marked deleted (being erased): missing to every read."""
    return project_id in tx.read("deleted_projects")


def _page(rows: list[T], page: Page) -> tuple[list[T], int]:
    return rows[page.offset : page.offset + page.limit], len(rows)


class _Tx:
    """Copy-on-write view of the tables for one unit of work."""

    def __init__(self, base: _Tables) -> None:
        self._base = base
        self._written: dict[str, dict[str, Any]] = {}

    def now(self) -> datetime:
        return self._base.clock.now()

    def read(self, table: str) -> dict[str, Any]:
        return self._written.get(table, self._base.data[table])

    def write(self, table: str) -> dict[str, Any]:
        if table not in self._written:
            self._written[table] = dict(self._base.data[table])
        return self._written[table]

    def commit(self) -> None:
        entries = _feed_entries(self._base.data, self._written)
        self._base.data.update(self._written)
        if entries:
            self._base.feed.extend(entries)
            self._base.feed_at.extend([self._base.clock.now()] * len(entries))
            for wake in tuple(self._base.on_commit):
                wake()


def _feed_entries(
    before: dict[str, dict[str, Any]], written: dict[str, dict[str, Any]]
) -> list[tuple[str, str, str, str]]:
    """The change feed's entries of a commit: rows new to events, jobs and observations,
    and jobs whose status changed."""
    entries: list[tuple[str, str, str, str]] = []
    for table in ("events", "jobs", "observations"):
        rows = written.get(table)
        if rows is None:
            continue
        old = before[table]
        for row_id, row in rows.items():
            prior = old.get(row_id)
            if prior is not None and (table != "jobs" or prior.status is row.status):
                continue
            kind = {"events": "event", "jobs": "job"}.get(table) or (
                "summary" if row.kind == "summary" else "observation"
            )
            entries.append((kind, row.team_id, row.project_id, row_id))
    return entries


class _Repo:
    def __init__(self, tx: _Tx) -> None:
        self._tx = tx


class _Teams(_Repo):
    async def add(self, team: Team) -> None:
        self._tx.write("teams")[team.id] = team

    async def get(self, team_id: str) -> Team | None:
        team: Team | None = self._tx.read("teams").get(team_id)
        return team

    async def find_by_name(self, name: str) -> Team | None:
        matches = [t for t in self._tx.read("teams").values() if t.name == name]
        return min(matches, key=lambda t: (t.created_at, t.id)) if matches else None

    async def list(self, page: Page) -> tuple[Sequence[Team], int]:
        rows = sorted(self._tx.read("teams").values(), key=lambda t: (t.created_at, t.id))
        return _page(rows, page)


class _Projects(_Repo):
    async def add(self, project: Project) -> None:
        if project.team_id not in self._tx.read("teams"):
            raise NotFound("Team not found")
        self._tx.write("projects")[project.id] = project

    async def get(self, team_id: str, project_id: str) -> Project | None:
        project: Project | None = self._tx.read("projects").get(project_id)
        if project is None or project.team_id != team_id or _deleted(self._tx, project_id):
            return None
        return project

    async def find_by_name(self, team_id: str, name: str) -> Project | None:
        matches = [
            p
            for p in self._tx.read("projects").values()
            if p.team_id == team_id and p.name == name and not _deleted(self._tx, p.id)
        ]
        return min(matches, key=lambda p: (p.created_at, p.id)) if matches else None

    async def list(self, team_id: str, page: Page) -> tuple[Sequence[Project], int]:
        rows = sorted(
            (
                p
                for p in self._tx.read("projects").values()
                if p.team_id == team_id and not _deleted(self._tx, p.id)
            ),
            key=lambda p: (p.created_at, p.id),
        )
        return _page(rows, page)

    async def set_retention(
        self, team_id: str, project_id: str, days: int | None, *, at: datetime
    ) -> Project | None:
        project = await self.get(team_id, project_id)
        if project is None:
            return None
        changed = attrs.evolve(project, retain_days=days, updated_at=at)
        self._tx.write("projects")[project_id] = changed
        return changed


def _require_project(tx: _Tx, team_id: str, project_id: str) -> None:
    project = tx.read("projects").get(project_id)
    if project is None or project.team_id != team_id:
        raise NotFound("Project not found")


def _require_session(tx: _Tx, team_id: str, project_id: str, session_id: str | None) -> None:
    """A row's session (if any) must be of the row's own team and project."""
    if session_id is None:
        return
    session = tx.read("sessions").get(session_id)
    if session is None or (session.team_id, session.project_id) != (team_id, project_id):
        raise NotFound("Session not found")


class _ApiKeys(_Repo):
    async def add(self, key: ApiKey) -> None:
        if key.team_id is not None and key.team_id not in self._tx.read("teams"):
            raise NotFound("Team not found")
        if key.project_id is not None:
            _require_project(self._tx, key.team_id or "", key.project_id)
        self._tx.write("api_keys")[key.id] = key

    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        for key in self._tx.read("api_keys").values():
            if key.key_hash == key_hash:
                found: ApiKey = key
                return found
        return None

    async def get_unscoped(self, key_id: str) -> ApiKey | None:
        key: ApiKey | None = self._tx.read("api_keys").get(key_id)
        return key

    async def list(
        self, team_id: str | None, project_id: str | None, page: Page
    ) -> tuple[Sequence[ApiKey], int]:
        rows = [
            k
            for k in self._tx.read("api_keys").values()
            if (team_id is None or k.team_id == team_id)
            and (project_id is None or k.project_id == project_id)
        ]
        rows.sort(key=lambda k: (k.created_at, k.id), reverse=True)
        return _page(rows, page)

    async def save(self, key: ApiKey) -> None:
        if key.id in self._tx.read("api_keys"):
            self._tx.write("api_keys")[key.id] = key

    async def record_use(self, used_at: Mapping[str, datetime]) -> None:
        for key_id, at in used_at.items():
            key = self._tx.read("api_keys").get(key_id)
            if key is not None and (key.last_used_at is None or key.last_used_at < at):
                self._tx.write("api_keys")[key_id] = attrs.evolve(key, last_used_at=at)


class _Sessions(_Repo):
    async def add(self, session: ServerSession) -> tuple[ServerSession, bool]:
        _require_project(self._tx, session.team_id, session.project_id)
        for existing in self._tx.read("sessions").values():
            if existing.project_id != session.project_id:
                continue
            same_key = (
                session.idempotency_key is not None
                and existing.idempotency_key == session.idempotency_key
            )
            same_external = (
                session.external_session_id is not None
                and existing.external_session_id == session.external_session_id
            )
            if same_key or same_external:
                return existing, False
        self._tx.write("sessions")[session.id] = session
        return session, True

    async def get(self, team_id: str, session_id: str) -> ServerSession | None:
        session: ServerSession | None = self._tx.read("sessions").get(session_id)
        if session is None or session.team_id != team_id:
            return None
        return None if _deleted(self._tx, session.project_id) else session

    async def find_by_idempotency_key(
        self, team_id: str, project_id: str, key: str
    ) -> ServerSession | None:
        for s in self._tx.read("sessions").values():
            if s.team_id == team_id and s.project_id == project_id and s.idempotency_key == key:
                found: ServerSession = s
                return found
        return None

    async def save(self, session: ServerSession) -> None:
        current = await self.get(session.team_id, session.id)
        if current is not None and current.project_id == session.project_id:
            self._tx.write("sessions")[session.id] = session

    async def set_generation_status(
        self,
        team_id: str,
        project_id: str,
        session_id: str,
        status: SessionGenerationStatus,
        *,
        now: datetime,
        error: str | None = None,
    ) -> None:
        current = await self.get(team_id, session_id)
        if current is None or current.project_id != project_id:
            return
        metadata = dict(current.metadata)
        if status is SessionGenerationStatus.FAILED:
            metadata["lastGenerationError"] = error
        updated = attrs.evolve(
            current,
            generation_status=status,
            metadata=metadata,
            last_generated_at=now
            if status is SessionGenerationStatus.COMPLETED
            else current.last_generated_at,
            updated_at=now,
        )
        self._tx.write("sessions")[session_id] = updated


class _Events(_Repo):
    async def add(self, event: AgentEvent) -> tuple[AgentEvent, bool]:
        _require_project(self._tx, event.team_id, event.project_id)
        _require_session(self._tx, event.team_id, event.project_id, event.server_session_id)
        for existing in self._tx.read("events").values():
            if existing.idempotency_key == event.idempotency_key:
                # The keys the server set at the first write describe the stored payload.
                extra = {k: v for k, v in event.metadata.items() if k not in SERVER_EVENT_METADATA}
                if extra:
                    merged = attrs.evolve(existing, metadata={**existing.metadata, **extra})
                    self._tx.write("events")[existing.id] = merged
                    return merged, False
                return existing, False
        self._tx.write("events")[event.id] = event
        return event, True

    async def add_many(self, events: Sequence[AgentEvent]) -> Sequence[tuple[AgentEvent, bool]]:
        return [await self.add(event) for event in events]

    async def get(self, team_id: str, event_id: str) -> AgentEvent | None:
        event: AgentEvent | None = self._tx.read("events").get(event_id)
        if event is None or event.team_id != team_id:
            return None
        return None if _deleted(self._tx, event.project_id) else event

    async def get_many(
        self, team_id: str, project_id: str, event_ids: Sequence[str]
    ) -> Sequence[AgentEvent]:
        table = self._tx.read("events")
        found = [table.get(i) for i in event_ids]
        return [
            e
            for e in found
            if e is not None and e.team_id == team_id and e.project_id == project_id
        ]

    async def list_for_session(
        self, team_id: str, project_id: str, session_id: str, *, limit: int = 500
    ) -> Sequence[AgentEvent]:
        rows = [
            e
            for e in self._tx.read("events").values()
            if e.team_id == team_id
            and e.project_id == project_id
            and e.server_session_id == session_id
        ]
        rows.sort(key=lambda e: (e.occurred_at, e.created_at, e.id))
        return rows[:limit]


def _job_filter(job: GenerationJob, where: JobFilter) -> bool:
    return (
        job.team_id == where.team_id
        and (where.project_id is None or job.project_id == where.project_id)
        and (where.status is None or job.status is where.status)
        and (where.source_type is None or job.source_type is where.source_type)
        and (where.since is None or job.created_at >= where.since)
    )


class _Jobs(_Repo):
    async def add(self, job: GenerationJob) -> tuple[GenerationJob, bool]:
        _require_project(self._tx, job.team_id, job.project_id)
        if job.agent_event_id is not None:
            event = self._tx.read("events").get(job.agent_event_id)
            if event is None or event.team_id != job.team_id or event.project_id != job.project_id:
                raise NotFound("Event not found")
        _require_session(self._tx, job.team_id, job.project_id, job.server_session_id)
        for existing in self._tx.read("jobs").values():
            if existing.idempotency_key == job.idempotency_key or (
                job.transport_id is not None and existing.transport_id == job.transport_id
            ):
                return existing, False
        self._tx.write("jobs")[job.id] = job
        return job, True

    async def add_many(self, jobs: Sequence[GenerationJob]) -> Sequence[tuple[GenerationJob, bool]]:
        return [await self.add(job) for job in jobs]

    async def get(self, team_id: str, job_id: str) -> GenerationJob | None:
        job: GenerationJob | None = self._tx.read("jobs").get(job_id)
        if job is None or job.team_id != team_id:
            return None
        return None if _deleted(self._tx, job.project_id) else job

    async def get_unscoped(self, job_id: str) -> GenerationJob | None:
        job: GenerationJob | None = self._tx.read("jobs").get(job_id)
        return job

    async def get_unscoped_with_event(
        self, job_id: str
    ) -> tuple[GenerationJob, AgentEvent | None] | None:
        job = await self.get_unscoped(job_id)
        if job is None:
            return None
        found = (
            await _Events(self._tx).get_many(job.team_id, job.project_id, [job.agent_event_id])
            if job.agent_event_id is not None
            else []
        )
        return job, found[0] if found else None

    async def compare_and_set(
        self, expected: GenerationJob, new: GenerationJob, *, event: JobEvent | None = None
    ) -> bool:
        if event is not None and (event.generation_job_id, event.team_id, event.project_id) != (
            new.id,
            new.team_id,
            new.project_id,
        ):
            raise InvalidInput("compare_and_set logs an event of the same job only")
        current: GenerationJob | None = self._tx.read("jobs").get(expected.id)
        if (
            current is None
            or current.team_id != expected.team_id
            or current.project_id != expected.project_id
            or current.status is not expected.status
            or current.attempts != expected.attempts
            or current.locked_by != expected.locked_by
        ):
            return False
        # Identity and provenance columns never change through a status write.
        self._tx.write("jobs")[expected.id] = attrs.evolve(
            new,
            team_id=current.team_id,
            project_id=current.project_id,
            idempotency_key=current.idempotency_key,
            created_at=current.created_at,
        )
        if event is not None:
            await _JobEvents(self._tx).add(event)
        return True

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
    ) -> bool | None:
        keys = {(o.team_id, o.project_id, o.generation_key) for o in observations}
        prints = {(o.team_id, o.project_id, o.fingerprint) for o in observations}
        if any(
            (o.team_id, o.project_id, o.generation_key) in keys
            or (o.team_id, o.project_id, o.fingerprint) in prints
            for o in self._tx.read("observations").values()
            if o.generation_key is not None or o.fingerprint is not None
        ):
            return None  # a clash: the caller goes the long way, which finds the stored rows
        written = await self.compare_and_set(expected, new, event=event)
        if written:
            await _Observations(self._tx).add_many(observations)
            await _Sources(self._tx).add_many(sources)
            await _SearchIndex(self._tx).add(passages)
        await _Audit(self._tx).add_many([*audit_always, *(audit if written else ())])
        return written

    async def save_payload(self, job: GenerationJob) -> None:
        current: GenerationJob | None = await self.get(job.team_id, job.id)
        if current is not None and current.project_id == job.project_id:
            self._tx.write("jobs")[job.id] = attrs.evolve(
                current, payload=job.payload, updated_at=job.updated_at
            )

    async def list(self, where: JobFilter, page: Page) -> tuple[Sequence[GenerationJob], int]:
        rows = [j for j in self._tx.read("jobs").values() if _job_filter(j, where)]
        rows.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return _page(rows, page)

    async def list_due(
        self, *, now: datetime, lease_expired_before: datetime, limit: int
    ) -> Sequence[GenerationJob]:
        rows = [
            j
            for j in self._tx.read("jobs").values()
            if (
                j.status is JobStatus.QUEUED
                and (j.next_attempt_at is None or j.next_attempt_at <= now)
            )
            or (
                j.status is JobStatus.PROCESSING
                and j.locked_at is not None
                and j.locked_at < lease_expired_before
            )
        ]
        rows.sort(key=lambda j: (j.created_at, j.id))
        return rows[:limit]

    async def renew_lease(self, job: GenerationJob, *, now: datetime) -> bool:
        current: GenerationJob | None = self._tx.read("jobs").get(job.id)
        if (
            current is None
            or (current.team_id, current.project_id) != (job.team_id, job.project_id)
            or current.status is not JobStatus.PROCESSING
            or current.attempts != job.attempts
            or current.locked_by != job.locked_by
        ):
            return False
        self._tx.write("jobs")[job.id] = attrs.evolve(current, locked_at=now)
        return True

    async def mark_republished(
        self, job_ids: Sequence[str], *, now: datetime, untouched_since: datetime
    ) -> set[str]:
        marked: set[str] = set()
        for job_id in dict.fromkeys(job_ids):
            current: GenerationJob | None = self._tx.read("jobs").get(job_id)
            if current is None or current.status is not JobStatus.QUEUED:
                continue
            if (current.next_attempt_at or current.updated_at) > untouched_since:
                continue
            self._tx.write("jobs")[job_id] = attrs.evolve(current, next_attempt_at=now)
            marked.add(job_id)
        return marked

    async def count_by_status(self, team_id: str | None) -> dict[JobStatus, int]:
        counts = dict.fromkeys(JobStatus, 0)
        for job in self._tx.read("jobs").values():
            if team_id is None or job.team_id == team_id:
                counts[job.status] += 1
        return counts

    async def completed_event_ids(
        self, team_id: str, project_id: str, event_ids: Sequence[str]
    ) -> set[str]:
        wanted = set(event_ids)
        return {
            j.agent_event_id
            for j in self._tx.read("jobs").values()
            if j.team_id == team_id
            and j.project_id == project_id
            and j.status is JobStatus.COMPLETED
            and j.agent_event_id in wanted
        }


class _JobEvents(_Repo):
    async def add(self, event: JobEvent) -> None:
        job = self._tx.read("jobs").get(event.generation_job_id)
        if job is None or job.team_id != event.team_id or job.project_id != event.project_id:
            raise NotFound("Generation job not found")
        self._tx.write("job_events")[event.id] = event

    async def add_many(self, events: Sequence[JobEvent]) -> None:
        for event in events:
            await self.add(event)

    async def list(self, team_id: str, job_id: str) -> Sequence[JobEvent]:
        rows = [
            e
            for e in self._tx.read("job_events").values()
            if e.team_id == team_id and e.generation_job_id == job_id
        ]
        # Insertion order breaks created_at ties: dicts keep it.
        order = {eid: n for n, eid in enumerate(self._tx.read("job_events"))}
        rows.sort(key=lambda e: (e.created_at, order[e.id]))
        return rows


class _Observations(_Repo):
    async def add(self, observation: Observation) -> tuple[Observation, bool]:
        _require_project(self._tx, observation.team_id, observation.project_id)
        o = observation
        _require_session(self._tx, o.team_id, o.project_id, o.server_session_id)
        if observation.created_by_job_id is not None:
            job = self._tx.read("jobs").get(observation.created_by_job_id)
            if (
                job is None
                or job.team_id != observation.team_id
                or job.project_id != observation.project_id
            ):
                raise NotFound("Generation job not found")
        scoped = self._scoped(o.team_id, o.project_id)
        # A replay (same generation key) first, then the same fact (same fingerprint).
        for name in ("generation_key", "fingerprint"):
            value = getattr(o, name)
            stored = [e for e in scoped if value is not None and getattr(e, name) == value]
            if stored:
                return stored[0], False
        self._tx.write("observations")[observation.id] = observation
        return observation, True

    async def add_occurrences(
        self, team_id: str, project_id: str, counts: Mapping[str, int]
    ) -> None:
        table = self._tx.read("observations")
        for observation_id, n in counts.items():
            o = table.get(observation_id)
            if o is not None and o.team_id == team_id and o.project_id == project_id:
                self._tx.write("observations")[o.id] = attrs.evolve(
                    o, occurrences=o.occurrences + n
                )

    async def add_many(
        self, observations: Sequence[Observation]
    ) -> Sequence[tuple[Observation, bool]]:
        return [await self.add(observation) for observation in observations]

    async def supersede(
        self, team_id: str, project_id: str, subjects: Collection[str], *, at: datetime
    ) -> Sequence[tuple[str, str]]:
        return supersession.supersede(self._tx, team_id, project_id, subjects, at=at)

    async def lock_subjects(self, team_id: str, project_id: str, subjects: Collection[str]) -> None:
        return None  # units of work are serial here

    async def weigh(self, team_id: str, project_id: str, observation_ids: Sequence[str]) -> None:
        return None  # a passage's weight is read from its observation (memory_supersession)

    def _scoped(self, team_id: str, project_id: str) -> list[Observation]:
        return [
            o
            for o in self._tx.read("observations").values()
            if o.team_id == team_id and o.project_id == project_id
        ]

    async def get(self, team_id: str, project_id: str, observation_id: str) -> Observation | None:
        obs: Observation | None = self._tx.read("observations").get(observation_id)
        if obs is None or obs.team_id != team_id or obs.project_id != project_id:
            return None
        return None if _deleted(self._tx, project_id) else obs

    async def get_in_team(self, team_id: str, observation_id: str) -> Observation | None:
        obs: Observation | None = self._tx.read("observations").get(observation_id)
        if obs is None or obs.team_id != team_id:
            return None
        return None if _deleted(self._tx, obs.project_id) else obs

    async def list(
        self, team_id: str, project_id: str, page: Page, *, kind: str | None = None
    ) -> tuple[Sequence[Observation], int]:
        # Newest first, ties by id ascending, as the SQL adapter orders them (a stable sort).
        scoped = self._scoped(team_id, project_id)
        rows = sorted((o for o in scoped if kind is None or o.kind == kind), key=lambda o: o.id)
        rows.sort(key=lambda o: o.created_at, reverse=True)
        return _page(rows, page)

    async def list_for_source(
        self, team_id: str, project_id: str, source_type: str, source_id: str
    ) -> Sequence[tuple[Observation, ObservationSource]]:
        table = self._tx.read("observations")
        pairs = []
        for link in self._tx.read("sources").values():
            if link.source_type.value != source_type or link.source_id != source_id:
                continue
            obs = table.get(link.observation_id)
            if obs is not None and obs.team_id == team_id and obs.project_id == project_id:
                pairs.append((obs, link))
        pairs.sort(key=lambda p: (p[0].created_at, p[0].id))
        return pairs

    async def list_for_job(
        self, team_id: str, project_id: str, job_id: str
    ) -> Sequence[Observation]:
        rows = [o for o in self._scoped(team_id, project_id) if o.created_by_job_id == job_id]
        rows.sort(key=lambda o: (o.created_at, o.id))
        return rows


class _Sources(_Repo):
    async def add(self, source: ObservationSource) -> ObservationSource:
        obs = self._tx.read("observations").get(source.observation_id)
        if obs is None or obs.team_id != source.team_id or obs.project_id != source.project_id:
            raise NotFound("Observation not found")
        for existing in self._tx.read("sources").values():
            if (
                existing.observation_id == source.observation_id
                and existing.source_type is source.source_type
                and existing.source_id == source.source_id
            ):
                merged: ObservationSource = attrs.evolve(
                    existing, metadata={**existing.metadata, **source.metadata}
                )
                self._tx.write("sources")[existing.id] = merged
                return merged
        self._tx.write("sources")[source.id] = source
        return source

    async def add_many(self, sources: Sequence[ObservationSource]) -> Sequence[ObservationSource]:
        return [await self.add(source) for source in sources]


class _SearchIndex(_Repo):
    """Passages in a list per project; statistics counted at query time (this is a fake:
    the SQL adapters keep them as passages are written)."""

    async def add(self, passages: Sequence[Passage]) -> None:
        observations = self._tx.read("observations")
        table = self._tx.write("passages")
        # Keys ascend (a passage's id is its key plus one): erased passages leave gaps.
        next_key = max((int(k) for k in table), default=-1) + 1
        for passage in passages:
            obs = observations.get(passage.observation_id)
            if obs is None or (obs.team_id, obs.project_id) != (
                passage.team_id,
                passage.project_id,
            ):
                raise NotFound("Observation not found")
            table[f"{next_key}"] = passage
            next_key += 1

    async def search(
        self,
        team_id: str,
        project_id: str,
        query: Query,
        *,
        limit: int,
        audit: AuditEntry | None = None,
        kind: str | None = None,
    ) -> Sequence[SearchHit]:
        # A project being erased finds nothing (as on SQL, where its statistics are gone).
        deleted = _deleted(self._tx, project_id)
        hits = [] if deleted else self._ranked(team_id, project_id, query, limit, kind)
        if audit is not None:
            project = self._tx.read("projects").get(project_id)
            if project is None or project.team_id != team_id:
                raise NotFound("Project not found")
            details = {
                **audit.details,
                "resultCount": len(hits),
                "observationIds": [h.observation.id for h in hits],
            }
            if not await _Audit(self._tx).add_read(attrs.evolve(audit, details=details)):
                raise Forbidden("Invalid API key or insufficient scope")
        return hits

    def _ranked(
        self, team_id: str, project_id: str, query: Query, limit: int, kind: str | None
    ) -> list[SearchHit]:
        if query.is_empty or limit <= 0:
            return []
        observations = self._tx.read("observations")
        scoped = [
            p
            for p in self._tx.read("passages").values()
            if p.team_id == team_id
            and p.project_id == project_id
            and p.observation_id in observations
        ]
        if not scoped:
            return []
        strings = ranking.query_strings(query)
        idfs = {s: ranking.idf(len(scoped), sum(1 for p in scoped if s in p.tf)) for s in strings}
        matched: dict[str, list[tuple[float, int, Passage]]] = {}
        for n, passage in enumerate(scoped):
            score = ranking.passage_score(
                query,
                passage.tf,
                passage.length,
                idfs=idfs,
                event=passage.origin is Origin.EVENT,
                weight=supersession.weight(observations[passage.observation_id]),
            )
            if score > 0:
                matched.setdefault(passage.observation_id, []).append((score, n, passage))
        hits = []
        for oid, found in matched.items():
            found.sort(key=lambda entry: (-entry[0], entry[1]))  # ties: written first
            hits.append(
                SearchHit(
                    observation=observations[oid],
                    score=ranking.observation_score(score for score, _, _ in found),
                    evidence=tuple(
                        Evidence(text=p.text, event_id=p.event_id, score=score)
                        for score, _, p in found[: ranking.EVIDENCE_PASSAGES]
                    ),
                )
            )
        if kind is not None:  # statistics stay the project's: only the hits are filtered
            hits = [h for h in hits if h.observation.kind == kind]
        hits.sort(
            key=lambda h: ranking.score_order(h.score, h.observation.updated_at, h.observation.id)
        )
        return hits[:limit]


class _Audit(_Repo):
    async def add(self, entry: AuditEntry) -> None:
        self._tx.write("audit")[entry.id] = entry

    async def add_read(self, entry: AuditEntry) -> bool:
        if entry.project_id is not None:  # as the SQL schema's project-scope key does
            _require_project(self._tx, entry.team_id or "", entry.project_id)
        if entry.api_key_id is not None:
            key = self._tx.read("api_keys").get(entry.api_key_id)
            if key is None or not key.is_usable(self._tx.now()):
                return False
        await self.add(entry)
        return True

    async def add_many(self, entries: Sequence[AuditEntry]) -> None:
        table = self._tx.write("audit")
        for entry in entries:
            table[entry.id] = entry

    async def list(
        self, team_id: str, *, action: str | None = None, page: Page = Page()
    ) -> tuple[Sequence[AuditEntry], int]:
        table = self._tx.read("audit")
        order = {eid: n for n, eid in enumerate(table)}
        rows = [
            a
            for a in table.values()
            if a.team_id == team_id and (action is None or a.action == action)
        ]
        rows.sort(key=lambda a: (a.created_at, order[a.id]), reverse=True)
        return _page(rows, page)


class _SearchVectors(_Repo):
    """Vectors keyed ``"<passage id>:<model>"``, packed as the SQL adapters store them (so
    values round to float32 alike). A passage's id is its place in ``passages`` plus one."""

    def _passages(
        self, team_id: str | None, project_id: str | None, after: int
    ) -> list[tuple[int, Passage]]:
        found = []
        for key, passage in self._tx.read("passages").items():
            passage_id = int(key) + 1
            if passage_id <= after:
                continue
            if team_id is not None and passage.team_id != team_id:
                continue
            if project_id is not None and passage.project_id != project_id:
                continue
            if _deleted(self._tx, passage.project_id):
                continue  # a project being erased sends nothing more to an embedder
            found.append((passage_id, passage))
        return found

    async def missing(
        self,
        model: str,
        *,
        team_id: str | None = None,
        project_id: str | None = None,
        observation_ids: Sequence[str] | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> Sequence[PassageText]:
        stored = self._tx.read("vectors")
        observations = self._tx.read("observations")
        wanted = None if observation_ids is None else set(observation_ids)
        found: list[PassageText] = []
        for passage_id, passage in self._passages(team_id, project_id, after):
            if len(found) >= limit:
                break
            if f"{passage_id}:{model}" in stored:
                continue
            if wanted is not None and passage.observation_id not in wanted:
                continue
            text = passage.text
            if text is None:
                text = observations[passage.observation_id].content
            found.append(
                PassageText(
                    id=passage_id,
                    team_id=passage.team_id,
                    project_id=passage.project_id,
                    observation_id=passage.observation_id,
                    text=text,
                )
            )
        return found

    async def count_missing(
        self, model: str, *, team_id: str | None = None, project_id: str | None = None
    ) -> int:
        stored = self._tx.read("vectors")
        return sum(
            1
            for passage_id, _ in self._passages(team_id, project_id, 0)
            if f"{passage_id}:{model}" not in stored
        )

    async def add(self, model: str, vectors: Mapping[int, Sequence[float]]) -> int:
        passages = self._tx.read("passages")
        packed = {int(pid): pack_vector(vector) for pid, vector in vectors.items()}
        table = self._tx.write("vectors")
        added = 0
        for passage_id, data in packed.items():
            passage = passages.get(f"{passage_id - 1}")
            key = f"{passage_id}:{model}"
            if passage is None or key in table:
                continue
            table[key] = (passage.team_id, passage.project_id, passage.observation_id, data)
            added += 1
        return added

    async def for_observations(
        self, team_id: str, project_id: str, model: str, observation_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Sequence[float]]]:
        wanted = set(observation_ids)
        found: dict[str, list[list[float]]] = {}
        for key, (team, project, observation_id, data) in self._tx.read("vectors").items():
            if key.split(":", 1)[1] != model or (team, project) != (team_id, project_id):
                continue
            if observation_id in wanted:
                found.setdefault(observation_id, []).append(unpack_vector(data))
        return found


def _erased_key(tx: _Tx, event: AgentEvent) -> bool:
    key = f"{event.team_id}\x00{event.project_id}\x00{event.idempotency_key}"
    return key in tx.read("erased_events")


class _Erasure(_Repo):
    """Erase as the SQL adapter does (see ``ports.storage.ErasureRepository``); the
    statistics are counted at query time here, so removing passages is enough."""

    def _mine(self, row: Any, team_id: str, project_id: str) -> bool:
        return bool(row.team_id == team_id and row.project_id == project_id)

    def _remove(self, table: str, keys: Any) -> int:
        keys = [k for k in keys if k in self._tx.read(table)]
        if keys:
            rows = self._tx.write(table)
            for key in keys:
                del rows[key]
        return len(keys)

    def _remove_observations(self, observation_ids: set[str]) -> ErasedRows:
        passages = [
            k for k, p in self._tx.read("passages").items() if p.observation_id in observation_ids
        ]
        ids = {str(int(k) + 1) for k in passages}
        vectors = [k for k in self._tx.read("vectors") if k.split(":", 1)[0] in ids]
        sources = [
            k for k, s in self._tx.read("sources").items() if s.observation_id in observation_ids
        ]
        return ErasedRows(
            vectors=self._remove("vectors", vectors),
            passages=self._remove("passages", passages),
            sources=self._remove("sources", sources),
            observations=self._remove("observations", observation_ids),
        )

    def _remove_jobs(self, job_ids: set[str]) -> ErasedRows:
        logged = [
            k for k, e in self._tx.read("job_events").items() if e.generation_job_id in job_ids
        ]
        # As the SQL schema's foreign key: a link keeps its observation, not the job.
        for key, link in self._tx.read("sources").items():
            if link.generation_job_id in job_ids:
                self._tx.write("sources")[key] = attrs.evolve(link, generation_job_id=None)
        return ErasedRows(
            job_events=self._remove("job_events", logged), jobs=self._remove("jobs", job_ids)
        )

    def _erase(
        self,
        team_id: str,
        project_id: str,
        events: list[AgentEvent],
        *,
        at: datetime,
        session_id: str | None = None,
    ) -> ErasedRows:
        event_ids = {e.id for e in events}
        sessions = {e.server_session_id for e in events if e.server_session_id}
        if session_id is not None:
            sessions.add(session_id)
        jobs = [j for j in self._tx.read("jobs").values() if self._mine(j, team_id, project_id)]
        derived_jobs = {j.id for j in jobs if j.agent_event_id in event_ids}
        summary_jobs = {
            j.id
            for j in jobs
            if j.source_type is SourceType.SESSION_SUMMARY and j.source_id in sessions
        }
        observations = {
            s.observation_id
            for s in self._tx.read("sources").values()
            if self._mine(s, team_id, project_id)
            and (
                s.agent_event_id in event_ids
                or (
                    s.source_type is ObservationSourceType.SESSION_SUMMARY
                    and s.source_id in sessions
                )
            )
        }
        for o in self._tx.read("observations").values():
            if not self._mine(o, team_id, project_id):
                continue
            if o.created_by_job_id in derived_jobs | summary_jobs or (
                session_id is not None and o.server_session_id == session_id
            ):
                observations.add(o.id)
        removed = self._remove_observations(observations)
        supersession.restore(self._tx, team_id, project_id, observations, at=at)
        removed += self._remove_jobs(derived_jobs | (summary_jobs if session_id else set()))
        for event in events:
            if event.source_event_id is not None:
                key = f"{team_id}\x00{project_id}\x00{event.idempotency_key}"
                self._tx.write("erased_events")[key] = {
                    "event_id": event.id,
                    "source_adapter": event.source_adapter,
                    "source_event_id": event.source_event_id,
                    "erased_at": at,
                }
        return removed + ErasedRows(events=self._remove("events", event_ids))

    async def erase_events(
        self, team_id: str, project_id: str, event_ids: Sequence[str], *, at: datetime
    ) -> ErasedRows:
        table = self._tx.read("events")
        events = [
            table[i]
            for i in dict.fromkeys(event_ids)
            if i in table and self._mine(table[i], team_id, project_id)
        ]
        if not events:
            return ErasedRows()
        return self._erase(team_id, project_id, events, at=at)

    async def erase_session(
        self, team_id: str, project_id: str, session_id: str, *, at: datetime
    ) -> ErasedRows:
        session = self._tx.read("sessions").get(session_id)
        if session is None or not self._mine(session, team_id, project_id):
            return ErasedRows()
        events = [
            e
            for e in self._tx.read("events").values()
            if self._mine(e, team_id, project_id) and e.server_session_id == session_id
        ]
        removed = self._erase(team_id, project_id, events, at=at, session_id=session_id)
        return removed + ErasedRows(sessions=self._remove("sessions", [session_id]))

    async def erased_keys(
        self, team_id: str, project_id: str, idempotency_keys: Sequence[str]
    ) -> set[str]:
        table = self._tx.read("erased_events")
        return {k for k in idempotency_keys if f"{team_id}\x00{project_id}\x00{k}" in table}

    async def mark_project_deleted(self, team_id: str, project_id: str, *, at: datetime) -> bool:
        project = self._tx.read("projects").get(project_id)
        if project is None or project.team_id != team_id or _deleted(self._tx, project_id):
            return False
        self._tx.write("deleted_projects")[project_id] = (at, None)
        self._tx.write("projects")[project_id] = attrs.evolve(project, updated_at=at)
        for job in list(self._tx.read("jobs").values()):
            if self._mine(job, team_id, project_id) and job.status in (
                JobStatus.QUEUED,
                JobStatus.PROCESSING,
            ):
                self._tx.write("jobs")[job.id] = attrs.evolve(
                    job,
                    status=JobStatus.CANCELLED,
                    cancelled_at=at,
                    locked_at=None,
                    locked_by=None,
                    next_attempt_at=None,
                    updated_at=at,
                )
        return True

    async def project_deleted_at(self, team_id: str, project_id: str) -> datetime | None:
        project = self._tx.read("projects").get(project_id)
        marked = self._tx.read("deleted_projects").get(project_id)
        if project is None or project.team_id != team_id or marked is None:
            return None
        deleted_at: datetime = marked[0]
        return deleted_at

    async def retained_projects(self) -> Sequence[tuple[str, str, int]]:
        return [
            (p.team_id, p.id, p.retain_days)
            for p in sorted(self._tx.read("projects").values(), key=lambda p: p.id)
            if p.retain_days is not None and not _deleted(self._tx, p.id)
        ]

    async def expired_sessions(
        self, team_id: str, project_id: str, *, before: datetime, limit: int
    ) -> Sequence[str]:
        active = {
            e.server_session_id
            for e in self._tx.read("events").values()
            if self._mine(e, team_id, project_id) and e.created_at >= before
        }
        idle = sorted(
            (s.updated_at, s.id)
            for s in self._tx.read("sessions").values()
            if self._mine(s, team_id, project_id) and s.updated_at < before and s.id not in active
        )
        return [session_id for _, session_id in idle[:limit]]

    async def expired_loose_events(
        self, team_id: str, project_id: str, *, before: datetime, limit: int
    ) -> Sequence[str]:
        old = sorted(
            (e.created_at, e.id)
            for e in self._tx.read("events").values()
            if self._mine(e, team_id, project_id)
            and e.server_session_id is None
            and e.created_at < before
        )
        return [event_id for _, event_id in old[:limit]]

    async def projects_to_purge(self, *, limit: int = 100) -> Sequence[tuple[str, str]]:
        projects = self._tx.read("projects")
        pending = sorted(
            (deleted_at, pid)
            for pid, (deleted_at, purged_at) in self._tx.read("deleted_projects").items()
            if purged_at is None
        )
        return [(projects[pid].team_id, pid) for _, pid in pending[:limit]]

    async def purge_project(
        self, team_id: str, project_id: str, *, limit: int, at: datetime
    ) -> ErasedRows:
        marked = self._tx.read("deleted_projects").get(project_id)
        project = self._tx.read("projects").get(project_id)
        if marked is None or project is None or project.team_id != team_id:
            return ErasedRows()
        limit = max(limit, 1)
        done = self._purge_step(team_id, project_id, limit)
        if done.total == 0 and marked[1] is None:
            self._tx.write("deleted_projects")[project_id] = (marked[0], at)
        return done

    def _first(self, table: str, team_id: str, project_id: str, limit: int) -> list[str]:
        rows = self._tx.read(table).values()
        return sorted(r.id for r in rows if self._mine(r, team_id, project_id))[:limit]

    def _purge_step(self, team_id: str, project_id: str, limit: int) -> ErasedRows:
        observations = set(self._first("observations", team_id, project_id, limit))
        if observations:
            passages = [
                k for k, p in self._tx.read("passages").items() if p.observation_id in observations
            ][:limit]
            if passages:
                ids = {str(int(k) + 1) for k in passages}
                vectors = [k for k in self._tx.read("vectors") if k.split(":", 1)[0] in ids]
                return ErasedRows(
                    vectors=self._remove("vectors", vectors),
                    passages=self._remove("passages", passages),
                )
            links = sorted(
                k for k, s in self._tx.read("sources").items() if s.observation_id in observations
            )[:limit]
            if links:
                return ErasedRows(sources=self._remove("sources", links))
            return ErasedRows(observations=self._remove("observations", observations))
        jobs = set(self._first("jobs", team_id, project_id, limit))
        if jobs:
            logged = sorted(
                k for k, e in self._tx.read("job_events").items() if e.generation_job_id in jobs
            )[:limit]
            if logged:
                return ErasedRows(job_events=self._remove("job_events", logged))
            return ErasedRows(jobs=self._remove("jobs", jobs))
        for table, field in (("events", "events"), ("sessions", "sessions")):
            found = self._first(table, team_id, project_id, limit)
            if found:
                return ErasedRows(**{field: self._remove(table, found)})
        prefix = f"{team_id}\x00{project_id}\x00"
        keys = sorted(k for k in self._tx.read("erased_events") if k.startswith(prefix))[:limit]
        return ErasedRows(tombstones=self._remove("erased_events", keys))


class _ExportReads(_Repo):
    """Keyset pages of a project (export) and id lookups (import); sorted per read (this
    is a fake: the SQL adapters read along an index)."""

    def _after(
        self,
        table: str,
        team_id: str,
        project_id: str,
        at: Callable[[Any], datetime],
        after: Cursor | None,
        limit: int,
    ) -> list[Any]:
        rows = [
            r
            for r in self._tx.read(table).values()
            if r.team_id == team_id and r.project_id == project_id
        ]
        rows.sort(key=lambda r: (at(r), r.id))
        if after is not None:
            rows = [r for r in rows if (at(r), r.id) > after]
        return rows[:limit]

    async def counts(self, team_id: str, project_id: str) -> Counts:
        def count(table: str) -> int:
            return sum(
                1
                for r in self._tx.read(table).values()
                if r.team_id == team_id and r.project_id == project_id
            )

        return Counts(
            sessions=count("sessions"), events=count("events"), observations=count("observations")
        )

    async def sessions_page(
        self, team_id: str, project_id: str, *, after: Cursor | None, limit: int
    ) -> Sequence[ServerSession]:
        return self._after("sessions", team_id, project_id, lambda r: r.created_at, after, limit)

    async def events_page(
        self, team_id: str, project_id: str, *, after: Cursor | None, limit: int
    ) -> Sequence[AgentEvent]:
        return self._after("events", team_id, project_id, lambda r: r.occurred_at, after, limit)

    async def observations_page(
        self, team_id: str, project_id: str, *, after: Cursor | None, limit: int
    ) -> Sequence[Observation]:
        return self._after(
            "observations", team_id, project_id, lambda r: r.created_at, after, limit
        )

    async def sources_of(
        self, team_id: str, project_id: str, observation_ids: Sequence[str]
    ) -> Sequence[ObservationSource]:
        wanted = set(observation_ids)
        return [
            s
            for s in self._tx.read("sources").values()
            if s.observation_id in wanted and s.team_id == team_id and s.project_id == project_id
        ]

    async def owners(self, kind: str, ids: Sequence[str]) -> Mapping[str, tuple[str, str]]:
        table = self._tx.read(_EXPORT_TABLES[kind])
        return {i: (row.team_id, row.project_id) for i in ids if (row := table.get(i)) is not None}


_EXPORT_TABLES = {
    "session": "sessions",
    "event": "events",
    "observation": "observations",
    "source": "sources",
}


class InMemoryUnitOfWork:
    def __init__(self, tx: _Tx) -> None:
        self.teams = _Teams(tx)
        self.projects = _Projects(tx)
        self.api_keys = _ApiKeys(tx)
        self.sessions = _Sessions(tx)
        self.events = _Events(tx)
        self.jobs = _Jobs(tx)
        self.job_events = _JobEvents(tx)
        self.observations = _Observations(tx)
        self.sources = _Sources(tx)
        self.search = _SearchIndex(tx)
        self.audit = _Audit(tx)
        self.vectors = _SearchVectors(tx)
        self.erasure = _Erasure(tx)
        self.exports = _ExportReads(tx)
        self.ledger = _Ledger(tx)
        self.budgets = MemoryBudgets(tx)
        self.provider_pauses = MemoryProviderPauses(tx)


class _Ledger(_Repo):
    async def add(self, entry: LedgerEntry) -> None:
        if self._tx.read("projects").get(entry.project_id) is None:
            raise NotFound(f"project {entry.project_id} not found")
        self._tx.write("ledger")[entry.id] = entry

    async def usage(
        self,
        team_id: str,
        project_id: str | None,
        *,
        since: datetime,
        until: datetime,
        group_by: UsageGrouping,
    ) -> Sequence[UsageRow]:
        sums: dict[str, list[Any]] = {}
        for e in self._tx.read("ledger").values():
            if e.team_id != team_id or not since <= e.called_at < until:
                continue
            if project_id is not None and e.project_id != project_id:
                continue
            if group_by == "project":
                group = e.project_id
            elif group_by == "model":
                group = f"{e.provider}/{e.model or '-'}"
            else:
                group = e.called_at.astimezone(UTC).strftime("%Y-%m-%d")
            row = sums.setdefault(group, [0, 0, 0, 0.0, 0])
            row[0] += 1
            row[1] += e.input_tokens or 0
            row[2] += e.output_tokens or 0
            row[3] += e.cost_usd or 0.0
            row[4] += e.cost_usd is None
        return [
            UsageRow(
                group=group,
                calls=calls,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                cost_usd=cost,
                unpriced_calls=unpriced,
            )
            for group, (calls, tokens_in, tokens_out, cost, unpriced) in sorted(sums.items())
        ]


class InMemoryStorage:
    """Storage held in this process's memory; gone when the process ends."""

    name = "memory"

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._tables = _Tables(clock or SystemClock())
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[InMemoryUnitOfWork]:
        async with self._lock:
            tx = _Tx(self._tables)
            yield InMemoryUnitOfWork(tx)
            tx.commit()

    async def add_fresh_events(self, items: Sequence[FreshEvent]) -> set[str]:
        written: set[str] = set()
        async with self.unit_of_work() as uow:
            tx = uow.events._tx
            stored = {e.idempotency_key for e in tx.read("events").values()}
            for item in items:
                event = item.event
                if event.idempotency_key in stored:
                    continue
                try:  # out of scope: left out, not refused
                    _require_project(tx, event.team_id, event.project_id)
                    _require_session(tx, event.team_id, event.project_id, event.server_session_id)
                except NotFound:
                    continue
                if PROJECT_SETTING in tx.read("projects")[event.project_id].metadata:
                    continue  # built with the server's settings, not the project's own
                if _deleted(tx, event.project_id) or _erased_key(tx, event):
                    continue  # being erased, or an erased event's key
                if item.key_id is not None:
                    key = tx.read("api_keys").get(item.key_id)
                    if key is None or not key.is_usable(tx.now()):
                        continue
                stored.add(event.idempotency_key)
                await uow.events.add(event)
                if item.job is not None:
                    await uow.jobs.add(item.job)
                if item.job_event is not None:
                    await uow.job_events.add(item.job_event)
                await uow.audit.add(item.audit)
                written.add(event.id)
        return written

    async def add_fresh_memories(self, items: Sequence[FreshMemory]) -> set[str]:
        written: set[str] = set()
        async with self.unit_of_work() as uow:
            tx = uow.observations._tx
            for item in items:
                o = item.observation
                try:  # out of scope: left out, not refused
                    _require_project(tx, o.team_id, o.project_id)
                    _require_session(tx, o.team_id, o.project_id, o.server_session_id)
                except NotFound:
                    continue
                if _deleted(tx, o.project_id):
                    continue
                if item.key_id is not None:
                    key = tx.read("api_keys").get(item.key_id)
                    if key is None or not key.is_usable(tx.now()):
                        continue
                await uow.observations.add(o)
                await uow.sources.add(item.source)
                await uow.search.add(item.passages)
                await uow.audit.add(item.audit)
                written.add(o.id)
        return written

    def change_feed(self) -> ChangeFeed:
        from claude_mem_core.adapters.memory_change_feed import InMemoryChangeFeed

        return InMemoryChangeFeed(self._tables)

    def peek(self, table: str) -> dict[str, Any]:
        """Backdoor for contract tests: the committed rows of one table, by id."""
        return dict(self._tables.data[table])

    def poke(self, table: str, row: Any, key: Callable[[Any], str] = lambda r: r.id) -> None:
        """Backdoor for contract tests: write a committed row directly."""
        self._tables.data[table][key(row)] = row

    async def check_schema(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
