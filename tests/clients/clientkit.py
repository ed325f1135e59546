"""Client-side fixtures: a real claude-mem HTTP app on a loopback port (SQLite), seeded
tenant and keys, hook payload fixtures, and an isolated data directory per test."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.domain.scopes import HOOK_SCOPES
from claude_mem_core.facade import Memory
from claude_mem_core.services.context import PipelineOptions
from claude_mem_core.testing import databases
from claude_mem_core.testing.fakes import ScriptedProvider
from claude_mem_http.server.app import create_app

FIXTURES = Path(__file__).parent / "fixtures"

OBSERVATION = """<observation>
  <type>bugfix</type>
  <title>Fixed the OAuth redirect loop</title>
  <facts><fact>auth/middleware.py compared the callback URL with its query string</fact></facts>
  <narrative>The login redirect looped because the callback check ignored the query.</narrative>
  <files_modified><file>auth/middleware.py</file></files_modified>
</observation>"""


def hook_payload(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / "hooks" / f"{name}.json").read_text())
    return loaded


@attrs.define
class Tenant:
    team: str
    project: str
    hook_key: str
    key: str
    read_key: str


def db_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


def count(url: str, table: str, where: str = "1=1", *params: Any) -> int:
    with sqlite3.connect(db_path(url)) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()
    return int(row[0])


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path(url)) as conn:
        return list(conn.execute(sql, params).fetchall())


@pytest.fixture
async def db_url(tmp_path: Path) -> str:
    return await databases.migrated_sqlite_url(tmp_path)


@pytest.fixture
async def memory(db_url: str) -> AsyncIterator[Memory]:
    mem = Memory(
        storage=storage_from_url(db_url),
        queue=InProcessQueue(),
        provider=ScriptedProvider(default=OBSERVATION),
        options=PipelineOptions(max_attempts=3),
    )
    try:
        yield mem
    finally:
        await mem.close()


@pytest.fixture
async def tenant(memory: Memory) -> Tenant:
    team = await memory.create_team("acme")
    project = await memory.create_project(team.id, "webapp")

    async def key(scopes: list[str]) -> str:
        issued = await memory.create_api_key(team_id=team.id, project_id=project.id, scopes=scopes)
        return issued.raw_key

    return Tenant(
        team=team.id,
        project=project.id,
        hook_key=await key(sorted(HOOK_SCOPES)),
        key=await key(["memories:read", "memories:write"]),
        read_key=await key(["memories:read"]),
    )


ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def start_server(
    aiohttp_server: Callable[..., Awaitable[TestServer]], memory: Memory
) -> ServerFactory:
    """Start the real app (optionally on a given port)."""

    async def start(**kwargs: Any) -> TestServer:
        app: web.Application = create_app(memory, background_generation=False)
        return await aiohttp_server(app, **kwargs)

    return start


@pytest.fixture
async def server(start_server: ServerFactory, tenant: Tenant) -> TestServer:
    return await start_server()


def base_url(srv: TestServer) -> str:
    return str(srv.make_url("")).rstrip("/")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "claude-mem-data"
    path.mkdir()
    return path


@pytest.fixture
async def embedded_data_dir(data_dir: Path, tmp_path: Path) -> Path:
    """A data directory whose default SQLite file is already migrated."""
    url = await databases.migrated_sqlite_url(tmp_path)
    shutil.copyfile(db_path(url), data_dir / "claude-mem.db")
    return data_dir


def embedded_env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "CLAUDE_MEM_DATA_DIR": str(data_dir),
        "HOME": str(data_dir.parent),
        "CLAUDE_MEM_HOOK_BACKGROUND_DRAIN": "0",
        **extra,
    }
