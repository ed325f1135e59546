"""Does the live stream slow ingest? ``python -m bench.stream_clients``.

Issue #15's check: the ingest rate of ``POST /v1/events`` with 50 stream clients connected
must stay within 5% of the rate with none. One ``claude-mem serve`` (PostgreSQL, the Redis
queue, generation off, as the side-by-side bench runs it) and, in interleaved rounds:

* ``none``: no stream open;
* ``idle``: ``--clients`` streams of another project (connected, sent nothing but
  heartbeats: what idle viewers cost);
* ``watching``: ``--clients`` streams of the ingesting project, each reading every new
  event as it commits (the fan-out's cost: every event is sent to every client).

Each round posts ``--events`` events at ``--concurrency`` and measures the rate (after an
``ANALYZE``, as the side-by-side bench does: a fresh database's statistics go stale as it
grows); the table gives the median rate per setting and its ratio to ``none``. Streams are read by
this process (aiohttp), so a slow reader here is what a slow client is there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from bench.http import (
    DEFAULT_REDIS_URL,
    analyze,
    bench_ingest,
    cli,
    free_port,
    server_env,
    start_server,
    stop_server,
)
from claude_mem_core.testing import databases

SETTINGS = ("none", "idle", "watching")


async def _read_stream(session: aiohttp.ClientSession, url: str, counter: list[int]) -> None:
    """Read one stream until cancelled, counting its messages."""
    async with session.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {await response.text()}")
        async for line in response.content:
            if line.startswith(b"id:"):
                counter[0] += 1


async def _open_streams(
    base: str, key: str, project_id: str, clients: int, counter: list[int]
) -> tuple[aiohttp.ClientSession, list[asyncio.Task[None]]]:
    session = aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {key}"},
        connector=aiohttp.TCPConnector(limit=clients + 4),
        timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
    )
    url = f"{base}/v1/stream?projectId={project_id}&kinds=event"
    tasks = [asyncio.create_task(_read_stream(session, url, counter)) for _ in range(clients)]
    await asyncio.sleep(1.0)  # connected and past their replay
    return session, tasks


async def _close_streams(session: aiohttp.ClientSession, tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await task
    await session.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base_url = args.postgres or databases.postgres_base_url()
    database_url = await databases.create_postgres_database(base_url)
    workdir = Path(tempfile.mkdtemp(prefix="cm-bench-stream-"))
    port = free_port()
    env = server_env(database_url, args.redis, f"cm_bench_{secrets.token_hex(4)}", workdir, port)
    server = None
    rates: dict[str, list[float]] = {name: [] for name in SETTINGS}
    delivered: list[int] = [0]
    try:
        team = await cli(env, "teams", "create", "bench")
        project = await cli(env, "projects", "create", "--team", team["id"], "main")
        other = await cli(env, "projects", "create", "--team", team["id"], "quiet")
        key = await cli(
            env, "api-key", "create", "--team", team["id"], "--scopes", "*", "--name", "bench"
        )
        server = await start_server(env, port, workdir / "server.log", None)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {key['key']}"},
            connector=aiohttp.TCPConnector(limit=args.concurrency),
        ) as session:
            load = argparse.Namespace(events=args.events, concurrency=args.concurrency)
            await bench_ingest(session, base, project["id"], load, server.pid)  # warm-up
            for round_number in range(args.rounds):
                order = SETTINGS if round_number % 2 == 0 else tuple(reversed(SETTINGS))
                for setting in order:
                    # Statistics as after a minute of autovacuum: the tables grow by a round
                    # each time, and stale plans would slow later rounds whatever the setting.
                    await analyze(database_url)
                    streams = None
                    if setting != "none":
                        watched = project["id"] if setting == "watching" else other["id"]
                        streams = await _open_streams(
                            base, key["key"], watched, args.clients, delivered
                        )
                    try:
                        result, _ = await bench_ingest(
                            session, base, project["id"], load, server.pid
                        )
                    finally:
                        if streams is not None:
                            await _close_streams(*streams)
                    rates[setting].append(result["events_per_s"])
                    print(
                        f"round {round_number + 1} {setting:>8}: "
                        f"{result['events_per_s']:.0f} events/s",
                        file=sys.stderr,
                    )
    finally:
        if server is not None:
            await stop_server(server)
        await databases.drop_postgres_database(database_url)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "events": args.events,
        "concurrency": args.concurrency,
        "clients": args.clients,
        "rounds": args.rounds,
        "median_events_per_s": {k: round(v, 1) for k, v in medians.items()},
        "ratio_to_none": {k: round(v / medians["none"], 3) for k, v in medians.items()},
        "messages_delivered": delivered[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_clients", description=__doc__)
    parser.add_argument("--events", type=int, default=1000, help="events per round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--clients", type=int, default=50, help="streams open at once")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", help="server URL (default $CLAUDE_MEM_TEST_POSTGRES_URL)")
    parser.add_argument("--redis", default=DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    print(f"{'setting':<10} {'events/s':>10} {'ratio':>7}")
    for name in SETTINGS:
        print(
            f"{name:<10} {report['median_events_per_s'][name]:>10.1f} "
            f"{report['ratio_to_none'][name]:>7.3f}"
        )
    print(f"stream messages delivered: {report['messages_delivered']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
