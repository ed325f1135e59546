"""The performance harness behind ``python -m bench``: storage, HTTP and worker figures,
each next to its floor measured in the same run.

    python -m bench [--quick] [--only storage,http,worker] [--sizes 20000,100000]
                    [--neighbours 10] [--concurrency 1,16,64] [--batch-sizes 1,100,500]
                    [--workers 1,2] [--events N] [--batch-events N] [--queries N]
                    [--worker-jobs N] [--postgres URL] [--redis URL]

One PostgreSQL database (created with ``claude_mem_core.testing.databases``, dropped at the
end) holds the storage and HTTP measurements; the worker gets a database of its own.

* Ingest: events/s at each ``--concurrency`` through the core use case (``storage``) and
  through ``POST /v1/events`` of a ``claude-mem serve`` subprocess (``http``), both next to
  the floor: the same rows (event, generation job, job event, copied from a row the product
  wrote) inserted straight through psycopg, one transaction per event, at the same
  concurrency.
* Batches: ``POST /v1/events/batch`` at each ``--batch-sizes``, next to the floor writing
  the same rows one transaction per batch.
* Search: p50/p95 at each ``--sizes`` observations in one project, ``--neighbours`` other
  projects holding as many rows, through the core and over HTTP, next to the same search
  (the statements the adapter runs for each question, captured once with its caches warm)
  replayed as raw SQL through psycopg.
* Worker: jobs/s with 1 and 2 ``claude-mem worker`` processes draining a backlog, the
  provider being a local fake Anthropic server answering at once.
* Memory: peak RSS (``VmHWM``) of the server after the ingest load and of each worker.

One JSON line per measurement on stdout, then a table. On demand only, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import http as hb

TARGETS = {
    "ingest_vs_floor": 0.7,
    "search_p95_ms": {20_000: 20.0, 100_000: 30.0},
    "worker_jobs_per_s_per_process": 300.0,
}
WORDS = hb.WORDS
QUESTIONS = hb.QUESTIONS
OBSERVATION = """<observation>
  <type>bugfix</type>
  <title>Fixed the login redirect loop</title>
  <facts><fact>auth/middleware.py compared the callback URL without its query</fact></facts>
  <narrative>The login redirect looped because the callback check ignored the query.</narrative>
  <files_modified><file>auth/middleware.py</file></files_modified>
