"""``claude-mem worker [--concurrency N]`` (alias ``claude-mem server worker start``).

Runs the generation worker in the foreground: taskiq's receiver on the broker of
:func:`claude_mem_worker.app.build_worker`, the same one ``taskiq worker
claude_mem_worker:broker`` runs, with ``--concurrency`` jobs at once and the shutdown grace
period as taskiq's ``wait_tasks_timeout``. No HTTP port, logs to stderr, exits 0 after one
SIGTERM or SIGINT (a second one stops without waiting for in-flight jobs). Refuses to
start, with a message saying what to do, when the queue engine is not Redis or the
database is not migrated. When Redis is not reachable yet it waits for it (trying again
with backoff, up to every 5 s, and logging each failed try) until it comes up or the
worker is stopped.

Worker settings beyond :class:`Settings` (which holds ``CLAUDE_MEM_RECONCILE_INTERVAL_SECONDS``):
``CLAUDE_MEM_WORKER_SHUTDOWN_GRACE_SECONDS`` (default 10),
``CLAUDE_MEM_WORKER_STATS_INTERVAL_SECONDS`` (default 30), ``CLAUDE_MEM_LOG_LEVEL``,
``CLAUDE_MEM_LOG_FORMAT`` (``text``, or ``json`` with the request and trace ids),
``CLAUDE_MEM_WORKER_METRICS_PORT`` and ``CLAUDE_MEM_WORKER_METRICS_HOST`` (taskiq's Prometheus
middleware), and with semantic recall on
``CLAUDE_MEM_EMBEDDINGS_INTERVAL_SECONDS`` (default 30: how often passages without a vector
are embedded).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from claude_mem_core.cli.commands import Commands
from claude_mem_core.cli.kit import Parser, positive, run
from claude_mem_core.errors import ClaudeMemError, SchemaNotReady, StorageError

log = logging.getLogger("claude_mem.worker")

EXIT_OK, EXIT_FAILED = 0, 1


def _configure_logging(env: Mapping[str, str]) -> None:
    """Text lines on stderr, or JSON ones (``CLAUDE_MEM_LOG_FORMAT=json``)."""
    from claude_mem_core.logging_setup import configure_logging

    root = logging.getLogger()
    level = (env.get("CLAUDE_MEM_LOG_LEVEL") or "INFO").strip().upper()
    if not configure_logging(env, level=getattr(logging, level, logging.INFO)):
        return
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


async def run_worker(args: argparse.Namespace) -> int:
    """Entry point of ``claude-mem worker``; returns the exit code."""
    from claude_mem_core.config import Settings
    from claude_mem_worker.app import build_worker
    from claude_mem_worker.runtime import redact_url

    env = os.environ
    try:
        _configure_logging(env)
        settings = Settings.from_env()
        runtime = build_worker(settings, concurrency=getattr(args, "concurrency", None), env=env)
    except ClaudeMemError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    database = redact_url(settings.database_url)
    try:
        await runtime.open()
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
    except ClaudeMemError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED

    from taskiq.receiver import Receiver

    broker = runtime.broker
    broker.is_worker_process = True
    receiver = Receiver(
        broker,
        validate_params=False,  # the runtime checks each message itself
        max_async_tasks=runtime.options.concurrency,
        max_prefetch=0,
        wait_tasks_timeout=runtime.options.grace_seconds,
    )
    finished = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    cut_offs: set[asyncio.Task[None]] = set()

    def on_signal() -> None:
        if not finished.is_set():
            log.info(
                "stop requested: finishing in-flight jobs (up to %.0fs)",
                runtime.options.grace_seconds,
            )
            finished.set()
            return
        log.warning("second stop request: cancelling in-flight jobs now")
        cutting = loop.create_task(runtime.cut_off())
        cut_offs.add(cutting)
        cutting.add_done_callback(cut_offs.discard)

    for signum in signals:
        loop.add_signal_handler(signum, on_signal)
    try:
        await receiver.listen(finished)
    except ClaudeMemError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        await broker.shutdown()
        log.debug("closed")
    return EXIT_OK


# -- the command ----------------------------------------------------------------------------


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=positive,
        default=None,
        help="jobs processed at once (default CLAUDE_MEM_WORKER_CONCURRENCY or 8)",
    )
    parser.set_defaults(handler=run_worker)


def register(commands: Commands) -> None:
    """Add ``claude-mem worker`` and its alias ``claude-mem server worker start`` (entry
    point ``worker`` of the ``claude_mem.cli`` group)."""
    worker = commands.add(
        "worker", help="run the generation worker in the foreground", after="serve"
    )
    _add_options(worker)
    alias = commands.add("worker", help="server worker start", under="server")
    actions = alias.add_subparsers(dest="worker_action", required=True, parser_class=Parser)
    start = actions.add_parser("start")
    start.add_argument("--concurrency", type=positive, default=None)
    start.set_defaults(handler=run_worker)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m claude_mem_worker [--concurrency N]``: ``claude-mem worker`` on its own."""
    parser = Parser(prog="claude-mem worker")
    _add_options(parser)
    return run(parser, argv)
