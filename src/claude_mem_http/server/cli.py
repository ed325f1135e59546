"""``claude-mem serve``: run the HTTP server until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import attrs
from aiohttp import web

from claude_mem_core.cli.commands import Commands
from claude_mem_core.cli.kit import EXIT_USAGE, positive
from claude_mem_core.config import Settings
from claude_mem_core.errors import ConfigurationError, SchemaNotReady, StorageUnavailable
from claude_mem_core.logging_setup import configure_logging, log_format
from claude_mem_http.server.app import create_app
from claude_mem_http.server.processes import (
    stop_on_signals,
    supervise,
    watch_supervisor,
    workers_problem,
)
from claude_mem_http.server.serving import AppRunner

EXIT_OK, EXIT_FAILED = 0, 1


def settings_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> Settings:
    settings = Settings.from_env(env)
    overrides: dict[str, Any] = {}
    host = getattr(args, "host", None)
    port = getattr(args, "port", None)
    if host:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    return attrs.evolve(settings, **overrides).validate() if overrides else settings.validate()


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def serve(args: argparse.Namespace) -> int:
    """Start the server; return the exit code once a signal asks it to stop."""
    try:
        settings = settings_from_args(args)
        if log_format(os.environ) == "json":  # the default stays as it was: unconfigured
            configure_logging(os.environ)
    except ConfigurationError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    workers: int = getattr(args, "workers", None) or settings.server_workers
    problem = workers_problem(settings, workers)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if workers > 1:
        return await supervise(settings, workers)
    supervisor: int | None = getattr(args, "supervisor", None)
    runner = AppRunner(create_app(settings), handle_signals=False, access_log=None)
    try:
        await runner.setup()
    except SchemaNotReady as exc:
        print(
            f"error: {exc.message}\nThe configured database is not migrated: run "
            "`claude-mem migrate` first, then start the server again.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except (StorageUnavailable, ConfigurationError) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    stop = asyncio.Event()
    try:
        with stop_on_signals(stop):
            return await _listen(runner, settings, stop, supervisor)
    finally:
        await runner.cleanup()


async def _listen(
    runner: AppRunner, settings: Settings, stop: asyncio.Event, supervisor: int | None
) -> int:
    """Serve on the configured address until ``stop``; a worker of ``--workers N`` shares
    the port with its siblings and stops when its supervisor is gone."""
    site = web.TCPSite(
        runner, settings.host, settings.port, reuse_port=True if supervisor else None
    )
    try:
        await site.start()
    except OSError as exc:
        print(
            f"error: cannot listen on {_url(settings.host, settings.port)}: {exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    mode = "embedded" if settings.embedded else settings.queue_engine
    print(f"claude-mem listening on {_url(settings.host, settings.port)} ({mode})", flush=True)
    watching = asyncio.ensure_future(watch_supervisor(supervisor, stop)) if supervisor else None
    await stop.wait()
    if watching is not None:
        watching.cancel()
    print("claude-mem shutting down", flush=True)
    return EXIT_OK


def register(commands: Commands) -> None:
    """Add ``claude-mem serve`` (entry point ``serve`` of the ``claude_mem.cli`` group)."""
    parser = commands.add("serve", help="run the HTTP server", after="migrate")
    parser.add_argument("--host", help="bind address (default CLAUDE_MEM_SERVER_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=positive, help="port (default CLAUDE_MEM_SERVER_PORT)")
    parser.add_argument(
        "--workers",
        type=positive,
        help="server processes sharing the port (default CLAUDE_MEM_SERVER_WORKERS or 1; "
        "more than 1 needs PostgreSQL and the Redis queue)",
    )
    # Set by a supervising ``serve --workers N`` on the processes it starts: its pid.
    parser.add_argument("--supervisor", type=positive, help=argparse.SUPPRESS)
    parser.set_defaults(handler=serve)


__all__ = ["register", "serve", "settings_from_args"]
