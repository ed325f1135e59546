"""Storage adapters take "now" from the clock they are given (the services' clock), not
from the system: a key's expiry decided in Python (the in-memory adapter, SQLite) follows
that clock. PostgreSQL decides it in SQL, with the database's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from claude_mem_core.adapters import storage_from_url
from claude_mem_core.domain.models import ApiKey, AuditEntry, Project, Team
from claude_mem_core.ports.storage import Storage
from claude_mem_core.testing import databases
from claude_mem_core.testing.fakes import FixedClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EXPIRES = T0 + timedelta(days=30)


async def _stored_key(storage: Storage) -> ApiKey:
    team = Team(id="t", name="t", created_at=T0, updated_at=T0)
    project = Project(id="p", team_id="t", name="p", created_at=T0, updated_at=T0)
    key = ApiKey(
        id="k",
        key_hash="hash-k",
        team_id="t",
        project_id="p",
        actor_id="a",
        scopes=frozenset({"*"}),
        expires_at=EXPIRES,
        created_at=T0,
        updated_at=T0,
    )
    async with storage.unit_of_work() as uow:
        await uow.teams.add(team)
        await uow.projects.add(project)
        await uow.api_keys.add(key)
    return key


def _read(n: int) -> AuditEntry:
    return AuditEntry(
        id=f"read-{n}",
        team_id="t",
        project_id="p",
        actor_id="a",
        api_key_id="k",
        action="observation.read",
        resource_type="observation",
        resource_id=None,
        details={},
        created_at=T0,
    )


@pytest.mark.parametrize("kind", ["memory", pytest.param("sqlite", marks=pytest.mark.sqlite)])
async def test_a_key_expires_when_the_injected_clock_says_so(kind: str, tmp_path: Path) -> None:
    clock = FixedClock(EXPIRES - timedelta(days=1))
    url = "memory://" if kind == "memory" else await databases.migrated_sqlite_url(tmp_path)
    storage = storage_from_url(url, clock=clock)
    try:
        await _stored_key(storage)
        async with storage.unit_of_work() as uow:
            assert await uow.audit.add_read(_read(1)) is True
        clock.advance(2 * 24 * 3600)  # past the expiry by this clock, not by the system's
        async with storage.unit_of_work() as uow:
            assert await uow.audit.add_read(_read(2)) is False
    finally:
        await storage.close()
