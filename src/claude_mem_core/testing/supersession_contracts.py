"""Contract of supersession (``domain/supersession.py``) that every storage adapter passes.

Of one subject's current observations in a project, ``supersede`` keeps the newest
(``created_at``, then id) current and marks the others superseded by it; their search
scores are then ``ranking.SUPERSEDED_WEIGHT`` of what they were. Other subjects, projects
and rows without a subject are untouched. Two units of work storing one subject at once
end with exactly one current observation. Erasing the observation that superseded others
makes them current again (with their full weight), in the erase's transaction. ``weigh``
gives an imported superseded observation its lower weight.

Subclass :class:`SupersessionContract` in a test module whose ``storage`` and ``backdoor``
fixtures give the adapter (as for :class:`~claude_mem_core.testing.contracts.StorageContract`).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from claude_mem_core.domain import ranking
from claude_mem_core.domain.models import (
    AgentEvent,
    Observation,
    ObservationSource,
    ObservationSourceType,
    Project,
)
from claude_mem_core.domain.passages import observation_passage
from claude_mem_core.domain.supersession import subject
from claude_mem_core.domain.tokens import parse_query
from claude_mem_core.ports.storage import Storage
from claude_mem_core.testing.contracts import T0, Backdoor, Factory


def _key(title: str, path: str) -> str:
    key = subject(type="change", title=title, files_modified=[path])
    assert key is not None
    return key


APP = _key("Wrote src/app.py", "src/app.py")
OTHER = _key("Wrote src/db.py", "src/db.py")


def _link(o: Observation, event: AgentEvent) -> ObservationSource:
    return ObservationSource(
        id=f"src-{o.id}-{event.id}",
        observation_id=o.id,
        team_id=o.team_id,
        project_id=o.project_id,
        source_type=ObservationSourceType.AGENT_EVENT,
        source_id=event.id,
        agent_event_id=event.id,
        created_at=T0,
    )


class SupersessionContract:
    @pytest.fixture
    def make(self) -> Factory:
        return Factory()

    def _write(self, make: Factory, project: Project, text: str, **kw: Any) -> Observation:
        fields: dict[str, Any] = {"type": "change", "subject": APP, "fingerprint": f"v1:{text}"}
        fields.update(kw)
        return make.observation(project, f"wrote app {text}", **fields)

    async def _store(self, storage: Storage, *observations: Observation) -> None:
        async with storage.unit_of_work() as uow:
            for o in observations:
                await uow.observations.add(o)
                await uow.search.add([observation_passage(o)])

    async def _scores(self, storage: Storage, project: Project) -> dict[str, float]:
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(
                project.team_id, project.id, parse_query("wrote app"), limit=50
            )
        return {h.observation.id: h.score for h in hits}

    async def _current(self, backdoor: Backdoor, subject_key: str | None = APP) -> list[str]:
        rows = await backdoor.rows("observations")
        return sorted(
            r["id"] for r in rows if r["subject"] == subject_key and r["superseded_by"] is None
        )

    async def test_the_newest_of_a_subject_supersedes_the_others_and_they_rank_lower(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        _, elsewhere = await make.stored_tenant(storage)
        old, older_too, new = (self._write(make, project, n) for n in ("1", "2", "3"))
        other = self._write(make, project, "4", subject=OTHER)
        plain = self._write(make, project, "5", subject=None)
        foreign = self._write(make, elsewhere, "6")
        await self._store(storage, old, older_too, new, other, plain, foreign)
        before = await self._scores(storage, project)
        at = T0 + timedelta(days=1)
        async with storage.unit_of_work() as uow:
            marked = await uow.observations.supersede(team.id, project.id, [APP, OTHER], at=at)
        assert list(marked) == sorted([(old.id, new.id), (older_too.id, new.id)])
        rows = {r["id"]: r for r in await backdoor.rows("observations")}
        for o in (old, older_too):
            assert (rows[o.id]["superseded_by"], rows[o.id]["superseded_at"]) == (new.id, at)
        for o in (new, other, plain, foreign):
            assert rows[o.id]["superseded_by"] is None and rows[o.id]["superseded_at"] is None
        after = await self._scores(storage, project)
        weight = ranking.SUPERSEDED_WEIGHT
        assert after == pytest.approx(
            {k: v * (weight if k in (old.id, older_too.id) else 1.0) for k, v in before.items()},
            rel=1e-9,
        )
        # History stays readable, whole.
        async with storage.unit_of_work() as uow:
            got = await uow.observations.get(team.id, project.id, old.id)
        assert got is not None and got.superseded_by == new.id and got.content == old.content
        # Applying the rule again changes nothing.
        async with storage.unit_of_work() as uow:
            assert list(await uow.observations.supersede(team.id, project.id, [APP], at=at)) == []

    async def test_an_older_observation_stored_late_is_superseded_by_the_newer(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        late, newer = self._write(make, project, "1"), self._write(make, project, "2")
        await self._store(storage, newer)
        await self._store(storage, late)
        async with storage.unit_of_work() as uow:
            marked = await uow.observations.supersede(team.id, project.id, [APP], at=T0)
        assert list(marked) == [(late.id, newer.id)]
        # Same created_at: the greater id stays current.
        tie = self._write(make, project, "3", created_at=newer.created_at, id=newer.id + "z")
        await self._store(storage, tie)
        async with storage.unit_of_work() as uow:
            await uow.observations.supersede(team.id, project.id, [APP], at=T0)
        assert await self._current(backdoor) == [tie.id]

    @pytest.mark.parametrize("slow", ["older", "newer"])
    async def test_two_writers_of_one_subject_end_with_one_current_observation(
        self, storage: Storage, backdoor: Backdoor, make: Factory, slow: str
    ) -> None:
        team, project = await make.stored_tenant(storage)
        first = self._write(make, project, "0")
        await self._store(storage, first)
        older, newer = self._write(make, project, "1"), self._write(make, project, "2")

        async def write(o: Observation, pause: float) -> None:
            async with storage.unit_of_work() as uow:
                await uow.observations.lock_subjects(team.id, project.id, [APP])
                await uow.observations.add(o)
                await uow.search.add([observation_passage(o)])
                await asyncio.sleep(pause)  # hold the transaction open: the writes overlap
                await uow.observations.supersede(team.id, project.id, [APP], at=T0)

        pauses = (0.2, 0.0) if slow == "older" else (0.0, 0.2)
        await asyncio.gather(write(older, pauses[0]), write(newer, pauses[1]))
        assert await self._current(backdoor) == [newer.id]
        rows = {r["id"]: r for r in await backdoor.rows("observations")}
        assert rows[older.id]["superseded_by"] == newer.id
        assert rows[first.id]["superseded_by"] in (older.id, newer.id)

    async def test_erasing_the_superseding_observation_makes_the_older_current_again(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        events = [make.event(project) for _ in range(3)]
        a, b, c = (self._write(make, project, n) for n in ("1", "2", "3"))
        async with storage.unit_of_work() as uow:
            await uow.events.add_many(events)
        await self._store(storage, a)
        before = await self._scores(storage, project)
        for o, event in ((b, events[1]), (c, events[2])):
            await self._store(storage, o)
            async with storage.unit_of_work() as uow:
                await uow.sources.add_many([_link(o, event)])
                await uow.observations.supersede(team.id, project.id, [APP], at=T0)
        rows = {r["id"]: r for r in await backdoor.rows("observations")}
        assert (rows[a.id]["superseded_by"], rows[b.id]["superseded_by"]) == (b.id, c.id)
        at = T0 + timedelta(days=2)
        # Erasing the middle one: what it superseded follows the rule again (c is newer).
        async with storage.unit_of_work() as uow:
            await uow.erasure.erase_events(team.id, project.id, [events[1].id], at=at)
        rows = {r["id"]: r for r in await backdoor.rows("observations")}
        assert (rows[a.id]["superseded_by"], rows[a.id]["superseded_at"]) == (c.id, at)
        # Erasing the current one: a is current again, scored as before it was superseded.
        async with storage.unit_of_work() as uow:
            await uow.erasure.erase_events(team.id, project.id, [events[2].id], at=at)
        rows = {r["id"]: r for r in await backdoor.rows("observations")}
        assert list(rows) == [a.id]
        assert (rows[a.id]["superseded_by"], rows[a.id]["superseded_at"]) == (None, None)
        assert await self._scores(storage, project) == pytest.approx(before, rel=1e-9)

    async def test_weigh_gives_an_imported_superseded_observation_its_weight(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        new = self._write(make, project, "2")
        old = self._write(make, project, "1", superseded_by=new.id, superseded_at=T0)
        await self._store(storage, new, old)
        async with storage.unit_of_work() as uow:
            await uow.observations.weigh(team.id, project.id, [old.id, new.id])
        scores = await self._scores(storage, project)
        # Same text, same statistics: the superseded copy scores the weight of the other.
        assert scores[old.id] == pytest.approx(scores[new.id] * ranking.SUPERSEDED_WEIGHT, rel=1e-9)
