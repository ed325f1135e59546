"""Keys and scopes (issue #13): every served route opens for exactly the scopes of the
table in docs/security.md, refusals say why, local-dev needs every condition, and a key's
last use is recorded without a write per request."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from httpkit import Api, AppFactory, World, event_body

from claude_mem_core.domain.scopes import KNOWN_SCOPES
from claude_mem_core.facade import Memory
from claude_mem_core.services.key_lookup import KeyUsage
from claude_mem_http.server.app import settings_for_memory

SECURITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
NO_KEY = "no key needed"


@pytest.fixture
def backend() -> str:  # scope checks happen before storage is touched: one backend is enough
    return "sqlite"


def route_table() -> dict[tuple[str, str], frozenset[str] | None]:
    """The route table of docs/security.md: (method, path) -> scopes (None: no key)."""
    table: dict[tuple[str, str], frozenset[str] | None] = {}
    row = re.compile(r"^\| `(GET|POST|DELETE|PUT|PATCH) (/[^`]*)` \| (.+) \|$")
    for line in SECURITY_DOC.read_text(encoding="utf-8").splitlines():
        found = row.match(line.strip())
        if found is None:
            continue
        method, path, opened_by = found.groups()
        scopes = (
            None if opened_by.strip() == NO_KEY else frozenset(re.findall(r"`([^`]+)`", opened_by))
        )
        assert (method, path) not in table, f"{method} {path} is in the table twice"
        table[(method, path)] = scopes
    return table


def concrete(path: str, world: World) -> str:
    """A path to call for a templated one: the caller's own team and project, unknown ids."""
    return (
        path.replace("{teamId}", world.team)
        .replace("{projectId}", world.project)
        .replace("{id}", "no-such-id")
    )


async def scoped_key(memory: Memory, world: World, *scopes: str) -> str:
    issued = await memory.create_api_key(
        team_id=world.team, project_id=world.project, scopes=list(scopes)
    )
    return issued.raw_key


