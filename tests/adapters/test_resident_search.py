"""PostgreSQL's search through snapshots held in memory (``resident_search``): the same
answers as the SQL statement, and never an answer the database has moved past.

Each test uses two storages on one database: ``sql`` searches with the statement only,
``resident`` through snapshots. A write through either is seen by both.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_mem_core import errors
from claude_mem_core.adapters.sqlalchemy import SqlAlchemyStorage
from claude_mem_core.adapters.sqlalchemy.resident_search import (
    MIN_REFRESH_SECONDS,
    WRITE_NUDGE_SECONDS,
    ResidentSearch,
)
from claude_mem_core.domain.models import AuditEntry, Observation, Project, Team
from claude_mem_core.domain.passages import (
    Origin,
    Passage,
    observation_passage,
    weighted_frequencies,
)
from claude_mem_core.domain.tokens import parse_query
from claude_mem_core.ports.search import SearchHit
from claude_mem_core.testing import databases

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
WORDS = (
    "login redirect auth/middleware.py redirect_uri parseConfig cache ttl migration "
    "lock timeout flaky test retry queue worker deploy rollback HTTP 502 --no-verify "
    "pytest fixture schema index planner token session"
).split()
KINDS = ("manual", "decision", "note")


@pytest.fixture
async def pg_url(postgres_base_url: str) -> AsyncIterator[str]:
    url = await databases.create_postgres_database(postgres_base_url)
    try:
        yield url
    finally:
        await databases.drop_postgres_database(url)


@pytest.fixture
async def sql(pg_url: str) -> AsyncIterator[SqlAlchemyStorage]:
    store = SqlAlchemyStorage.from_url(pg_url, search_snapshot_postings=0)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def resident(pg_url: str) -> AsyncIterator[SqlAlchemyStorage]:
    store = SqlAlchemyStorage.from_url(pg_url)
    try:
        yield store
    finally:
        await store.close()


def _index(storage: SqlAlchemyStorage) -> ResidentSearch:
    assert storage.resident_search is not None
    return storage.resident_search


class World:
    def __init__(self) -> None:
        self.run = secrets.token_hex(4)
        self.n = 0

    def next(self, prefix: str) -> tuple[str, datetime]:
        self.n += 1
        # Some observations share a timestamp: ties are broken by id, as in SQL.
        return f"{prefix}-{self.run}-{self.n:04d}", T0 + timedelta(seconds=self.n // 3)

    async def tenant(self, storage: SqlAlchemyStorage) -> Project:
        tid, at = self.next("team")
        pid, _ = self.next("proj")
        project = Project(id=pid, team_id=tid, name="p", created_at=at, updated_at=at)
        async with storage.unit_of_work() as uow:
            await uow.teams.add(Team(id=tid, name="t", created_at=at, updated_at=at))
            await uow.projects.add(project)
        return project

    async def observe(
        self,
        storage: SqlAlchemyStorage,
        project: Project,
        texts: list[str],
        kind: str = "manual",
        events: list[list[str]] | None = None,
    ) -> list[Observation]:
        """Observations of ``texts``, each with its own passage and, when ``events`` is
        given, event passages of those texts."""
        rows = []
        for text in texts:
            oid, at = self.next("obs")
            rows.append(
                Observation(
                    id=oid,
                    team_id=project.team_id,
                    project_id=project.id,
                    kind=kind,
                    title=text.split(" ", 1)[0],
                    content=text,
                    created_at=at,
                    updated_at=at,
                )
            )
        async with storage.unit_of_work() as uow:
            for row in rows:
                await uow.observations.add(row)
            await uow.search.add([observation_passage(row) for row in rows])
            evidence = [
                p for row, more in zip(rows, events or (), strict=False) for p in _raw(row, more)
            ]
            if evidence:
                await uow.search.add(evidence)
        return rows


def _raw(observation: Observation, texts: list[str]) -> list[Passage]:
    """Event passages of ``observation`` (an observation with several passages is bounded
    and grouped differently from a memory's one)."""
    found = []
    for ordinal, text in enumerate(texts):
        tf, length = weighted_frequencies([("raw", text)])
        found.append(
            Passage(
                team_id=observation.team_id,
                project_id=observation.project_id,
                observation_id=observation.id,
                origin=Origin.EVENT,
                event_id=f"evt-{observation.id}-{ordinal}",
                ordinal=ordinal,
                text=text,
                tf=tf,
                length=length,
            )
        )
    return found


async def _search(
    storage: SqlAlchemyStorage,
    project: Project,
    text: str,
    *,
    limit: int = 10,
    kind: str | None = None,
    audit: AuditEntry | None = None,
) -> list[SearchHit]:
    async with storage.unit_of_work() as uow:
        return list(
            await uow.search.search(
                project.team_id, project.id, parse_query(text), limit=limit, kind=kind, audit=audit
            )
        )


def _shape(hits: list[SearchHit]) -> list[tuple[str, float, list[tuple[str | None, float]]]]:
    return [
        (
            h.observation.id,
            round(h.score, 9),
            [(e.text, round(e.score, 9)) for e in h.evidence],
        )
        for h in hits
    ]


async def _loaded(storage: SqlAlchemyStorage, project: Project) -> None:
    """Search once (which starts the load) and wait for the snapshot."""
    await _search(storage, project, WORDS[0])
    await _index(storage).wait_loaded()
    assert _index(storage).usable((project.team_id, project.id)) is not None


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 2**32 - 1))
async def test_the_snapshot_ranks_as_the_statement_does(
    sql: SqlAlchemyStorage, resident: SqlAlchemyStorage, seed: int
) -> None:
    rng = random.Random(seed)
    world = World()
    project = await world.tenant(sql)
    for kind in KINDS:
        count = rng.randint(0, 25)
        # About half the observations also have 1-3 event passages, the rest one passage.
        events = [[_sentence(rng) for _ in range(rng.choice((0, 1, 2, 3)))] for _ in range(count)]
        texts = [_sentence(rng) for _ in range(count)]
        await world.observe(sql, project, texts, kind, events)
    await _loaded(resident, project)
    await _compare(sql, resident, project, rng)
    # Then more writes and new weights, which the snapshot takes in without a full load.
    added = await world.observe(sql, project, [_sentence(rng) for _ in range(rng.randint(1, 9))])
    heavier = rng.sample(added, rng.randint(0, len(added)))
    await _reweigh(sql, project, [o.id for o in heavier])
    index = _index(resident)
    loads = index.loads
    await _search(resident, project, WORDS[0])  # finds it stale: brought up to date soon
    await _settled(resident)
    assert index.loads == loads  # read only what changed
    await _compare(sql, resident, project, rng)


