"""The aiohttp application: ``create_app(settings)`` for serving, ``create_app(memory)`` for
tests and embedding.

The cleanup context owns everything with a lifetime: it opens the :class:`Memory` from the
settings (and closes it), resolves the local-dev team and project, and runs embedded
generation (consume the in-process queue with the memory's generator, reconcile
periodically) when no separate worker is expected, and then also the embedding backfill when
semantic recall is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from claude_mem_core.config import Settings
from claude_mem_core.facade import Memory, open_memory_from_settings
from claude_mem_core.services import admin, embedding, reconcile, upkeep
from claude_mem_core.services.context import Caller
from claude_mem_http.server import compat_routes, export_routes, health, routes, viewer
from claude_mem_http.server import stream as live
from claude_mem_http.server.auth import LOCAL_DEV_ACTOR, LOCAL_DEV_SCOPES, local_dev_bypass
from claude_mem_http.server.metrics import METRICS, MetricsMode
from claude_mem_http.server.metrics import setup as setup_metrics
from claude_mem_http.server.middlewares import (
    json_response,
    refuse_other_methods,
    request_middleware,
)
from claude_mem_http.server.serving import KeySafeApplication
from claude_mem_http.server.state import RUNTIME, Runtime
from claude_mem_http.wire import openapi, schemas

log = logging.getLogger("claude_mem.http")

LOCAL_TEAM = "local"
LOCAL_PROJECT = "default"
IDLE_WAIT_S = 1.0
ERROR_BACKOFF_S = 1.0


async def serve_openapi(request: web.Request) -> web.StreamResponse:
    """``GET /v1/openapi.json``: the document of :mod:`claude_mem_http.wire.openapi`."""
    return json_response(openapi.DOCUMENT)


def settings_for_memory(memory: Memory) -> Settings:
    """Settings describing an app built around a ready-made :class:`Memory`."""
    queue = memory.deps.queue
    return Settings(
        data_dir=Path.home() / ".claude-mem",
        database_url="",
        database_configured=True,
        queue_engine="memory" if queue is None or queue.name == "memory" else "redis",
        session_policy=memory.deps.options.session_policy,
    )


def wants_embedded_generation(settings: Settings) -> bool:
    return (settings.embedded or settings.queue_engine == "memory") and not (
        settings.generation_disabled
    )


async def run_embedded_generation(memory: Memory, *, reconcile_every_s: float) -> None:
    """Consume the in-process queue forever; reconcile the outbox every few seconds so
    rows the queue lost (restart, publish failure, expired lease) are found again, and run
    the upkeep then (:mod:`~claude_mem_core.services.upkeep`: purges of erased projects,
    the retention sweep, pruning the change feed)."""
    queue = memory.deps.queue
    consume = getattr(queue, "consume", None)
    wait_for_messages = getattr(queue, "wait_for_messages", None)
    next_reconcile = 0.0
    steps = upkeep.Upkeep()
    while True:
        try:
            now = time.monotonic()
            if now >= next_reconcile:
                await reconcile.reconcile(memory.deps)
                await steps.run(memory.deps)
                next_reconcile = now + reconcile_every_s
            if consume is not None:
                await consume(memory.batcher.handle)
            else:
                await memory.drain()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("embedded generation step failed; retrying")
            await asyncio.sleep(ERROR_BACKOFF_S)
            continue
        idle = min(IDLE_WAIT_S, max(next_reconcile - time.monotonic(), 0.01))
        if wait_for_messages is not None:
            await wait_for_messages(idle)
        else:
            await asyncio.sleep(idle)


async def _local_dev_caller(memory: Memory) -> Caller:
    team, project = await admin.ensure_team_and_project(memory.deps, LOCAL_TEAM, LOCAL_PROJECT)
    return Caller(
        team_id=team.id, project_id=project.id, actor_id=LOCAL_DEV_ACTOR, scopes=LOCAL_DEV_SCOPES
    )


def _lifecycle(
    memory: Memory | None, background_generation: bool | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        runtime = app[RUNTIME]
        settings = runtime.settings
        async with contextlib.AsyncExitStack() as stack:
            if memory is None:
                metrics = app.get(METRICS)
                runtime.memory = await stack.enter_async_context(
                    open_memory_from_settings(
                        settings,
                        provider_observer=None if metrics is None else metrics.provider_call,
                    )
                )
            else:
                runtime.memory = memory
            runtime.started_monotonic = time.monotonic()
            if local_dev_bypass(settings):
                runtime.local_caller = await _local_dev_caller(runtime.memory)
            elif settings.auth_mode == "local-dev":
                log.warning(
                    "local-dev mode without CLAUDE_MEM_ALLOW_LOCAL_DEV_BYPASS=1 (or inside a "
                    "container): requests without an API key are refused"
                )
            run_generation = (
                wants_embedded_generation(settings)
                if background_generation is None
                else background_generation
            )
            if run_generation and runtime.memory.deps.queue is not None:
                runtime.generation_task = asyncio.create_task(
                    run_embedded_generation(
                        runtime.memory, reconcile_every_s=settings.reconcile_interval_seconds
                    ),
                    name="claude-mem-embedded-generation",
                )
            # Semantic recall: whoever generates also embeds what has no vector yet
            # (memories, older passages); a separate worker does it when one generates.
            stop_backfill = asyncio.Event()
            backfill: asyncio.Task[None] | None = None
            if run_generation and runtime.memory.deps.semantic is not None:
                backfill = asyncio.create_task(
                    embedding.run_backfill(runtime.memory.deps, stop_backfill),
                    name="claude-mem-embeddings",
                )
            try:
                yield
            finally:
                stop_backfill.set()
                if backfill is not None:
                    backfill.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await backfill
                task = runtime.generation_task
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    runtime.generation_task = None
                runtime.memory = None

    return lifecycle


def create_app(
    source: Settings | Memory,
    *,
    settings: Settings | None = None,
    background_generation: bool | None = None,
    metrics: MetricsMode | None = None,
    stream: live.StreamSettings | None = None,
) -> web.Application:
    """Build the app. Given :class:`Settings`, the app opens and closes its own Memory;
    given a :class:`Memory`, the caller owns it. ``background_generation`` overrides the
    settings' choice of running generation in this process; ``metrics`` overrides
    ``CLAUDE_MEM_METRICS`` (``GET /metrics``: on, off, or behind a key); ``stream`` the
    live stream's heartbeat and polling (``CLAUDE_MEM_STREAM_*``)."""
    if isinstance(source, Settings):
        memory: Memory | None = None
        chosen = source
    else:
        memory = source
        chosen = settings or settings_for_memory(source)
    # Key-safe however it is served: a malformed request is never quoted back nor logged.
    app = KeySafeApplication(
        middlewares=[request_middleware],
        client_max_size=schemas.MAX_BODY_BYTES,
    )
    app[RUNTIME] = Runtime(chosen)
    app.cleanup_ctx.append(_lifecycle(memory, background_generation))
    health.setup(app)
    routes.setup(app)
    compat_routes.setup(app)  # the legacy hook routes (api.md §4)
    export_routes.setup(app)  # project export and import (docs/your-data.md)
    viewer.setup(app)  # /viewer/: the web pages (docs/viewer.md)
    try:
        from claude_mem_http.mcp.streamable_http import mount_mcp

        mount_mcp(app)  # /mcp: read tools, key-authenticated; the SDK loads on first use
    except ImportError:  # the optional 'mcp' extra is not installed
        pass
    app.router.add_get("/v1/openapi.json", serve_openapi)
    setup_metrics(app, metrics or MetricsMode.from_env(os.environ))
    live.setup(app, stream or live.StreamSettings.from_env(os.environ))  # GET /v1/stream
    refuse_other_methods(app)  # last: every route is known
    return app


__all__ = ["create_app", "run_embedded_generation", "settings_for_memory"]
