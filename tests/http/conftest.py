"""HTTP fixtures: an app per test on a fresh SQLite file or Postgres database (marker
``postgres``), seeded tenants and keys, and the OpenAPI-checking client of ``httpkit``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from httpkit import Api, AppFactory, World, scripted_reply

from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.domain.scopes import HOOK_SCOPES
from claude_mem_core.facade import Memory
from claude_mem_core.services.context import PipelineOptions
from claude_mem_core.testing.fakes import ScriptedProvider
from claude_mem_http.server.app import create_app

# -- backends and the world ---------------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def db_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
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
def provider() -> ScriptedProvider:
    return ScriptedProvider(default=scripted_reply)


@pytest.fixture
async def memory(db_url: str, provider: ScriptedProvider) -> AsyncIterator[Memory]:
    mem = Memory(
        storage=storage_from_url(db_url),
        queue=InProcessQueue(),
        provider=provider,
        options=PipelineOptions(max_attempts=3),
    )
    try:
        yield mem
    finally:
        await mem.close()


@pytest.fixture
async def world(memory: Memory) -> World:
    team = await memory.create_team("acme")
    project = await memory.create_project(team.id, "webapp")
    sibling = await memory.create_project(team.id, "api")
    other = await memory.create_team("globex")
    other_project = await memory.create_project(other.id, "secret")

    async def key(team_id: str, project_id: str | None, scopes: list[str]) -> tuple[str, str]:
        issued = await memory.create_api_key(team_id=team_id, project_id=project_id, scopes=scopes)
        return issued.raw_key, issued.key.id

    main, main_id = await key(team.id, project.id, ["memories:read", "memories:write"])
    return World(
        team=team.id,
        project=project.id,
        sibling=sibling.id,
        other_team=other.id,
        other_project=other_project.id,
        key=main,
        key_id=main_id,
        team_key=(await key(team.id, None, ["memories:read", "memories:write"]))[0],
        read_key=(await key(team.id, project.id, ["memories:read"]))[0],
        admin_key=(await key(team.id, None, ["*"]))[0],
        hook_key=(await key(team.id, project.id, sorted(HOOK_SCOPES)))[0],
        other_key=(await key(other.id, other_project.id, ["memories:read", "memories:write"]))[0],
    )


@pytest.fixture
async def make_api(
    memory: Memory, aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]]
) -> AppFactory:
    # ``memory`` first: fixtures end in reverse order, so the app stops (its stream poller
    # too) before the storage closes, as in the server.
    async def make(**kwargs: Any) -> Api:
        kwargs.setdefault("background_generation", False)
        app: web.Application = create_app(memory, **kwargs)
        return Api(await aiohttp_client(app))

    return make


@pytest.fixture
async def api(make_api: AppFactory) -> Api:
    return await make_api()
