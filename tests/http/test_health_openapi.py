"""Health, readiness, info (api.md §5, decision 9) and the OpenAPI document."""

from __future__ import annotations

import json
import socket
import time
import uuid
from typing import Any

import pytest
from aiohttp import web
from httpkit import DOC_PATH, OPENAPI, Api, AppFactory, Reply

from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.taskiq_queue import TaskiqQueue
from claude_mem_core.errors import QueueError, StorageUnavailable
from claude_mem_core.facade import Memory
from claude_mem_core.testing.fakes import ScriptedProvider
from claude_mem_http.server import health
from claude_mem_http.server.app import create_app
from claude_mem_http.wire import openapi


async def test_healthz(api: Api) -> None:
    reply = await api.get("/healthz")
    assert reply.status == 200 and reply.body == {"status": "ok", "runtime": "server-beta"}


async def test_api_health_ok(api: Api, memory: Memory) -> None:
    reply = await api.get("/api/health")
    assert reply.status == 200
    body = reply.body
    assert body["status"] == "ok" and body["runtime"] == "server-beta"
    assert isinstance(body["pid"], int) and body["initialized"] is True and body["mcpReady"]
    assert body["queue"]["engine"] == "memory" and body["storage"]["status"] == "ok"
    assert body["ai"]["provider"] == "scripted"
    assert {lane["kind"] for lane in body["queue"]["lanes"]} == {"event", "summary"}
    text = json.dumps(body)
    assert "127.0.0.1" not in text and "5432" not in text and "sqlite+aiosqlite" not in text


async def test_readiness_and_info(api: Api) -> None:
    ready = await api.get("/api/readiness")
    assert ready.status == 200 and ready.body["status"] == "ready"
    info = await api.get("/v1/info")
    assert info.status == 200
    body = info.body
    assert body["runtime"] == "server-beta" and body["name"] == "claude-mem-server"
    assert body["queue"]["engine"] == "memory"
    assert body["storage"]["initialized"] is True and body["storage"]["schemaVersion"]
    assert body["boundaries"]["queueManager"]["status"] == "active"
    assert body["provider"] == "scripted" and body["authMode"] == "api-key"


@pytest.mark.parametrize("broken", ["storage", "queue"])
async def test_degraded_when_a_dependency_is_down(
    make_api: AppFactory, memory: Memory, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    async def fail() -> None:
        if broken == "storage":
            raise StorageUnavailable("db.internal:5432 refused")
        raise QueueError("redis.internal refused")

    target = memory.storage if broken == "storage" else memory.deps.queue
    monkeypatch.setattr(target, "ping", fail)
    api = await make_api()
    health = await api.get("/api/health")
    assert health.status == 503 and health.body["status"] == "degraded"
    assert "internal" not in json.dumps(health.body)
    ready = await api.get("/api/readiness")
    assert ready.status == 503 and ready.body["status"] == "degraded"
    assert (await api.get("/healthz")).status == 200


async def test_unmigrated_database_is_initializing(aiohttp_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    memory = Memory(
        storage=storage_from_url(url), queue=InProcessQueue(), provider=ScriptedProvider()
    )
    try:
        api = Api(await aiohttp_client(create_app(memory, background_generation=False)))
        ready = await api.get("/api/readiness")
        assert ready.status == 503 and ready.body["status"] == "initializing"
        info = await api.get("/v1/info")
        assert info.body["storage"]["initialized"] is False
    finally:
        await memory.close()


async def test_openapi_document_is_served_and_current(api: Api) -> None:
    reply = await api.get("/v1/openapi.json")
    assert reply.status == 200 and reply.body == openapi.DOCUMENT
    on_disk = json.loads(DOC_PATH.read_text(encoding="utf-8"))
    assert on_disk == openapi.DOCUMENT, (
        "docs/openapi.json is stale: run python -m claude_mem_http.wire.openapi docs/openapi.json"
    )
    assert OPENAPI["openapi"].startswith("3.1")


def test_every_route_is_documented(memory: Memory) -> None:
    app = create_app(memory)
    served: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if str(path).startswith("/viewer"):
            continue  # the web viewer's pages and assets: not API operations (docs/viewer.md)
        for route in resource:
            if route.method in ("HEAD", "*"):
                continue
            served.add((route.method.lower(), str(path)))
    documented = {(method, path) for path, ops in OPENAPI["paths"].items() for method in ops}
    assert served == documented
    assert isinstance(app, web.Application)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends


async def _redis_health(aiohttp_client: Any, url: str) -> tuple[Reply, float]:
    queue = TaskiqQueue.from_url(url, prefix=f"cmtest_health_{uuid.uuid4().hex[:8]}")
    memory = Memory(storage=storage_from_url("memory://"), queue=queue, provider=ScriptedProvider())
    try:
        api = Api(await aiohttp_client(create_app(memory, background_generation=False)))
        started = time.monotonic()
        reply = await api.get("/api/health")
        return reply, time.monotonic() - started
    finally:
        await memory.close()


@pytest.mark.redis
async def test_api_health_pings_redis(aiohttp_client: Any, redis_url: str) -> None:
    reply, _ = await _redis_health(aiohttp_client, redis_url)
    assert reply.status == 200 and reply.body["status"] == "ok"
    queue = reply.body["queue"]
    # What really runs (the reference says "bullmq"); the PING's answer as the wire has it.
    assert queue["engine"] == "taskiq"
    assert queue["redis"] == {"status": "ok", "mode": "external"}
    assert "6379" not in json.dumps(reply.body)


async def test_api_health_is_degraded_when_redis_is_down(aiohttp_client: Any) -> None:
    port = _closed_port()
    reply, took = await _redis_health(aiohttp_client, f"redis://127.0.0.1:{port}/0")
    assert reply.status == 503 and reply.body["status"] == "degraded"
    assert reply.body["queue"]["redis"]["status"] == "error"
    assert reply.body["storage"]["status"] == "ok"
    assert str(port) not in json.dumps(reply.body)
    assert took < health.PING_TIMEOUT_S + 2.0  # bounded: health never hangs


async def test_api_health_has_no_redis_object_without_redis(api: Api) -> None:
    reply = await api.get("/api/health")
    assert reply.status == 200 and "redis" not in reply.body["queue"]
