"""``uow.audit.add_read``: the audit row of a read, on every backend (see conftest).

Every backend stores it like ``add``; in a unit of work that has written it commits or
vanishes with the writes. PostgreSQL writes it on its own when nothing was written yet
(autocommit): it stays even if the unit of work fails afterwards. A search writes its own
(``uow.search.search(..., audit=)``): on PostgreSQL in the search's statement.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from claude_mem_core.domain.models import ApiKey, AuditEntry, Project, Team
from claude_mem_core.ports.storage import Storage

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Boom(Exception):
    pass


def _entry(n: int, team: Team, project: Project) -> AuditEntry:
    return AuditEntry(
        id=f"read-{n}",
        team_id=team.id,
        project_id=project.id,
        actor_id="actor",
        api_key_id=None,
        action="observation.read",
        resource_type="observation",
        resource_id=None,
        details={"mode": "search", "observationIds": ["a", "b"], "note": "100% 'q' \\ :x"},
        created_at=T0,
    )


async def _tenant(storage: Storage) -> tuple[Team, Project]:
    team = Team(id="team-r", name="team r", created_at=T0, updated_at=T0)
    project = Project(id="proj-r", team_id=team.id, name="p", created_at=T0, updated_at=T0)
    async with storage.unit_of_work() as uow:
        await uow.teams.add(team)
        await uow.projects.add(project)
    return team, project


async def test_add_read_stores_the_entry(storage: Storage, backdoor: Any) -> None:
    team, project = await _tenant(storage)
    entry = _entry(1, team, project)
    async with storage.unit_of_work() as uow:
        assert await uow.projects.get(team.id, project.id) == project  # a read first
        await uow.audit.add_read(entry)
    async with storage.unit_of_work() as uow:
        found, total = await uow.audit.list(team.id, action="observation.read")
    assert total == 1 and list(found) == [entry]
    assert [r["id"] for r in await backdoor.rows("audit")] == ["read-1"]


async def test_add_read_after_a_write_shares_its_fate(storage: Storage, backdoor: Any) -> None:
    team, project = await _tenant(storage)
    other = Project(id="proj-x", team_id=team.id, name="x", created_at=T0, updated_at=T0)
    with pytest.raises(Boom):
        async with storage.unit_of_work() as uow:
            await uow.projects.add(other)
            await uow.audit.add_read(_entry(2, team, project))
            raise Boom
    assert await backdoor.rows("audit") == []
    async with storage.unit_of_work() as uow:
        assert await uow.projects.get(team.id, other.id) is None


async def test_add_read_of_a_foreign_project_is_refused(storage: Storage) -> None:
    from claude_mem_core.errors import NotFound

    team, _ = await _tenant(storage)
    stranger = Project(id="proj-s", team_id="team-s", name="s", created_at=T0, updated_at=T0)
    with pytest.raises(NotFound):
        async with storage.unit_of_work() as uow:
            await uow.audit.add_read(_entry(3, team, stranger))


# Only PostgreSQL commits a read's audit row on its own: run on that backend alone (a skip
# on the others would count as a missing service under CI).
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_postgres_add_read_commits_alone_and_leaves_the_session_setting(
    storage: Storage, storage_url: str, backdoor: Any
) -> None:
    assert storage.name == "postgres"
    import sqlalchemy as sa

    from claude_mem_core.adapters.sqlalchemy.storage import SqlAlchemyStorage

    team, project = await _tenant(storage)
    single = SqlAlchemyStorage.from_url(storage_url, pool_size=1, max_overflow=0)
    try:
        with pytest.raises(Boom):
            async with single.unit_of_work() as uow:
                await uow.audit.add_read(_entry(4, team, project))
                raise Boom
        assert [r["id"] for r in await backdoor.rows("audit")] == ["read-4"]
        async with single.engine.connect() as conn:  # the same (only) connection
            setting = (await conn.execute(sa.text("SHOW synchronous_commit"))).scalar_one()
        assert setting == "on"
    finally:
        await single.close()


@pytest.mark.parametrize("written_first", [False, True])
async def test_add_read_under_a_key_that_no_longer_works_writes_nothing(
    storage: Storage, backdoor: Any, written_first: bool
) -> None:
    # Read routes may take a key from memory: the read's audit row is where it is checked.
    team, project = await _tenant(storage)
    far = datetime(2999, 1, 1, tzinfo=UTC)

    def key(key_id: str, **kw: Any) -> ApiKey:
        return ApiKey(
            id=key_id,
            key_hash=f"hash-{key_id}",
            team_id=team.id,
            project_id=None,
            actor_id="actor",
            scopes=frozenset({"*"}),
            created_at=T0,
            updated_at=T0,
            **kw,
        )

    keys = {
        "live": key("k-live", expires_at=far),
        "revoked": key("k-revoked", revoked_at=T0),
        "expired": key("k-expired", expires_at=T0),
    }
    async with storage.unit_of_work() as uow:
        for stored_key in keys.values():
            await uow.api_keys.add(stored_key)
    outcomes = {}
    for n, (name, stored) in enumerate([*keys.items(), ("missing", None), ("none", None)]):
        key_id = stored.id if stored else ("k-missing" if name == "missing" else None)
        entry = attrs.evolve(_entry(10 + n, team, project), api_key_id=key_id)
        async with storage.unit_of_work() as uow:
            if written_first:  # inside a transaction that has written
                await uow.audit.add(attrs.evolve(entry, id=f"write-{n}", api_key_id=None))
            outcomes[name] = await uow.audit.add_read(entry)
    assert outcomes == {
        "live": True,
        "revoked": False,
        "expired": False,
        "missing": False,
        "none": True,
    }
    read_rows = sorted(r["id"] for r in await backdoor.rows("audit") if r["id"].startswith("read"))
    assert read_rows == ["read-10", "read-14"]


# -- the audit row written by the search itself (uow.search.search(..., audit=)) -------------


async def _searchable(storage: Storage, team: Team, project: Project) -> list[str]:
    """Three observations holding "kestrel", ranked by how often; their ids, best first."""
    from claude_mem_core.domain.models import Observation
    from claude_mem_core.domain.passages import observation_passage

    ids = []
    async with storage.unit_of_work() as uow:
        for n, text in enumerate(["kestrel kestrel kestrel", "kestrel kestrel", "kestrel note"]):
            obs = Observation(
                id=f"obs-{n}",
                team_id=team.id,
                project_id=project.id,
                content=text,
                created_at=T0,
                updated_at=T0,
            )
            await uow.observations.add(obs)
            await uow.search.add([observation_passage(obs)])
            ids.append(obs.id)
    return ids


async def test_search_writes_its_audit_row_with_the_results(
    storage: Storage, backdoor: Any
) -> None:
    """Found or not, the search's audit row is stored with the result count and the ids in
    rank order added to the details it was given."""
    from claude_mem_core.domain.tokens import parse_query

    team, project = await _tenant(storage)
    ids = await _searchable(storage, team, project)
    base = attrs.evolve(_entry(20, team, project), details={"mode": "search", "limit": 2})
    async with storage.unit_of_work() as uow:
        hits = await uow.search.search(
            team.id, project.id, parse_query("kestrel"), limit=2, audit=base
        )
    assert [h.observation.id for h in hits] == ids[:2]
    async with storage.unit_of_work() as uow:
        nothing = await uow.search.search(
            team.id, project.id, parse_query("zebra"), limit=2, audit=attrs.evolve(base, id="r2")
        )
    assert nothing == []
    rows = {r["id"]: r for r in await backdoor.rows("audit")}
    assert rows["read-20"]["details"] == {
        "mode": "search",
        "limit": 2,
        "resultCount": 2,
        "observationIds": ids[:2],
    }
    assert rows["r2"]["details"]["resultCount"] == 0
    assert rows["r2"]["details"]["observationIds"] == []


async def test_search_under_a_key_that_no_longer_works_answers_nothing(
    storage: Storage, backdoor: Any
) -> None:
    from claude_mem_core.domain.tokens import parse_query
    from claude_mem_core.errors import Forbidden

    team, project = await _tenant(storage)
    await _searchable(storage, team, project)
    revoked = ApiKey(
        id="k-gone",
        key_hash="hash-gone",
        team_id=team.id,
        project_id=None,
        actor_id="actor",
        scopes=frozenset({"*"}),
        created_at=T0,
        updated_at=T0,
        revoked_at=T0,
    )
    async with storage.unit_of_work() as uow:
        await uow.api_keys.add(revoked)
    for n, key_id in enumerate(["k-gone", "k-never-existed"]):
        entry = attrs.evolve(_entry(30 + n, team, project), api_key_id=key_id)
        with pytest.raises(Forbidden):
            async with storage.unit_of_work() as uow:
                await uow.search.search(
                    team.id, project.id, parse_query("kestrel"), limit=5, audit=entry
                )
    assert await backdoor.rows("audit") == []


async def test_search_of_a_foreign_project_is_not_found_and_not_audited(
    storage: Storage, backdoor: Any
) -> None:
    from claude_mem_core.domain.tokens import parse_query
    from claude_mem_core.errors import NotFound

    team, project = await _tenant(storage)
    await _searchable(storage, team, project)
    other_team = Team(id="team-o", name="o", created_at=T0, updated_at=T0)
    async with storage.unit_of_work() as uow:
        await uow.teams.add(other_team)
    for project_id in (project.id, "proj-missing", "nul\x00id"):
        entry = attrs.evolve(_entry(40, other_team, project), project_id=project_id)
        with pytest.raises(NotFound):
            async with storage.unit_of_work() as uow:
                await uow.search.search(
                    other_team.id, project_id, parse_query("kestrel"), limit=5, audit=entry
                )
    assert await backdoor.rows("audit") == []


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_postgres_search_and_its_audit_row_are_one_statement(
    storage: Storage, storage_url: str, backdoor: Any
) -> None:
    """No extra round trip for the audit: the search's statement writes it, committed on
    its own (durably: the session's synchronous_commit is left on)."""
    import sqlalchemy as sa

    from claude_mem_core.adapters.sqlalchemy.storage import SqlAlchemyStorage
    from claude_mem_core.domain.tokens import parse_query

    team, project = await _tenant(storage)
    ids = await _searchable(storage, team, project)
    single = SqlAlchemyStorage.from_url(storage_url, pool_size=1, max_overflow=0)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(single.engine.sync_engine, "before_cursor_execute", count)
    try:
        with pytest.raises(Boom):
            async with single.unit_of_work() as uow:
                hits = await uow.search.search(
                    team.id,
                    project.id,
                    parse_query("kestrel"),
                    limit=5,
                    audit=_entry(50, team, project),
                )
                raise Boom
        assert [h.observation.id for h in hits] == ids
        assert len(statements) == 1 and "INSERT INTO audit_log" in statements[0]
    finally:
        sa.event.remove(single.engine.sync_engine, "before_cursor_execute", count)
        await single.close()
    assert [r["id"] for r in await backdoor.rows("audit")] == ["read-50"]
