"""What only the SQLAlchemy adapter can get wrong: full-text ranking on each backend,
FTS syntax in user text, real concurrency, driver error translation, timestamp fidelity.

The behaviour shared with every adapter lives in the storage contract suite. Tests here
share one PostgreSQL database per module (cloning one costs ~0.4 s) and stay apart by
using their own tenants and unique ids; SQLite gets a fresh file copy per test.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest

from claude_mem_core import errors
from claude_mem_core.adapters.sqlalchemy import SqlAlchemyStorage
from claude_mem_core.domain import jobs as machine
from claude_mem_core.domain.models import (
    AgentEvent,
    GenerationJob,
    JobEvent,
    JobEventType,
    JobStatus,
    JobType,
    Observation,
    Project,
    ServerSession,
    SourceType,
    Team,
)
from claude_mem_core.domain.passages import observation_passage
from claude_mem_core.domain.tokens import parse_query
from claude_mem_core.testing import databases

T = TypeVar("T")
T0 = datetime(2026, 11, 27, 12, 0, 0, 123000, tzinfo=UTC)
LOGIN_FIX = "Fixed the login redirect loop in auth/middleware.py by changing the callback URL check"
UNRELATED = (
    "Added a Redis cache in front of the pricing service to cut p95 latency",
    "Renamed the file uploader component and updated its storybook stories",
    "Documented how the nightly backup job rotates its S3 snapshots",
    "Changed the CI matrix to include Python 3.13",
    "Login page now shows the company logo",
)


def _run_elsewhere(coro: Coroutine[Any, Any, T]) -> T:
    # On a thread with its own loop: the caller may be inside a test's running loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module")
def shared_pg_url(postgres_base_url: str) -> Iterator[str]:
    # Sync on purpose: a module-scoped async fixture would need a module-scoped event loop.
    created = _run_elsewhere(databases.create_postgres_database(postgres_base_url))
    try:
        yield created
    finally:
        _run_elsewhere(databases.drop_postgres_database(created))


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return await databases.migrated_sqlite_url(tmp_path)
    return str(request.getfixturevalue("shared_pg_url"))


@pytest.fixture
async def storage(url: str) -> AsyncIterator[SqlAlchemyStorage]:
    store = SqlAlchemyStorage.from_url(url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def pg_url(shared_pg_url: str) -> str:
    return shared_pg_url


class Ids:
    """Unique ids (the PostgreSQL database is shared) with advancing timestamps."""

    def __init__(self) -> None:
        self.n = 0
        self.run = secrets.token_hex(4)

    def __call__(self, prefix: str) -> tuple[str, datetime]:
        self.n += 1
        return f"{prefix}-{self.run}-{self.n}", T0 + timedelta(milliseconds=self.n)


async def _tenant(storage: SqlAlchemyStorage, ids: Ids) -> tuple[Team, Project]:
    tid, at = ids("team")
    team = Team(id=tid, name="t", created_at=at, updated_at=at)
    pid, at = ids("proj")
    project = Project(id=pid, team_id=team.id, name="p", created_at=at, updated_at=at)
    async with storage.unit_of_work() as uow:
        await uow.teams.add(team)
        await uow.projects.add(project)
    return team, project


def _observation(ids: Ids, project: Project, content: str) -> Observation:
    oid, at = ids("obs")
    return Observation(
        id=oid,
        team_id=project.team_id,
        project_id=project.id,
        content=content,
        created_at=at,
        updated_at=at,
    )


def _event(ids: Ids, project: Project, **kw: object) -> AgentEvent:
    eid, at = ids("evt")
    fields: dict[str, object] = {
        "id": eid,
        "team_id": project.team_id,
        "project_id": project.id,
        "source_adapter": "api",
        "idempotency_key": f"key-{eid}",
        "event_type": "tool_use",
        "occurred_at": at,
        "received_at": at,
        "created_at": at,
    }
    fields.update(kw)
    return AgentEvent(**fields)  # type: ignore[arg-type]


def _job(ids: Ids, event: AgentEvent) -> GenerationJob:
    jid, at = ids("job")
    return GenerationJob(
        id=jid,
        team_id=event.team_id,
        project_id=event.project_id,
        agent_event_id=event.id,
        source_type=SourceType.AGENT_EVENT,
        source_id=event.id,
        job_type=JobType.GENERATE_FOR_EVENT,
        idempotency_key=f"job-{event.id}",
        created_at=at,
        updated_at=at,
    )


async def _seed_observations(
    storage: SqlAlchemyStorage, ids: Ids, project: Project, contents: list[str]
) -> list[Observation]:
    rows = [_observation(ids, project, c) for c in contents]
    async with storage.unit_of_work() as uow:
        for row in rows:
            await uow.observations.add(row)
        await uow.search.add([observation_passage(row) for row in rows])
    return rows


# --------------------------------------------------------------------------- search


async def test_question_finds_the_login_redirect_fix_first(storage: SqlAlchemyStorage) -> None:
    ids = Ids()
    _, project = await _tenant(storage, ids)
    rows = await _seed_observations(
        storage, ids, project, [*UNRELATED[:3], LOGIN_FIX, *UNRELATED[3:]]
    )
    query = parse_query("which file did we change to fix the login redirect?")
    async with storage.unit_of_work() as uow:
        found = await uow.search.search(project.team_id, project.id, query, limit=10)
    assert found, "nothing matched"
    assert found[0].observation == rows[3]
    assert [s.score for s in found] == sorted((s.score for s in found), reverse=True)


async def test_more_and_rarer_terms_rank_higher(storage: SqlAlchemyStorage) -> None:
    ids = Ids()
    _, project = await _tenant(storage, ids)
    common = [f"deploy note {i}: the service restarted cleanly" for i in range(6)]
    both = "service restarted after the flaky migration lock timeout"
    rare = "migration lock timeout on the orders table"
    await _seed_observations(storage, ids, project, [*common, both, rare])
    async with storage.unit_of_work() as uow:
        found = await uow.search.search(
            project.team_id, project.id, parse_query("service migration lock"), limit=3
        )
    assert {s.observation.content for s in found[:2]} == {both, rare}


@pytest.mark.parametrize(
    "text",
    [
        '"foo" OR bar* NEAR( login',
        '"foo" bar* NEAR( OR AND NOT ( ) : ^x col:login \'',
        "'' \" \\ -login ! & | <-> a:* a\\b:c 'quoted' \\'",
    ],
)
async def test_query_syntax_in_questions_never_errors(
    storage: SqlAlchemyStorage, text: str
) -> None:
    ids = Ids()
    _, project = await _tenant(storage, ids)
    await _seed_observations(storage, ids, project, [LOGIN_FIX, 'the "foo" bar* NEAR( case a\\b:c'])
    async with storage.unit_of_work() as uow:
        found = await uow.search.search(project.team_id, project.id, parse_query(text), limit=5)
    assert all(s.observation.project_id == project.id for s in found)


async def test_empty_queries_find_nothing(storage: SqlAlchemyStorage) -> None:
    ids = Ids()
    _, project = await _tenant(storage, ids)
    await _seed_observations(storage, ids, project, [LOGIN_FIX])
    async with storage.unit_of_work() as uow:
        empty = parse_query("?!")
        assert await uow.search.search(project.team_id, project.id, empty, limit=5) == []


async def test_search_is_scoped_to_team_and_project(storage: SqlAlchemyStorage) -> None:
    ids = Ids()
    team, project = await _tenant(storage, ids)
    other_team, other_project = await _tenant(storage, ids)
    pid, at = ids("proj")
    sibling = Project(id=pid, team_id=team.id, name="sibling", created_at=at, updated_at=at)
    async with storage.unit_of_work() as uow:
        await uow.projects.add(sibling)
    await _seed_observations(storage, ids, other_project, [LOGIN_FIX])
    await _seed_observations(storage, ids, sibling, [LOGIN_FIX])
    (mine,) = await _seed_observations(storage, ids, project, [LOGIN_FIX])
    query = parse_query("login redirect")
    async with storage.unit_of_work() as uow:
        found = await uow.search.search(team.id, project.id, query, limit=10)
        assert [s.observation for s in found] == [mine]
        assert await uow.search.search(other_team.id, project.id, query, limit=10) == []


# --------------------------------------------------------------------------- fidelity


async def test_timestamps_and_json_round_trip_exactly(storage: SqlAlchemyStorage) -> None:
    ids = Ids()
    _, project = await _tenant(storage, ids)
    plus_two = timezone(timedelta(hours=2))
    event = _event(
        ids,
        project,
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=plus_two),
        received_at=datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
        payload={"ü": [1, 2.5, None, True], "nested": {"k": "v"}, "big": 2**53},
        metadata={},
    )
    async with storage.unit_of_work() as uow:
        await uow.events.add(event)
    async with storage.unit_of_work() as uow:
        stored = await uow.events.get(project.team_id, event.id)
    assert stored == event
    assert stored is not None and stored.occurred_at.tzinfo == UTC
    assert stored.occurred_at == datetime(2026, 1, 2, 1, 4, 5, 678000, tzinfo=UTC)


# --------------------------------------------------------------------------- transactions


async def test_unit_of_work_rolls_back_on_error(storage: SqlAlchemyStorage) -> None:
    ids = Ids()
    _, project = await _tenant(storage, ids)
    row = _observation(ids, project, "never committed")
    with pytest.raises(RuntimeError):
        async with storage.unit_of_work() as uow:
            await uow.observations.add(row)
            raise RuntimeError("boom")
    async with storage.unit_of_work() as uow:
        assert await uow.observations.get(project.team_id, project.id, row.id) is None


async def test_missing_parents_are_not_found_and_nothing_is_written(
    storage: SqlAlchemyStorage,
) -> None:
    ids = Ids()
    team, project = await _tenant(storage, ids)
    other_team, _ = await _tenant(storage, ids)
    pid, at = ids("proj")
    orphan = Project(id=pid, team_id="no-such-team", name="x", created_at=at, updated_at=at)
    with pytest.raises(errors.NotFound):
        async with storage.unit_of_work() as uow:
            await uow.projects.add(orphan)
    foreign = _event(ids, project, team_id=other_team.id)
    with pytest.raises(errors.NotFound):
        async with storage.unit_of_work() as uow:
            await uow.events.add(_event(ids, project))  # rolled back with the refused one
            await uow.events.add(foreign)
    async with storage.unit_of_work() as uow:
        assert await uow.projects.get("no-such-team", orphan.id) is None
        assert await uow.events.get(other_team.id, foreign.id) is None
        assert list(await uow.events.get_many(team.id, project.id, [foreign.id])) == []
        ok = _event(ids, project)
        assert await uow.events.add(ok) == (ok, True)


async def test_duplicate_primary_key_is_a_conflict(storage: SqlAlchemyStorage) -> None:
    ids = Ids()
    team, _ = await _tenant(storage, ids)
    async with storage.unit_of_work() as uow:
        with pytest.raises(errors.Conflict):
            await uow.teams.add(attrs.evolve(team, name="again"))


async def test_job_events_keep_insertion_order_within_one_millisecond(
    storage: SqlAlchemyStorage,
) -> None:
    ids = Ids()
    _, project = await _tenant(storage, ids)
    event = _event(ids, project)
    job = _job(ids, event)
    kinds = [JobEventType.QUEUED, JobEventType.ENQUEUED, JobEventType.PROCESSING]
    async with storage.unit_of_work() as uow:
        await uow.events.add(event)
        await uow.jobs.add(job)
        for i, kind in enumerate(reversed(kinds)):
            # Ids sort against insertion order, and all share one created_at.
            await uow.job_events.add(
                JobEvent(
                    id=f"jev-{ids.run}-{9 - i}",
                    generation_job_id=job.id,
                    team_id=job.team_id,
                    project_id=job.project_id,
                    event_type=kind,
                    status_after=JobStatus.QUEUED,
                    created_at=T0,
                )
            )
    async with storage.unit_of_work() as uow:
        logged = await uow.job_events.list(job.team_id, job.id)
    assert [e.event_type for e in logged] == list(reversed(kinds))


# --------------------------------------------------------------------------- concurrency


async def _job_in_db(storage: SqlAlchemyStorage, ids: Ids) -> GenerationJob:
    _, project = await _tenant(storage, ids)
    event = _event(ids, project)
    job = _job(ids, event)
    async with storage.unit_of_work() as uow:
        await uow.events.add(event)
        await uow.jobs.add(job)
    return job


@pytest.mark.postgres
async def test_concurrent_claims_on_two_connections_have_one_winner(pg_url: str) -> None:
    first, second = SqlAlchemyStorage.from_url(pg_url), SqlAlchemyStorage.from_url(pg_url)
    ids = Ids()
    try:
        job = await _job_in_db(first, ids)
        now = T0 + timedelta(seconds=5)
        claim_a = machine.transition(job, JobStatus.PROCESSING, now=now, worker_id="a")
        claim_b = machine.transition(job, JobStatus.PROCESSING, now=now, worker_id="b")
        async with first.unit_of_work() as uow_a:
            assert await uow_a.jobs.compare_and_set(job, claim_a)
            # B's UPDATE blocks on A's row lock, then re-checks its guard against A's row.
            racer = asyncio.create_task(_claim(second, job, claim_b))
            await asyncio.sleep(0.1)
            assert not racer.done()
        assert await racer is False
        async with second.unit_of_work() as uow:
            stored = await uow.jobs.get(job.team_id, job.id)
        assert stored == claim_a

        # And truly simultaneous claims from both engines: still exactly one winner.
        job2 = await _job_in_db(first, ids)
        claims = [
            machine.transition(job2, JobStatus.PROCESSING, now=now, worker_id=w) for w in "xy"
        ]
        results = await asyncio.gather(
            _claim(first, job2, claims[0]), _claim(second, job2, claims[1])
        )
        assert sorted(results) == [False, True]
    finally:
        await first.close()
        await second.close()


async def _claim(storage: SqlAlchemyStorage, old: GenerationJob, new: GenerationJob) -> bool:
    async with storage.unit_of_work() as uow:
        return await uow.jobs.compare_and_set(old, new)


async def _add_session(storage: SqlAlchemyStorage, session: ServerSession) -> bool:
    async with storage.unit_of_work() as uow:
        _, inserted = await uow.sessions.add(session)
        return inserted


def _sessions_with_one_key(project: Project) -> list[ServerSession]:
    return [
        ServerSession(
            id=f"sess-{project.id}-{i}",
            team_id=project.team_id,
            project_id=project.id,
            external_session_id="ext-1",
            idempotency_key="server_session:v1:same",
            started_at=T0,
            created_at=T0,
            updated_at=T0,
        )
        for i in range(2)
    ]


@pytest.mark.postgres
async def test_concurrent_session_adds_on_two_connections_make_one_session(pg_url: str) -> None:
    first, second = SqlAlchemyStorage.from_url(pg_url), SqlAlchemyStorage.from_url(pg_url)
    try:
        _, project = await _tenant(first, Ids())
        a, b = _sessions_with_one_key(project)
        async with first.unit_of_work() as uow_a:
            assert (await uow_a.sessions.add(a))[1] is True
            # B's insert waits for A's uncommitted row, then sees the conflict.
            racer = asyncio.create_task(_add_session(second, b))
            await asyncio.sleep(0.1)
            assert not racer.done()
        assert await racer is False
        async with second.unit_of_work() as uow:
            stored = await uow.sessions.find_by_idempotency_key(
                project.team_id, project.id, "server_session:v1:same"
            )
        assert stored == a
    finally:
        await first.close()
        await second.close()


@pytest.mark.sqlite
async def test_sqlite_writers_on_two_engines_queue_instead_of_failing(tmp_path: Path) -> None:
    url = await databases.migrated_sqlite_url(tmp_path)
    first, second = SqlAlchemyStorage.from_url(url), SqlAlchemyStorage.from_url(url)
    ids = Ids()
    try:
        _, project = await _tenant(first, ids)
        a, b = _sessions_with_one_key(project)
        results = await asyncio.gather(_add_session(first, a), _add_session(second, b))
        assert sorted(results) == [False, True]
        job = await _job_in_db(first, ids)
        claims = [machine.transition(job, JobStatus.PROCESSING, now=T0, worker_id=w) for w in "xy"]
        results = await asyncio.gather(
            _claim(first, job, claims[0]), _claim(second, job, claims[1])
        )
        assert sorted(results) == [False, True]
    finally:
        await first.close()
        await second.close()


# --------------------------------------------------------------------------- failures


async def test_unreachable_postgres_is_storage_unavailable() -> None:
    storage = SqlAlchemyStorage.from_url(
        "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    )
    try:
        with pytest.raises(errors.StorageUnavailable) as caught:
            await storage.ping()
        assert caught.value.__cause__ is not None
        with pytest.raises(errors.StorageUnavailable):
            async with storage.unit_of_work():
                pass
    finally:
        await storage.close()


async def test_a_closed_storage_refuses_work_and_leaves_no_connection_open(url: str) -> None:
    # A poller still running while the app stops, or a request finishing after close: its
    # connection must be closed, not finalised unclosed later in unrelated code (which is a
    # ResourceWarning, an error in this suite, at the next garbage collection).
    storage = SqlAlchemyStorage.from_url(url)
    in_flight = storage.unit_of_work()
    uow = await in_flight.__aenter__()
    await uow.teams.get("no-such-team")
    await storage.close()
    await in_flight.__aexit__(None, None, None)  # given back after the close
    with pytest.raises(errors.StorageUnavailable, match="closed"):
        async with storage.unit_of_work():
            pass
    with pytest.raises(errors.StorageUnavailable, match="closed"):
        await storage.change_feed().head()
    await storage.close()  # twice is harmless
    del in_flight, uow, storage
    gc.collect()


def test_name_reflects_the_backend(tmp_path: Path) -> None:
    lite = SqlAlchemyStorage.from_url(f"sqlite:///{tmp_path}/x.db")
    pg = SqlAlchemyStorage.from_url("postgresql://nobody@127.0.0.1:1/none")
    assert (lite.name, pg.name) == ("sqlite", "postgres")
    with pytest.raises(errors.ConfigurationError):
        SqlAlchemyStorage.from_url("mysql://x@127.0.0.1/db")
