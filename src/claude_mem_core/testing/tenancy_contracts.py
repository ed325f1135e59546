"""The tenancy contract: every repository read that takes a tenant scope returns exactly the
rows :meth:`TenantScope.admits` admits, on every storage adapter.

Two teams with two projects each, and in every project an event, its job, a session, an
observation and a project key (plus a team-wide key per team). Each read is asked under
every scope those tenants make (a team alone, a team and one of its projects, a team and a
project of the other team; and, where the port allows it, no team), and its answer is
compared with the rule applied to everything stored. Since the memory adapter and the SQL
adapters are held to the same expected set, they agree with one another too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import pytest

from claude_mem_core.domain.models import AgentEvent, ApiKey, GenerationJob, Observation
from claude_mem_core.domain.tenancy import TenantScope
from claude_mem_core.ports.storage import JobFilter, Page, Storage
from claude_mem_core.testing.storage_fixtures import Factory


@attrs.define
class _World:
    tenants: list[tuple[str, str]] = attrs.Factory(list)  # (team, project)
    keys: list[ApiKey] = attrs.Factory(list)
    events: list[AgentEvent] = attrs.Factory(list)
    jobs: list[GenerationJob] = attrs.Factory(list)
    observations: list[Observation] = attrs.Factory(list)

    def scopes(self, *, teamless: bool = False) -> list[TenantScope]:
        teams = sorted({team for team, _ in self.tenants})
        projects = sorted({project for _, project in self.tenants})
        wanted: list[str | None] = [*teams, None] if teamless else list(teams)
        return [TenantScope(team, project) for team in wanted for project in [*projects, None]]


def _ids(rows: Iterable[Any]) -> set[str]:
    return {row.id for row in rows}


def _admitted(scope: TenantScope, rows: Sequence[Any]) -> set[str]:
    return {row.id for row in rows if scope.admits(row.team_id, row.project_id)}


class TenancyContract:
    """Scoped reads agree with ``TenantScope.admits`` (see the module docstring)."""

    @pytest.fixture
    async def world(self, storage: Storage) -> _World:
        make = Factory()
        world = _World()
        for t in range(2):
            team = make.team(f"team-{t}")
            async with storage.unit_of_work() as uow:
                await uow.teams.add(team)
                team_key = make.key(team)
                await uow.api_keys.add(team_key)
                world.keys.append(team_key)
                for _ in range(2):
                    project = make.project(team)
                    await uow.projects.add(project)
                    world.tenants.append((team.id, project.id))
                    key = make.key(team, project)
                    event = make.event(project)
                    job = make.job(event)
                    observation = make.observation(project, f"note of {project.id}")
                    await uow.api_keys.add(key)
                    await uow.events.add(event)
                    await uow.jobs.add(job)
                    await uow.observations.add(observation)
                    world.keys.append(key)
                    world.events.append(event)
                    world.jobs.append(job)
                    world.observations.append(observation)
        return world

    async def test_api_key_lists_admit_exactly_the_scope(
        self, storage: Storage, world: _World
    ) -> None:
        async with storage.unit_of_work() as uow:
            for scope in world.scopes(teamless=True):
                listed, total = await uow.api_keys.list(scope.team_id, scope.project_id, Page())
                assert _ids(listed) == _admitted(scope, world.keys), scope
                assert total == len(listed)

    async def test_job_lists_admit_exactly_the_scope(self, storage: Storage, world: _World) -> None:
        async with storage.unit_of_work() as uow:
            for scope in world.scopes():
                assert scope.team_id is not None
                where = JobFilter(team_id=scope.team_id, project_id=scope.project_id)
                listed, total = await uow.jobs.list(where, Page())
                assert _ids(listed) == _admitted(scope, world.jobs), scope
                assert total == len(listed)

    async def test_reads_by_id_in_a_team_admit_only_its_rows(
        self, storage: Storage, world: _World
    ) -> None:
        async with storage.unit_of_work() as uow:
            for scope in world.scopes():
                if scope.project_id is not None:
                    continue
                assert scope.team_id is not None
                for event in world.events:
                    found = await uow.events.get(scope.team_id, event.id)
                    assert (found is not None) == scope.admits(event.team_id, event.project_id)
                for job in world.jobs:
                    got = await uow.jobs.get(scope.team_id, job.id)
                    assert (got is not None) == scope.admits(job.team_id, job.project_id)
                for obs in world.observations:
                    seen = await uow.observations.get_in_team(scope.team_id, obs.id)
                    assert (seen is not None) == scope.admits(obs.team_id, obs.project_id)

    async def test_project_reads_admit_only_the_project(
        self, storage: Storage, world: _World
    ) -> None:
        async with storage.unit_of_work() as uow:
            for scope in world.scopes():
                if scope.project_id is None:
                    continue
                assert scope.team_id is not None
                team, project = scope.team_id, scope.project_id
                listed, total = await uow.observations.list(team, project, Page())
                assert _ids(listed) == _admitted(scope, world.observations), scope
                assert total == len(listed)
                for obs in world.observations:
                    got = await uow.observations.get(team, project, obs.id)
                    assert (got is not None) == scope.admits(obs.team_id, obs.project_id)
                ids = [e.id for e in world.events]
                many = await uow.events.get_many(team, project, ids)
                assert _ids(many) == _admitted(scope, world.events), scope
