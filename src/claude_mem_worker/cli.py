"""``claude-mem worker [--concurrency N]`` (alias ``claude-mem server worker start``).

Runs the generation worker in the foreground: no HTTP port, logs to stderr, exits 0 after
one SIGTERM or SIGINT (a second one stops without waiting for in-flight jobs). Refuses to
start, with a message saying what to do, when the queue engine is not Redis or the
database is not migrated. When Redis is not reachable yet it waits for it (trying again
with backoff, up to every 10 s, and logging each failed try) until it comes up or the
worker is stopped.

Worker settings beyond :class:`Settings` (which holds ``CLAUDE_MEM_RECONCILE_INTERVAL_SECONDS``):
``CLAUDE_MEM_WORKER_SHUTDOWN_GRACE_SECONDS`` (default 10),
``CLAUDE_MEM_WORKER_STATS_INTERVAL_SECONDS`` (default 30), ``CLAUDE_MEM_LOG_LEVEL``, and with
semantic recall on ``CLAUDE_MEM_EMBEDDINGS_INTERVAL_SECONDS`` (default 30: how often passages
without a vector are embedded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from claude_mem_core.errors import (
    ClaudeMemError,
    ConfigurationError,
    QueueError,
    SchemaNotReady,
    StorageError,
)

if TYPE_CHECKING:
    from claude_mem_core.adapters.taskiq_queue import TaskiqQueue

log = logging.getLogger("claude_mem.worker")

EXIT_OK, EXIT_FAILED = 0, 1

NOT_REDIS = (
    "claude-mem worker consumes the Redis queue, but the queue engine is {engine!r}.\n"
    "The embedded server (the default) generates observations in-process and needs no "
    "worker.\nTo run generation in separate worker processes, set in the server AND the "
    "worker:\n"
    "  CLAUDE_MEM_QUEUE_ENGINE=redis\n"
    "  CLAUDE_MEM_REDIS_URL=redis://127.0.0.1:6379/0\n"
    "  CLAUDE_MEM_SERVER_DATABASE_URL=postgresql://…   (the database they share)"
)


def worker_identity() -> str:
    """``hostname:pid:random``: unique per process, readable in ``locked_by``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _float_env(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds (got {raw!r})") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive (got {raw!r})")
    return value


def _configure_logging(env: Mapping[str, str]) -> None:
    root = logging.getLogger()
    if root.handlers:
        return
    level = (env.get("CLAUDE_MEM_LOG_LEVEL") or "INFO").strip().upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    noisy_loggers = (
        "alembic",
        "sqlalchemy",
        "taskiq",
        "redis",
        "httpx",
        "httpx2",
        "httpcore",
        "httpcore2",
        "anthropic",
        "openai",
        "asyncio",
    )
    for noisy in noisy_loggers:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        host = rest.rsplit("@", 1)[1]
        return f"{scheme}://***@{host}"
    return url


