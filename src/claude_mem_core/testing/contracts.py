"""The storage contract: one suite every storage adapter must pass.

Subclass :class:`StorageContract` in a test module and provide two fixtures:

* ``storage``: a fresh, migrated :class:`~claude_mem_core.ports.storage.Storage`;
* ``backdoor``: a :class:`Backdoor` that reads the backend directly, without the adapter's
  repositories, so write paths are checked against what was really stored.

The class has no ``Test`` prefix, so pytest collects it only where it is subclassed.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import attrs
import pytest

from claude_mem_core.domain import jobs as machine
from claude_mem_core.domain import keys, ranking
from claude_mem_core.domain.models import (
    AgentEvent,
    ApiKey,
    AuditEntry,
    GenerationJob,
    JobEvent,
    JobEventType,
    JobStatus,
    JobType,
    Observation,
    ObservationKind,
    ObservationSource,
    ObservationSourceType,
    Project,
    ServerSession,
    SessionGenerationStatus,
    SourceType,
    Team,
)
from claude_mem_core.domain.passages import event_passages, observation_passage
from claude_mem_core.domain.tokens import parse_query
from claude_mem_core.errors import InvalidInput, NotFound
from claude_mem_core.ports.storage import JobFilter, Page, Storage
from claude_mem_core.testing.erase_contracts import ErasureContract

LOGICAL_TABLES = (
    "teams",
    "projects",
    "api_keys",
    "sessions",
    "events",
    "jobs",
    "job_events",
    "observations",
    "sources",
    "audit",
)


class Backdoor(Protocol):
    async def rows(self, table: str) -> list[dict[str, Any]]:
        """All rows of a logical table (see ``LOGICAL_TABLES``) as column dicts."""


T0 = datetime(2026, 11, 27, 12, 0, 0, 123000, tzinfo=UTC)


class Factory:
    """Builds valid records with unique ids and advancing timestamps."""

    def __init__(self) -> None:
        self.n = 0

    def _next(self, prefix: str) -> tuple[str, datetime]:
        self.n += 1
        return f"{prefix}-{self.n:05d}", T0 + timedelta(milliseconds=self.n)

    async def stored_tenant(self, storage: Storage) -> tuple[Team, Project]:
        """A new team and a project of it, stored: where most contract tests start."""
        team = self.team()
        project = self.project(team)
        async with storage.unit_of_work() as uow:
            await uow.teams.add(team)
            await uow.projects.add(project)
        return team, project

    def team(self, name: str = "team") -> Team:
        tid, at = self._next("team")
        return Team(id=tid, name=name, created_at=at, updated_at=at)

    def project(self, team: Team, name: str = "project") -> Project:
        pid, at = self._next("proj")
        return Project(id=pid, team_id=team.id, name=name, created_at=at, updated_at=at)

    def key(self, team: Team, project: Project | None = None, **kw: Any) -> ApiKey:
        kid, at = self._next("key")
        fields: dict[str, Any] = {
            "id": kid,
            "key_hash": keys.canonical_json(kid).encode().hex(),
            "team_id": team.id,
            "project_id": project.id if project else None,
            "actor_id": "actor:test",
            "scopes": {"memories:read"},
            "created_at": at,
            "updated_at": at,
        }
        fields.update(kw)
        return ApiKey(**fields)

    def session(self, project: Project, **kw: Any) -> ServerSession:
        sid, at = self._next("sess")
        fields: dict[str, Any] = {
            "id": sid,
            "team_id": project.team_id,
            "project_id": project.id,
            "external_session_id": f"ext-{sid}",
            "idempotency_key": f"idem-{sid}",
            "started_at": at,
            "created_at": at,
            "updated_at": at,
        }
        fields.update(kw)
        return ServerSession(**fields)

    def event(
        self, project: Project, session: ServerSession | None = None, **kw: Any
    ) -> AgentEvent:
        eid, at = self._next("evt")
        fields: dict[str, Any] = {
            "id": eid,
            "team_id": project.team_id,
            "project_id": project.id,
            "server_session_id": session.id if session else None,
            "source_adapter": "api",
            "idempotency_key": f"agent_event:test:{eid}",
            "event_type": "tool_use",
            "payload": {"tool_name": "Edit", "n": self.n, "nested": {"ü": [1, 2.5, None]}},
            "metadata": {"m": 1},
            "occurred_at": at,
            "received_at": at,
            "created_at": at,
        }
        fields.update(kw)
        return AgentEvent(**fields)

    def job(self, event: AgentEvent, **kw: Any) -> GenerationJob:
        jid, at = self._next("job")
        fields: dict[str, Any] = {
            "id": jid,
            "team_id": event.team_id,
            "project_id": event.project_id,
            "agent_event_id": event.id,
            "source_type": SourceType.AGENT_EVENT,
            "source_id": event.id,
            "server_session_id": event.server_session_id,
            "job_type": JobType.GENERATE_FOR_EVENT,
            "idempotency_key": f"job:{event.id}",
            "transport_id": f"evt_{event.id}",
            "payload": {"kind": "event", "team_id": event.team_id},
            "created_at": at,
            "updated_at": at,
        }
        fields.update(kw)
        return GenerationJob(**fields)

    def summary_job(self, session: ServerSession, **kw: Any) -> GenerationJob:
        jid, at = self._next("job")
        fields: dict[str, Any] = {
            "id": jid,
            "team_id": session.team_id,
            "project_id": session.project_id,
            "source_type": SourceType.SESSION_SUMMARY,
            "source_id": session.id,
            "server_session_id": session.id,
            "job_type": JobType.GENERATE_SESSION_SUMMARY,
            "idempotency_key": f"job:{session.id}",
            "transport_id": f"sum_{session.id}",
            "created_at": at,
            "updated_at": at,
        }
        fields.update(kw)
        return GenerationJob(**fields)

    def observation(self, project: Project, content: str, **kw: Any) -> Observation:
        oid, at = self._next("obs")
        fields: dict[str, Any] = {
            "id": oid,
            "team_id": project.team_id,
            "project_id": project.id,
            "kind": ObservationKind.OBSERVATION,
            "type": "discovery",
            "title": content[:40],
            "facts": ("a fact",),
            "files_read": ("src/a.py",),
            "content": content,
            "created_at": at,
            "updated_at": at,
        }
        fields.update(kw)
        return Observation(**fields)

    def job_event(self, job: GenerationJob, **kw: Any) -> JobEvent:
        jid, at = self._next("jev")
        fields: dict[str, Any] = {
            "id": jid,
            "generation_job_id": job.id,
            "team_id": job.team_id,
            "project_id": job.project_id,
            "event_type": JobEventType.QUEUED,
            "status_after": job.status,
            "attempt": job.attempts,
            "details": {"source": "t"},
            "created_at": at,
        }
        fields.update(kw)
        return JobEvent(**fields)


class StorageContract(ErasureContract):
    """Behaviour every :class:`Storage` adapter promises. See the module docstring (and
    :mod:`~claude_mem_core.testing.erase_contracts`, whose tests it inherits)."""

    @pytest.fixture
    def make(self) -> Factory:
        return Factory()

    # -- tenants ---------------------------------------------------------------------

    async def test_team_and_project_round_trip(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        other = make.team("other")
        async with storage.unit_of_work() as uow:
            await uow.teams.add(other)
            assert await uow.teams.get(team.id) == team
            assert await uow.projects.get(team.id, project.id) == project
            assert await uow.projects.get(other.id, project.id) is None
            assert await uow.projects.find_by_name(team.id, "project") == project
            listed, total = await uow.projects.list(team.id, Page())
        assert (list(listed), total) == ([project], 1)
        stored = await backdoor.rows("projects")
        assert [(r["id"], r["team_id"], r["name"]) for r in stored] == [
            (project.id, team.id, "project")
        ]

    async def test_project_of_unknown_team_is_not_found_and_nothing_is_written(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        ghost = make.team()
        with pytest.raises(NotFound):
            async with storage.unit_of_work() as uow:
                await uow.projects.add(make.project(ghost))
        assert await backdoor.rows("projects") == []

    async def test_unit_of_work_rolls_back_everything_on_error(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team = make.team()
        with pytest.raises(RuntimeError):
            async with storage.unit_of_work() as uow:
                await uow.teams.add(team)
                await uow.projects.add(make.project(team))
                raise RuntimeError("boom")
        assert await backdoor.rows("teams") == []
        assert await backdoor.rows("projects") == []

    # -- api keys --------------------------------------------------------------------

    async def test_api_key_lookup_by_hash_list_and_revoke(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        team_key = make.key(team, scopes={"memories:read", "memories:write"}, name="ci")
        project_key = make.key(team, project)
        async with storage.unit_of_work() as uow:
            await uow.api_keys.add(team_key)
            await uow.api_keys.add(project_key)
        async with storage.unit_of_work() as uow:
            assert await uow.api_keys.get_by_hash(team_key.key_hash) == team_key
            assert await uow.api_keys.get_by_hash("0" * 64) is None
            listed, total = await uow.api_keys.list(team.id, None, Page(limit=1))
            assert total == 2 and len(listed) == 1
            only_project, _ = await uow.api_keys.list(team.id, project.id, Page())
            assert [k.id for k in only_project] == [project_key.id]
            revoked = attrs.evolve(team_key, revoked_at=T0, updated_at=T0 + timedelta(days=1))
            await uow.api_keys.save(revoked)
        async with storage.unit_of_work() as uow:
            assert await uow.api_keys.get_unscoped(team_key.id) == revoked
        stored = {r["id"]: r for r in await backdoor.rows("api_keys")}
        assert stored[team_key.id]["revoked_at"] is not None
        assert sorted(stored[team_key.id]["scopes"]) == ["memories:read", "memories:write"]

    async def test_api_key_record_use_only_moves_last_used_forward(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, _ = await make.stored_tenant(storage)
        key = make.key(team)
        other = make.key(team)
        async with storage.unit_of_work() as uow:
            await uow.api_keys.add(key)
            await uow.api_keys.add(other)
        later = T0 + timedelta(minutes=5)
        async with storage.unit_of_work() as uow:
            await uow.api_keys.record_use({key.id: later, "no-such-key": later})
        async with storage.unit_of_work() as uow:
            # A revocation saved meanwhile is kept; an older use never moves it back.
            await uow.api_keys.save(attrs.evolve(key, revoked_at=T0, last_used_at=later))
            await uow.api_keys.record_use({key.id: T0, other.id: T0})
        async with storage.unit_of_work() as uow:
            stored = await uow.api_keys.get_unscoped(key.id)
            untouched = await uow.api_keys.get_unscoped(other.id)
        assert stored is not None and stored.last_used_at == later
        assert stored.revoked_at == T0
        assert untouched is not None and untouched.last_used_at == T0
        rows = {r["id"]: r for r in await backdoor.rows("api_keys")}
        assert rows[key.id]["last_used_at"] is not None and rows[key.id]["revoked_at"] is not None

    # -- sessions --------------------------------------------------------------------

    async def test_session_add_is_idempotent_by_key_and_by_external_id(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        _, project = await make.stored_tenant(storage)
        first = make.session(project)
        async with storage.unit_of_work() as uow:
            stored, created = await uow.sessions.add(first)
            assert (stored, created) == (first, True)
            again, created = await uow.sessions.add(
                make.session(project, idempotency_key=first.idempotency_key, metadata={"x": 1})
            )
            assert (again, created) == (first, False)
            same_external, created = await uow.sessions.add(
                make.session(
                    project,
                    external_session_id=first.external_session_id,
                    idempotency_key="another",
                )
            )
            assert (same_external.id, created) == (first.id, False)
        assert len(await backdoor.rows("sessions")) == 1

    async def test_session_reads_are_team_scoped_and_save_persists(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        other, _ = await make.stored_tenant(storage)
        session = make.session(project, metadata={"k": "v"})
        async with storage.unit_of_work() as uow:
            await uow.sessions.add(session)
            assert await uow.sessions.get(other.id, session.id) is None
            ended = attrs.evolve(
                session, ended_at=T0 + timedelta(hours=1), updated_at=T0 + timedelta(hours=1)
            )
            await uow.sessions.save(ended)
            await uow.sessions.set_generation_status(
                team.id,
                project.id,
                session.id,
                SessionGenerationStatus.FAILED,
                now=T0 + timedelta(hours=2),
                error="provider down",
            )
        async with storage.unit_of_work() as uow:
            got = await uow.sessions.get(team.id, session.id)
        assert got is not None
        assert got.ended_at == T0 + timedelta(hours=1)
        assert got.generation_status is SessionGenerationStatus.FAILED
        assert got.metadata == {"k": "v", "lastGenerationError": "provider down"}
        (row,) = await backdoor.rows("sessions")
        assert row["generation_status"] == "failed"

    # -- events ----------------------------------------------------------------------

    async def test_event_add_is_idempotent_and_merges_metadata(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        event = make.event(project)
        async with storage.unit_of_work() as uow:
            assert await uow.events.add(event) == (event, True)
        replay = make.event(
            project,
            idempotency_key=event.idempotency_key,
            payload={"different": True},
            metadata={"extra": 2},
        )
        async with storage.unit_of_work() as uow:
            stored, created = await uow.events.add(replay)
        assert created is False
        assert stored.id == event.id and stored.payload == event.payload
        assert stored.metadata == {"m": 1, "extra": 2}
        rows = await backdoor.rows("events")
        assert len(rows) == 1 and rows[0]["payload"] == event.payload
        async with storage.unit_of_work() as uow:
            got = await uow.events.get(team.id, event.id)
        assert got is not None and got.occurred_at == event.occurred_at

    async def test_event_refuses_foreign_project_and_session(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team_a, project_a = await make.stored_tenant(storage)
        _, project_b = await make.stored_tenant(storage)
        sibling = make.project(team_a, "sibling")
        foreign_session = make.session(project_b)
        sibling_session = make.session(sibling)
        async with storage.unit_of_work() as uow:
            await uow.projects.add(sibling)
            await uow.sessions.add(foreign_session)
            await uow.sessions.add(sibling_session)
        bad = [
            make.event(project_a, team_id=project_b.team_id),  # project not in that team
            make.event(project_a, server_session_id=foreign_session.id),
            make.event(project_a, server_session_id=sibling_session.id),
        ]
        for event in bad:
            with pytest.raises(NotFound):
                async with storage.unit_of_work() as uow:
                    await uow.events.add(event)
        assert await backdoor.rows("events") == []

    async def test_events_for_session_are_oldest_first_and_scoped(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        session = make.session(project)
        later = make.event(project, session, occurred_at=T0 + timedelta(minutes=5))
        earlier = make.event(project, session, occurred_at=T0 + timedelta(minutes=1))
        unrelated = make.event(project)
        async with storage.unit_of_work() as uow:
            await uow.sessions.add(session)
            for e in (later, earlier, unrelated):
                await uow.events.add(e)
            listed = await uow.events.list_for_session(team.id, project.id, session.id)
            many = await uow.events.get_many(team.id, project.id, [later.id, "nope", unrelated.id])
            other_team = await uow.events.list_for_session("someone-else", project.id, session.id)
        assert [e.id for e in listed] == [earlier.id, later.id]
        assert {e.id for e in many} == {later.id, unrelated.id}
        assert list(other_team) == []

    # -- jobs ------------------------------------------------------------------------

    async def _event_job(
        self, storage: Storage, make: Factory, **kw: Any
    ) -> tuple[Team, Project, GenerationJob]:
        team, project = await make.stored_tenant(storage)
        event = make.event(project)
        job = make.job(event, **kw)
        async with storage.unit_of_work() as uow:
            await uow.events.add(event)
            assert await uow.jobs.add(job) == (job, True)
        return team, project, job

    async def test_job_add_is_idempotent_and_keeps_the_stored_row(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, _, job = await self._event_job(storage, make)
        duplicate = attrs.evolve(
            job, id="job-other", payload={"kind": "changed"}, transport_id="evt_other"
        )
        async with storage.unit_of_work() as uow:
            stored, created = await uow.jobs.add(duplicate)
        assert (stored, created) == (job, False)
        rows = await backdoor.rows("jobs")
        assert len(rows) == 1 and rows[0]["payload"] == job.payload
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.get(team.id, job.id) == job
            assert await uow.jobs.get("other-team", job.id) is None
            assert await uow.jobs.get_unscoped(job.id) == job

    async def test_compare_and_set_has_one_winner(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, _, job = await self._event_job(storage, make)
        now = T0 + timedelta(seconds=5)
        a = machine.transition(job, JobStatus.PROCESSING, now=now, worker_id="a")
        b = machine.transition(job, JobStatus.PROCESSING, now=now, worker_id="b")

        async def claim(new: GenerationJob) -> bool:
            async with storage.unit_of_work() as uow:
                return await uow.jobs.compare_and_set(job, new)

        results = await asyncio.gather(claim(a), claim(b))
        assert sorted(results) == [False, True]
        (row,) = await backdoor.rows("jobs")
        assert row["status"] == "processing" and row["attempts"] == 1
        assert row["locked_by"] == ("a" if results[0] else "b")
        winner = a if results[0] else b
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.get(team.id, job.id) == winner
            done = machine.transition(winner, JobStatus.COMPLETED, now=now)
            # A stale expectation (the pre-claim row) must not overwrite the claim.
            assert await uow.jobs.compare_and_set(job, done) is False
            assert await uow.jobs.compare_and_set(winner, done) is True

    async def test_compare_and_set_logs_its_event_only_when_it_wins(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, _, job = await self._event_job(storage, make)
        now = T0 + timedelta(seconds=5)
        claimed = machine.transition(job, JobStatus.PROCESSING, now=now, worker_id="w")
        done = machine.transition(claimed, JobStatus.COMPLETED, now=now)
        async with storage.unit_of_work() as uow:
            await uow.job_events.add(make.job_event(job))
            processing = make.job_event(claimed, event_type=JobEventType.PROCESSING)
            assert await uow.jobs.compare_and_set(job, claimed, event=processing)
            stale = make.job_event(claimed, event_type=JobEventType.FAILED)
            assert await uow.jobs.compare_and_set(job, claimed, event=stale) is False
        async with storage.unit_of_work() as uow:
            completed = make.job_event(done, event_type=JobEventType.COMPLETED)
            assert await uow.jobs.compare_and_set(claimed, done, event=completed)
            assert await uow.jobs.get(team.id, job.id) == done
            listed = await uow.job_events.list(team.id, job.id)
        assert [(e.event_type, e.status_after, e.attempt) for e in listed] == [
            (JobEventType.QUEUED, JobStatus.QUEUED, 0),
            (JobEventType.PROCESSING, JobStatus.PROCESSING, 1),
            (JobEventType.COMPLETED, JobStatus.COMPLETED, 1),
        ]
        assert listed[1] == processing and listed[2] == completed
        assert len(await backdoor.rows("job_events")) == 3
        (row,) = await backdoor.rows("jobs")
        assert row["status"] == "completed"
        with pytest.raises(InvalidInput):
            async with storage.unit_of_work() as uow:
                other = make.job_event(attrs.evolve(done, id="job-other"))
                await uow.jobs.compare_and_set(done, done, event=other)

    async def test_job_listing_filters_pages_and_counts(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        sibling = make.project(team, "sibling")
        async with storage.unit_of_work() as uow:
            await uow.projects.add(sibling)
        made: list[GenerationJob] = []
        for target in (project, project, sibling):
            event = make.event(target)
            job = make.job(event)
            async with storage.unit_of_work() as uow:
                await uow.events.add(event)
                await uow.jobs.add(job)
            made.append(job)
        failed = machine.transition(
            made[0], JobStatus.FAILED, now=T0 + timedelta(hours=1), last_error={"reason": "x"}
        )
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.compare_and_set(made[0], failed)
            page, total = await uow.jobs.list(JobFilter(team_id=team.id), Page(limit=2))
            assert total == 3 and [j.id for j in page] == [made[2].id, made[1].id]
            only_project, total = await uow.jobs.list(
                JobFilter(team_id=team.id, project_id=project.id), Page()
            )
            assert total == 2 and {j.id for j in only_project} == {made[0].id, made[1].id}
            queued, total = await uow.jobs.list(
                JobFilter(team_id=team.id, status=JobStatus.QUEUED), Page()
            )
            assert total == 2
            since, total = await uow.jobs.list(
                JobFilter(team_id=team.id, since=made[2].created_at), Page()
            )
            assert [j.id for j in since] == [made[2].id]
            _, none = await uow.jobs.list(JobFilter(team_id="nobody"), Page())
            assert none == 0
            counts = await uow.jobs.count_by_status(team.id)
            assert counts[JobStatus.QUEUED] == 2 and counts[JobStatus.FAILED] == 1
            summary_only, total = await uow.jobs.list(
                JobFilter(team_id=team.id, source_type=SourceType.SESSION_SUMMARY), Page()
            )
            assert total == 0
        del queued, summary_only

    async def _queued_jobs(
        self, storage: Storage, make: Factory, project: Project, count: int
    ) -> list[GenerationJob]:
        """``count`` queued jobs of the project, each with its event, stored one by one."""
        rows = []
        for _ in range(count):
            event = make.event(project)
            job = make.job(event)
            async with storage.unit_of_work() as uow:
                await uow.events.add(event)
                await uow.jobs.add(job)
            rows.append(job)
        return rows

    async def test_due_jobs_and_expired_leases(self, storage: Storage, make: Factory) -> None:
        _, project = await make.stored_tenant(storage)
        rows = await self._queued_jobs(storage, make, project, 3)
        now = T0 + timedelta(hours=1)
        later = machine.transition(
            machine.transition(rows[1], JobStatus.PROCESSING, now=now, worker_id="w"),
            JobStatus.QUEUED,
            now=now,
            next_attempt_at=now + timedelta(minutes=10),
        )
        stale = machine.transition(
            rows[2], JobStatus.PROCESSING, now=now - timedelta(hours=1), worker_id="dead"
        )
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.compare_and_set(rows[1], later)
            assert await uow.jobs.compare_and_set(rows[2], stale)
            due = await uow.jobs.list_due(
                now=now, lease_expired_before=now - timedelta(minutes=5), limit=10
            )
        assert {j.id for j in due} == {rows[0].id, rows[2].id}

    async def test_job_lease_renewal_is_fenced_by_the_claim(
        self, storage: Storage, make: Factory
    ) -> None:
        team, _, job = await self._event_job(storage, make)
        start = T0 + timedelta(minutes=1)
        claimed = machine.transition(job, JobStatus.PROCESSING, now=start, worker_id="w1")
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.renew_lease(claimed, now=start) is False  # still queued
            assert await uow.jobs.compare_and_set(job, claimed)
        beat = start + timedelta(seconds=20)
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.renew_lease(claimed, now=beat) is True
        async with storage.unit_of_work() as uow:
            stored = await uow.jobs.get(team.id, job.id)
            assert stored is not None
            assert (stored.locked_at, stored.status, stored.attempts) == (
                beat,
                JobStatus.PROCESSING,
                1,
            )
            # A renewed lease is not expired where the first one would be.
            due = await uow.jobs.list_due(
                now=beat, lease_expired_before=start + timedelta(seconds=10), limit=10
            )
            assert job.id not in {j.id for j in due}
            # Another holder, another attempt or another team: not this claim.
            stranger = attrs.evolve(claimed, locked_by="w2")
            assert await uow.jobs.renew_lease(stranger, now=beat) is False
            assert await uow.jobs.renew_lease(attrs.evolve(claimed, attempts=2), now=beat) is False
            assert (
                await uow.jobs.renew_lease(attrs.evolve(claimed, team_id="other"), now=beat)
                is False
            )
        # The lease expired and another worker took the job over: the first claim is lost.
        released = machine.release_expired(stored, now=beat + timedelta(minutes=5))
        retaken = machine.transition(
            released, JobStatus.PROCESSING, now=beat + timedelta(minutes=5), worker_id="w2"
        )
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.compare_and_set(stored, released)
            assert await uow.jobs.compare_and_set(released, retaken)
            assert await uow.jobs.renew_lease(claimed, now=beat) is False
            assert await uow.jobs.renew_lease(retaken, now=beat + timedelta(minutes=6)) is True
            done = machine.transition(retaken, JobStatus.COMPLETED, now=beat)
            assert await uow.jobs.compare_and_set(retaken, done)
            assert await uow.jobs.renew_lease(retaken, now=beat) is False

    async def test_mark_republished_stamps_each_job_once_per_period(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        rows = await self._queued_jobs(storage, make, project, 3)
        # rows[2] is being processed: never stamped.
        claimed = machine.transition(
            rows[2], JobStatus.PROCESSING, now=T0 + timedelta(hours=1), worker_id="w"
        )
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.compare_and_set(rows[2], claimed)
        ids = [j.id for j in rows] + ["missing"]
        now = T0 + timedelta(hours=1)
        async with storage.unit_of_work() as uow:
            first = await uow.jobs.mark_republished(
                ids, now=now, untouched_since=now - timedelta(seconds=30)
            )
        assert first == {rows[0].id, rows[1].id}
        async with storage.unit_of_work() as uow:
            stored = await uow.jobs.get(team.id, rows[0].id)
            assert stored is not None and stored.next_attempt_at == now
            assert stored.status is JobStatus.QUEUED
            # Still due (next_attempt_at is not in the future).
            due = await uow.jobs.list_due(now=now, lease_expired_before=T0, limit=10)
            assert {rows[0].id, rows[1].id} <= {j.id for j in due}
            # Within the period nobody stamps them again (a second reconciler loses).
            again = await uow.jobs.mark_republished(
                ids, now=now + timedelta(seconds=10), untouched_since=now - timedelta(seconds=20)
            )
            assert again == set()
        later = now + timedelta(seconds=31)
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.mark_republished(
                ids[:1], now=later, untouched_since=later - timedelta(seconds=30)
            ) == {rows[0].id}
            assert await uow.jobs.mark_republished([], now=later, untouched_since=later) == set()

    async def test_completed_event_ids(self, storage: Storage, make: Factory) -> None:
        team, project, job = await self._event_job(storage, make)
        now = T0 + timedelta(minutes=1)
        claimed = machine.transition(job, JobStatus.PROCESSING, now=now, worker_id="w")
        done = machine.transition(claimed, JobStatus.COMPLETED, now=now)
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.completed_event_ids(team.id, project.id, [job.source_id]) == set()
            assert await uow.jobs.compare_and_set(job, claimed)
            assert await uow.jobs.compare_and_set(claimed, done)
            assert await uow.jobs.completed_event_ids(
                team.id, project.id, [job.source_id, "x"]
            ) == {job.source_id}

    async def test_job_events_append_in_order_and_refuse_foreign_scope(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, _, job = await self._event_job(storage, make)
        first = make.job_event(job)
        second = make.job_event(
            job, event_type=JobEventType.PROCESSING, created_at=first.created_at
        )
        async with storage.unit_of_work() as uow:
            await uow.job_events.add(first)
            await uow.job_events.add(second)
        with pytest.raises(NotFound):
            async with storage.unit_of_work() as uow:
                await uow.job_events.add(make.job_event(job, team_id="other-team"))
        async with storage.unit_of_work() as uow:
            listed = await uow.job_events.list(team.id, job.id)
            assert list(await uow.job_events.list("other-team", job.id)) == []
        assert [e.id for e in listed] == [first.id, second.id]
        assert len(await backdoor.rows("job_events")) == 2

    # -- observations and search -----------------------------------------------------

    async def test_observation_generation_key_is_idempotent_per_scope(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        other_team, other_project = await make.stored_tenant(storage)
        first = make.observation(project, "hello", generation_key="generation:v1:j:0:abc")
        async with storage.unit_of_work() as uow:
            assert await uow.observations.add(first) == (first, True)
            again, created = await uow.observations.add(
                make.observation(project, "changed", generation_key=first.generation_key)
            )
            assert (again, created) == (first, False)
            elsewhere, created = await uow.observations.add(
                make.observation(other_project, "hello", generation_key=first.generation_key)
            )
            assert created is True and elsewhere.id != first.id
            assert await uow.observations.get(team.id, project.id, first.id) == first
            assert await uow.observations.get(other_team.id, project.id, first.id) is None
            assert await uow.observations.get_in_team(team.id, first.id) == first
            assert await uow.observations.get_in_team(other_team.id, first.id) is None
            assert await uow.observations.get_in_team(team.id, "missing") is None
        stored = {r["id"]: r for r in await backdoor.rows("observations")}
        assert set(stored) == {first.id, elsewhere.id}
        assert stored[first.id]["content"] == "hello"
        assert list(stored[first.id]["files_read"]) == ["src/a.py"]

    async def _indexed(
        self,
        storage: Storage,
        observations: list[Observation],
        events: dict[str, Any] | None = None,
    ) -> None:
        """Store observations with their passages (and those of ``events[obs.id]``)."""
        async with storage.unit_of_work() as uow:
            for obs in observations:
                await uow.observations.add(obs)
                linked = (events or {}).get(obs.id, [])
                await uow.search.add([observation_passage(obs), *event_passages(obs, linked)])

    async def test_search_answers_a_question_and_ranks_by_matches(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        _, other_project = await make.stored_tenant(storage)
        target = make.observation(
            project,
            "Fixed the login redirect loop in auth/middleware.py by changing the callback "
            "URL check",
        )
        partial = make.observation(project, "The login page now shows a spinner")
        noise = [
            make.observation(project, text)
            for text in (
                "Refactored the database pool settings",
                "Added pagination to the jobs listing",
                "Documented the deployment steps for the worker",
            )
        ]
        foreign = make.observation(other_project, "Fixed the login redirect in another tenant")
        await self._indexed(storage, [target, partial, *noise, foreign])
        question = parse_query("which file did we change to fix the login redirect?")
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(team.id, project.id, question, limit=10)
            none = await uow.search.search(
                team.id, project.id, parse_query("nonexistent_xyz_term"), limit=10
            )
            hostile = await uow.search.search(
                team.id,
                project.id,
                parse_query('"login" OR redirect* NEAR( ) AND -- \' ;'),
                limit=10,
            )
            capped = await uow.search.search(team.id, project.id, parse_query("login"), limit=1)
        ids = [h.observation.id for h in hits]
        assert ids[0] == target.id
        assert partial.id in ids and foreign.id not in ids
        assert hits[0].score > hits[ids.index(partial.id)].score
        assert hits[0].evidence[0].text is None  # the observation's own words matched best
        assert list(none) == []
        assert target.id in [h.observation.id for h in hostile]
        assert len(capped) == 1

    async def test_search_finds_identifiers_whole_and_by_all_their_parts(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        path = make.observation(project, "Changed auth/middleware.py to strip the query")
        snake = make.observation(project, "The redirect_uri must match the registered one")
        camel = make.observation(project, "parseConfig now reads the TOML file")
        only_part = make.observation(project, "A term that is plain")
        await self._indexed(storage, [path, snake, camel, only_part])

        async def first(text: str) -> list[str]:
            async with storage.unit_of_work() as uow:
                hits = await uow.search.search(team.id, project.id, parse_query(text), limit=5)
            return [h.observation.id for h in hits]

        assert (await first("auth/middleware.py"))[:1] == [path.id]
        assert (await first("middleware"))[:1] == [path.id]
        assert (await first("redirect_uri"))[:1] == [snake.id]
        assert (await first("redirect uri"))[:1] == [snake.id]
        assert (await first("parseConfig"))[:1] == [camel.id]
        assert (await first("config parse"))[:1] == [camel.id]
        # One part of an identifier is not the identifier.
        assert await first("nonexistent_xyz_term") == []

    async def test_search_groups_passages_and_returns_the_best_as_evidence(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        edit = make.observation(project, "Ran the test suite", title="Ran tests")
        other = make.observation(project, "Looked at the README", title="Read docs")
        output = "\n".join(
            [f"collected line {n} passed" for n in range(60)]
            + ["FAILED tests/test_login.py::test_redirect_loop - AssertionError"]
            + [f"more output {n}" for n in range(60)]
        )
        events = {
            edit.id: [
                make.event(project, payload={"tool_name": "Bash", "tool_response": output}),
            ]
        }
        await self._indexed(storage, [edit, other], events)
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(
                team.id, project.id, parse_query("which test failed: test_redirect_loop?"), limit=5
            )
            passages = await uow.search.search(
                team.id, project.id, parse_query("collected passed output"), limit=5
            )
        assert [h.observation.id for h in hits] == [edit.id]
        best = hits[0].evidence[0]
        assert best.text is not None and "test_redirect_loop" in best.text
        assert best.event_id == events[edit.id][0].id
        assert len(hits[0].evidence) <= ranking.EVIDENCE_PASSAGES
        scores = [e.score for e in hits[0].evidence]
        assert scores == sorted(scores, reverse=True)
        assert hits[0].score == pytest.approx(ranking.observation_score(scores), rel=1e-9)
        # Many passages of one observation match: it is still one hit.
        assert [h.observation.id for h in passages].count(edit.id) == 1

    async def test_search_normalises_length_and_saturates_frequency(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        filler = " ".join(f"word{n} cache" for n in range(400))
        long = make.observation(project, "The cache TTL decision. " + filler, title="Summary")
        short = make.observation(project, "We decided the cache TTL is 300 seconds", title="TTL")
        padding = [make.observation(project, f"unrelated note {n}") for n in range(5)]
        await self._indexed(storage, [long, short, *padding])
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(
                team.id, project.id, parse_query("what did we decide about the cache TTL?"), limit=5
            )
        assert [h.observation.id for h in hits][:2] == [short.id, long.id]

    async def test_search_scores_follow_the_model(self, storage: Storage, make: Factory) -> None:
        """Every backend computes domain/ranking.py: scores equal the model's to rounding,
        statistics are per project, and ties go to the newer observation."""
        team, project = await make.stored_tenant(storage)
        _, elsewhere = await make.stored_tenant(storage)
        words = ["login", "redirect", "cache", "worker", "deploy", "schema", "token", "queue"]
        corpus = [
            make.observation(project, " ".join(words[(n * k) % 8] for k in range(1, n % 5 + 2)))
            for n in range(24)
        ]
        twin_a = make.observation(project, "identical twin text about login")
        twin_b = make.observation(project, "identical twin text about login")
        foreign = [make.observation(elsewhere, "login login login") for _ in range(6)]
        await self._indexed(storage, [*corpus, twin_a, twin_b, *foreign])
        query = parse_query("login cache queue twin")
        passages = [observation_passage(o) for o in [*corpus, twin_a, twin_b]]
        strings = ranking.query_strings(query)
        idfs = {
            s: ranking.idf(len(passages), sum(1 for p in passages if s in p.tf)) for s in strings
        }
        expected = {
            p.observation_id: ranking.passage_score(query, p.tf, p.length, idfs=idfs, event=False)
            for p in passages
        }
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(team.id, project.id, query, limit=100)
        assert {h.observation.id for h in hits} == {o for o, s in expected.items() if s > 0}
        for hit in hits:
            assert hit.score == pytest.approx(expected[hit.observation.id], rel=1e-9)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        ids = [h.observation.id for h in hits]
        assert ids.index(twin_b.id) < ids.index(twin_a.id)  # same score: newer first

    async def test_search_top_of_many_matches_is_the_models(
        self, storage: Storage, make: Factory
    ) -> None:
        """Many passages match, few are asked for: a backend that reads only the passages
        that can still reach the top (PostgreSQL) returns exactly the model's top, with
        every matching passage of each hit as evidence."""
        import random

        team, project = await make.stored_tenant(storage)
        rng = random.Random(7)
        words = "alpha beta gamma delta kappa sigma omega theta lambda zeta".split()
        corpus = [
            make.observation(
                project,
                " ".join(rng.choice(words) for _ in range(rng.randint(3, 30))),
                title=rng.choice(words),
            )
            for _ in range(150)
        ]
        events = {
            o.id: [make.event(project, payload={"output": " ".join(rng.sample(words, 4))})]
            for o in corpus[::3]
        }
        await self._indexed(storage, corpus, events)
        passages = [observation_passage(o) for o in corpus] + [
            p for o in corpus for p in event_passages(o, events.get(o.id, []))
        ]
        by_id = {o.id: o for o in corpus}
        for _ in range(12):
            query = parse_query(" ".join(rng.sample(words, rng.randint(1, 4))))
            strings = ranking.query_strings(query)
            idfs = {
                s: ranking.idf(len(passages), sum(1 for p in passages if s in p.tf))
                for s in strings
            }
            scores: dict[str, list[float]] = {}
            for p in passages:
                event = p.event_id is not None
                score = ranking.passage_score(query, p.tf, p.length, idfs=idfs, event=event)
                if score > 0:
                    scores.setdefault(p.observation_id, []).append(score)
            expected = sorted(
                ((ranking.observation_score(v), oid) for oid, v in scores.items()),
                key=lambda e: ranking.score_order(e[0], by_id[e[1]].updated_at, e[1]),
            )[:5]
            async with storage.unit_of_work() as uow:
                hits = await uow.search.search(team.id, project.id, query, limit=5)
            assert len(hits) == len(expected)
            for hit, (score, oid) in zip(hits, expected, strict=True):
                assert hit.score == pytest.approx(score, rel=1e-9)
                # The same observation, or one of exactly its score (a tie within rounding).
                assert hit.observation.id == oid or ranking.observation_score(
                    scores[hit.observation.id]
                ) == pytest.approx(score, rel=1e-9)
                found = sorted(scores[hit.observation.id], reverse=True)
                assert [e.score for e in hit.evidence] == pytest.approx(
                    found[: ranking.EVIDENCE_PASSAGES], rel=1e-9
                )

    async def test_search_counts_an_observations_next_passages_even_where_it_prunes(
        self, storage: Storage, make: Factory
    ) -> None:
        """An observation scores its best passage plus a share of its next best. Here the
        winner's extra passages hold only a common query word, the kind of match a backend
        that prunes (PostgreSQL) skips; its score must still count them, and so it must
        beat the observation whose single passage is a little better than its best."""
        team, project = await make.stored_tenant(storage)
        winner = make.observation(project, "kestrel falcon notes")
        single = make.observation(project, "kestrel falcon")
        common = [make.observation(project, f"harbor note {n}") for n in range(10)]
        common += [make.observation(project, f"filler line {n}") for n in range(60)]
        output = "harbor harbor harbor harbor"
        events = {winner.id: [make.event(project, payload={"output": output}) for _ in range(2)]}
        await self._indexed(storage, [winner, single, *common], events)
        query = parse_query("kestrel falcon harbor")
        passages = [observation_passage(o) for o in [winner, single, *common]]
        passages += event_passages(winner, events[winner.id])
        strings = ranking.query_strings(query)
        idfs = {
            s: ranking.idf(len(passages), sum(1 for p in passages if s in p.tf)) for s in strings
        }
        scores: dict[str, list[float]] = {}
        for p in passages:
            score = ranking.passage_score(
                query, p.tf, p.length, idfs=idfs, event=p.event_id is not None
            )
            scores.setdefault(p.observation_id, []).append(score)
        # The case this test is about, as the model sees it.
        assert max(scores[single.id]) > max(scores[winner.id])
        assert ranking.observation_score(scores[winner.id]) > ranking.observation_score(
            scores[single.id]
        )
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(team.id, project.id, query, limit=1)
        assert [h.observation.id for h in hits] == [winner.id]
        assert hits[0].score == pytest.approx(
            ranking.observation_score(scores[winner.id]), rel=1e-9
        )
        assert len(hits[0].evidence) == 3

    async def test_search_a_common_word_alone_is_ranked_exactly(
        self, storage: Storage, make: Factory
    ) -> None:
        """One common word, many passages holding it: where a few hold it often (its
        high-impact passages) they settle the top without the rest being read (PostgreSQL);
        where they are too few, every match is scored. Both give the model's top."""
        team, project = await make.stored_tenant(storage)
        filler = " ".join(f"word{n}" for n in range(60))
        weak = [make.observation(project, f"{filler} {n} cache") for n in range(40)]
        strong = [make.observation(project, f"cache note cache {n} cache") for n in range(7)]
        await self._indexed(storage, [*weak, *strong])
        by_id = {o.id: o for o in [*weak, *strong]}
        passages = [observation_passage(o) for o in by_id.values()]
        query = parse_query("cache")
        [word] = ranking.query_strings(query)
        high = {
            p.observation_id for p in passages if word in ranking.high_impact_terms(p.tf, p.length)
        }
        assert high == {o.id for o in strong}
        idfs = {word: ranking.idf(len(passages), len(passages))}
        for limit in (5, 12):  # 7 strong passages: enough for 5, too few for 12
            expected = sorted(
                (
                    (ranking.passage_score(query, p.tf, p.length, idfs=idfs, event=False), oid)
                    for p in passages
                    for oid in [p.observation_id]
                ),
                key=lambda e: ranking.score_order(e[0], by_id[e[1]].updated_at, e[1]),
            )[:limit]
            async with storage.unit_of_work() as uow:
                hits = await uow.search.search(team.id, project.id, query, limit=limit)
            assert [h.observation.id for h in hits] == [oid for _, oid in expected]
            for hit, (score, _) in zip(hits, expected, strict=True):
                assert hit.score == pytest.approx(score, rel=1e-9)

    async def test_search_reads_a_words_weak_passages_when_together_they_can_win(
        self, storage: Storage, make: Factory
    ) -> None:
        """One observation says the word once in each of three longer passages (none of
        them high-impact), another says it in one short passage (high-impact, the best
        single passage). Together the three win; a backend that reads the high-impact
        passages first must still read the others, since their observation can win."""
        team, project = await make.stored_tenant(storage)

        def filler(n: int, start: int) -> str:
            return " ".join(f"w{start + i}" for i in range(n))

        strong = make.observation(project, f"cache {filler(10, 0)}", title=None)
        weak = make.observation(project, f"cache {filler(28, 100)}", title=None)
        outputs = [f"cache {filler(28, 200 + 50 * k)}" for k in range(2)]
        events = {weak.id: [make.event(project, payload={"output": out}) for out in outputs]}
        others = [
            make.observation(project, filler(30, 500 + 40 * k), title=None) for k in range(20)
        ]
        await self._indexed(storage, [strong, weak, *others], events)
        passages = [observation_passage(o) for o in [strong, weak, *others]]
        passages += event_passages(weak, events[weak.id])
        query = parse_query("cache")
        [word] = ranking.query_strings(query)
        idfs = {word: ranking.idf(len(passages), sum(1 for p in passages if word in p.tf))}
        scores: dict[str, list[float]] = {}
        for p in passages:
            if word in p.tf:
                high = word in ranking.high_impact_terms(p.tf, p.length)
                assert high == (p.observation_id == strong.id)  # the case under test
                scores.setdefault(p.observation_id, []).append(
                    ranking.passage_score(
                        query, p.tf, p.length, idfs=idfs, event=p.event_id is not None
                    )
                )
        assert max(scores[strong.id]) > max(scores[weak.id])
        expected = ranking.observation_score(scores[weak.id])
        assert expected > ranking.observation_score(scores[strong.id])
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(team.id, project.id, query, limit=1)
        assert [h.observation.id for h in hits] == [weak.id]
        assert hits[0].score == pytest.approx(expected, rel=1e-9)

    async def test_search_of_one_kind_ranks_as_among_all(
        self, storage: Storage, make: Factory
    ) -> None:
        """A kind filter keeps the observations of that kind, in the order and with the
        scores they have among all kinds (statistics stay the project's), and the limit
        counts only them: notes that outrank every decision take no decision's place."""
        team, project = await make.stored_tenant(storage)
        notes = [
            make.observation(project, "zebra zebra zebra", kind="note", title="zebra")
            for _ in range(4)
        ]
        decisions = [
            make.observation(project, f"zebra {'crossing ' * n}decided", kind="decision")
            for n in range(1, 5)
        ]
        await self._indexed(storage, [*notes, *decisions])
        query = parse_query("zebra")
        async with storage.unit_of_work() as uow:
            every = await uow.search.search(team.id, project.id, query, limit=20)
            kinded = await uow.search.search(team.id, project.id, query, limit=3, kind="decision")
        assert [h.observation.id for h in every][:4] == [o.id for o in reversed(notes)]
        expected = [h for h in every if h.observation.kind == "decision"][:3]
        assert [h.observation.id for h in kinded] == [h.observation.id for h in expected]
        assert [h.score for h in kinded] == pytest.approx([h.score for h in expected], rel=1e-9)
        async with storage.unit_of_work() as uow:
            none = await uow.search.search(team.id, project.id, query, limit=3, kind="absent")
        assert none == []

    async def test_search_reads_pairs_of_weak_words_when_they_can_win(
        self, storage: Storage, make: Factory
    ) -> None:
        """Three query words. The best answer says two rare ones once each in a longer
        passage (neither high-impact there); the passage a backend reads first (two words,
        one of them high-impact) scores less. A backend that bounds the pairs it has not
        read must still read this one."""
        team, project = await make.stored_tenant(storage)

        def filler(n: int, start: int) -> str:
            return " ".join(f"w{start + i}" for i in range(n))

        best = make.observation(project, f"kestrel falcon {filler(30, 0)}", title=None)
        first = make.observation(project, f"kestrel kestrel heron {filler(30, 100)}", title=None)
        herons = [
            make.observation(project, f"heron {filler(5, 200 + 10 * k)}", title=None)
            for k in range(30)
        ]
        others = [make.observation(project, filler(8, 600 + 10 * k), title=None) for k in range(30)]
        await self._indexed(storage, [best, first, *herons, *others])
        passages = [observation_passage(o) for o in [best, first, *herons, *others]]
        query = parse_query("kestrel falcon heron")
        strings = ranking.query_strings(query)
        idfs = {
            s: ranking.idf(len(passages), sum(1 for p in passages if s in p.tf)) for s in strings
        }
        scores = {
            p.observation_id: ranking.passage_score(query, p.tf, p.length, idfs=idfs, event=False)
            for p in passages
        }
        # The case under test, as the model sees it.
        high = {
            o: set(ranking.high_impact_terms(p.tf, p.length)) & set(strings)
            for p in passages
            for o in [p.observation_id]
            if o in (best.id, first.id)
        }
        assert not high[best.id] and high[first.id]
        assert (
            scores[best.id] > scores[first.id] > max(ranking.HIGH_IMPACT * idfs[s] for s in strings)
        )
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(team.id, project.id, query, limit=1)
        assert [h.observation.id for h in hits] == [best.id]
        assert hits[0].score == pytest.approx(scores[best.id], rel=1e-9)

    async def test_search_a_rare_term_alone_beats_common_pairs(
        self, storage: Storage, make: Factory
    ) -> None:
        """Many observations hold two common query words; the best answer holds only the
        rare one. A backend that skips single-word matches it judges hopeless must not skip
        this one; those whose words cannot win stay out without changing the answer."""
        team, project = await make.stored_tenant(storage)
        pairs = [make.observation(project, f"deploy cache note {n}") for n in range(40)]
        only_cache = [make.observation(project, f"cache entry {n}") for n in range(40)]
        rare = make.observation(project, "zookeeper", title="zookeeper")
        await self._indexed(storage, [*pairs, *only_cache, rare])
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(
                team.id, project.id, parse_query("zookeeper deploy cache"), limit=3
            )
        ids = [h.observation.id for h in hits]
        assert ids[0] == rare.id
        assert set(ids[1:]) <= {o.id for o in pairs}

    async def test_sources_link_and_merge(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project, job = await self._event_job(storage, make)
        obs = make.observation(project, "generated", created_by_job_id=job.id)
        link = ObservationSource(
            id="src-1",
            observation_id=obs.id,
            team_id=team.id,
            project_id=project.id,
            source_type=ObservationSourceType.AGENT_EVENT,
            source_id=job.source_id,
            agent_event_id=job.agent_event_id,
            generation_job_id=job.id,
            metadata={"a": 1},
            created_at=T0,
        )
        async with storage.unit_of_work() as uow:
            await uow.observations.add(obs)
            await uow.sources.add(link)
            merged = await uow.sources.add(attrs.evolve(link, id="src-2", metadata={"b": 2}))
            pairs = await uow.observations.list_for_source(
                team.id, project.id, "agent_event", job.source_id
            )
            foreign = await uow.observations.list_for_source(
                "other", project.id, "agent_event", job.source_id
            )
            by_job = await uow.observations.list_for_job(team.id, project.id, job.id)
        assert merged.id == "src-1" and merged.metadata == {"a": 1, "b": 2}
        assert [(o.id, s.id) for o, s in pairs] == [(obs.id, "src-1")]
        assert list(foreign) == [] and [o.id for o in by_job] == [obs.id]
        assert len(await backdoor.rows("sources")) == 1

    async def test_observation_listing_is_newest_first(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        made = [make.observation(project, f"note {i}") for i in range(3)]
        async with storage.unit_of_work() as uow:
            for obs in made:
                await uow.observations.add(obs)
            page, total = await uow.observations.list(team.id, project.id, Page(limit=2, offset=1))
        assert total == 3 and [o.id for o in page] == [made[1].id, made[0].id]

    async def test_observations_of_one_moment_list_by_id(
        self, storage: Storage, make: Factory
    ) -> None:
        # One generation job writes several observations in the same millisecond: every
        # backend must list them in the same order (newest first, then by id).
        team, project = await make.stored_tenant(storage)
        first = make.observation(project, "note")
        same = [
            attrs.evolve(make.observation(project, f"note {i}"), created_at=first.created_at)
            for i in range(4)
        ]
        newer = make.observation(project, "newer")
        async with storage.unit_of_work() as uow:
            for obs in [*same, newer]:
                await uow.observations.add(obs)
            page, _ = await uow.observations.list(team.id, project.id, Page(limit=10))
        assert [o.id for o in page] == [newer.id, *sorted(o.id for o in same)]

    # -- add_many: one statement per table, the outcome of one add per item -----------

    async def test_event_add_many_is_add_in_order(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        session = make.session(project)
        stored = make.event(project, metadata={"m": 1, "keep": True})
        async with storage.unit_of_work() as uow:
            await uow.sessions.add(session)
            await uow.events.add(stored)
        fresh = make.event(project, session, metadata={})
        replay = make.event(
            project, idempotency_key=stored.idempotency_key, metadata={"m": 2}, payload={"x": 1}
        )
        twin = make.event(project, idempotency_key=fresh.idempotency_key, metadata={"late": 1})
        plain_replay = make.event(project, idempotency_key=stored.idempotency_key, metadata={})
        async with storage.unit_of_work() as uow:
            results = await uow.events.add_many([fresh, replay, twin, plain_replay])
        assert [created for _, created in results] == [True, False, False, False]
        assert results[0][0] == fresh
        assert results[1][0].id == stored.id and results[1][0].payload == stored.payload
        assert results[1][0].metadata == {"m": 2, "keep": True}
        # A repeat within the call is a replay of the earlier item, as with two adds.
        assert results[2][0].id == fresh.id and results[2][0].metadata == {"late": 1}
        assert results[3][0] == results[1][0]
        rows = {r["id"]: r for r in await backdoor.rows("events")}
        assert set(rows) == {stored.id, fresh.id}
        assert rows[stored.id]["metadata"] == {"m": 2, "keep": True}
        assert rows[fresh.id]["metadata"] == {"late": 1}
        assert rows[fresh.id]["server_session_id"] == session.id
        async with storage.unit_of_work() as uow:
            assert await uow.events.get(team.id, fresh.id) == attrs.evolve(
                fresh, metadata={"late": 1}
            )
            assert list(await uow.events.add_many([])) == []

    async def test_event_add_many_is_all_or_nothing_on_a_foreign_session(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        _, project_a = await make.stored_tenant(storage)
        _, project_b = await make.stored_tenant(storage)
        foreign_session = make.session(project_b)
        async with storage.unit_of_work() as uow:
            await uow.sessions.add(foreign_session)
        with pytest.raises(NotFound):
            async with storage.unit_of_work() as uow:
                await uow.events.add_many(
                    [
                        make.event(project_a),
                        make.event(project_a, server_session_id=foreign_session.id),
                    ]
                )
        with pytest.raises(NotFound):
            async with storage.unit_of_work() as uow:
                await uow.events.add_many(
                    [make.event(project_a), make.event(project_a, team_id=project_b.team_id)]
                )
        assert await backdoor.rows("events") == []

    async def test_job_add_many_is_add_in_order(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project, stored = await self._event_job(storage, make)
        events = [make.event(project) for _ in range(2)]
        async with storage.unit_of_work() as uow:
            for event in events:
                await uow.events.add(event)
        first, second = (make.job(e) for e in events)
        again = attrs.evolve(stored, id="job-again", transport_id="evt_again")
        twin = attrs.evolve(first, id="job-twin", transport_id="evt_twin", payload={"x": 1})
        async with storage.unit_of_work() as uow:
            results = await uow.jobs.add_many([first, again, second, twin])
        assert results == [(first, True), (stored, False), (second, True), (first, False)]
        rows = {r["id"]: r for r in await backdoor.rows("jobs")}
        assert set(rows) == {stored.id, first.id, second.id}
        assert rows[first.id]["payload"] == first.payload
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.get(team.id, second.id) == second

    async def test_job_event_add_many_keeps_each_jobs_order(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project, job = await self._event_job(storage, make)
        other = make.job(make.event(project))
        async with storage.unit_of_work() as uow:
            await uow.events.add(make.event(project, id=other.agent_event_id))
            await uow.jobs.add(other)
            await uow.job_events.add(make.job_event(job))
        at = T0 + timedelta(minutes=1)
        batch = [
            make.job_event(job, event_type=JobEventType.PROCESSING, created_at=at),
            make.job_event(other, created_at=at),
            make.job_event(job, event_type=JobEventType.COMPLETED, created_at=at),
            make.job_event(job, event_type=JobEventType.FAILED, created_at=at),
        ]
        async with storage.unit_of_work() as uow:
            await uow.job_events.add_many(batch)
            await uow.job_events.add_many([])
        async with storage.unit_of_work() as uow:
            listed = await uow.job_events.list(team.id, job.id)
            others = await uow.job_events.list(team.id, other.id)
        assert [e.event_type for e in listed] == [
            JobEventType.QUEUED,
            JobEventType.PROCESSING,
            JobEventType.COMPLETED,
            JobEventType.FAILED,
        ]
        assert [e.id for e in others] == [batch[1].id]
        assert len(await backdoor.rows("job_events")) == 5
        with pytest.raises(NotFound):
            async with storage.unit_of_work() as uow:
                await uow.job_events.add_many(
                    [make.job_event(job), make.job_event(job, team_id="other-team")]
                )
        assert len(await backdoor.rows("job_events")) == 5

    async def test_observation_and_source_add_many_are_add_in_order(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project, job = await self._event_job(storage, make)
        stored = make.observation(project, "stored", generation_key="generation:v1:j:0:a")
        async with storage.unit_of_work() as uow:
            await uow.observations.add(stored)
        new = make.observation(
            project, "new", generation_key="generation:v1:j:1:b", created_by_job_id=job.id
        )
        again = make.observation(project, "changed", generation_key=stored.generation_key)
        twin = make.observation(project, "twin", generation_key=new.generation_key)
        keyless = make.observation(project, "manual note")
        async with storage.unit_of_work() as uow:
            results = await uow.observations.add_many([new, again, twin, keyless])
        assert results == [(new, True), (stored, False), (new, False), (keyless, True)]
        rows = {r["id"]: r for r in await backdoor.rows("observations")}
        assert set(rows) == {stored.id, new.id, keyless.id}
        assert rows[stored.id]["content"] == "stored"

        def link(obs_id: str, link_id: str, metadata: dict[str, Any]) -> ObservationSource:
            return ObservationSource(
                id=link_id,
                observation_id=obs_id,
                team_id=team.id,
                project_id=project.id,
                source_type=ObservationSourceType.AGENT_EVENT,
                source_id=job.source_id,
                agent_event_id=job.agent_event_id,
                generation_job_id=job.id,
                metadata=metadata,
                created_at=T0,
            )

        async with storage.unit_of_work() as uow:
            await uow.sources.add(link(stored.id, "src-0", {"a": 1}))
        async with storage.unit_of_work() as uow:
            links = await uow.sources.add_many(
                [
                    link(new.id, "src-1", {"n": 1}),
                    link(stored.id, "src-2", {"b": 2}),
                    link(new.id, "src-3", {"n": 2, "m": 3}),
                ]
            )
        assert [(s.id, s.metadata) for s in links] == [
            ("src-1", {"n": 1}),
            ("src-0", {"a": 1, "b": 2}),
            ("src-1", {"n": 2, "m": 3}),
        ]
        sources = {r["id"]: r["metadata"] for r in await backdoor.rows("sources")}
        assert sources == {"src-0": {"a": 1, "b": 2}, "src-1": {"n": 2, "m": 3}}
        with pytest.raises(NotFound):
            async with storage.unit_of_work() as uow:
                await uow.observations.add_many(
                    [
                        make.observation(project, "x"),
                        make.observation(project, "y", created_by_job_id="job-of-nobody"),
                    ]
                )
        assert len(await backdoor.rows("observations")) == 3

    # -- audit -----------------------------------------------------------------------

    async def test_audit_add_many_round_trips(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        entries = [
            AuditEntry(
                id=f"aud-{i}",
                team_id=team.id,
                project_id=project.id if i else None,
                actor_id=None,
                action="generation_job.completed",
                resource_type="observation_generation_job",
                resource_id=f"job-{i}",
                details={"requestId": "req-1", "ids": [i, None], "nested": {"ü": i}},
                created_at=T0 + timedelta(seconds=i),
            )
            for i in range(3)
        ]
        async with storage.unit_of_work() as uow:
            await uow.audit.add_many(entries)
            await uow.audit.add_many([])
            listed, total = await uow.audit.list(team.id)
        assert total == 3 and list(listed) == entries[::-1]
        assert len(await backdoor.rows("audit")) == 3

    async def test_audit_entries_round_trip_newest_first(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        entries = [
            AuditEntry(
                id=f"aud-{i}",
                team_id=team.id,
                project_id=project.id,
                actor_id="a",
                action=action,
                resource_type="agent_event",
                resource_id="r",
                details={"requestId": "req-1", "i": i},
                created_at=T0 + timedelta(seconds=i),
            )
            for i, action in enumerate(["event.received", "session.end", "event.received"])
        ]
        async with storage.unit_of_work() as uow:
            for entry in entries:
                await uow.audit.add(entry)
            received, total = await uow.audit.list(team.id, action="event.received")
            foreign, foreign_total = await uow.audit.list("other-team")
        assert (list(foreign), foreign_total) == ([], 0)
        assert total == 2 and [e.id for e in received] == ["aud-2", "aud-0"]
        assert received[0] == entries[2]
        assert len(await backdoor.rows("audit")) == 3