</observation>"""

Row = dict[str, Any]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(rows: list[Row], **row: Any) -> None:
    rows.append(row)
    print(json.dumps(row), flush=True)


def stats_ms(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(hb.percentile(latencies, 0.50) * 1000, 2),
        "p95_ms": round(hb.percentile(latencies, 0.95) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
    }


# -- floors ----------------------------------------------------------------------------------


class IngestFloor:
    """The rows one ingested event costs, written straight through psycopg."""

    def __init__(self, database_url: str) -> None:
        self.dsn = hb.databases._libpq(database_url)
        self.event: Row = {}
        self.jobs: list[Row] = []
        self.job_events: list[Row] = []

    async def load_template(self) -> None:
        import psycopg
        from psycopg.rows import dict_row

        async with await psycopg.AsyncConnection.connect(self.dsn, row_factory=dict_row) as conn:
            event = await (
                await conn.execute(
                    "SELECT e.* FROM agent_events e JOIN observation_generation_jobs j "
                    "ON j.agent_event_id = e.id ORDER BY e.created_at DESC LIMIT 1"
                )
            ).fetchone()
            if event is None:
                raise RuntimeError("no ingested event with a job to copy")
            self.event = dict(event)
            self.jobs = list(
                await (
                    await conn.execute(
                        "SELECT * FROM observation_generation_jobs WHERE agent_event_id = %s",
                        (event["id"],),
                    )
                ).fetchall()
            )
            self.job_events = list(
                await (
                    await conn.execute(
                        "SELECT * FROM observation_generation_job_events "
                        "WHERE generation_job_id = %s ORDER BY seq",
                        (self.jobs[0]["id"],),
                    )
                ).fetchall()
            )

    @property
    def rows_per_event(self) -> int:
        return 1 + len(self.jobs) * (1 + len(self.job_events))

    def _statements(self) -> list[tuple[str, list[Any]]]:
        from psycopg.types.json import Jsonb

        def insert(table: str, row: Row, **changes: Any) -> tuple[str, list[Any]]:
            merged = {**row, **changes}
            sql = (
                f"INSERT INTO {table} ({', '.join(merged)}) "
                f"VALUES ({', '.join(['%s'] * len(merged))})"
            )
            return sql, [Jsonb(v) if isinstance(v, dict | list) else v for v in merged.values()]

        tag = uuid.uuid4().hex
        event_id = f"evt_floor_{tag}"
        out = [
            insert(
                "agent_events",
                self.event,
                id=event_id,
                idempotency_key=f"floor:{tag}",
                source_event_id=None,
            )
        ]
        for n, job in enumerate(self.jobs):
            job_id = f"job_floor_{tag}_{n}"
            out.append(
                insert(
                    "observation_generation_jobs",
                    job,
                    id=job_id,
                    agent_event_id=event_id,
                    source_id=event_id,
                    idempotency_key=f"floor-job:{tag}:{n}",
                    transport_id=f"floor_{tag}_{n}",
                )
            )
            out += [
                insert(
                    "observation_generation_job_events",
                    je,
                    id=f"je_{uuid.uuid4().hex}",
                    generation_job_id=job_id,
                )
                for je in self.job_events
            ]
        return out

    async def run(self, events: int, concurrency: int, batch: int = 1) -> dict[str, Any]:
        """``events`` events at ``concurrency``, ``batch`` events per transaction."""
        import psycopg

        connections = [await psycopg.AsyncConnection.connect(self.dsn) for _ in range(concurrency)]
        free: asyncio.Queue[Any] = asyncio.Queue()
        for conn in connections:
            free.put_nowait(conn)

        async def one(_: int) -> None:
            conn = await free.get()
            try:
                async with conn.transaction():
                    for _event in range(batch):
                        for sql, values in self._statements():
                            await conn.execute(sql.encode(), values)
            finally:
                free.put_nowait(conn)

        try:
            transactions = max(1, events // batch)
            await hb.run_concurrently(min(20, transactions), concurrency, one)  # warm-up
            elapsed, latencies = await hb.run_concurrently(transactions, concurrency, one)
        finally:
            for conn in connections:
                await conn.close()
        done = transactions * batch
        return {
            "events": done,
            "events_per_s": round(done / elapsed, 1),
            **stats_ms(latencies),
        }


class SearchFloor:
    """The adapter's own search statements, captured once per question (statistics and
    tsqueries already cached, as in steady state), replayed through psycopg."""

    def __init__(self, database_url: str, team_id: str, project_id: str) -> None:
        self.database_url = database_url
        self.dsn = hb.databases._libpq(database_url)
        self.team_id = team_id
        self.project_id = project_id
        self.compiled: list[list[tuple[str, Any]]] = []

    async def compile(self, limit: int = 20) -> None:
        from sqlalchemy import event

        from claude_mem_core.adapters import storage_from_url
        from claude_mem_core.domain.tokens import parse_query

        storage: Any = storage_from_url(self.database_url)
        captured: list[tuple[str, Any]] = []

        def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            captured.append((statement, parameters))

        event.listen(storage.engine.sync_engine, "before_cursor_execute", capture)
        try:
            for question in QUESTIONS:
                for _ in range(2):  # the first run fills the caches
                    captured.clear()
                    async with storage.unit_of_work() as uow:
                        await uow.search.search(
                            self.team_id, self.project_id, parse_query(question), limit=limit
                        )
                self.compiled.append(list(captured))
        finally:
            await storage.close()

    async def run(self, queries: int, concurrency: int) -> dict[str, Any]:
        import psycopg

        connections = [await psycopg.AsyncConnection.connect(self.dsn) for _ in range(concurrency)]
        free: asyncio.Queue[Any] = asyncio.Queue()
        for conn in connections:
            free.put_nowait(conn)
        hits: list[int] = []

        async def one(n: int) -> None:
            statements = self.compiled[n % len(self.compiled)]
            conn = await free.get()
            try:
                rows = 0
                for sql, params in statements:
                    cursor = await conn.execute(sql.encode(), params)
                    rows = len(await cursor.fetchall())
                hits.append(rows)
                await conn.rollback()
            finally:
                free.put_nowait(conn)

        try:
            await hb.run_concurrently(2 * concurrency, concurrency, one)  # warm-up
            hits.clear()
            elapsed, latencies = await hb.run_concurrently(queries, concurrency, one)
        finally:
            for conn in connections:
                await conn.close()
        return {
            "queries_per_s": round(queries / elapsed, 1),
            **stats_ms(latencies),
            "mean_hits": round(statistics.fmean(hits), 1),
        }


async def seed_observations(
    database_url: str, team_id: str, project_ids: list[str], start: int, stop: int, seed: int
) -> float:
    """Rows ``start``..``stop`` of every project in ``project_ids`` through COPY (fast),
    and their search passages and statistics through the adapter's own statement."""
    import psycopg

    from claude_mem_core.adapters.sqlalchemy.passage_writes import (
        PG_ADD_PASSAGES,
        pg_passage_params,
    )
    from claude_mem_core.domain.models import Observation
    from claude_mem_core.domain.passages import observation_passage

    rng = random.Random(seed)
    started = time.perf_counter()
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(hb.databases._libpq(database_url)) as conn:
        for project_id in project_ids:
            observations = []
            for n in range(start, stop):
                words = rng.sample(WORDS, 8)
                observations.append(
                    Observation(
                        id=f"obs_bench_{project_id[:8]}_{n}",
                        team_id=team_id,
                        project_id=project_id,
                        type="discovery",
                        title=" ".join(words[:4]),
                        content=f"{' '.join(words)} in src/{words[0]}/{words[1]}.py",
                        created_at=now,
                        updated_at=now,
                    )
                )
            passages = [observation_passage(o) for o in observations]
            async with (
                conn.cursor() as cursor,
                cursor.copy(
                    "COPY observations (id, team_id, project_id, kind, type, title, content, "
                    "created_at, updated_at) FROM STDIN"
                ) as copy,
            ):
                for o in observations:
                    row = (o.id, team_id, project_id, "observation", o.type, o.title)
                    await copy.write_row([*row, o.content, now, now])
            # The adapter's own statement, 1000 passages at a time.
            for n in range(0, len(passages), 1000):
                params = pg_passage_params(passages[n : n + 1000])
                await conn.execute(PG_ADD_PASSAGES, params)
            await conn.commit()
        await conn.execute("ANALYZE observations")
        await conn.execute("ANALYZE search_passages")
        await conn.commit()
    return time.perf_counter() - started


