"""Redis restarted and PostgreSQL stopped while ``claude-mem serve`` takes events.

Both run against the real server process, the private Redis and the private PostgreSQL of
this session (never the shared instances). The load is a few client tasks posting events
in a loop; each request has a client timeout, so a hang is a failure, not a stuck test.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp
from faultkit import (
    PrivatePostgres,
    PrivateRedis,
    ServerProcess,
    WorkerProcess,
    base_env,
    event_body,
    half_written_events,
    job_status_counts,
    sql_rows,
    tenant,
    until,
)

CLIENT_TIMEOUT_S = 10.0
CONCURRENCY = 4


class Load:
    """Client tasks posting events until stopped; every answer is recorded."""

    def __init__(self, base: str, key: str, project: str) -> None:
        self.base = base
        self.key = key
        self.project = project
        self.run = secrets.token_hex(4)
        self.answers: list[tuple[float, int, float, dict[str, Any] | None]] = []
        self.accepted: list[str] = []
        self._stop = asyncio.Event()
        self._count = 0
        self._tasks: list[asyncio.Task[None]] = []

    def since(self, t: float) -> list[tuple[float, int, float, dict[str, Any] | None]]:
        return [a for a in self.answers if a[0] >= t]

    async def _one_client(self, session: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            n = self._count
            self._count += 1
            started = time.monotonic()
            status, body = 0, None
            try:
                async with session.post(
                    f"{self.base}/v1/events", json=event_body(self.project, self.run, n)
                ) as response:
                    status = response.status
                    body = await response.json(content_type=None)
            except TimeoutError:
                status = -1  # the client timed out: the server hung
            except aiohttp.ClientError:
                status = -2  # connection refused/reset: the server itself is gone
            took = time.monotonic() - started
            self.answers.append((started, status, took, body))
            if status == 201 and body is not None:
                self.accepted.append(str(body["event"]["id"]))
            if status != 201:
                await asyncio.sleep(0.05)

    async def __aenter__(self) -> Load:
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
        )
        self._tasks = [
            asyncio.create_task(self._one_client(self._session)) for _ in range(CONCURRENCY)
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks)
        await self._session.close()

    async def accepted_at_least(self, count: int, within: float = 30.0) -> None:
        target = len(self.accepted) + count

        async def probe() -> bool:
            return len(self.accepted) >= target

        await until(probe, within=within, what=f"{count} more accepted events")


def _statuses(answers: list[tuple[float, int, float, Any]]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for _, status, _, _ in answers:
        counts[status] = counts.get(status, 0) + 1
    return counts


async def test_postgres_stopped_under_load_gives_503_then_recovers_without_half_writes(
    database: str, pg: PrivatePostgres, redis_server: PrivateRedis, prefix: str, tmp_path: Path
) -> None:
    _, project, key = await tenant(database)
    env = base_env(
        database_url=database, redis_url=redis_server.url, prefix=prefix, data_dir=tmp_path
    )
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:
        await server.ready()
        async with Load(server.base, key, project) as load:
            await load.accepted_at_least(50)
            down_at = time.monotonic()
            await asyncio.to_thread(pg.stop, "immediate")

            async def refused_for_a_while() -> bool:
                return sum(1 for a in load.since(down_at) if a[1] == 503) >= 20

            await until(refused_for_a_while, within=20, what="503 answers while Postgres is down")
            up_at = time.monotonic()
            await asyncio.to_thread(pg.start)

            async def recovered() -> bool:
                return any(a[1] == 201 for a in load.since(time.monotonic() - 0.2))

            await until(recovered, within=30, what="the server to accept events again")
            await load.accepted_at_least(50)
        during = [a for a in load.answers if down_at <= a[0] < up_at]
        everything = _statuses(load.answers)
    finally:
        assert await server.terminate() == 0, server.log()[-3000:]

    # While down: 503, never a 500, never a hang (client timeout) or a dropped connection.
    # A request in flight when Postgres died may still have committed: 201 is fine there.
    assert set(_statuses(during)) <= {201, 503}, _statuses(during)
    assert set(everything) <= {201, 503}, everything
    slowest = max(a[2] for a in during)
    assert slowest < CLIENT_TIMEOUT_S / 2, f"a request took {slowest:.1f}s while Postgres was down"
    for _, status, _, body in during:
        if status == 503:
            assert body is not None and body["error"] == "ServiceUnavailable", body

    # Nothing half-written; every acknowledged event is stored.
    assert await half_written_events(database) == []
    stored = {row[0] for row in await sql_rows(database, "SELECT id FROM agent_events")}
    missing = set(load.accepted) - stored
    assert not missing, f"{len(missing)} acknowledged events are not stored"


async def test_redis_restarted_under_load_loses_no_job(
    database: str, redis_server: PrivateRedis, prefix: str, tmp_path: Path, worker_runner: str
) -> None:
    _, project, key = await tenant(database)
    env = base_env(
        database_url=database,
        redis_url=redis_server.url,
        prefix=prefix,
        data_dir=tmp_path,
        CLAUDE_MEM_SERVER_PROVIDER="offline",
        CLAUDE_MEM_RECONCILE_INTERVAL_SECONDS="0.5",
    )
    server = ServerProcess(env, tmp_path / "server.log").start()
    worker = WorkerProcess(env, tmp_path / "worker.log", runner=worker_runner).start()
    try:
        await server.ready()
        await worker.started()
        async with Load(server.base, key, project) as load:
            await load.accepted_at_least(40)
            down_at = time.monotonic()
            await asyncio.to_thread(redis_server.stop)  # a crash: every key is gone

            async def some_taken_while_down() -> bool:
                return len(load.since(down_at)) >= 20

            await until(some_taken_while_down, within=20, what="requests while Redis is down")
            up_at = time.monotonic()
            await asyncio.to_thread(redis_server.start)
            await load.accepted_at_least(40)
        during = [a for a in load.answers if down_at <= a[0] < up_at]
        everything = _statuses(load.answers)

        async def all_completed() -> bool:
            counts = await job_status_counts(database)
            return set(counts) == {"completed"}

        try:
            await until(all_completed, within=60, what="every job to complete", every=0.2)
        except AssertionError:
            counts = await job_status_counts(database)
            raise AssertionError(f"jobs by status: {counts}\n{worker.log()[-3000:]}") from None
        assert await worker.terminate() == 0, worker.log()[-3000:]
    finally:
        worker.kill()
        assert await server.terminate() == 0, server.log()[-3000:]

    # The database is the source of truth: events are accepted while Redis is down (their
    # jobs wait in the outbox), and every one of them is generated once Redis is back.
    assert set(everything) == {201}, everything
    assert len(during) >= 20
    stored = await sql_rows(
        database, "SELECT count(*) FROM agent_events WHERE payload->>'run' = %s", (load.run,)
    )
    assert stored[0][0] == len(load.accepted)
    assert await half_written_events(database) == []
    counts = await job_status_counts(database)
    assert counts == {"completed": len(load.accepted)}
