"""Search latency over time on one large project: ``python -m bench.search_tail``.

Issue #12's tail check: one project of ``--rows`` memories among about twice as many (a
second project as large beside it), ``--clients`` concurrent searches through the core
(``Memory.search``: statement, audit row, excerpts) for ``--seconds`` after ``--warmup``
seconds that are not timed. Prints p50, p95, p99,
p99/p50 and p95 per ``--window`` seconds, so a periodic burst (a cache expiring, a statistics
scan) shows as a window that stands out.

Memories are written straight through the storage (their passages and statistics as
``add_memory`` writes them), with the side-by-side load generator's vocabulary and
sentences when ``../shared/bench/loadgen.py`` is found beside the project, else a small
built-in vocabulary; queries are one to three of those words. The database is a fresh one
on ``--postgres`` (default ``$CLAUDE_MEM_TEST_POSTGRES_URL``), dropped at the end unless
``--keep``; ``--reuse NAME`` searches an existing one instead of seeding.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
WORDS = (
    "cache index query planner migration schema table column session token request handler "
    "router middleware queue worker job retry backoff timeout lock thread socket pool commit "
    "rollback snapshot replica shard cluster leader heartbeat buffer stream parser tokenizer "
    "module package dependency release branch merge conflict patch test fixture coverage "
    "profiler memory heap closure iterator event listener callback scheduler config secret"
).split()


def _vocabulary() -> tuple[Any, Any]:
    """(paragraph(rng), query(rng)) from the shared load generator when present."""
    here = Path(__file__).resolve().parents[1]
    for folder in (here.parent / "shared" / "bench", here / ".." / "shared" / "bench"):
        if (folder / "loadgen.py").exists():
            sys.path.insert(0, str(folder))
            import loadgen  # type: ignore[import-not-found]

            return (
                lambda rng: loadgen.paragraph(rng, rng.randint(150, 600)),
                loadgen.search_query,
            )

    def paragraph(rng: random.Random) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 90))) + "."

    def query(rng: random.Random) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))

    return paragraph, query


async def _seed(url: str, team_id: str, project_ids: list[str], rows: int) -> None:
    from claude_mem_core.adapters import storage_from_url
    from claude_mem_core.domain.models import Observation, ObservationKind, Project, Team
    from claude_mem_core.domain.passages import observation_passage

    paragraph, _ = _vocabulary()
    storage = storage_from_url(url)
    now = datetime.now(UTC)
    try:
        async with storage.unit_of_work() as uow:
            await uow.teams.add(Team(id=team_id, name="bench", created_at=now, updated_at=now))
            for pid in project_ids:
                await uow.projects.add(
                    Project(id=pid, team_id=team_id, name=pid, created_at=now, updated_at=now)
                )
        for pid in project_ids:
            rng = random.Random(pid)
            for start in range(0, rows, 1000):
                async with storage.unit_of_work() as uow:
                    passages = []
                    for n in range(start, min(start + 1000, rows)):
                        stored, _ = await uow.observations.add(
                            Observation(
                                id=f"{pid}-{n}",
                                team_id=team_id,
                                project_id=pid,
                                kind=ObservationKind.MANUAL,
                                content=paragraph(rng),
                                created_at=now,
                                updated_at=now,
                            )
                        )
                        passages.append(observation_passage(stored))
                    await uow.search.add(passages)
                print(f"\rseeding {pid}: {start + 1000}/{rows}", end="", file=sys.stderr)
            print(file=sys.stderr)
    finally:
        await storage.close()


async def _run(url: str, team_id: str, project_id: str, args: argparse.Namespace) -> None:
    from claude_mem_core import PipelineOptions, Scope, open_memory

    _, query = _vocabulary()
    rng = random.Random("search-tail")
    scope = Scope(team_id=team_id, project_id=project_id)
    samples: list[tuple[float, float]] = []  # (seconds since start, latency ms)
    async with open_memory(url, provider="offline", env={}, options=PipelineOptions()) as mem:
        warm_until = time.monotonic() + args.warmup
        while time.monotonic() < warm_until:  # caches, plans, pool: not what is measured
            await asyncio.gather(*(mem.search(scope, query(rng), limit=20) for _ in range(8)))
        started = time.monotonic()
        deadline = started + args.seconds

        async def client() -> None:
            while time.monotonic() < deadline:
                text = query(rng)
                t0 = time.monotonic()
                await mem.search(scope, text, limit=20)
                samples.append((t0 - started, (time.monotonic() - t0) * 1000))

        await asyncio.gather(*(client() for _ in range(args.clients)))
    latencies = sorted(ms for _, ms in samples)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    p50, p95, p99 = (pct(latencies, q) for q in (0.50, 0.95, 0.99))
    print(
        f"{len(latencies)} queries in {args.seconds} s ({len(latencies) / args.seconds:.0f} q/s), "
        f"{args.clients} clients: p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, "
        f"p99/p50 {p99 / p50:.2f}"
    )
    windows: dict[int, list[float]] = {}
    for at, ms in samples:
        windows.setdefault(int(at // args.window), []).append(ms)
    print(
        f"p95 per {args.window} s window: "
        + " ".join(f"{pct(sorted(v), 0.95):.0f}" for _, v in sorted(windows.items()))
    )
    middle = statistics.median(pct(sorted(v), 0.95) for v in windows.values())
    print(f"median of window p95s: {middle:.1f} ms")


async def main(args: argparse.Namespace) -> None:
    from bench.retrieval.run import _admin_execute, _with_database
    from claude_mem_core import migrations

    server = args.postgres or os.environ.get("CLAUDE_MEM_TEST_POSTGRES_URL") or DEFAULT_POSTGRES
    name = args.reuse or f"cm_tail_{secrets.token_hex(4)}"
    url = _with_database(server, name)
    team_id, projects = "team-tail", ["big", "beside"]
    if not args.reuse:
        await _admin_execute(server, f'CREATE DATABASE "{name}"')
    try:
        if not args.reuse:
            await migrations.upgrade(url)
            await _seed(url, team_id, projects, args.rows)
            await _admin_analyze(url)
        await _run(url, team_id, projects[0], args)
    finally:
        if args.keep or args.reuse:
            print(f"database kept: {name}", file=sys.stderr)
        else:
            await _admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin_analyze(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        await conn.execute(b"VACUUM ANALYZE")
    finally:
        await conn.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.search_tail")
    parser.add_argument("--rows", type=int, default=100_000, help="memories per project")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=10, help="seconds run first, not timed")
    parser.add_argument("--postgres", help="server to create the database on")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--reuse", help="search this existing database (kept)")
    return parser


if __name__ == "__main__":
    asyncio.run(main(_parser().parse_args()))