async def test_every_route_enforces_the_table(api: Api, world: World, memory: Memory) -> None:
    table = route_table()
    served = (await api.get("/v1/openapi.json")).body
    operations = {
        (method.upper(), path)
        for path, ops in served["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert operations == set(table), "docs/security.md and the served routes differ"
    keys = {scope: await scoped_key(memory, world, scope) for scope in sorted(KNOWN_SCOPES)}
    client = api.client
    for (method, path), opened_by in sorted(table.items()):
        url = concrete(path, world)
        body = None if method in ("GET", "DELETE") else "{}"
        headers = {"Content-Type": "application/json"} if body else {}
        async with client.request(method, url, data=body, headers=headers) as resp:
            anonymous = resp.status
        if opened_by is None:
            assert anonymous == 200, (method, path, anonymous)
            continue
        assert anonymous == 401, (method, path, anonymous)
        for scope, key in keys.items():
            sent = {**headers, "Authorization": f"Bearer {key}"}
            async with client.request(method, url, data=body, headers=sent) as resp:
                status = resp.status
                payload = await resp.json() if resp.content_type == "application/json" else {}
            if scope in opened_by:
                assert status != 403, (method, path, scope, payload)
                assert status < 500, (method, path, scope, payload)
            else:
                assert status == 403, (method, path, scope, status)
                named = ", ".join(sorted(opened_by - {"*"}))
                assert "lacks the scope" in payload["message"], (method, path, scope)
                for wanted in opened_by - {"*"}:
                    assert wanted in payload["message"], (method, path, named, payload)
                assert key not in payload["message"]


async def test_admin_scopes_only_add_job_payloads(api: Api, world: World, memory: Memory) -> None:
    params = {"include": "payload"}
    for admin in ("admin", "memories:admin"):
        alone = await scoped_key(memory, world, admin)
        assert (await api.get("/v1/jobs", key=alone)).status == 403
        with_jobs = await scoped_key(memory, world, admin, "jobs:read")
        assert (await api.get("/v1/jobs", key=with_jobs, params=params)).status == 200
    jobs_only = await scoped_key(memory, world, "jobs:read")
    refused = await api.get("/v1/jobs", key=jobs_only, params=params)
    assert refused.status == 403 and "memories:admin" in refused.body["message"]
    assert (await api.get("/v1/jobs", key=jobs_only)).status == 200


async def test_refusals_say_why_without_echoing_the_key(
    api: Api, world: World, memory: Memory
) -> None:
    missing = await api.post("/v1/events", event_body(world.project))
    assert (missing.status, missing.body["message"]) == (401, "Missing bearer API key")

    unknown_key = "cmem_not_a_key_anyone_issued_4242"
    unknown = await api.post("/v1/events", event_body(world.project), key=unknown_key)
    assert (unknown.status, unknown.body["message"]) == (403, "Unknown API key")

    scope = await api.post("/v1/events", event_body(world.project), key=world.read_key)
    assert scope.status == 403
    assert scope.body["message"] == (
        "API key lacks the scope this needs: memories:write or events:write"
    )

    expiring = await memory.create_api_key(
        team_id=world.team, project_id=world.project, scopes=["memories:read"]
    )
    async with memory.storage.unit_of_work() as uow:
        past = datetime.now(UTC) - timedelta(seconds=1)
        await uow.api_keys.save(attrs.evolve(expiring.key, expires_at=past))
    expired = await api.get("/v1/projects", key=expiring.raw_key)
    assert (expired.status, expired.body["message"]) == (403, "API key has expired")

    # A key the server holds in memory (event ingest, search) and one it reads each time.
    for path, body in (
        ("/v1/events", event_body(world.project)),
        ("/v1/search", {"projectId": world.project, "query": "x"}),
        ("/v1/projects", None),
    ):
        issued = await memory.create_api_key(team_id=world.team, project_id=world.project)
        call = api.get if body is None else api.post
        args: tuple[Any, ...] = () if body is None else (body,)
        first = await call(path, *args, key=issued.raw_key)
        assert first.status in (200, 201), (path, first.body)
        await memory.revoke_api_key(issued.key.id)
        revoked = await call(path, *args, key=issued.raw_key)
        assert (revoked.status, revoked.body["message"]) == (403, "API key has been revoked"), path

    for reply, raw in ((unknown, unknown_key), (expired, expiring.raw_key)):
        assert raw not in str(reply.body) and raw not in str(dict(reply.headers))


def _local_settings(memory: Memory, **changes: Any) -> Any:
    base = {"auth_mode": "local-dev", "allow_local_dev_bypass": True, "in_container": False}
    return attrs.evolve(settings_for_memory(memory), **{**base, **changes})


async def test_local_dev_bypass_needs_every_condition(make_api: AppFactory, memory: Memory) -> None:
    everything = await make_api(settings=_local_settings(memory))
    assert (await everything.get("/v1/projects")).status == 200
    without = {
        "mode": _local_settings(memory, auth_mode="api-key"),
        "opt-in": _local_settings(memory, allow_local_dev_bypass=False),
        "not in a container": _local_settings(memory, in_container=True),
    }
    for condition, settings in without.items():
        api = await make_api(settings=settings)
        reply = await api.get("/v1/projects")
        assert reply.status == 401, condition
    not_local = {
        "loopback peer (forwarded)": {"X-Forwarded-For": "10.0.0.1"},
        "loopback Host": {"Host": "memory.example.com"},
        "no proxy header": {"X-Real-IP": "127.0.0.1"},
    }
    for condition, headers in not_local.items():
        reply = await everything.get("/v1/projects", headers=headers)
        assert reply.status == 401, condition


def test_the_bypass_opt_in_is_read_from_the_environment() -> None:
    from claude_mem_core.config import Settings
    from claude_mem_http.server.auth import local_dev_bypass

    # Outside a container whatever machine runs the test (it may itself be one).
    def settings(env: dict[str, str]) -> Settings:
        return Settings.from_env(env, dockerenv=Path("/nonexistent/.dockerenv"))

    base = {"CLAUDE_MEM_AUTH_MODE": "local-dev", "CLAUDE_MEM_DOCKER": "0"}
    assert not local_dev_bypass(settings(base))
    assert local_dev_bypass(settings({**base, "CLAUDE_MEM_ALLOW_LOCAL_DEV_BYPASS": "1"}))
    inside = {**base, "CLAUDE_MEM_ALLOW_LOCAL_DEV_BYPASS": "1", "CLAUDE_MEM_DOCKER": "1"}
    assert not local_dev_bypass(settings(inside))


async def _last_used(memory: Memory, key_id: str) -> datetime | None:
    async with memory.storage.unit_of_work() as uow:
        key = await uow.api_keys.get_unscoped(key_id)
    assert key is not None
    return key.last_used_at


async def test_last_used_is_recorded_coalesced_and_never_waited_for(
    api: Api, world: World, memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with memory.storage.unit_of_work() as uow:
        repo = type(uow.api_keys)
    writes: list[dict[str, datetime]] = []
    record_use = repo.record_use

    async def counted(self: Any, used_at: Any) -> None:
        writes.append(dict(used_at))
        await record_use(self, used_at)

    monkeypatch.setattr(repo, "record_use", counted)
    assert await _last_used(memory, world.key_id) is None

    assert (await api.get("/v1/projects", key=world.key)).status == 200
    for _ in range(100):  # the first use is written in the background, promptly
        if await _last_used(memory, world.key_id) is not None:
            break
        await asyncio.sleep(0.02)
    assert await _last_used(memory, world.key_id) is not None

    for _ in range(100):
        assert (await api.get("/v1/projects", key=world.key)).status == 200
    before_last = datetime.now(UTC)
    assert (await api.get("/v1/projects", key=world.key)).status == 200
    await memory.key_lookup.drain()  # shutdown writes what is pending
    ours = [w for w in writes if world.key_id in w]
    assert 1 <= len(ours) <= 2, len(ours)
    last = await _last_used(memory, world.key_id)
    assert last is not None and last >= before_last - timedelta(milliseconds=5)

    # A write that never finishes holds no request up.
    stall = asyncio.Event()

    async def stalled(self: Any, batch: Any) -> None:
        await stall.wait()

    monkeypatch.setattr(KeyUsage, "_write", stalled)
    other = await memory.create_api_key(team_id=world.team, scopes=["memories:read"])
    for _ in range(3):
        reply = await asyncio.wait_for(api.get("/v1/projects", key=other.raw_key), 5)
        assert reply.status == 200
    stall.set()