async def _compare(
    sql: SqlAlchemyStorage, resident: SqlAlchemyStorage, project: Project, rng: random.Random
) -> None:
    before = _index(resident).answered
    for _ in range(8):
        query = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        kind = rng.choice((None, *KINDS))
        limit = rng.randint(1, 12)
        expected = await _search(sql, project, query, limit=limit, kind=kind)
        got = await _search(resident, project, query, limit=limit, kind=kind)
        assert _shape(got) == _shape(expected), query
        assert [h.observation for h in got] == [h.observation for h in expected]
    assert _index(resident).answered == before + 8  # every one through the snapshot


async def _reweigh(storage: SqlAlchemyStorage, project: Project, ids: list[str]) -> None:
    from claude_mem_core.adapters.sqlalchemy import supersession
    from claude_mem_core.domain import ranking

    async with storage.unit_of_work() as uow:
        db = uow.search._db  # type: ignore[attr-defined]
        await db.begin_writes()
        await supersession.set_weight(
            db, project.team_id, project.id, ids, ranking.SUPERSEDED_WEIGHT
        )


async def _settled(storage: SqlAlchemyStorage) -> None:
    """Wait until the loads due (a stale snapshot's, a write's nudge) have run."""
    await asyncio.sleep(max(MIN_REFRESH_SECONDS, WRITE_NUDGE_SECONDS) + 0.1)
    await _index(storage).wait_loaded()


async def test_a_write_after_the_snapshot_is_found_at_once(
    sql: SqlAlchemyStorage, resident: SqlAlchemyStorage
) -> None:
    world = World()
    project = await world.tenant(sql)
    await world.observe(sql, project, ["login redirect fixed in auth/middleware.py"] * 3)
    await _loaded(resident, project)
    [new] = await world.observe(sql, project, ["the quokka deploy broke the login"])
    index = _index(resident)
    answered, refreshes = index.answered, index.refreshes
    found = await _search(resident, project, "quokka")
    assert [h.observation.id for h in found] == [new.id]
    assert index.answered == answered  # the stale snapshot did not answer
    # It is brought up to date from what changed, and then answers again.
    await _settled(resident)
    assert index.refreshes == refreshes + 1
    assert [h.observation.id for h in await _search(resident, project, "quokka")] == [new.id]
    assert index.answered == answered + 1


async def test_writes_here_keep_a_searched_project_warm(resident: SqlAlchemyStorage) -> None:
    world = World()
    project = await world.tenant(resident)
    await world.observe(resident, project, ["ibis cache ttl"])
    await _loaded(resident, project)
    [new] = await world.observe(resident, project, ["ibis lock timeout"])
    await _settled(resident)  # no search in between: the write asked for the refresh
    index = _index(resident)
    answered = index.answered
    found = await _search(resident, project, "ibis timeout")
    assert found[0].observation.id == new.id
    assert index.answered == answered + 1


async def test_an_erased_observation_is_never_returned(
    sql: SqlAlchemyStorage, resident: SqlAlchemyStorage
) -> None:
    world = World()
    project = await world.tenant(sql)
    gone, kept = await world.observe(sql, project, ["zebra secret one", "zebra note two"])
    await _loaded(resident, project)
    async with sql.unit_of_work() as uow:
        # The step every erase (event, session, retention) takes for an observation.
        await uow.search._db.begin_writes()  # type: ignore[attr-defined]
        await uow.erasure._remove_observations(  # type: ignore[attr-defined]
            project.team_id, project.id, [gone.id]
        )
    found = await _search(resident, project, "zebra")
    assert [h.observation.id for h in found] == [kept.id]
    index = _index(resident)
    loads = index.loads
    await _settled(resident)  # a removal is only seen by reading the project whole
    assert index.loads == loads + 1
    answered = index.answered
    assert [h.observation.id for h in await _search(resident, project, "zebra")] == [kept.id]
    assert index.answered == answered + 1


