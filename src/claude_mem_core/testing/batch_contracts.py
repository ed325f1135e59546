"""The storage contract, batched writes: ``add_many`` writes one statement per table and
gives each item the outcome its own ``add`` would. Part of
:class:`~claude_mem_core.testing.contracts.StorageContract` (same fixtures)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest

from claude_mem_core.domain.models import (
    JobEventType,
    ObservationSource,
    ObservationSourceType,
)
from claude_mem_core.errors import NotFound
from claude_mem_core.ports.storage import Storage
from claude_mem_core.testing.storage_fixtures import T0, Backdoor, Factory


class BatchWriteContract:
    """Batched writes on every storage adapter."""

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
        team, project, stored = await make.stored_event_job(storage)
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
        team, project, job = await make.stored_event_job(storage)
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
        team, project, job = await make.stored_event_job(storage)
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