# -- the three sections ----------------------------------------------------------------------


async def core_ingest(memory: Any, scope: Any, events: int, concurrency: int) -> dict[str, Any]:
    """``Memory.ingest``: the embedding application's path (group commit included)."""
    run = secrets.token_hex(4)

    async def one(n: int) -> None:
        await memory.ingest(
            scope,
            event_type="tool_use",
            source="hook",
            payload=hb.event_body(scope.project_id, run, n)["payload"],
        )

    await hb.run_concurrently(min(50, events), concurrency, one)  # warm-up
    run = secrets.token_hex(4)
    elapsed, latencies = await hb.run_concurrently(events, concurrency, one)
    return {"events": events, "events_per_s": round(events / elapsed, 1), **stats_ms(latencies)}


async def core_search(memory: Any, scope: Any, queries: int, concurrency: int) -> dict[str, Any]:
    hits: list[int] = []

    async def one(n: int) -> None:
        hits.append(len(await memory.search(scope, QUESTIONS[n % len(QUESTIONS)], limit=20)))

    await hb.run_concurrently(2 * concurrency, concurrency, one)
    hits.clear()
    elapsed, latencies = await hb.run_concurrently(queries, concurrency, one)
    return {
        "queries_per_s": round(queries / elapsed, 1),
        **stats_ms(latencies),
        "mean_hits": round(statistics.fmean(hits), 1),
    }


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


