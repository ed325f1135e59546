"""The passage-vector contract (``uow.vectors``, optional semantic recall): one suite every
storage adapter must pass, beside :class:`~claude_mem_core.testing.contracts.StorageContract`.

Subclass :class:`SearchVectorContract` in a test module that provides the ``storage``
fixture (a fresh, migrated storage). Like the main contract it has no ``Test`` prefix, so
pytest collects it only where it is subclassed.
"""

from __future__ import annotations

from typing import Any

import pytest

from claude_mem_core.domain.fusion import pack_vector, unpack_vector
from claude_mem_core.domain.models import Observation
from claude_mem_core.domain.passages import event_passages, observation_passage
from claude_mem_core.ports.search import PassageText
from claude_mem_core.ports.storage import Storage
from claude_mem_core.testing.contracts import Factory

MODEL = "test-embedder"
OTHER_MODEL = "another-embedder"


def _float32(vector: list[float]) -> list[float]:
    """What a stored vector reads back as."""
    return unpack_vector(pack_vector(vector))


class SearchVectorContract:
    """Behaviour of :class:`~claude_mem_core.ports.search.SearchVectorRepository`."""

    @pytest.fixture
    def make(self) -> Factory:
        return Factory()

    async def _indexed(
        self,
        storage: Storage,
        observations: list[Observation],
        events: dict[str, Any] | None = None,
    ) -> None:
        async with storage.unit_of_work() as uow:
            for obs in observations:
                await uow.observations.add(obs)
                linked = (events or {}).get(obs.id, [])
                await uow.search.add([observation_passage(obs), *event_passages(obs, linked)])

    async def _missing(self, storage: Storage, **kw: Any) -> list[PassageText]:
        async with storage.unit_of_work() as uow:
            return list(await uow.vectors.missing(MODEL, **kw))

    async def test_missing_lists_passages_oldest_first_with_their_text(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        first = make.observation(project, "The login redirect loop was fixed")
        second = make.observation(project, "The cache TTL is now five minutes")
        event = make.event(project, payload={"command": "pytest tests/e2e -k login"})
        await self._indexed(storage, [first, second], {second.id: [event]})

        found = await self._missing(storage, team_id=team.id, project_id=project.id)

        assert [p.observation_id for p in found] == [first.id, second.id, second.id]
        ids = [p.id for p in found]
        assert ids == sorted(ids) and len(set(ids)) == 3
        # An observation's own passage is embedded from the observation's content.
        assert [p.text for p in found[:2]] == [first.content, second.content]
        assert "pytest tests/e2e -k login" in found[2].text
        assert {(p.team_id, p.project_id) for p in found} == {(team.id, project.id)}

    async def test_missing_pages_by_id_and_filters_by_scope_and_observation(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        _, foreign_project = await make.stored_tenant(storage)
        mine = [make.observation(project, f"note {n}") for n in range(5)]
        foreign = make.observation(foreign_project, "someone else's note")
        await self._indexed(storage, [*mine, foreign])

        everything = await self._missing(storage)
        page_one = await self._missing(storage, team_id=team.id, project_id=project.id, limit=2)
        page_two = await self._missing(
            storage, team_id=team.id, project_id=project.id, after=page_one[-1].id, limit=2
        )
        picked = await self._missing(
            storage,
            team_id=team.id,
            project_id=project.id,
            observation_ids=[mine[3].id, foreign.id],
        )
        of_team = await self._missing(storage, team_id=team.id)
        none_asked = await self._missing(
            storage, team_id=team.id, project_id=project.id, observation_ids=[]
        )

        assert {p.observation_id for p in everything} == {o.id for o in [*mine, foreign]}
        assert [p.observation_id for p in page_one + page_two] == [o.id for o in mine[:4]]
        assert [p.observation_id for p in picked] == [mine[3].id]
        assert {p.observation_id for p in of_team} == {o.id for o in mine}
        assert none_asked == []
        async with storage.unit_of_work() as uow:
            assert await uow.vectors.count_missing(MODEL) == 6
            assert await uow.vectors.count_missing(MODEL, team_id=team.id) == 5
            assert (
                await uow.vectors.count_missing(MODEL, team_id=team.id, project_id=project.id) == 5
            )

    async def test_vectors_round_trip_per_model_and_are_stored_once(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        obs = make.observation(project, "Deploys go through the staging cluster first")
        event = make.event(project, payload={"output": "kubectl rollout status deploy/api"})
        await self._indexed(storage, [obs], {obs.id: [event]})
        own, raw = await self._missing(storage, team_id=team.id, project_id=project.id)
        vectors = {own.id: [0.1, -0.2, 0.3], raw.id: [1.0 / 3, 2.0, -7.25]}

        async with storage.unit_of_work() as uow:
            stored = await uow.vectors.add(MODEL, vectors)
            again = await uow.vectors.add(MODEL, {own.id: [9.0, 9.0, 9.0]})
            unknown = await uow.vectors.add(MODEL, {10_000_000: [1.0, 1.0, 1.0]})
            other = await uow.vectors.add(OTHER_MODEL, {own.id: [0.5, 0.5]})
        async with storage.unit_of_work() as uow:
            read = await uow.vectors.for_observations(team.id, project.id, MODEL, [obs.id])
            read_other = await uow.vectors.for_observations(
                team.id, project.id, OTHER_MODEL, [obs.id, "obs-unknown"]
            )
            left = await uow.vectors.missing(MODEL, team_id=team.id, project_id=project.id)
            left_other = await uow.vectors.missing(
                OTHER_MODEL, team_id=team.id, project_id=project.id
            )
            counted = await uow.vectors.count_missing(MODEL)

        assert (stored, again, unknown, other) == (2, 0, 0, 1)
        # The first vector stays; values come back as float32.
        assert sorted(map(list, read[obs.id])) == sorted(_float32(v) for v in vectors.values())
        assert {k: list(map(list, v)) for k, v in read_other.items()} == {obs.id: [[0.5, 0.5]]}
        assert (list(left), counted) == ([], 0)
        assert [p.id for p in left_other] == [raw.id]

    async def test_vectors_are_read_in_their_own_scope_only(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        other_team, other_project = await make.stored_tenant(storage)
        sibling = make.project(team, "sibling")
        async with storage.unit_of_work() as uow:
            await uow.projects.add(sibling)
        obs = make.observation(project, "The retry budget is three attempts")
        await self._indexed(storage, [obs])
        (passage,) = await self._missing(storage)
        async with storage.unit_of_work() as uow:
            assert await uow.vectors.add(MODEL, {passage.id: [1.0, 0.0]}) == 1

        async with storage.unit_of_work() as uow:
            own = await uow.vectors.for_observations(team.id, project.id, MODEL, [obs.id])
            from_sibling = await uow.vectors.for_observations(team.id, sibling.id, MODEL, [obs.id])
            from_other_team = await uow.vectors.for_observations(
                other_team.id, other_project.id, MODEL, [obs.id]
            )
            none_asked = await uow.vectors.for_observations(team.id, project.id, MODEL, [])

        assert {k: list(map(list, v)) for k, v in own.items()} == {obs.id: [[1.0, 0.0]]}
        assert (dict(from_sibling), dict(from_other_team), dict(none_asked)) == ({}, {}, {})

    async def test_vectors_roll_back_with_their_unit_of_work(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        obs = make.observation(project, "Feature flags live in config/flags.yaml")
        await self._indexed(storage, [obs])
        (passage,) = await self._missing(storage)

        with pytest.raises(RuntimeError):
            async with storage.unit_of_work() as uow:
                await uow.vectors.add(MODEL, {passage.id: [1.0, 2.0]})
                raise RuntimeError("abort")

        assert [p.id for p in await self._missing(storage)] == [passage.id]
        async with storage.unit_of_work() as uow:
            assert await uow.vectors.for_observations(team.id, project.id, MODEL, [obs.id]) == {}


__all__ = ["MODEL", "OTHER_MODEL", "SearchVectorContract"]
