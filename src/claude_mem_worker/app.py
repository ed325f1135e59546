"""The worker application: its taskiq broker (``claude_mem_worker.broker``), task and
events, built from the environment.

``taskiq worker claude_mem_worker:broker`` and ``claude-mem worker`` run the same thing:
:func:`build_worker` reads :class:`Settings` (``CLAUDE_MEM_REDIS_URL``,
``CLAUDE_MEM_QUEUE_REDIS_PREFIX``, ``CLAUDE_MEM_WORKER_CONCURRENCY`` …), builds the queue's
:class:`JobStreamBroker` with this process as its consumer, registers the task
``claude_mem.generate`` and wires the :class:`WorkerRuntime` to taskiq's
``WORKER_STARTUP`` / ``WORKER_SHUTDOWN`` events. Producers (the HTTP server, the Python
API) build the same broker from the same two settings, so both sides agree on stream and
group names (a mismatch silently strands every job; the worker logs the prefix at
startup). Building connects to nothing.

Optional middleware: ``CLAUDE_MEM_WORKER_METRICS_PORT`` switches on taskiq's Prometheus
middleware (the ``metrics`` extra), serving ``/metrics`` on that port
(``CLAUDE_MEM_WORKER_METRICS_HOST``, default 127.0.0.1, or 0.0.0.0 in a container). taskiq's
retry middlewares are never added: retries are job states in the database.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from claude_mem_core.config import Settings
from claude_mem_core.errors import ConfigurationError, MissingExtra
from claude_mem_worker import tasks
from claude_mem_worker.runtime import WorkerOptions, WorkerRuntime

if TYPE_CHECKING:
    from taskiq import TaskiqMiddleware

    from claude_mem_core.adapters.redis_stream_broker import JobStreamBroker


def build_worker(
    settings: Settings | None = None,
    *,
    concurrency: int | None = None,
    env: Mapping[str, str] | None = None,
) -> WorkerRuntime:
    """A worker runtime whose broker is ready for a taskiq receiver."""
    env = os.environ if env is None else env
    settings = settings or Settings.from_env(env)
    runtime = WorkerRuntime(
        settings,
        options=WorkerOptions.from_settings(settings, env, concurrency=concurrency),
        env=env,
    )
    broker = runtime.broker
    from taskiq import TaskiqEvents

    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, runtime.on_startup)
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, runtime.on_shutdown)
    tasks.register(broker, runtime)
    middlewares = middlewares_from_env(env, in_container=settings.in_container)
    broker.add_middlewares(*middlewares)
    if middlewares:
        # After taskiq's middleware set up the metrics directory: ours join its /metrics.
        from claude_mem_core.adapters.generation_metrics import GenerationMetrics

        runtime.provider_observer = GenerationMetrics(prices=settings.prices).record
    return runtime


def build_broker(
    settings: Settings | None = None,
    *,
    concurrency: int | None = None,
    env: Mapping[str, str] | None = None,
) -> JobStreamBroker:
    """The worker's broker (see :func:`build_worker`)."""
    return build_worker(settings, concurrency=concurrency, env=env).broker


def middlewares_from_env(env: Mapping[str, str], *, in_container: bool) -> list[TaskiqMiddleware]:
    port_text = (env.get("CLAUDE_MEM_WORKER_METRICS_PORT") or "").strip()
    if not port_text:
        return []
    try:
        port = int(port_text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise ConfigurationError(
            f"CLAUDE_MEM_WORKER_METRICS_PORT must be a TCP port (got {port_text!r})"
        )
    host = (env.get("CLAUDE_MEM_WORKER_METRICS_HOST") or "").strip()
    host = host or ("0.0.0.0" if in_container else "127.0.0.1")
    if importlib.util.find_spec("prometheus_client") is None:
        raise MissingExtra("CLAUDE_MEM_WORKER_METRICS_PORT (Prometheus metrics)", "metrics")
    from taskiq.middlewares.prometheus_middleware import PrometheusMiddleware

    # Worker processes of one host share prometheus_client's multiprocess directory
    # (taskiq's default unless PROMETHEUS_MULTIPROC_DIR names one).
    directory = (env.get("PROMETHEUS_MULTIPROC_DIR") or "").strip()
    return [
        PrometheusMiddleware(
            metrics_path=Path(directory) if directory else None, server_port=port, server_addr=host
        )
    ]
