"""The passage-vector contract on every backend, and what only the SQL schema does."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from claude_mem_core.adapters.sqlalchemy import SqlAlchemyStorage
from claude_mem_core.ports.storage import Storage
from claude_mem_core.testing.contracts import Factory
from claude_mem_core.testing.vector_contracts import MODEL, SearchVectorContract


class TestSearchVectors(SearchVectorContract):
    """Runs the shipped vector contract against every backend (see conftest)."""


class _Helpers(SearchVectorContract):
    # The contract's helpers without its tests (collected only from Test* classes).
    pass


class TestSqlSchemaCascades:
    """What only the SQL schema does: deleting rows cascades to their vectors."""

    @pytest.fixture(
        params=[
            pytest.param("sqlite", marks=pytest.mark.sqlite),
            pytest.param("postgres", marks=pytest.mark.postgres),
        ]
    )
    def backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    async def test_deleting_an_observation_takes_its_vectors_along(self, storage: Storage) -> None:
        assert isinstance(storage, SqlAlchemyStorage)
        helpers, make = _Helpers(), Factory()
        team, project = await make.stored_tenant(storage)
        kept = make.observation(project, "Kept: the queue prefix is claude_mem")
        gone = make.observation(project, "Gone: the old cron schedule")
        event = make.event(project, payload={"output": "crontab -l shows the nightly job"})
        await helpers._indexed(storage, [kept, gone], {gone.id: [event]})
        passages = await helpers._missing(storage)
        async with storage.unit_of_work() as uow:
            assert await uow.vectors.add(MODEL, {p.id: [1.0, 2.0] for p in passages}) == 3

        async with storage.engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM observations WHERE id = :id"), {"id": gone.id})
            remaining = (
                await conn.execute(sa.text("SELECT observation_id FROM search_vectors"))
            ).scalars()
            assert list(remaining) == [kept.id]
        async with storage.unit_of_work() as uow:
            found = await uow.vectors.for_observations(team.id, project.id, MODEL, [gone.id])
        assert found == {}
