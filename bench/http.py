"""HTTP benchmark: ``claude-mem serve`` on PostgreSQL + Redis, measured against a psycopg floor.

    python bench/http.py [--events 5000] [--batch-events N] [--memories 20000] [--queries 400]
                         [--concurrency 16] [--batch-size 100] [--batch-concurrency 4]
                         [--search-concurrency 8] [--postgres URL] [--redis URL]

What it does, in one run:

1. creates a fresh migrated database (``claude_mem_core.testing.databases``) on the server of
   ``--postgres`` (default ``CLAUDE_MEM_TEST_POSTGRES_URL`` or the local server) and starts
   ``claude-mem serve`` as a subprocess on it, with the Redis queue under a unique key prefix
   and generation disabled (as in the Docker stack: workers generate, the server ingests);
2. creates a team, a project and a project key with the CLI (``--json``);
3. ``POST /v1/events`` at ``--concurrency`` (one event per request), then
   ``POST /v1/events/batch`` with batches of ``--batch-size``;
4. the floor: the same rows one event makes (agent event, generation job, its job events),
   copied from a row the server wrote and inserted straight through psycopg, one transaction
   per event, at the same concurrency; the ingest/floor ratio is reported;
5. seeds ``--memories`` observations directly through the core storage (in batches, not over
   HTTP) and runs ``POST /v1/search`` at ``--search-concurrency``.

Reports events/s and p50/p95/p99 latency per measurement, the server's CPU time per
ingested event (psutil if installed, else ``/proc/<pid>/stat``) and its peak RSS
(``VmHWM``), one JSON line each, then a table with the targets of the HTTP issue. The load
generator, the server, PostgreSQL and Redis share the machine, as they do on CI.

On demand only, never part of the tests. The database and the Redis keys are removed at
the end.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's directory comes first on sys.path, and this file is named
# like the standard library's ``http`` package that aiohttp imports: drop the directory.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import shutil
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from claude_mem_core.adapters import storage_from_url
from claude_mem_core.domain.models import Observation, ObservationKind
from claude_mem_core.domain.passages import observation_passage
from claude_mem_core.testing import databases

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
WORDS = (
    "login redirect cache token session worker parser schema migration deploy queue retry "
    "lease tenant project search index middleware callback timeout backoff provider summary "
    "hook payload audit request response database transaction commit rollback"
).split()
QUESTIONS = [
    "which file did we change to fix the login redirect?",
    "why does the worker retry with backoff?",
    "how is the tenant filter applied to search?",
    "what broke the migration rollback?",
    "where is the callback timeout configured?",
]
# Targets from the HTTP issue (2-core machine, everything on it).
TARGETS = {
    "ingest_vs_floor": 0.7,
    "ingest_p95_ms": 25.0,
    "batch_events_per_s": 1700.0,
    "search_p95_ms": 20.0,
    "cpu_ms_per_event": 0.7,
    "peak_rss_mib": 150.0,
    # Issue #13: no body up to the size limit holds the event loop noticeably.
    "loop_stall_ms": 100.0,
}
PASSTHROUGH_DROPPED = ("CLAUDE_MEM_",)
PROVIDER_KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "GEMINI_API_KEY")


# -- measurements ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_stats(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process."""
    try:
        import psutil  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text.rsplit(")", 1)[1].split()  # after "(comm)": field 3 is fields[0]
        ticks = int(fields[11]) + int(fields[12])  # utime (14), stime (15)
        return ticks / os.sysconf("SC_CLK_TCK")
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def emit(rows: list[dict[str, Any]], **row: Any) -> None:
    rows.append(row)
    print(json.dumps(row), flush=True)


async def run_concurrently(
    count: int, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> tuple[float, list[float]]:
    """Run ``one(i)`` for i in range(count) on ``concurrency`` tasks; (elapsed s, latencies)."""
    latencies: list[float] = []
    counter = iter(range(count))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


# -- the server and the CLI -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(
    database_url: str, redis_url: str, prefix: str, data_dir: Path, port: int
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(PASSTHROUGH_DROPPED) and k not in PROVIDER_KEYS
    }
    env.update(
        CLAUDE_MEM_SERVER_DATABASE_URL=database_url,
        CLAUDE_MEM_QUEUE_ENGINE="redis",
        CLAUDE_MEM_REDIS_URL=redis_url,
        CLAUDE_MEM_QUEUE_REDIS_PREFIX=prefix,
        CLAUDE_MEM_GENERATION_DISABLED="true",
        CLAUDE_MEM_DATA_DIR=str(data_dir),
        CLAUDE_MEM_SERVER_HOST="127.0.0.1",
        CLAUDE_MEM_SERVER_PORT=str(port),
        CLAUDE_MEM_DOCKER="0",
    )
    return env