async def storage_and_http(args: argparse.Namespace, rows: list[Row]) -> None:
    import aiohttp

    from claude_mem_core import Memory, Scope
    from claude_mem_core.adapters import storage_from_url
    from claude_mem_core.testing.fakes import ScriptedProvider

    database_url = await hb.databases.create_postgres_database(args.postgres)
    workdir = Path(tempfile.mkdtemp(prefix="cm-bench-"))
    prefix = f"cm_bench_{secrets.token_hex(4)}"
    port = hb.free_port()
    env = hb.server_env(database_url, args.redis, prefix, workdir, port)
    memory = Memory(
        storage=storage_from_url(database_url),
        queue=None,
        provider=ScriptedProvider(default="<skip_summary/>"),
    )
    server = None
    try:
        team, project = await memory.ensure_project("bench", "main")
        scope = Scope(team_id=team.id, project_id=project.id)
        key = await memory.create_api_key(
            team_id=team.id, project_id=project.id, scopes=["memories:read", "memories:write"]
        )
        do_http = "http" in args.only
        do_storage = "storage" in args.only
        if do_http:
            server = await hb.start_server(env, port, workdir / "server.log", None)
        base = f"http://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(limit=max([*args.concurrency, 16]))
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {key.raw_key}"}, connector=connector
        ) as session:
            floor = IngestFloor(database_url)
            if do_storage or do_http:
                await core_ingest(memory, scope, 300, 16)  # rows for the statistics
                await hb.analyze(database_url)
            for concurrency in args.concurrency:
                if do_storage:
                    log(f"[storage] core ingest x{args.events} at c={concurrency}")
                    core = await core_ingest(memory, scope, args.events, concurrency)
                http: dict[str, Any] | None = None
                if do_http:
                    assert server is not None
                    log(f"[http] POST /v1/events x{args.events} at c={concurrency}")
                    ns = argparse.Namespace(events=args.events, concurrency=concurrency)
                    http, _ = await hb.bench_ingest(session, base, project.id, ns, server.pid)
                if not floor.event:
                    await floor.load_template()
                log(f"[floor] psycopg x{args.events} at c={concurrency}")
                raw = await floor.run(args.events, concurrency)
                emit(rows, bench="floor_ingest", concurrency=concurrency, **raw)
                if do_storage:
                    emit(
                        rows,
                        bench="storage_ingest",
                        concurrency=concurrency,
                        **core,
                        floor_events_per_s=raw["events_per_s"],
                        ratio=ratio(core["events_per_s"], raw["events_per_s"]),
                    )
                if http is not None:
                    emit(
                        rows,
                        bench="http_ingest",
                        **http,
                        floor_events_per_s=raw["events_per_s"],
                        ratio=ratio(http["events_per_s"], raw["events_per_s"]),
                    )
            if do_http:
                assert server is not None
                for size in args.batch_sizes:
                    events = max(size, args.batch_events if size > 1 else args.events)
                    ns = argparse.Namespace(
                        batch_size=size, batch_events=events, batch_concurrency=4
                    )
                    log(f"[http] POST /v1/events/batch x{events // size} of {size}")
                    batch = await hb.bench_batch(session, base, project.id, ns, server.pid)
                    raw = await floor.run(events, 4, batch=size)
                    emit(
                        rows,
                        bench="http_batch",
                        **batch,
                        floor_events_per_s=raw["events_per_s"],
                        floor_p95_ms=raw["p95_ms"],
                        ratio=ratio(batch["events_per_s"], raw["events_per_s"]),
                    )
                emit(rows, bench="server_rss", peak_rss_mib=round(hb.peak_rss_mib(server.pid), 1))

            neighbours = [
                (await memory.create_project(team.id, f"neighbour-{n}")).id
                for n in range(args.neighbours)
            ]
            search_floor = SearchFloor(database_url, team.id, project.id)
            seeded = 0
            for size in args.sizes:
                log(f"seeding {size - seeded} x {1 + len(neighbours)} projects (COPY)")
                seconds = await seed_observations(
                    database_url, team.id, [project.id, *neighbours], seeded, size, seed=size
                )
                seeded = size
                emit(
                    rows,
                    bench="seed",
                    observations=size,
                    projects=1 + len(neighbours),
                    seconds=round(seconds, 1),
                )
                search_floor.compiled.clear()
                await search_floor.compile()
                raw = await search_floor.run(args.queries, args.search_concurrency)
                emit(
                    rows,
                    bench="floor_search",
                    observations=size,
                    concurrency=args.search_concurrency,
                    **raw,
                )
                if do_storage:
                    log(f"[storage] search at {size}")
                    core = await core_search(memory, scope, args.queries, args.search_concurrency)
                    emit(
                        rows,
                        bench="storage_search",
                        observations=size,
                        concurrency=args.search_concurrency,
                        **core,
                        floor_p95_ms=raw["p95_ms"],
                        ratio=ratio(core["p95_ms"], raw["p95_ms"]),
                    )
                if do_http:
                    assert server is not None
                    log(f"[http] POST /v1/search at {size}")
                    ns = argparse.Namespace(
                        memories=size,
                        queries=args.queries,
                        search_concurrency=args.search_concurrency,
                    )
                    http = await hb.bench_search(session, base, project.id, ns, server.pid)
                    emit(
                        rows,
                        bench="http_search",
                        observations=size,
                        **{k: v for k, v in http.items() if k != "memories"},
                        floor_p95_ms=raw["p95_ms"],
                        ratio=ratio(http["p95_ms"], raw["p95_ms"]),
                    )
    finally:
        if server is not None:
            await hb.stop_server(server)
        await memory.close()
        await hb.databases.drop_postgres_database(database_url)
        with contextlib.suppress(Exception):
            await hb.remove_redis_keys(args.redis, prefix)
        shutil.rmtree(workdir, ignore_errors=True)


