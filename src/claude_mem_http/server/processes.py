"""Several server processes on one port: ``claude-mem serve --workers N``.

One Python process answers on one core. With ``N`` workers the command supervises ``N``
copies of itself, each binding the same address with ``SO_REUSEPORT`` (the kernel spreads
new connections over them); a worker that dies is started again, SIGTERM or SIGINT stops
them all. Every process keeps its own search snapshots and pools: they stay correct across
processes because a snapshot checks the database's change stamp before it answers.

Only for a shared database and queue (PostgreSQL and Redis): the embedded default keeps a
SQLite file and the in-process queue, which live in one process. Counters are shared the
way prometheus-client shares them (``PROMETHEUS_MULTIPROC_DIR``; a temporary directory is
made when none is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

from claude_mem_core.config import Settings

# A worker that exits with an error this soon after it started is not restarted: the next
# one would fail the same way (the port is taken, the database unmigrated), and the
# supervisor stops. One killed by a signal is restarted whenever it dies.
STARTUP_SECONDS = 5.0
# Between a worker's death and its replacement: a crash loop costs one start a second.
RESTART_DELAY_SECONDS = 1.0
# How long stopping waits for the workers to finish their requests before killing them.
STOP_TIMEOUT_SECONDS = 30.0
# How often a worker checks that its supervisor is still there.
PARENT_CHECK_SECONDS = 1.0

EXIT_OK, EXIT_FAILED = 0, 1


def workers_problem(settings: Settings, workers: int) -> str | None:
    """Why ``workers`` server processes cannot share this configuration, or None."""
    if workers <= 1:
        return None
    if not settings.database_url.startswith("postgresql") or settings.queue_engine != "redis":
        return (
            f"--workers {workers} needs PostgreSQL (CLAUDE_MEM_SERVER_DATABASE_URL) and the "
            "Redis queue (CLAUDE_MEM_QUEUE_ENGINE=redis): a SQLite file and the in-process "
            "queue belong to one process. Use --workers 1, or configure both."
        )
    return None


def worker_command(settings: Settings, supervisor: int) -> list[str]:
    """How a worker process is started: this command again, as one reuse-port worker."""
    return [
        sys.executable,
        "-m",
        "claude_mem_core.cli",
        "serve",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--workers",
        "1",
        "--supervisor",
        str(supervisor),
    ]


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Within it, SIGTERM and SIGINT set ``stop`` (where the loop can take signals)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def supervise(settings: Settings, workers: int) -> int:
    """Run ``workers`` server processes until a signal asks them to stop; the exit code."""
    env = dict(os.environ)
    metrics_dir: str | None = None
    if not (env.get("PROMETHEUS_MULTIPROC_DIR") or "").strip():
        metrics_dir = tempfile.mkdtemp(prefix="claude-mem-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    stop = asyncio.Event()
    running: dict[int, tuple[asyncio.subprocess.Process, float]] = {}
    try:
        with stop_on_signals(stop):
            return await _keep_running(
                worker_command(settings, os.getpid()), env, workers, running, stop
            )
    finally:
        await _stop_all([process for process, _ in running.values()])
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


async def _keep_running(
    command: Sequence[str],
    env: dict[str, str],
    workers: int,
    running: dict[int, tuple[asyncio.subprocess.Process, float]],
    stop: asyncio.Event,
) -> int:
    """Start the workers into ``running`` and replace those that die, until ``stop``."""
    for slot in range(workers):
        running[slot] = (await _start(command, env), time.monotonic())
    print(f"claude-mem supervising {workers} server processes", flush=True)
    while not stop.is_set():
        exited = await _first_exit(running, stop)
        if exited is None:
            break
        slot, code = exited
        _, started = running.pop(slot)
        if time.monotonic() - started < STARTUP_SECONDS and code > 0:
            print(
                f"error: server process {slot + 1} of {workers} exited at start "
                f"(code {code}); stopping",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_FAILED
        print(
            f"claude-mem server process {slot + 1} of {workers} exited (code {code}); "
            "starting another",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RESTART_DELAY_SECONDS)
        if not stop.is_set():
            running[slot] = (await _start(command, env), time.monotonic())
    print("claude-mem shutting down", flush=True)
    return EXIT_OK


async def _start(command: Sequence[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*command, env=env)


async def _first_exit(
    running: dict[int, tuple[asyncio.subprocess.Process, float]], stop: asyncio.Event
) -> tuple[int, int] | None:
    """The slot and exit code of the first worker to exit; None when ``stop`` is set first."""
    waits = {asyncio.ensure_future(process.wait()): slot for slot, (process, _) in running.items()}
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({*waits, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (*waits, stopping):
            task.cancel()
    for task in done:
        if task in waits:
            return waits[task], task.result()
    return None


async def _stop_all(processes: Sequence[asyncio.subprocess.Process]) -> None:
    """SIGTERM every live worker, and SIGKILL those still there after the timeout."""
    live = [p for p in processes if p.returncode is None]
    for process in live:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    if not live:
        return
    waiting = asyncio.gather(*(p.wait() for p in live))
    try:
        await asyncio.wait_for(waiting, STOP_TIMEOUT_SECONDS)
    except TimeoutError:
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await asyncio.gather(*(p.wait() for p in live))


async def watch_supervisor(supervisor: int, stop: asyncio.Event) -> None:
    """In a worker: stop when the supervisor is gone (killed without a chance to stop us),
    so no worker is left serving on its own."""
    while not stop.is_set():
        if os.getppid() != supervisor:
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PARENT_CHECK_SECONDS)


__all__ = [
    "stop_on_signals",
    "supervise",
    "watch_supervisor",
    "worker_command",
    "workers_problem",
]
