"""Generation throughput and latency, on demand (not a test).

    .venv/bin/python bench/worker.py                 # both setups, 2000 jobs
    .venv/bin/python bench/worker.py --jobs 5000 --concurrency 16 --only redis

* ``redis``: PostgreSQL + Redis + ONE real worker process (``python -m claude_mem_worker``,
  or with ``--runner taskiq`` taskiq's ``taskiq worker claude_mem_worker:broker``) whose
  provider is the Anthropic SDK against the local fake LLM server in zero-latency mode.
  Throughput: ``--jobs`` events are ingested with the worker stopped, then the worker starts
  and the time until every job is completed gives jobs/s, and the worker's CPU time over
  that span gives jobs per CPU-second (steadier than jobs/s on a shared machine). Latency:
  with the worker running, ``--latency-events`` events are ingested at ``--rate``/s;
  event-to-observation latency is the job's completed_at minus the event's received time
  (p50/p95).
* ``sqlite``: SQLite file + the in-process queue + a scripted (zero-latency) provider, all in
  this process (the embedded default): ingest, then ``Memory.drain()``.

Needs PostgreSQL and Redis as in tests (``CLAUDE_MEM_TEST_POSTGRES_URL``,
``CLAUDE_MEM_TEST_REDIS_URL`` or the local defaults).
"""

from __future__ import annotations

import sys
from pathlib import Path

# ``python bench/worker.py`` puts bench/ first on sys.path, where bench/http.py would shadow
# the standard library's ``http`` (which aiohttp and taskiq import).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import asyncio
import itertools
import os
import secrets
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from claude_mem_core import EventInput, Memory, Scope
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.adapters.sqlalchemy import SqlAlchemyStorage
from claude_mem_core.adapters.taskiq_queue import TaskiqQueue
from claude_mem_core.domain.models import JobStatus
from claude_mem_core.ports.storage import JobFilter, Page
from claude_mem_core.services.context import PipelineOptions
from claude_mem_core.testing.databases import (
    create_postgres_database,
    drop_postgres_database,
    migrated_sqlite_url,
    postgres_base_url,
)
from claude_mem_core.testing.fake_llm import FakeLLMServer
from claude_mem_core.testing.fakes import ScriptedProvider

OBSERVATION = (
    "<observation><type>change</type><title>Edited a file</title>"
    "<narrative>The bench edited a file.</narrative></observation>"
)
_REPLIES = itertools.count()


def _distinct_reply(body: Mapping[str, Any]) -> str:
    """A different fact per call, as a model's answers about different events are: the same
    text for every job would measure dedup folding them all into one row instead."""
    return OBSERVATION.replace("a file", f"file {next(_REPLIES)}")


