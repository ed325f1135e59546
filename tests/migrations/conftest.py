"""Migration fixtures: an empty and a migrated database of each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from claude_mem_core.testing import databases

BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of each backend."""
    if request.param == "sqlite":
        yield databases.sqlite_url(tmp_path / "empty.db")
        return
    base = request.getfixturevalue("postgres_base_url")
    url = await databases.create_postgres_database(base, migrated=False)
    try:
        yield url
    finally:
        await databases.drop_postgres_database(url)


@pytest.fixture(params=BACKENDS)
async def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of each backend, migrated to the head revision."""
    if request.param == "sqlite":
        yield await databases.migrated_sqlite_url(tmp_path)
        return
    base = request.getfixturevalue("postgres_base_url")
    url = await databases.create_postgres_database(base)
    try:
        yield url
    finally:
        await databases.drop_postgres_database(url)