async def _poll(probe: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


async def worker_bench(args: argparse.Namespace, rows: list[Row]) -> None:
    for processes in args.workers:
        await worker_round(args, processes, rows)


async def worker_round(args: argparse.Namespace, processes: int, rows: list[Row]) -> None:
    import psycopg

    from claude_mem_core import Memory, Scope
    from claude_mem_core.adapters.offline_provider import OfflineProvider
    from claude_mem_core.adapters.sqlalchemy import SqlAlchemyStorage
    from claude_mem_core.adapters.taskiq_queue import TaskiqQueue
    from claude_mem_core.testing.fake_llm import FakeLLMServer

    database_url = await hb.databases.create_postgres_database(args.postgres)
    dsn = hb.databases._libpq(database_url)
    prefix = f"cm_bench_w_{secrets.token_hex(4)}"
    workdir = Path(tempfile.mkdtemp(prefix="cm-bench-worker-"))
    queue = TaskiqQueue.from_url(args.redis, prefix=prefix)
    memory = Memory(
        storage=SqlAlchemyStorage.from_url(database_url),
        queue=queue,
        provider=OfflineProvider(),
    )
    procs: list[asyncio.subprocess.Process] = []
    try:
        async with FakeLLMServer(default_text=OBSERVATION, record=False) as fake:
            team, project = await memory.ensure_project("bench", "worker")
            scope = Scope(team_id=team.id, project_id=project.id)
            log(f"[worker] queueing {args.worker_jobs} jobs")

            async def one(n: int) -> None:
                await memory.ingest(
                    scope,
                    event_type="tool_use",
                    payload=hb.event_body(project.id, "w", n)["payload"],
                )

            await hb.run_concurrently(args.worker_jobs, 8, one)

            async def completed() -> int:
                async with await psycopg.AsyncConnection.connect(dsn) as conn:
                    row = await (
                        await conn.execute(
                            "SELECT count(*) FROM observation_generation_jobs "
                            "WHERE status = 'completed'"
                        )
                    ).fetchone()
                    return int(row[0]) if row else 0

            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(hb.PASSTHROUGH_DROPPED) and k not in hb.PROVIDER_KEYS
            }
            env.update(
                CLAUDE_MEM_SERVER_DATABASE_URL=database_url,
                CLAUDE_MEM_QUEUE_ENGINE="redis",
                CLAUDE_MEM_REDIS_URL=args.redis,
                CLAUDE_MEM_QUEUE_REDIS_PREFIX=prefix,
                CLAUDE_MEM_DATA_DIR=str(workdir),
                CLAUDE_MEM_SERVER_PROVIDER="anthropic:claude-bench",
                ANTHROPIC_API_KEY="bench",
                ANTHROPIC_BASE_URL=fake.anthropic_base_url,
                CLAUDE_MEM_WORKER_CONCURRENCY=str(args.worker_concurrency),
                CLAUDE_MEM_LOG_LEVEL="WARNING",
            )
            log(f"[worker] {processes} process(es) draining {args.worker_jobs} jobs")
            started = time.perf_counter()
            for n in range(processes):
                with (workdir / f"worker-{n}.log").open("wb") as out:
                    procs.append(
                        await asyncio.create_subprocess_exec(
                            sys.executable,
                            "-m",
                            "claude_mem_worker",
                            env=env,
                            stdout=out,
                            stderr=asyncio.subprocess.STDOUT,
                        )
                    )

            # Time from the first completed job, so process start-up is not counted.
            async def first_done() -> bool:
                return await completed() > 0

            await _poll(first_done, 60, "the first completed job")
            t0, done0 = time.perf_counter(), await completed()

            async def all_done() -> bool:
                return await completed() >= args.worker_jobs

            await _poll(all_done, 600, "the backlog to drain")
            elapsed = time.perf_counter() - t0
            rate = (args.worker_jobs - done0) / elapsed
            rss = [hb.peak_rss_mib(p.pid) for p in procs]
            emit(
                rows,
                bench="worker",
                processes=processes,
                jobs=args.worker_jobs,
                concurrency=args.worker_concurrency,
                jobs_per_s=round(rate, 1),
                jobs_per_s_per_process=round(rate / processes, 1),
                wall_s_with_startup=round(time.perf_counter() - started, 1),
                peak_rss_mib=round(max(rss), 1),
            )
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await memory.close()
        with contextlib.suppress(Exception):
            await queue.delete_all_keys()
        await hb.databases.drop_postgres_database(database_url)
        shutil.rmtree(workdir, ignore_errors=True)


