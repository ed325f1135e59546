"""Contract of dedup (``domain/fingerprint.py``) that every storage adapter passes.

An observation whose fingerprint a stored row of its own team and project holds is not
stored again: ``add`` answers the stored row (a generation-key replay first), so the caller
links its source to it and counts the occurrence (``add_occurrences``). Other projects and
teams, and rows without a fingerprint (memories, summaries), never deduplicate. Two units
of work adding one fingerprint at once end with one row. ``advance`` declines a step whose
observation's fingerprint is taken, writing nothing.

Subclass :class:`DedupContract` in a test module whose ``storage`` and ``backdoor``
fixtures give the adapter (as for :class:`~claude_mem_core.testing.contracts.StorageContract`).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from claude_mem_core.domain import jobs as machine
from claude_mem_core.domain.fingerprint import fingerprint
from claude_mem_core.domain.models import (
    JobEventType,
    JobStatus,
    Observation,
    ObservationSource,
    ObservationSourceType,
    Project,
)
from claude_mem_core.ports.storage import Storage
from claude_mem_core.testing.contracts import T0, Backdoor, Factory

FACT = fingerprint(type="change", title="Edited a.py", facts=["a = 1"], narrative=None)


class DedupContract:
    @pytest.fixture
    def make(self) -> Factory:
        return Factory()

    def _fact(self, make: Factory, project: Project, **kw: Any) -> Observation:
        fields: dict[str, Any] = {"fingerprint": FACT, "type": "change"}
        fields.update(kw)
        return make.observation(project, "Edited a.py", **fields)

    async def test_same_fingerprint_in_a_project_is_stored_once(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        _, project = await make.stored_tenant(storage)
        _, other_project = await make.stored_tenant(storage)
        first = self._fact(make, project, generation_key="generation:v1:a:0:x")
        async with storage.unit_of_work() as uow:
            assert await uow.observations.add(first) == (first, True)
            again = self._fact(make, project, generation_key="generation:v1:b:0:x")
            assert await uow.observations.add(again) == (first, False)
            # Another team's project: its own row.
            elsewhere = self._fact(make, other_project, generation_key="generation:v1:c:0:x")
            assert await uow.observations.add(elsewhere) == (elsewhere, True)
            # Many at once, one of them twice: the stored row for each repeat.
            fresh = self._fact(make, project, fingerprint="v1:other")
            twice = self._fact(make, project, fingerprint="v1:other")
            third = self._fact(make, project, generation_key="generation:v1:d:0:x")
            assert await uow.observations.add_many([fresh, twice, third]) == [
                (fresh, True),
                (fresh, False),
                (first, False),
            ]
        ids = {r["id"] for r in await backdoor.rows("observations")}
        assert ids == {first.id, elsewhere.id, fresh.id}

    async def test_a_generation_key_replay_wins_over_a_fingerprint(
        self, storage: Storage, make: Factory
    ) -> None:
        _, project = await make.stored_tenant(storage)
        keyed = self._fact(make, project, generation_key="generation:v1:a:0:x", fingerprint=None)
        printed = self._fact(make, project, generation_key="generation:v1:b:0:x")
        async with storage.unit_of_work() as uow:
            await uow.observations.add_many([keyed, printed])
            replay = self._fact(make, project, generation_key=keyed.generation_key)
            assert await uow.observations.add(replay) == (keyed, False)

    async def test_rows_without_a_fingerprint_never_deduplicate(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        _, project = await make.stored_tenant(storage)
        memos = [make.observation(project, "same note", kind="note") for _ in range(3)]
        async with storage.unit_of_work() as uow:
            assert [new for _, new in await uow.observations.add_many(memos)] == [True] * 3
            assert (await uow.observations.add(make.observation(project, "same note")))[1]
        assert len(await backdoor.rows("observations")) == 4

    async def test_occurrences_add_up_in_scope_and_sources_link_each_event(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        other_team, _ = await make.stored_tenant(storage)
        stored = self._fact(make, project)
        events = [make.event(project) for _ in range(3)]
        async with storage.unit_of_work() as uow:
            await uow.events.add_many(events)
            await uow.observations.add(stored)
            await uow.observations.add_occurrences(team.id, project.id, {stored.id: 1})
            await uow.observations.add_occurrences(team.id, project.id, {stored.id: 1})
            await uow.observations.add_occurrences(other_team.id, project.id, {stored.id: 5})
            await uow.observations.add_occurrences(team.id, project.id, {"missing": 1})
            await uow.sources.add_many(
                [
                    ObservationSource(
                        id=f"src-{event.id}",
                        observation_id=stored.id,
                        team_id=team.id,
                        project_id=project.id,
                        source_type=ObservationSourceType.AGENT_EVENT,
                        source_id=event.id,
                        agent_event_id=event.id,
                        created_at=T0,
                    )
                    for event in events
                ]
            )
        async with storage.unit_of_work() as uow:
            got = await uow.observations.get(team.id, project.id, stored.id)
            assert got is not None and got.occurrences == 3 and got.fingerprint == FACT
            for event in events:
                linked = await uow.observations.list_for_source(
                    team.id, project.id, "agent_event", event.id
                )
                assert [o.id for o, _ in linked] == [stored.id]
        [row] = await backdoor.rows("observations")
        assert row["occurrences"] == 3

    async def test_two_writers_of_one_fingerprint_end_with_one_row(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        _, project = await make.stored_tenant(storage)
        drafts = [
            self._fact(make, project, generation_key=f"generation:v1:{n}:0:x") for n in (1, 2)
        ]

        async def write(draft: Observation) -> tuple[Observation, bool]:
            async with storage.unit_of_work() as uow:
                added = await uow.observations.add(draft)
                await asyncio.sleep(0.05)  # hold the transaction open: the writes overlap
                return added

        results = await asyncio.gather(*(write(d) for d in drafts))
        assert sorted(new for _, new in results) == [False, True]
        winner = next(o for o, new in results if new)
        assert {o.id for o, _ in results} == {winner.id}
        assert [r["id"] for r in await backdoor.rows("observations")] == [winner.id]

    async def test_advance_declines_a_step_whose_fingerprint_is_taken(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        _, project = await make.stored_tenant(storage)
        event = make.event(project)
        job = make.job(event)
        stored = self._fact(make, project)
        async with storage.unit_of_work() as uow:
            await uow.events.add(event)
            await uow.jobs.add(job)
            await uow.observations.add(stored)
        now = T0 + timedelta(seconds=5)
        claimed = machine.transition(job, JobStatus.PROCESSING, now=now, worker_id="w")
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.compare_and_set(job, claimed)
        done = machine.transition(claimed, JobStatus.COMPLETED, now=now)
        draft = self._fact(make, project, created_by_job_id=job.id, generation_key="g:new")
        async with storage.unit_of_work() as uow:
            written = await uow.jobs.advance(
                claimed,
                done,
                event=make.job_event(
                    job, event_type=JobEventType.COMPLETED, status_after=JobStatus.COMPLETED
                ),
                observations=[draft],
            )
        assert written is None
        assert [r["id"] for r in await backdoor.rows("observations")] == [stored.id]
        [row] = [r for r in await backdoor.rows("jobs") if r["id"] == job.id]
        assert row["status"] == JobStatus.PROCESSING.value
