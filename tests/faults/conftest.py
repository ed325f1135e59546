"""Fixtures of the fault-injection suite: one private PostgreSQL cluster and one private
Redis server per test session (tests stop and restart them; the shared instances are never
touched), a fresh migrated database per test, and a per-test working directory.

Every test here is marked ``faults``, ``postgres`` and ``redis``: under ``CI=true`` a missing
server binary turns into a failure (see tests/conftest.py), never a silent skip.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from faultkit import WORKER_RUNNERS, PrivatePostgres, PrivateRedis

from claude_mem_core.testing.databases import create_postgres_database, drop_postgres_database


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this session only; tests may stop it (it is restarted for
    the next test by ``pg``)."""
    try:
        cluster = PrivatePostgres()
    except (RuntimeError, KeyError, OSError) as exc:
        pytest.skip(f"cannot create a private PostgreSQL cluster: {exc}")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def private_redis() -> Iterator[PrivateRedis]:
    try:
        server = PrivateRedis()
    except RuntimeError as exc:
        pytest.skip(f"cannot start a private Redis server: {exc}")
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg(private_postgres: PrivatePostgres) -> PrivatePostgres:
    private_postgres.start()  # a previous test may have left it stopped
    return private_postgres


@pytest.fixture
def redis_server(private_redis: PrivateRedis) -> PrivateRedis:
    private_redis.start()
    return private_redis


@pytest.fixture
async def database(pg: PrivatePostgres) -> AsyncIterator[str]:
    """A fresh migrated database on the private cluster."""
    url = await create_postgres_database(pg.url)
    try:
        yield url
    finally:
        pg.start()
        await drop_postgres_database(url)


@pytest.fixture
def prefix() -> str:
    return f"cmfault_{secrets.token_hex(4)}"


@pytest.fixture(params=WORKER_RUNNERS)
def worker_runner(request: pytest.FixtureRequest) -> str:
    """How the worker is started: ``claude-mem worker`` or ``taskiq worker
    claude_mem_worker:broker``; every worker fault test runs with both."""
    return str(request.param)