# -- report ----------------------------------------------------------------------------------


def table(rows: list[Row]) -> None:
    def fmt(value: Any) -> str:
        return "-" if value is None else str(value)

    print(
        f"\n{'measurement':<34} {'rate/s':>9} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'floor':>9} {'ratio':>6}  target"
    )
    for r in rows:
        bench = r["bench"]
        name, rate, floor, target = bench, None, None, ""
        if bench == "storage_ingest":
            name = f"core ingest c={r['concurrency']}"
            rate, floor = r["events_per_s"], r["floor_events_per_s"]
            target = ok(r["ratio"] >= TARGETS["ingest_vs_floor"], ">=0.7x floor")
        elif bench == "http_ingest":
            name = f"POST /v1/events c={r['concurrency']}"
            rate, floor = r["events_per_s"], r["floor_events_per_s"]
            target = ok(r["ratio"] >= TARGETS["ingest_vs_floor"], ">=0.7x floor")
        elif bench == "http_batch":
            name = f"POST /v1/events/batch x{r['batch_size']} c={r['concurrency']}"
            rate, floor = r["events_per_s"], r["floor_events_per_s"]
            target = ok(r["ratio"] >= TARGETS["ingest_vs_floor"], ">=0.7x floor")
        elif bench in ("storage_search", "http_search"):
            layer = "core search" if bench == "storage_search" else "POST /v1/search"
            name = f"{layer} {r['observations']} c={r['concurrency']}"
            rate, floor = r["queries_per_s"], f"{r['floor_p95_ms']}ms"
            limit = TARGETS["search_p95_ms"].get(r["observations"])  # type: ignore[attr-defined]
            target = ok(r["p95_ms"] <= limit, f"p95<={limit}ms") if limit else ""
        elif bench == "worker":
            name = f"worker x{r['processes']} (c={r['concurrency']} each)"
            rate = r["jobs_per_s"]
            target = ok(
                r["jobs_per_s_per_process"] >= TARGETS["worker_jobs_per_s_per_process"],
                f">=300/s/process ({r['jobs_per_s_per_process']}), RSS {r['peak_rss_mib']} MiB",
            )
        elif bench == "server_rss":
            print(f"{'server peak RSS (after ingest)':<34} {r['peak_rss_mib']:>9} MiB")
            continue
        else:
            continue  # floors are shown next to their measurements; seeding is in the JSON
        print(
            f"{name:<34} {fmt(rate):>9} {fmt(r.get('p50_ms')):>8} {fmt(r.get('p95_ms')):>8} "
            f"{fmt(floor):>9} {fmt(r.get('ratio')):>6}  {target}"
        )


