"""Health, readiness and info (api.md §5, decision 9): real pings, no secrets or hosts."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Literal, cast

from aiohttp import web

from claude_mem_core import migrations
from claude_mem_core.distribution import installed_version
from claude_mem_core.errors import ClaudeMemError
from claude_mem_core.ports.queue import EVENT_LANE, SUMMARY_LANE
from claude_mem_http.server.middlewares import json_response
from claude_mem_http.server.state import RUNTIME, Runtime
from claude_mem_http.server.stream import STREAM_HUB
from claude_mem_http.wire import health_models as wire
from claude_mem_http.wire.converter import to_wire

PING_TIMEOUT_S = 2.0
LANES = (("event", EVENT_LANE), ("summary", SUMMARY_LANE))
REDIS_MODES = ("external", "managed", "docker")
SERVER_NAME: Literal["claude-mem-server"] = "claude-mem-server"
RUNTIME_NAME: Literal["server-beta"] = "server-beta"


def version() -> str:
    return installed_version()


async def _probe(check: Any) -> wire.Probe:
    """``ok``, or ``error`` when the dependency cannot be reached in time."""
    try:
        await asyncio.wait_for(check(), PING_TIMEOUT_S)
    except (ClaudeMemError, OSError, TimeoutError):
        return "error"
    return "ok"


def queue_engine(runtime: Runtime) -> wire.QueueEngine:
    queue = runtime.memory.deps.queue
    if queue is None:
        return "disabled"
    return "memory" if queue.name == "memory" else "taskiq"


async def _storage_status(runtime: Runtime) -> wire.StorageHealth:
    storage = runtime.memory.storage
    return wire.StorageHealth(engine=storage.name, status=await _probe(storage.ping))


async def _queue_status(runtime: Runtime) -> wire.QueueHealth:
    queue = runtime.memory.deps.queue
    if queue is None:
        return wire.QueueHealth(engine="disabled", status="disabled", lanes=[])
    status = await _probe(queue.ping)
    try:
        depth = await asyncio.wait_for(queue.depth(), PING_TIMEOUT_S)
    except (ClaudeMemError, OSError, TimeoutError):
        depth = None
    lanes = [
        wire.QueueLane(
            kind=kind,
            name=name,
            waiting=0 if depth is None else int(depth.get(name, 0)),
            unavailable=depth is None,
        )
        for kind, name in LANES
    ]
    redis = None
    if queue.name == "redis":
        # The reference's ``queue.redis`` object, from a real PING (bounded by
        # PING_TIMEOUT_S): "error" makes the whole answer 503 "degraded". Host, port and
        # prefix are left out (decision 9); ``mode`` is the operator's own label.
        redis = wire.RedisStatus(status=status, mode=_redis_mode())
    return wire.QueueHealth(engine=queue_engine(runtime), status=status, lanes=lanes, redis=redis)


def _redis_mode() -> wire.RedisMode:
    mode = os.environ.get("CLAUDE_MEM_REDIS_MODE", "").strip().lower()
    return cast(wire.RedisMode, mode) if mode in REDIS_MODES else "external"


async def _schema(runtime: Runtime) -> tuple[bool, str | None]:
    """Whether the schema is migrated, and its version."""
    try:
        await asyncio.wait_for(runtime.memory.storage.check_schema(), PING_TIMEOUT_S)
    except (ClaudeMemError, OSError, TimeoutError):
        return False, None
    return True, migrations.HEAD_REVISION


def _answer(body: Any, status: int = 200) -> web.Response:
    return json_response(to_wire(body), status)


async def healthz(request: web.Request) -> web.StreamResponse:
    return _answer(wire.Alive(status="ok", runtime=RUNTIME_NAME))


async def api_health(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    storage, queue, (initialized, _) = await asyncio.gather(
        _storage_status(runtime), _queue_status(runtime), _schema(runtime)
    )
    redis_down = queue.redis is not None and queue.redis.status == "error"
    degraded = storage.status == "error" or queue.status == "error" or redis_down
    body = wire.Health(
        status="degraded" if degraded else "ok",
        runtime=RUNTIME_NAME,
        version=version(),
        uptime=round(time.monotonic() - runtime.started_monotonic, 3),
        managed=os.environ.get("CLAUDE_MEM_MANAGED") == "true",
        pid=os.getpid(),
        initialized=initialized,
        mcp_ready=True,
        ai=wire.AiHealth(
            provider=runtime.memory.provider.name,
            auth_method=settings.auth_mode,
            last_interaction=None,
        ),
        storage=storage,
        queue=queue,
        generation=wire.GenerationHealth(embedded=runtime.generation_active),
    )
    return _answer(body, 503 if degraded else 200)


async def api_readiness(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    storage, queue, (initialized, _) = await asyncio.gather(
        _storage_status(runtime), _queue_status(runtime), _schema(runtime)
    )
    if storage.status == "error" or queue.status == "error":
        return _answer(
            wire.NotReady(status="degraded", message="a storage or queue dependency is down"),
            503,
        )
    if not initialized:
        return _answer(
            wire.NotReady(status="initializing", message="database schema is not ready"), 503
        )
    return _answer(wire.Ready(status="ready", mcp_ready=True))


async def info(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    (initialized, schema_version), queue = await asyncio.gather(
        _schema(runtime), _queue_status(runtime)
    )
    engine = queue.engine
    schema = wire.SchemaStatus(
        initialized=initialized,
        schema_version=schema_version,
        engine=runtime.memory.storage.name,
    )
    queue_active = engine != "disabled"
    body = wire.Info(
        name=SERVER_NAME,
        runtime=RUNTIME_NAME,
        version=version(),
        auth_mode=settings.auth_mode,
        postgres=schema,
        storage=schema,
        queue=wire.QueueInfo(engine=engine),
        provider=runtime.memory.provider.name,
        boundaries=wire.Boundaries(
            queue_manager=wire.Boundary(
                status="active" if queue_active else "disabled",
                reason=f"{engine} queue" if queue_active else "no queue configured",
                details={
                    "engine": engine,
                    "lanes": [{"kind": lane.kind, "name": lane.name} for lane in queue.lanes],
                },
            ),
            generation_worker_manager=wire.Boundary(
                status="active" if runtime.generation_active else "disabled",
                reason="embedded generation in this process"
                if runtime.generation_active
                else "generation runs in a separate worker",
            ),
            provider_registry=wire.Boundary(
                status="active",
                reason="provider configured",
                details={"provider": runtime.memory.provider.name},
            ),
            event_broadcaster=event_broadcaster(request.app),
        ),
        queue_lanes=queue.lanes if queue_active else [],
        semantic_recall=semantic_recall(runtime),
    )
    return _answer(body)


def event_broadcaster(app: web.Application) -> wire.Boundary:
    """The live stream (``GET /v1/stream``): mounted, and how many streams are open."""
    hub = app.get(STREAM_HUB)
    if hub is None:
        return wire.Boundary(status="disabled", reason="the live stream is not mounted")
    return wire.Boundary(
        status="active",
        reason="live stream at GET /v1/stream (Server-Sent Events)",
        details={
            "path": "/v1/stream",
            "clients": len(hub.clients),
            "heartbeatSeconds": hub.settings.heartbeat_s,
            "pollSeconds": hub.settings.poll_s,
        },
    )


def semantic_recall(runtime: Runtime) -> wire.SemanticRecallInfo:
    """Whether search fuses embeddings, and the model's name (never the endpoint or key)."""
    semantic = runtime.memory.deps.semantic
    return wire.SemanticRecallInfo(
        enabled=semantic is not None, model=semantic.model if semantic else None
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/health", api_health)
    app.router.add_get("/api/readiness", api_readiness)
    app.router.add_get("/v1/info", info)
