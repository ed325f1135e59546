"""A worker (``claude-mem worker``, and ``taskiq worker claude_mem_worker:broker``) started
while Redis is down waits for it instead of exiting.

It logs one clear line per failed try (with the time of the next, backing off), starts
consuming once Redis is up, and still stops cleanly on SIGTERM while it waits.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from faultkit import PrivateRedis, WorkerProcess, base_env, until

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.adapters.sqlalchemy import SqlAlchemyStorage
from claude_mem_core.adapters.taskiq_queue import TaskiqQueue
from claude_mem_core.domain.models import JobStatus


def _env(database: str, redis: PrivateRedis, prefix: str, tmp_path: Path) -> dict[str, str]:
    return base_env(
        database_url=database,
        redis_url=redis.url,
        prefix=prefix,
        data_dir=tmp_path / "data",
        CLAUDE_MEM_SERVER_PROVIDER="offline",
        CLAUDE_MEM_RECONCILE_INTERVAL_SECONDS="0.5",
        CLAUDE_MEM_JOB_LEASE_SECONDS="2",
    )


async def test_the_worker_waits_for_redis_then_runs(
    database: str, redis_server: PrivateRedis, prefix: str, tmp_path: Path, worker_runner: str
) -> None:
    redis_server.stop()
    env = _env(database, redis_server, prefix, tmp_path)
    worker = WorkerProcess(env, tmp_path / "w.log", runner=worker_runner)
    worker.start()
    try:

        async def retrying() -> bool:
            assert worker.alive(), f"the worker exited:\n{worker.log()[-3000:]}"
            return worker.log().count("is not reachable") >= 2

        await until(retrying, within=40, what="the worker to retry Redis")
        assert "retrying in" in worker.log()
        redis_server.start()
        await worker.started(within=40)
        memory = Memory(
            storage=SqlAlchemyStorage.from_url(database),
            queue=TaskiqQueue.from_url(redis_server.url, prefix=prefix),
            provider=OfflineProvider(),
        )
        try:
            team, project = await memory.ensure_project("faults", "redis-wait")
            scope = Scope(team_id=team.id, project_id=project.id)
            ingested = await memory.ingest(
                scope, event_type="tool_use", payload={"tool_name": "Edit"}
            )
            assert ingested.job is not None
            job_id = ingested.job.id

            async def completed() -> bool:
                job = await memory.get_job(scope, job_id)
                return job.status is JobStatus.COMPLETED

            await until(completed, within=20, what="the job to complete")
        finally:
            await memory.close()
        assert await worker.terminate() == 0
    finally:
        worker.kill()
        redis_server.start()


async def test_a_worker_waiting_for_redis_stops_on_sigterm(
    database: str, redis_server: PrivateRedis, prefix: str, tmp_path: Path, worker_runner: str
) -> None:
    redis_server.stop()
    env = _env(database, redis_server, prefix, tmp_path)
    worker = WorkerProcess(env, tmp_path / "w.log", runner=worker_runner)
    worker.start()
    try:

        async def retrying() -> bool:
            assert worker.alive(), f"the worker exited:\n{worker.log()[-3000:]}"
            return "is not reachable" in worker.log()

        await until(retrying, within=40, what="the worker to retry Redis")
        await asyncio.sleep(0.2)
        assert await worker.terminate(within=15) == 0
        assert "stopped before the queue was reachable" in worker.log()
    finally:
        worker.kill()
        redis_server.start()
