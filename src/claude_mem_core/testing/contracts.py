"""The storage contract: one suite every storage adapter must pass.

Subclass :class:`StorageContract` in a test module and provide two fixtures:

* ``storage``: a fresh, migrated :class:`~claude_mem_core.ports.storage.Storage`;
* ``backdoor``: a :class:`Backdoor` that reads the backend directly, without the adapter's
  repositories, so write paths are checked against what was really stored.

The class has no ``Test`` prefix, so pytest collects it only where it is subclassed.
"""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from claude_mem_core.domain.models import (
    AuditEntry,
    SessionGenerationStatus,
)
from claude_mem_core.errors import NotFound
from claude_mem_core.ports.storage import Page, Storage
from claude_mem_core.testing.batch_contracts import BatchWriteContract
from claude_mem_core.testing.erase_contracts import ErasureContract
from claude_mem_core.testing.job_contracts import JobStorageContract
from claude_mem_core.testing.search_contracts import SearchStorageContract
from claude_mem_core.testing.storage_fixtures import LOGICAL_TABLES, T0, Backdoor, Factory
from claude_mem_core.testing.tenancy_contracts import TenancyContract


class StorageContract(
    JobStorageContract,
    SearchStorageContract,
    BatchWriteContract,
    ErasureContract,
    TenancyContract,
):
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


__all__ = ["LOGICAL_TABLES", "T0", "Backdoor", "Factory", "StorageContract"]