async def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "claude_mem_core.cli",
        "--json",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"claude-mem {' '.join(args)} failed: {err.decode().strip()}")
    result: dict[str, Any] = json.loads(out)
    return result


async def start_server(
    env: dict[str, str], port: int, log: Path, profile: str | None
) -> asyncio.subprocess.Process:
    command = [sys.executable, "-m", "claude_mem_core.cli", "serve"]
    if profile:
        command[1:1] = ["-m", "cProfile", "-o", profile]
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                output = await asyncio.to_thread(log.read_text)
                raise RuntimeError(f"claude-mem serve exited ({proc.returncode}):\n{output}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return proc
            await asyncio.sleep(0.1)
    proc.kill()
    output = await asyncio.to_thread(log.read_text)
    raise RuntimeError(f"claude-mem serve did not answer /healthz in 30 s:\n{output}")


async def stop_server(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# -- workloads -------------------------------------------------------------------------------


def event_body(project_id: str, run: str, n: int) -> dict[str, Any]:
    return {
        "projectId": project_id,
        "sourceType": "hook",
        "eventType": "tool_use",
        "occurredAtEpoch": int(time.time() * 1000),
        "payload": {
            "tool_name": "Edit",
            "tool_input": {
                "file_path": f"src/module_{n % 97}.py",
                "old_string": "a",
                "new_string": "b",
            },
            "run": run,
            "n": n,
        },
    }


async def post_json(
    session: aiohttp.ClientSession, url: str, body: Any, expected: int
) -> dict[str, Any]:
    async with session.post(url, json=body) as response:
        data = await response.read()
        if response.status != expected:
            raise RuntimeError(f"POST {url}: {response.status} {data[:300]!r}")
        result: dict[str, Any] = json.loads(data)
        return result


async def bench_ingest(
    session: aiohttp.ClientSession, base: str, project_id: str, args: argparse.Namespace, pid: int
) -> tuple[dict[str, Any], str]:
    run = secrets.token_hex(4)
    last: dict[str, Any] = {}

    async def one(n: int) -> None:
        nonlocal last
        last = await post_json(session, f"{base}/v1/events", event_body(project_id, run, n), 201)

    await run_concurrently(min(100, args.events), args.concurrency, one)  # warm-up
    run = secrets.token_hex(4)
    cpu_before = cpu_seconds(pid)
    elapsed, latencies = await run_concurrently(args.events, args.concurrency, one)
    cpu = cpu_seconds(pid) - cpu_before
    result = {
        "events": args.events,
        "concurrency": args.concurrency,
        "events_per_s": round(args.events / elapsed, 1),
        **latency_stats(latencies),
        "server_cpu_ms_per_event": round(cpu * 1000 / args.events, 3),
    }
    return result, str(last["event"]["id"])


async def bench_batch(
    session: aiohttp.ClientSession, base: str, project_id: str, args: argparse.Namespace, pid: int
) -> dict[str, Any]:
    run = secrets.token_hex(4)
    size = args.batch_size
    batches = max(1, args.batch_events // size)

    async def one(b: int) -> None:
        body = [event_body(project_id, run, b * size + i) for i in range(size)]
        result = await post_json(session, f"{base}/v1/events/batch", body, 201)
        if len(result["events"]) != size:
            raise RuntimeError(f"batch {b}: {len(result['events'])} events back, sent {size}")

    await run_concurrently(min(2, batches), args.batch_concurrency, one)  # warm-up
    run = secrets.token_hex(4)
    cpu_before = cpu_seconds(pid)
    elapsed, latencies = await run_concurrently(batches, args.batch_concurrency, one)
    cpu = cpu_seconds(pid) - cpu_before
    events = batches * size
    return {
        "events": events,
        "batch_size": size,
        "concurrency": args.batch_concurrency,
        "events_per_s": round(events / elapsed, 1),
        **latency_stats(latencies),  # per batch
        "server_cpu_ms_per_event": round(cpu * 1000 / events, 3),
    }


async def bench_floor(
    database_url: str, template_event_id: str, args: argparse.Namespace
) -> dict[str, Any]:
    """The rows one ingested event costs, written straight through psycopg."""
    import psycopg
    from psycopg.rows import dict_row
    from psycopg.types.json import Jsonb

    dsn = databases._libpq(database_url)
    async with await psycopg.AsyncConnection.connect(dsn, row_factory=dict_row) as reader:
        event = await (
            await reader.execute("SELECT * FROM agent_events WHERE id = %s", (template_event_id,))
        ).fetchone()
        jobs = await (
            await reader.execute(
                "SELECT * FROM observation_generation_jobs WHERE agent_event_id = %s",
                (template_event_id,),
            )
        ).fetchall()
        job_events = []
        for job in jobs:
            job_events += await (
                await reader.execute(
                    "SELECT * FROM observation_generation_job_events "
                    "WHERE generation_job_id = %s ORDER BY seq",
                    (job["id"],),
                )
            ).fetchall()
        await reader.rollback()
    if event is None or not jobs:
        raise RuntimeError(f"template event {template_event_id} or its job not found")

    def insert_sql(table: str, row: dict[str, Any]) -> str:
        columns = ", ".join(row)
        params = ", ".join(["%s"] * len(row))
        return f"INSERT INTO {table} ({columns}) VALUES ({params})"

    def values(row: dict[str, Any], **changes: Any) -> list[Any]:
        merged = {**row, **changes}
        return [Jsonb(v) if isinstance(v, dict | list) else v for v in merged.values()]

    event_sql = insert_sql("agent_events", event)
    job_sql = insert_sql("observation_generation_jobs", jobs[0])
    job_event_sql = (
        insert_sql("observation_generation_job_events", job_events[0]) if job_events else ""
    )

    async def write(conn: Any, n: int) -> None:
        tag = uuid.uuid4().hex
        event_id = f"evt_floor_{tag}"
        async with conn.transaction():
            await conn.execute(
                event_sql,
                values(event, id=event_id, idempotency_key=f"floor:{tag}", source_event_id=None),
            )
            for job in jobs:
                job_id = f"job_floor_{tag}"
                await conn.execute(
                    job_sql,
                    values(
                        job,
                        id=job_id,
                        agent_event_id=event_id,
                        source_id=event_id,
                        idempotency_key=f"floor-job:{tag}",
                        transport_id=f"evt_floor_{tag}",
                    ),
                )
                for job_event in job_events:
                    await conn.execute(
                        job_event_sql,
                        values(job_event, id=f"je_{uuid.uuid4().hex}", generation_job_id=job_id),
                    )

    connections = [await psycopg.AsyncConnection.connect(dsn) for _ in range(args.concurrency)]
    try:
        free: asyncio.Queue[Any] = asyncio.Queue()
        for connection in connections:
            free.put_nowait(connection)

        async def one(n: int) -> None:
            conn = await free.get()
            try:
                await write(conn, n)
            finally:
                free.put_nowait(conn)

        await run_concurrently(min(100, args.events), args.concurrency, one)  # warm-up
        elapsed, latencies = await run_concurrently(args.events, args.concurrency, one)
    finally:
        for connection in connections:
            await connection.close()
    return {
        "events": args.events,
        "concurrency": args.concurrency,
        "rows_per_event": 1 + len(jobs) + len(jobs) * len(job_events),
        "events_per_s": round(args.events / elapsed, 1),
        **latency_stats(latencies),
    }


async def analyze(database_url: str) -> None:
    """``ANALYZE`` the bench database once it holds some rows, as autovacuum does within a
    minute on a real one. Without statistics PostgreSQL plans the composite foreign-key
    checks of a new connection on a (team, project) index and filters by id, so every
    insert scans its whole project and every figure (floor included) sinks as rows pile up;
    with them the unique (id, project, team) index is used."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(
        databases._libpq(database_url), autocommit=True
    ) as conn:
        await conn.execute("ANALYZE")


async def seed_memories(database_url: str, team_id: str, project_id: str, count: int) -> float:
    rng = random.Random(7)
    storage = storage_from_url(database_url)
    started = time.perf_counter()
    now = datetime.now(UTC)
    try:
        done = 0
        while done < count:
            batch = min(1000, count - done)
            async with storage.unit_of_work() as uow:
                for n in range(done, done + batch):
                    words = rng.sample(WORDS, 8)
                    stored, _ = await uow.observations.add(
                        Observation(
                            id=f"obs_bench_{project_id}_{n}",
                            team_id=team_id,
                            project_id=project_id,
                            kind=ObservationKind.OBSERVATION,
                            type="discovery",
                            title=" ".join(words[:4]),
                            content=f"{' '.join(words)} in src/{words[0]}/{words[1]}.py",
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    await uow.search.add([observation_passage(stored)])
            done += batch
            print(f"  seeded {done}/{count} memories", file=sys.stderr, end="\r", flush=True)
        print(file=sys.stderr)
    finally:
        await storage.close()
    return time.perf_counter() - started


async def bench_search(
    session: aiohttp.ClientSession, base: str, project_id: str, args: argparse.Namespace, pid: int
) -> dict[str, Any]:
    hits: list[int] = []

    async def one(n: int) -> None:
        body = {"projectId": project_id, "query": QUESTIONS[n % len(QUESTIONS)], "limit": 20}
        result = await post_json(session, f"{base}/v1/search", body, 200)
        hits.append(len(result["observations"]))

    await run_concurrently(2 * args.search_concurrency, args.search_concurrency, one)  # warm-up
    hits.clear()
    cpu_before = cpu_seconds(pid)
    elapsed, latencies = await run_concurrently(args.queries, args.search_concurrency, one)
    cpu = cpu_seconds(pid) - cpu_before
    return {
        "memories": args.memories,
        "queries": args.queries,
        "concurrency": args.search_concurrency,
        "queries_per_s": round(args.queries / elapsed, 1),
        **latency_stats(latencies),
        "mean_hits": round(sum(hits) / len(hits), 1),
        "server_cpu_ms_per_query": round(cpu * 1000 / args.queries, 3),
    }


async def bench_loop(
    session: aiohttp.ClientSession, base: str, project_id: str, args: argparse.Namespace
) -> dict[str, Any]:
    """/healthz latency while costly bodies near the 5 MB limit are ingested (many short
    strings with private blocks and keys: stripping and redaction work linear in size),
    sent as single events and then as one-event batches."""
    from claude_mem_http.wire.schemas import MAX_BODY_BYTES

    notes = ["<private>x</private>", "AKIAIOSFODNN7EXAMPLE"] * ((MAX_BODY_BYTES - 4096) // 48)
    result: dict[str, Any] = {"bodies": args.loop_bodies}
    for name, path in (("single", "/v1/events"), ("batch", "/v1/events/batch")):
        events = [
            event_body(project_id, f"loop-{secrets.token_hex(3)}", n)
            | {"payload": {"notes": notes}}
            for n in range(args.loop_bodies)
        ]
        # Encoded here, and the answers not decoded: megabytes of JSON on this loop would
        # delay the probe below and be counted as the server's stall.
        bodies = [json.dumps([e] if name == "batch" else e).encode() for e in events]
        probes, elapsed = await _probe_healthz_while(
            session, base, f"{path}?generate=false", bodies
        )
        result["body_mb"] = round(len(bodies[0]) / 1e6, 2)
        result[f"{name}_seconds"] = round(elapsed, 2)
        result[f"{name}_probes"] = len(probes)
        result[f"{name}_healthz_p50_ms"] = round(percentile(probes, 0.50), 2)
        result[f"{name}_healthz_max_ms"] = round(max(probes), 2)
    result["healthz_max_ms"] = max(result["single_healthz_max_ms"], result["batch_healthz_max_ms"])
    return result


async def _probe_healthz_while(
    session: aiohttp.ClientSession, base: str, path: str, bodies: list[bytes]
) -> tuple[list[float], float]:
    """/healthz round trips (ms) while ``bodies`` are posted at once; and how long that took."""
    probes: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            started = time.perf_counter()
            async with session.get(f"{base}/healthz") as response:
                await response.read()
            probes.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.01)

    async def post(body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        async with session.post(f"{base}{path}", data=body, headers=headers) as response:
            answer = await response.read()
            if response.status != 201:
                raise RuntimeError(f"POST {path}: {response.status} {answer[:300]!r}")

    prober = asyncio.create_task(probe())
    started = time.perf_counter()
    await asyncio.gather(*(post(body) for body in bodies))
    elapsed = time.perf_counter() - started
    done.set()
    await prober
    return probes, elapsed


# -- orchestration ---------------------------------------------------------------------------


async def remove_redis_keys(redis_url: str, prefix: str) -> int:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    removed = 0
    try:
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            removed += int(await client.delete(key))
    finally:
        await client.aclose()
    return removed


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    base_url = args.postgres or databases.postgres_base_url()
    print(f"creating a database on {base_url.rsplit('@', 1)[-1]}", file=sys.stderr)
    database_url = await databases.create_postgres_database(base_url)
    workdir = Path(tempfile.mkdtemp(prefix="cm-bench-http-"))
    prefix = f"cm_bench_{secrets.token_hex(4)}"
    port = free_port()
    env = server_env(database_url, args.redis, prefix, workdir, port)
    server: asyncio.subprocess.Process | None = None
    try:
        team = await cli(env, "teams", "create", "bench")
        project = await cli(env, "projects", "create", "--team", team["id"], "main")
        key = await cli(
            env,
            "api-key",
            "create",
            "--team",
            team["id"],
            "--project",
            project["id"],
            "--scopes",
            "memories:read,memories:write",
            "--name",
            "bench",
        )
        server = await start_server(env, port, workdir / "server.log", args.profile_server)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key['key']}"}
        connector = aiohttp.TCPConnector(limit=max(args.concurrency, args.search_concurrency))
        async with aiohttp.ClientSession(
            base_url=None, headers=headers, connector=connector
        ) as session:
            print(
                f"POST /v1/events x{args.events} at concurrency {args.concurrency}", file=sys.stderr
            )
            warm = argparse.Namespace(events=300, concurrency=args.concurrency)
            await bench_ingest(session, base, project["id"], warm, server.pid)
            await analyze(database_url)  # rows for the statistics
            ingest, template_event = await bench_ingest(
                session, base, project["id"], args, server.pid
            )
            emit(rows, bench="http_ingest", **ingest)

            print(
                f"POST /v1/events/batch x{args.batch_events // args.batch_size} batches",
                file=sys.stderr,
            )
            emit(
                rows,
                bench="http_batch",
                **await bench_batch(session, base, project["id"], args, server.pid),
            )

            print("psycopg floor: the same rows, one transaction per event", file=sys.stderr)
            floor = await bench_floor(database_url, template_event, args)
            emit(rows, bench="psycopg_floor", **floor)
            emit(
                rows,
                bench="ingest_vs_floor",
                ratio=round(ingest["events_per_s"] / floor["events_per_s"], 3),
            )

            print(f"seeding {args.memories} memories through the core storage", file=sys.stderr)
            seconds = await seed_memories(database_url, team["id"], project["id"], args.memories)
            await analyze(database_url)
            emit(rows, bench="seed_memories", memories=args.memories, seconds=round(seconds, 2))
            print(
                f"POST /v1/search x{args.queries} at concurrency {args.search_concurrency}",
                file=sys.stderr,
            )
            emit(
                rows,
                bench="http_search",
                **await bench_search(session, base, project["id"], args, server.pid),
            )

            # Peak memory of the loads above; the bodies below are 5 MB each by design.
            emit(rows, bench="server", peak_rss_mib=round(peak_rss_mib(server.pid), 1))
            print(
                f"/healthz while {args.loop_bodies} bodies near the size limit are ingested",
                file=sys.stderr,
            )
            emit(rows, bench="http_loop", **await bench_loop(session, base, project["id"], args))
    finally:
        if server is not None:
            await stop_server(server)
        await databases.drop_postgres_database(database_url)
        with contextlib.suppress(Exception):
            await remove_redis_keys(args.redis, prefix)
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def table(rows: list[dict[str, Any]]) -> None:
    by = {r["bench"]: r for r in rows}

    def line(name: str, rate: Any, r: dict[str, Any], extra: str = "") -> None:
        print(
            f"{name:<26} {rate!s:>10} {r.get('p50_ms', '-')!s:>8} {r.get('p95_ms', '-')!s:>8} "
            f"{r.get('p99_ms', '-')!s:>8}  {extra}"
        )

    print(f"\n{'measurement':<26} {'rate/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  notes")
    ingest, batch, floor = by["http_ingest"], by["http_batch"], by["psycopg_floor"]
    line(
        f"POST /v1/events c={ingest['concurrency']}",
        ingest["events_per_s"],
        ingest,
        f"{ingest['events']} events, server CPU {ingest['server_cpu_ms_per_event']} ms/event",
    )
    line(
        f"POST /v1/events/batch x{batch['batch_size']}",
        batch["events_per_s"],
        batch,
        f"{batch['events']} events, c={batch['concurrency']}, latency per batch, "
        f"CPU {batch['server_cpu_ms_per_event']} ms/event",
    )
    line(
        f"psycopg floor c={floor['concurrency']}",
        floor["events_per_s"],
        floor,
        f"{floor['rows_per_event']} rows/event",
    )
    search = by["http_search"]
    line(
        f"POST /v1/search c={search['concurrency']}",
        search["queries_per_s"],
        search,
        f"{search['memories']} memories, {search['mean_hits']} hits/query, "
        f"CPU {search['server_cpu_ms_per_query']} ms/query",
    )
    loop = by["http_loop"]
    for name, route in (("single", "events"), ("batch", "batches")):
        line(
            f"GET /healthz under 5 MB {route}",
            "-",
            {"p50_ms": loop[f"{name}_healthz_p50_ms"]},
            f"max {loop[f'{name}_healthz_max_ms']} ms over {loop[f'{name}_probes']} probes "
            f"while {loop['bodies']} bodies of {loop['body_mb']} MB took "
            f"{loop[f'{name}_seconds']} s",
        )
    ratio = by["ingest_vs_floor"]["ratio"]
    rss = by["server"]["peak_rss_mib"]
    checks = [
        ("ingest / floor", ratio, TARGETS["ingest_vs_floor"], ratio >= TARGETS["ingest_vs_floor"]),
        (
            "ingest p95 ms",
            ingest["p95_ms"],
            TARGETS["ingest_p95_ms"],
            ingest["p95_ms"] <= TARGETS["ingest_p95_ms"],
        ),
        (
            "batch events/s",
            batch["events_per_s"],
            TARGETS["batch_events_per_s"],
            batch["events_per_s"] >= TARGETS["batch_events_per_s"],
        ),
        (
            "search p95 ms",
            search["p95_ms"],
            TARGETS["search_p95_ms"],
            search["p95_ms"] <= TARGETS["search_p95_ms"],
        ),
        (
            "server CPU ms/event",
            ingest["server_cpu_ms_per_event"],
            TARGETS["cpu_ms_per_event"],
            ingest["server_cpu_ms_per_event"] <= TARGETS["cpu_ms_per_event"],
        ),
        ("peak server RSS MiB", rss, TARGETS["peak_rss_mib"], rss <= TARGETS["peak_rss_mib"]),
        (
            "event loop stall ms",
            loop["healthz_max_ms"],
            TARGETS["loop_stall_ms"],
            loop["healthz_max_ms"] <= TARGETS["loop_stall_ms"],
        ),
    ]
    print(f"\n{'target':<22} {'measured':>10} {'target':>8}  ok")
    for name, measured, target, ok in checks:
        sign = ">=" if name in ("ingest / floor", "batch events/s") else "<="
        print(f"{name:<22} {measured!s:>10} {sign}{target!s:>6}  {'yes' if ok else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000, help="events for POST /v1/events")
    parser.add_argument(
        "--batch-events", type=int, help="events sent in batches (default --events)"
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--batch-concurrency", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--memories", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--search-concurrency", type=int, default=8)
    parser.add_argument(
        "--loop-bodies", type=int, default=4, help="bodies near the size limit, sent at once"
    )
    parser.add_argument("--postgres", help="server to create the bench database on")
    parser.add_argument(
        "--profile-server", metavar="FILE", help="run the server under cProfile, stats to FILE"
    )
    parser.add_argument(
        "--redis", default=os.environ.get("CLAUDE_MEM_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    )
    args = parser.parse_args()
    args.batch_events = args.batch_events or args.events
    if args.profile_server:
        args.profile_server = os.path.abspath(args.profile_server)
    if min(args.events, args.batch_size, args.concurrency, args.queries, args.memories) < 1:
        parser.error("counts must be at least 1")
    rows = asyncio.run(run(args))
    table(rows)


if __name__ == "__main__":
    main()
