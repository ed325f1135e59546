"""Storage benchmark: event ingest and search, on SQLite and PostgreSQL.

    python bench/storage.py [--events 10000] [--sizes 20000,100000] [--backends sqlite,postgres]
                            [--concurrency 8] [--queries 200]

Ingest goes through the real use case (event + job + job event in one transaction, plus its
audit row). Search runs agent-style questions over N observations of one project, with ten
other projects holding as many rows each at the largest size is NOT done here (that is the
performance harness's job); one neighbour project of equal size keeps the tenant filter honest.
Prints one JSON line per measurement, then a table. On demand only: never part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from claude_mem_core import Caller, EventInput, Memory, Scope
from claude_mem_core.adapters import storage_from_url
from claude_mem_core.domain.models import Observation, ObservationKind
from claude_mem_core.domain.passages import observation_passage
from claude_mem_core.services import ingest
from claude_mem_core.testing import databases
from claude_mem_core.testing.fakes import ScriptedProvider

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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def emit(rows: list[dict[str, Any]], **row: Any) -> None:
    rows.append(row)
    print(json.dumps(row), flush=True)


async def bench_ingest(
    mem: Memory, scope: Scope, events: int, concurrency: int
) -> dict[str, float]:
    caller = Caller.embedded(scope.team_id)
    latencies: list[float] = []
    counter = iter(range(events))

    async def one_worker() -> None:
        for n in counter:
            item = EventInput(
                project_id=scope.project_id,
                source_adapter="hook",
                event_type="tool_use",
                occurred_at=datetime.now(UTC),
                source_event_id=f"bench-{n}",
                payload={"tool_name": "Edit", "tool_input": {"file_path": f"src/m{n % 97}.py"}},
            )
            started = time.perf_counter()
            await ingest.ingest_event(mem.deps, caller, item)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one_worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "events_per_s": events / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
    }


async def seed_observations(mem: Memory, scope: Scope, count: int, rng: random.Random) -> None:
    now = datetime.now(UTC)
    done = 0
    while done < count:
        batch = min(1000, count - done)
        async with mem.storage.unit_of_work() as uow:
            for n in range(done, done + batch):
                words = rng.sample(WORDS, 8)
                stored, _ = await uow.observations.add(
                    Observation(
                        id=f"{scope.project_id}-{n}",
                        team_id=scope.team_id,
                        project_id=scope.project_id,
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
        print(f"  seeded {done}/{count} observations", file=sys.stderr, end="\r", flush=True)
    print(file=sys.stderr)


async def bench_search(
    mem: Memory, scope: Scope, queries: int, concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    counter = iter(range(queries))

    async def one_worker() -> None:
        for n in counter:
            started = time.perf_counter()
            await mem.search(scope, QUESTIONS[n % len(QUESTIONS)], limit=20)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(one_worker() for _ in range(concurrency)))
    return {
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


async def run_backend(backend: str, args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cm-bench-"))
    if backend == "sqlite":
        url = await databases.migrated_sqlite_url(workdir)
    else:
        base = os.environ.get("CLAUDE_MEM_TEST_POSTGRES_URL", databases.postgres_base_url())
        url = await databases.create_postgres_database(base)
    try:
        mem = Memory(
            storage=storage_from_url(url),
            queue=None,
            provider=ScriptedProvider(default="<skip_summary/>"),
        )
        team, project = await mem.ensure_project("bench", "main")
        scope = Scope(team_id=team.id, project_id=project.id)
        print(
            f"[{backend}] ingesting {args.events} events at concurrency {args.concurrency}",
            file=sys.stderr,
        )
        result = await bench_ingest(mem, scope, args.events, args.concurrency)
        emit(
            rows,
            bench="ingest",
            backend=backend,
            events=args.events,
            concurrency=args.concurrency,
            **{k: round(v, 2) for k, v in result.items()},
        )
        rng = random.Random(7)
        neighbour = await mem.create_project(team.id, "neighbour")
        search_scope = Scope(
            team_id=team.id, project_id=(await mem.create_project(team.id, "s")).id
        )
        seeded = 0
        for size in args.sizes:
            print(f"[{backend}] seeding to {size} observations", file=sys.stderr)
            await seed_observations(mem, search_scope, size - seeded, rng)
            await seed_observations(
                mem, Scope(team_id=team.id, project_id=neighbour.id), size - seeded, rng
            )
            seeded = size
            result = await bench_search(mem, search_scope, args.queries, 8)
            emit(
                rows,
                bench="search",
                backend=backend,
                observations=size,
                concurrency=8,
                **{k: round(v, 2) for k, v in result.items()},
            )
        await mem.close()
    finally:
        if backend == "postgres":
            await databases.drop_postgres_database(url)


def table(rows: list[dict[str, Any]]) -> None:
    print("\nbench    backend   size/events  events/s   p50 ms   p95 ms")
    for r in rows:
        size = r.get("observations", r.get("events"))
        print(
            f"{r['bench']:<8} {r['backend']:<9} {size:>11}  {r.get('events_per_s', '-'):>8}"
            f"  {r['p50_ms']:>7}  {r['p95_ms']:>7}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    rows: list[dict[str, Any]] = []
    for backend in args.backends.split(","):
        asyncio.run(run_backend(backend.strip(), args, rows))
    table(rows)


if __name__ == "__main__":
    main()