REDIS_URL = os.environ.get("CLAUDE_MEM_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"


def _items(scope: Scope, n: int, tag: str) -> list[EventInput]:
    from datetime import UTC, datetime

    return [
        EventInput(
            project_id=scope.project_id,
            source_adapter="api",
            event_type="tool_use",
            occurred_at=datetime.now(UTC),
            source_event_id=f"{tag}-{i}",
            payload={"tool_name": "Edit", "tool_input": {"file_path": f"src/f{i}.py"}},
        )
        for i in range(n)
    ]


async def _counts(mem: Memory, scope: Scope) -> dict[JobStatus, int]:
    async with mem.storage.unit_of_work() as uow:
        return await uow.jobs.count_by_status(scope.team_id)


async def _latencies(mem: Memory, scope: Scope, limit: int) -> list[float]:
    async with mem.storage.unit_of_work() as uow:
        rows, _ = await uow.jobs.list(
            JobFilter(team_id=scope.team_id, status=JobStatus.COMPLETED), Page(limit=limit)
        )
    return [(j.completed_at - j.created_at).total_seconds() for j in rows if j.completed_at]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live children so far (Linux ``/proc``):
    a measure that does not depend on what else the shared machine is running."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def analyze(url: str) -> None:
    import psycopg

    from claude_mem_core.testing import databases

    async with await psycopg.AsyncConnection.connect(
        databases._libpq(url), autocommit=True
    ) as conn:
        await conn.execute("ANALYZE")


async def bench_redis(
    jobs: int,
    concurrency: int,
    latency_events: int,
    rate: float,
    provider: str = "sdk",
    runner: str = "claude-mem",
) -> None:
    url = await create_postgres_database(postgres_base_url())
    prefix = f"cmbench_{secrets.token_hex(3)}"
    queue = TaskiqQueue.from_url(REDIS_URL, prefix=prefix)
    mem = Memory(
        storage=SqlAlchemyStorage.from_url(url),
        queue=queue,
        provider=OfflineProvider(),
        options=PipelineOptions(),
    )
    proc: subprocess.Popen[bytes] | None = None
    log = Path(tempfile.mkdtemp(prefix="cmbench_")) / "worker.log"
    try:
        async with FakeLLMServer(default_text=_distinct_reply, record=False) as fake:
            team, project = await mem.ensure_project("bench", "redis")
            scope = Scope(team_id=team.id, project_id=project.id)
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_MEM_")},
                "CLAUDE_MEM_DATA_DIR": str(log.parent),
                "CLAUDE_MEM_SERVER_DATABASE_URL": url,
                "CLAUDE_MEM_QUEUE_ENGINE": "redis",
                "CLAUDE_MEM_REDIS_URL": REDIS_URL,
                "CLAUDE_MEM_QUEUE_REDIS_PREFIX": prefix,
                **(
                    {"CLAUDE_MEM_SERVER_PROVIDER": "offline"}
                    if provider == "offline"
                    else {
                        "CLAUDE_MEM_SERVER_PROVIDER": "anthropic:claude-bench",
                        "ANTHROPIC_API_KEY": "bench",
                        "ANTHROPIC_BASE_URL": fake.anthropic_base_url,
                    }
                ),
                "CLAUDE_MEM_WORKER_STATS_INTERVAL_SECONDS": "5",
            }

            command = [sys.executable, "-m", "claude_mem_worker", "--concurrency", str(concurrency)]
            if runner == "taskiq":
                env["CLAUDE_MEM_WORKER_CONCURRENCY"] = str(concurrency)
                command = [sys.executable, "-m", "taskiq", "worker", "claude_mem_worker:broker"]
                command += ["--workers", "1"]

            def start_worker() -> subprocess.Popen[bytes]:
                with log.open("wb") as out:
                    return subprocess.Popen(
                        command,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )

            async def started(proc: subprocess.Popen[bytes]) -> None:
                while " starting: " not in log.read_text(errors="replace"):
                    if proc.poll() is not None:
                        raise SystemExit(f"worker exited:\n{log.read_text()}")
                    await asyncio.sleep(0.05)

            # Warm-up: a few hundred jobs through a worker, then ANALYZE, as autovacuum does
            # within a minute on a real database (see bench/http.py analyze: without
            # statistics every foreign-key check scans its whole project).
            warm = min(300, jobs)
            await mem.ingest_batch(scope, _items(scope, warm, "warm"))
            proc = start_worker()
            await started(proc)
            while (await _counts(mem, scope)).get(JobStatus.COMPLETED, 0) < warm:
                if proc.poll() is not None:
                    raise SystemExit(f"worker exited:\n{log.read_text()}")
                await asyncio.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
            await analyze(url)
            for start in range(0, jobs, 500):
                await mem.ingest_batch(scope, _items(scope, min(500, jobs - start), f"t{start}"))
            proc = start_worker()
            await started(proc)
            began = time.monotonic()
            cpu_began = _cpu_seconds(proc.pid)
            while (await _counts(mem, scope)).get(JobStatus.COMPLETED, 0) < warm + jobs:
                if proc.poll() is not None:
                    raise SystemExit(f"worker exited:\n{log.read_text()}")
                await asyncio.sleep(0.1)
            took = time.monotonic() - began
            cpu = _cpu_seconds(proc.pid) - cpu_began
            print(
                f"postgres+redis, 1 worker process ({runner}), {provider} provider, "
                f"concurrency {concurrency}: "
                f"{jobs} jobs in {took:.2f}s = {jobs / took:.0f} jobs/s; worker CPU "
                f"{cpu:.2f}s = {jobs / cpu if cpu else float('nan'):.0f} jobs per CPU-second"
            )
            # Latency under a steady rate, worker already running.
            for i in range(latency_events):
                await mem.ingest_batch(scope, _items(scope, 1, f"lat{i}"))
                await asyncio.sleep(1 / rate)
            total = warm + jobs + latency_events
            deadline = time.monotonic() + 60
            while (await _counts(mem, scope)).get(JobStatus.COMPLETED, 0) < total:
                if time.monotonic() > deadline:
                    raise SystemExit("latency phase did not finish")
                await asyncio.sleep(0.05)
            lat = (await _latencies(mem, scope, latency_events))[:latency_events]
            print(
                f"  event-to-observation latency at {rate:.0f} events/s: "
                f"p50 {_p(lat, 50) * 1000:.0f} ms, p95 {_p(lat, 95) * 1000:.0f} ms"
            )
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        await queue.delete_all_keys()
        await mem.close()
        await drop_postgres_database(url)


