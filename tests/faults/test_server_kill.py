"""SIGKILL ``claude-mem serve`` in the middle of a large batch: all of it or none of it.

Each round posts a batch of 500 events (about 1 MiB) and kills the server at a random
moment inside the batch's usual latency, so kills land while the body is read, while rows
are inserted and around the commit. The batch is then either fully stored or absent.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from pathlib import Path

import aiohttp
from faultkit import (
    PrivateRedis,
    ServerProcess,
    base_env,
    event_body,
    half_written_events,
    sql_value,
    tenant,
)

BATCH = 500
ROUNDS = 8


async def _post_batch(base: str, key: str, project: str, run: str) -> tuple[int | None, float]:
    body = [event_body(project, run, n, padding=1500) for n in range(BATCH)]
    started = time.monotonic()
    try:
        async with (
            aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {key}"},
                timeout=aiohttp.ClientTimeout(total=60),
            ) as session,
            session.post(f"{base}/v1/events/batch", json=body) as response,
        ):
            await response.read()
            return response.status, time.monotonic() - started
    except aiohttp.ClientError:
        return None, time.monotonic() - started


async def test_a_batch_is_stored_whole_or_not_at_all_when_the_server_is_killed(
    database: str, redis_server: PrivateRedis, prefix: str, tmp_path: Path
) -> None:
    rng = random.Random(6)
    _, project, key = await tenant(database)
    env = base_env(
        database_url=database, redis_url=redis_server.url, prefix=prefix, data_dir=tmp_path
    )

    async def stored(run: str) -> int:
        return int(
            await sql_value(
                database, "SELECT count(*) FROM agent_events WHERE payload->>'run' = %s", (run,)
            )
        )

    # One batch without a kill: how long a batch takes here.
    server = ServerProcess(env, tmp_path / "server-0.log").start()
    try:
        await server.ready()
        status, latency = await _post_batch(server.base, key, project, "calibration")
        assert status == 201
        assert await stored("calibration") == BATCH
    finally:
        server.kill()

    outcomes: list[tuple[float, int | None, int]] = []
    for round_ in range(ROUNDS):
        server = ServerProcess(env, tmp_path / f"server-{round_ + 1}.log").start()
        try:
            await server.ready()
            run = secrets.token_hex(4)
            delay = rng.uniform(0.0, 1.2 * latency)
            request = asyncio.create_task(_post_batch(server.base, key, project, run))
            await asyncio.sleep(delay)
            server.kill()
            status, _ = await request
        finally:
            server.kill()
        count = await stored(run)
        outcomes.append((round(delay, 3), status, count))

    print(f"batch latency {latency:.2f}s; (kill delay s, status, rows stored): {outcomes}")
    partial = [o for o in outcomes if o[2] not in (0, BATCH)]
    assert not partial, f"partly stored batches (delay s, status, rows): {outcomes}"
    acknowledged_but_missing = [o for o in outcomes if o[1] == 201 and o[2] != BATCH]
    assert not acknowledged_but_missing, outcomes
    assert any(o[1] is None for o in outcomes), f"no kill landed mid-request: {outcomes}"
    assert await half_written_events(database) == []