async def test_a_project_being_erased_finds_nothing(
    sql: SqlAlchemyStorage, resident: SqlAlchemyStorage
) -> None:
    world = World()
    project = await world.tenant(sql)
    await world.observe(sql, project, ["walrus plan", "walrus notes"])
    await _loaded(resident, project)
    async with sql.unit_of_work() as uow:
        assert await uow.erasure.mark_project_deleted(project.team_id, project.id, at=T0)
    assert await _search(resident, project, "walrus") == []
    index = _index(resident)
    loads = index.loads
    await _settled(resident)  # a snapshot read now holds nothing either
    assert index.loads == loads + 1
    answered = index.answered
    assert await _search(resident, project, "walrus") == []
    assert index.answered == answered + 1


async def test_a_changed_weight_changes_the_stamp(
    sql: SqlAlchemyStorage, resident: SqlAlchemyStorage
) -> None:
    """Supersession lowers a passage's weight without adding or removing one: the
    snapshot must still learn of it."""
    from claude_mem_core.adapters.sqlalchemy import supersession
    from claude_mem_core.domain import ranking

    world = World()
    project = await world.tenant(sql)
    await world.observe(sql, project, ["otter cache ttl", "otter cache ttl"])
    await _loaded(resident, project)
    first = await _search(resident, project, "otter")
    assert first == await _search(sql, project, "otter")
    top, second = (h.observation.id for h in first)
    async with sql.unit_of_work() as uow:
        db = uow.search._db  # type: ignore[attr-defined]
        await db.begin_writes()
        await supersession.set_weight(
            db, project.team_id, project.id, [top], ranking.SUPERSEDED_WEIGHT
        )
    found = await _search(resident, project, "otter")
    assert [h.observation.id for h in found] == [second, top]
    assert found == await _search(sql, project, "otter")


async def test_the_read_is_audited_once_and_a_revoked_key_is_refused(
    sql: SqlAlchemyStorage, resident: SqlAlchemyStorage
) -> None:
    world = World()
    project = await world.tenant(sql)
    [row] = await world.observe(sql, project, ["heron migration lock timeout"])
    await _loaded(resident, project)
    audit_id, at = world.next("audit")
    audit = AuditEntry(
        id=audit_id,
        team_id=project.team_id,
        project_id=project.id,
        actor_id="someone",
        api_key_id=None,
        action="search",
        resource_type="project",
        resource_id=project.id,
        details={"query": "heron"},
        created_at=at,
    )
    answered = _index(resident).answered
    found = await _search(resident, project, "heron", audit=audit)
    assert [h.observation.id for h in found] == [row.id]
    assert _index(resident).answered == answered + 1
    async with sql.unit_of_work() as uow:
        entries, _ = await uow.audit.list(project.team_id)
    mine = [e for e in entries if e.id == audit_id]
    assert len(mine) == 1
    assert mine[0].details["resultCount"] == 1
    assert mine[0].details["observationIds"] == [row.id]
    revoked = attrs.evolve(audit, id=world.next("audit")[0], api_key_id="no-such-key")
    with pytest.raises(errors.Forbidden):
        await _search(resident, project, "heron", audit=revoked)


async def test_a_project_over_the_budget_is_searched_in_sql(pg_url: str) -> None:
    small = SqlAlchemyStorage.from_url(pg_url, search_snapshot_postings=5)
    try:
        world = World()
        project = await world.tenant(small)
        await world.observe(small, project, ["pelican one two three four five six"])
        await _search(small, project, "pelican")
        await _index(small).wait_loaded()
        assert _index(small).usable((project.team_id, project.id)) is None
        assert [h.observation.content for h in await _search(small, project, "pelican")] == [
            "pelican one two three four five six"
        ]
        assert _index(small).answered == 0
    finally:
        await small.close()


async def test_the_least_recently_searched_snapshot_makes_room(pg_url: str) -> None:
    world = World()
    probe = SqlAlchemyStorage.from_url(pg_url)
    try:
        first = await world.tenant(probe)
        await world.observe(probe, first, ["kiwi"])
        await _loaded(probe, first)
        size = _index(probe).usable((first.team_id, first.id)).size  # type: ignore[union-attr]
    finally:
        await probe.close()
    # Room for one such snapshot, not two.
    small = SqlAlchemyStorage.from_url(pg_url, search_snapshot_postings=size + 1)
    try:
        second = await world.tenant(small)
        await world.observe(small, second, ["kiwi"])
        await _loaded(small, first)
        await _loaded(small, second)
        index = _index(small)
        assert index._entries[(second.team_id, second.id)].snapshot is not None
        assert index._entries[(first.team_id, first.id)].snapshot is None
        found = await _search(small, first, "kiwi")  # still answered, in SQL meanwhile
        assert [h.observation.content for h in found] == ["kiwi"]
    finally:
        await small.close()