async def bench_sqlite(jobs: int, latency_events: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="cmbench_sqlite_"))
    url = await migrated_sqlite_url(directory)
    mem = Memory(
        storage=SqlAlchemyStorage.from_url(url),
        queue=InProcessQueue(),
        provider=ScriptedProvider(default=OBSERVATION),
        options=PipelineOptions(),
    )
    try:
        team, project = await mem.ensure_project("bench", "sqlite")
        scope = Scope(team_id=team.id, project_id=project.id)
        for start in range(0, jobs, 500):
            await mem.ingest_batch(scope, _items(scope, min(500, jobs - start), f"t{start}"))
        began = time.monotonic()
        done = await mem.drain()
        took = time.monotonic() - began
        print(
            f"sqlite+in-process queue (drain in this process): {done} jobs in {took:.2f}s "
            f"= {done / took:.0f} jobs/s"
        )
        lat: list[float] = []
        for i in range(latency_events):
            start_t = time.monotonic()
            await mem.ingest_batch(scope, _items(scope, 1, f"lat{i}"))
            await mem.drain()
            lat.append(time.monotonic() - start_t)
        print(
            f"  event-to-observation latency (ingest + drain): p50 {_p(lat, 50) * 1000:.1f} ms, "
            f"p95 {_p(lat, 95) * 1000:.1f} ms"
        )
    finally:
        await mem.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--only", choices=["redis", "sqlite"])
    parser.add_argument(
        "--provider",
        choices=["sdk", "offline"],
        default="sdk",
        help="sdk: the Anthropic SDK against the local zero-latency fake server (default); "
        "offline: the in-process offline provider (the worker's own ceiling)",
    )
    parser.add_argument(
        "--runner",
        choices=["claude-mem", "taskiq"],
        default="claude-mem",
        help="claude-mem: `python -m claude_mem_worker` (default); taskiq: taskiq's own "
        "`taskiq worker claude_mem_worker:broker --workers 1` (CPU counts its worker process)",
    )
    args = parser.parse_args(argv)
    if args.only in (None, "redis"):
        asyncio.run(
            bench_redis(
                args.jobs,
                args.concurrency,
                args.latency_events,
                args.rate,
                args.provider,
                args.runner,
            )
        )
    if args.only in (None, "sqlite"):
        asyncio.run(bench_sqlite(args.jobs, args.latency_events))


if __name__ == "__main__":
    main()
