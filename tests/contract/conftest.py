"""The ``storage`` and ``backdoor`` fixtures, parametrized over every backend.

Each contract test runs three times: ``[memory]``, ``[sqlite]`` (a migrated file per test)
and ``[postgres]`` (a migrated database per test, cloned from a template).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.memory import InMemoryStorage
from claude_mem_core.ports.storage import Storage
from claude_mem_core.testing.fakes import ScriptedProvider

SQL_TABLES = {
    "teams": "teams",
    "projects": "projects",
    "api_keys": "api_keys",
    "sessions": "server_sessions",
    "events": "agent_events",
    "jobs": "observation_generation_jobs",
    "job_events": "observation_generation_job_events",
    "observations": "observations",
    "sources": "observation_sources",
    "audit": "audit_log",
    "passages": "search_passages",
}


def _plain(value: Any) -> Any:
    if hasattr(value, "value") and not isinstance(value, str | int | float):
        return value.value
    if isinstance(value, str) and hasattr(value, "value"):
        return value.value
    if isinstance(value, frozenset | set):
        return sorted(value)
    return value


class MemoryBackdoor:
    def __init__(self, storage: InMemoryStorage) -> None:
        self.storage = storage

    async def rows(self, table: str) -> list[dict[str, Any]]:
        return [
            {k: _plain(v) for k, v in attrs.asdict(row, recurse=False).items()}
            for row in self.storage.peek(table).values()
        ]


class SqlBackdoor:
    """Reads tables with plain SQL on its own connection, bypassing the repositories."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        self.engine = create_async_engine(url)

    async def rows(self, table: str) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        from claude_mem_core.adapters.sqlalchemy import tables

        real = tables.metadata.tables[SQL_TABLES[table]]
        async with self.engine.connect() as conn:
            result = await conn.execute(sa.select(real))
            return [dict(row._mapping) for row in result]

    async def close(self) -> None:
        await self.engine.dispose()


@pytest.fixture(
    params=[
        "memory",
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def storage_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    if backend == "memory":
        yield "memory://"
        return
    from claude_mem_core.testing import databases

    if backend == "sqlite":
        yield await databases.migrated_sqlite_url(tmp_path)
        return
    base = request.getfixturevalue("postgres_base_url")
    url = await databases.create_postgres_database(base)
    try:
        yield url
    finally:
        await databases.drop_postgres_database(url)


@pytest.fixture
async def storage(storage_url: str) -> AsyncIterator[Storage]:
    from claude_mem_core.adapters import storage_from_url

    store = storage_from_url(storage_url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def backdoor(storage: Storage, storage_url: str) -> AsyncIterator[Any]:
    if isinstance(storage, InMemoryStorage):
        yield MemoryBackdoor(storage)
        return
    door = SqlBackdoor(storage_url)
    try:
        yield door
    finally:
        await door.close()


@pytest.fixture
async def mem(storage: Storage) -> Memory:
    """The facade over the backend under test (modules needing another provider override)."""
    return Memory(storage=storage, queue=InProcessQueue(), provider=ScriptedProvider())


@pytest.fixture
async def scope(mem: Memory) -> Scope:
    team, project = await mem.ensure_project("acme", "webapp")
    return Scope(team_id=team.id, project_id=project.id)