def ok(passed: bool, text: str) -> str:
    return f"{'ok ' if passed else 'NO '} {text}"


def csv_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: under two minutes")
    parser.add_argument("--only", default="storage,http,worker")
    parser.add_argument("--sizes", type=csv_ints)
    parser.add_argument("--neighbours", type=int, default=10)
    parser.add_argument("--concurrency", type=csv_ints)
    parser.add_argument("--batch-sizes", type=csv_ints)
    parser.add_argument("--workers", type=csv_ints)
    parser.add_argument("--events", type=int, help="events per ingest measurement")
    parser.add_argument("--batch-events", type=int, help="events per batch measurement")
    parser.add_argument("--queries", type=int)
    parser.add_argument("--search-concurrency", type=int, default=8)
    parser.add_argument("--worker-jobs", type=int)
    parser.add_argument("--worker-concurrency", type=int, default=8)
    parser.add_argument("--postgres", default=hb.databases.postgres_base_url())
    parser.add_argument(
        "--redis", default=os.environ.get("CLAUDE_MEM_TEST_REDIS_URL", hb.DEFAULT_REDIS_URL)
    )
    args = parser.parse_args(argv)
    quick = args.quick
    defaults: dict[str, Any] = {
        "sizes": [2_000] if quick else [20_000, 100_000],
        "concurrency": [1, 16, 64],
        "batch_sizes": [1, 100, 500],
        "workers": [1, 2],
        "events": 300 if quick else 3_000,
        "batch_events": 1_000 if quick else 5_000,
        "queries": 100 if quick else 400,
        "worker_jobs": 300 if quick else 3_000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.sizes = sorted(args.sizes)
    args.only = {part.strip() for part in args.only.split(",")}
    unknown = args.only - {"storage", "http", "worker"}
    if unknown:
        parser.error(f"--only: unknown sections {sorted(unknown)}")
    return args


async def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    emit(
        rows,
        bench="machine",
        cpus=os.cpu_count(),
        python=sys.version.split()[0],
        quick=args.quick,
        postgres=args.postgres.rsplit("@", 1)[-1],
    )
    if args.only & {"storage", "http"}:
        await storage_and_http(args, rows)
    if "worker" in args.only:
        await worker_bench(args, rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    rows = asyncio.run(run(args))
    table(rows)
    print(f"\n{time.monotonic() - started:.0f} s", file=sys.stderr)
