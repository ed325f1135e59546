"""Health, readiness and info (api.md §5, decision 9): real pings, no secrets or hosts."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from aiohttp import web

from claude_mem_core import migrations
from claude_mem_core.distribution import installed_version
from claude_mem_core.errors import ClaudeMemError
from claude_mem_core.ports.queue import EVENT_LANE, SUMMARY_LANE
from claude_mem_http.server.middlewares import json_response
from claude_mem_http.server.state import RUNTIME, Runtime
from claude_mem_http.server.stream import STREAM_HUB

PING_TIMEOUT_S = 2.0
LANES = (("event", EVENT_LANE), ("summary", SUMMARY_LANE))
REDIS_MODES = ("external", "managed", "docker")
SERVER_NAME = "claude-mem-server"
RUNTIME_NAME = "server-beta"


def version() -> str:
    return installed_version()


async def _probe(check: Any) -> str:
    """``ok``, or ``error`` when the dependency cannot be reached in time."""
    try:
        await asyncio.wait_for(check(), PING_TIMEOUT_S)
    except (ClaudeMemError, OSError, TimeoutError):
        return "error"
    return "ok"


def queue_engine(runtime: Runtime) -> str:
    queue = runtime.memory.deps.queue
    if queue is None:
        return "disabled"
    return "memory" if queue.name == "memory" else "taskiq"


async def _storage_status(runtime: Runtime) -> dict[str, Any]:
    storage = runtime.memory.storage
    return {"engine": storage.name, "status": await _probe(storage.ping)}


async def _queue_status(runtime: Runtime) -> dict[str, Any]:
    queue = runtime.memory.deps.queue
    if queue is None:
        return {"engine": "disabled", "status": "disabled", "lanes": []}
    status = await _probe(queue.ping)
    lanes: list[dict[str, Any]] = []
    try:
        depth = await asyncio.wait_for(queue.depth(), PING_TIMEOUT_S)
    except (ClaudeMemError, OSError, TimeoutError):
        depth = None
    for kind, name in LANES:
        lane: dict[str, Any] = {"kind": kind, "name": name, "waiting": 0, "unavailable": False}
        if depth is None:
            lane["unavailable"] = True
        else:
            lane["waiting"] = int(depth.get(name, 0))
        lanes.append(lane)
    body: dict[str, Any] = {"engine": queue_engine(runtime), "status": status, "lanes": lanes}
    if queue.name == "redis":
        # The reference's ``queue.redis`` object, from a real PING (bounded by
        # PING_TIMEOUT_S): "error" makes the whole answer 503 "degraded". Host, port and
        # prefix are left out (decision 9); ``mode`` is the operator's own label.
        body["redis"] = {"status": status, "mode": _redis_mode()}
    return body


def _redis_mode() -> str:
    mode = os.environ.get("CLAUDE_MEM_REDIS_MODE", "").strip().lower()
    return mode if mode in REDIS_MODES else "external"


async def _schema(runtime: Runtime) -> dict[str, Any]:
    try:
        await asyncio.wait_for(runtime.memory.storage.check_schema(), PING_TIMEOUT_S)
    except (ClaudeMemError, OSError, TimeoutError):
        return {"initialized": False, "schemaVersion": None}
    return {"initialized": True, "schemaVersion": migrations.HEAD_REVISION}


async def healthz(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok", "runtime": RUNTIME_NAME})


async def api_health(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    storage, queue, schema = await asyncio.gather(
        _storage_status(runtime), _queue_status(runtime), _schema(runtime)
    )
    redis_down = queue.get("redis", {}).get("status") == "error"
    degraded = storage["status"] == "error" or queue["status"] == "error" or redis_down
    body = {
        "status": "degraded" if degraded else "ok",
        "runtime": RUNTIME_NAME,
        "version": version(),
        "uptime": round(time.monotonic() - runtime.started_monotonic, 3),
        "managed": os.environ.get("CLAUDE_MEM_MANAGED") == "true",
        "pid": os.getpid(),
        "initialized": schema["initialized"],
        "mcpReady": True,
        "ai": {
            "provider": runtime.memory.provider.name,
            "authMethod": settings.auth_mode,
            "lastInteraction": None,
        },
        "storage": storage,
        "queue": queue,
        "generation": {"embedded": runtime.generation_active},
    }
    return json_response(body, 503 if degraded else 200)


async def api_readiness(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    storage, queue, schema = await asyncio.gather(
        _storage_status(runtime), _queue_status(runtime), _schema(runtime)
    )
    if storage["status"] == "error" or queue["status"] == "error":
        return json_response(
            {"status": "degraded", "message": "a storage or queue dependency is down"}, 503
        )
    if not schema["initialized"]:
        return json_response(
            {"status": "initializing", "message": "database schema is not ready"}, 503
        )
    return json_response({"status": "ready", "mcpReady": True})


async def info(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    schema, queue = await asyncio.gather(_schema(runtime), _queue_status(runtime))
    engine = queue["engine"]
    storage_engine = runtime.memory.storage.name
    queue_active = engine != "disabled"
    body = {
        "name": SERVER_NAME,
        "runtime": RUNTIME_NAME,
        "version": version(),
        "authMode": settings.auth_mode,
        "postgres": {**schema, "engine": storage_engine},
        "storage": {**schema, "engine": storage_engine},
        "queue": {"engine": engine},
        "provider": runtime.memory.provider.name,
        "boundaries": {
            "queueManager": {
                "status": "active" if queue_active else "disabled",
                "reason": f"{engine} queue" if queue_active else "no queue configured",
                "details": {
                    "engine": engine,
                    "lanes": [
                        {"kind": lane["kind"], "name": lane["name"]} for lane in queue["lanes"]
                    ],
                },
            },
            "generationWorkerManager": {
                "status": "active" if runtime.generation_active else "disabled",
                "reason": "embedded generation in this process"
                if runtime.generation_active
                else "generation runs in a separate worker",
            },
            "providerRegistry": {
                "status": "active",
                "reason": "provider configured",
                "details": {"provider": runtime.memory.provider.name},
            },
            "eventBroadcaster": event_broadcaster(request.app),
        },
        "queueLanes": queue["lanes"] if queue_active else [],
        "semanticRecall": semantic_recall(runtime),
    }
    return json_response(body)


def event_broadcaster(app: web.Application) -> dict[str, Any]:
    """The live stream (``GET /v1/stream``): mounted, and how many streams are open."""
    hub = app.get(STREAM_HUB)
    if hub is None:
        return {"status": "disabled", "reason": "the live stream is not mounted"}
    return {
        "status": "active",
        "reason": "live stream at GET /v1/stream (Server-Sent Events)",
        "details": {
            "path": "/v1/stream",
            "clients": len(hub.clients),
            "heartbeatSeconds": hub.settings.heartbeat_s,
            "pollSeconds": hub.settings.poll_s,
        },
    }


def semantic_recall(runtime: Runtime) -> dict[str, Any]:
    """Whether search fuses embeddings, and the model's name (never the endpoint or key)."""
    semantic = runtime.memory.deps.semantic
    return {"enabled": semantic is not None, "model": semantic.model if semantic else None}


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/health", api_health)
    app.router.add_get("/api/readiness", api_readiness)
    app.router.add_get("/v1/info", info)