async def run_worker(args: argparse.Namespace) -> int:
    """Entry point of ``claude-mem worker``; returns the exit code."""
    from claude_mem_core.adapters import storage_from_url
    from claude_mem_core.adapters.providers import provider_from_spec
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import Memory, embedder_from_settings
    from claude_mem_core.services.debounce import SessionBatcher
    from claude_mem_worker.broker import build_queue
    from claude_mem_worker.runner import Worker, WorkerOptions

    env = os.environ
    _configure_logging(env)
    settings = Settings.from_env()
    lease_problem = settings.lease_problem()
    if lease_problem is not None:
        print(f"error: {lease_problem}", file=sys.stderr)
        return EXIT_FAILED
    if settings.queue_engine != "redis" or not settings.redis_url:
        engine = settings.queue_engine if settings.queue_engine != "redis" else "redis"
        message = NOT_REDIS.format(engine=engine)
        if settings.queue_engine == "redis":
            message = "CLAUDE_MEM_QUEUE_ENGINE=redis needs CLAUDE_MEM_REDIS_URL.\n" + message
        print(f"error: {message}", file=sys.stderr)
        return EXIT_FAILED
    concurrency = getattr(args, "concurrency", None) or settings.worker_concurrency
    options = WorkerOptions(
        concurrency=concurrency,
        reconcile_interval=settings.reconcile_interval_seconds,
        grace_seconds=_float_env(env, "CLAUDE_MEM_WORKER_SHUTDOWN_GRACE_SECONDS", 10.0),
        log_interval=_float_env(env, "CLAUDE_MEM_WORKER_STATS_INTERVAL_SECONDS", 30.0),
        stale_after_seconds=settings.lease_seconds,
        embed_interval=_float_env(env, "CLAUDE_MEM_EMBEDDINGS_INTERVAL_SECONDS", 30.0),
    )
    database = _redact(settings.database_url)
    storage = storage_from_url(settings.database_url)
    try:
        try:
            await storage.check_schema()
        except SchemaNotReady as exc:
            print(
                f"error: the database {database} is not migrated ({exc.message}).\n"
                "Run `claude-mem migrate` with the same CLAUDE_MEM_SERVER_DATABASE_URL, "
                "then start the worker again.",
                file=sys.stderr,
            )
            return EXIT_FAILED
        except StorageError as exc:
            print(f"error: cannot use the database {database}: {exc.message}", file=sys.stderr)
            return EXIT_FAILED
        provider = provider_from_spec(settings.provider, env)
        embedder = embedder_from_settings(settings)
    except BaseException:
        await storage.close()
        raise
    queue = build_queue(settings)
    worker_id = worker_identity()
    memory = Memory(
        storage=storage,
        queue=queue,
        provider=provider,
        options=settings.pipeline_options(),
        worker_id=worker_id,
        embedder=embedder,
        embedding_model=settings.embeddings_model,
    )
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    try:
        worker = Worker(
            deps=memory.deps,
            batcher=SessionBatcher(memory.generator),
            queue=queue,
            worker_id=worker_id,
            options=options,
        )

        def on_signal() -> None:
            stopped.set()
            worker.request_stop()

        for signum in signals:
            loop.add_signal_handler(signum, on_signal)
        if not await wait_for_queue(queue, stopped):
            log.info("worker %s stopped before the queue was reachable", worker_id)
            return EXIT_OK
        log.info(
            "worker %s starting: database=%s redis=%s prefix=%s concurrency=%d provider=%s "
            "policy=%s lease=%gs heartbeat=%gs reconcile every %.1fs semantic-recall=%s",
            worker_id,
            database,
            queue.location,
            settings.redis_prefix,
            concurrency,
            provider.name,
            settings.session_policy,
            settings.lease_seconds,
            memory.deps.options.heartbeat_interval,
            options.reconcile_interval,
            settings.embeddings_model if embedder is not None else "off",
        )
        await worker.run()
    except ClaudeMemError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        await memory.close()
        log.debug("closed")
    return EXIT_OK


QUEUE_RETRY_FIRST_S = 0.5
QUEUE_RETRY_MAX_S = 10.0


async def wait_for_queue(
    queue: TaskiqQueue,
    stopped: asyncio.Event,
    *,
    first: float = QUEUE_RETRY_FIRST_S,
    most: float = QUEUE_RETRY_MAX_S,
) -> bool:
    """Ping the queue until it answers (True) or ``stopped`` is set (False), waiting
    longer after each failure (``first`` doubling up to ``most`` seconds); one log line per
    try says what is wrong and when the next try is."""
    delay = first
    tries = 0
    while not stopped.is_set():
        try:
            await queue.ping()
        except QueueError as exc:
            tries += 1
            log.warning(
                "Redis at %s is not reachable (%s); retrying in %.1fs (try %d, waiting until "
                "it is up or the worker is stopped)",
                queue.location,
                exc.message,
                delay,
                tries,
            )
        else:
            if tries:
                log.info("Redis at %s is reachable after %d failed tries", queue.location, tries)
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopped.wait(), timeout=delay)
        delay = min(delay * 2, most)
    return False
