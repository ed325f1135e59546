"""SIGKILL the worker 20 times at random points under a stream of events.

The real worker process (``python -m claude_mem_worker``, and again ``taskiq worker
claude_mem_worker:broker``) consumes the real taskiq Redis queue (a private Redis) and calls
a fake Anthropic server that answers after small random delays, so kills land before,
during and after provider calls and commits. Leases are 2 s, so a killed worker's jobs come
back quickly. At the end every event has exactly one
observation set, every job is ``completed`` once, and nothing is left ``queued`` or
``processing``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from faultkit import (
    WORKER_RUNNERS,
    PrivateRedis,
    WorkerProcess,
    base_env,
    job_status_counts,
    sql_rows,
    until,
)

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.adapters.sqlalchemy import SqlAlchemyStorage
from claude_mem_core.adapters.taskiq_queue import TaskiqQueue
from claude_mem_core.services.context import PipelineOptions
from claude_mem_core.testing.fake_llm import Delay, FakeLLMServer

EVENTS = 60
KILLS = 20
DEADLINE_S = 120.0
MAX_ATTEMPTS = 50  # the test is about loss and duplication, not the retry budget

OBSERVATION = """<observation>
  <type>bugfix</type>
  <title>Fixed the login redirect loop</title>
  <facts><fact>auth/middleware.py compared the callback URL without its query</fact></facts>
  <narrative>The login redirect looped because the callback check ignored the query.</narrative>
  <files_modified><file>auth/middleware.py</file></files_modified>
</observation>"""


def _reply(body: Mapping[str, Any]) -> str:
    return OBSERVATION


async def test_every_event_gets_exactly_one_observation_set_despite_20_sigkills(
    database: str, redis_server: PrivateRedis, prefix: str, tmp_path: Path
) -> None:
    """The two ways of starting a worker (``claude-mem worker``, ``taskiq worker
    claude_mem_worker:broker``) take turns: each picks up what the other was killed
    holding, as consumers of one group do."""
    rng = random.Random(20)
    started = time.monotonic()
    queue = TaskiqQueue.from_url(redis_server.url, prefix=prefix)
    memory = Memory(
        storage=SqlAlchemyStorage.from_url(database),
        queue=queue,
        provider=OfflineProvider(),  # this process only produces
        options=PipelineOptions(max_attempts=MAX_ATTEMPTS, lease_seconds=2),
    )
    async with FakeLLMServer(default_text=_reply, record=False) as fake:
        fake.anthropic.push(*(Delay(seconds=rng.uniform(0.0, 0.3)) for _ in range(2000)))
        env = base_env(
            database_url=database,
            redis_url=redis_server.url,
            prefix=prefix,
            data_dir=tmp_path / "data",
            CLAUDE_MEM_SERVER_PROVIDER="anthropic:claude-test",
            ANTHROPIC_API_KEY="test",
            ANTHROPIC_BASE_URL=fake.anthropic_base_url,
            CLAUDE_MEM_JOB_LEASE_SECONDS="2",
            CLAUDE_MEM_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
            CLAUDE_MEM_RECONCILE_INTERVAL_SECONDS="0.5",
            CLAUDE_MEM_WORKER_SHUTDOWN_GRACE_SECONDS="2",
        )
        workers: list[WorkerProcess] = []
        try:
            team, project = await memory.ensure_project("faults", "kill")
            scope = Scope(team_id=team.id, project_id=project.id)

            async def produce() -> list[str]:
                ids = []
                for n in range(EVENTS):
                    ingested = await memory.ingest(
                        scope,
                        event_type="tool_use",
                        payload={"tool_name": "Edit", "tool_input": {"file_path": f"m{n}.py"}},
                    )
                    assert ingested.job is not None
                    ids.append(ingested.job.id)
                    await asyncio.sleep(rng.uniform(0.05, 0.4))
                return ids

            producer = asyncio.create_task(produce())
            kills = 0
            while kills < KILLS:
                assert time.monotonic() - started < DEADLINE_S, f"only {kills} kills in time"
                runner = WORKER_RUNNERS[kills % len(WORKER_RUNNERS)]
                worker = WorkerProcess(env, tmp_path / f"worker-{kills}.log", runner=runner).start()
                workers.append(worker)
                await worker.started(within=40)
                await asyncio.sleep(rng.uniform(0.05, 0.5))
                worker.kill()
                kills += 1
            job_ids = await producer

            final = WorkerProcess(env, tmp_path / "worker-final.log", runner="taskiq")
            final.start()
            workers.append(final)
            await final.started()

            async def settled() -> bool:
                counts = await job_status_counts(database)
                return counts == {"completed": EVENTS}

            remaining = max(DEADLINE_S - (time.monotonic() - started), 20.0)
            try:
                await until(settled, within=remaining, what="every job to complete", every=0.2)
            except AssertionError:
                counts = await job_status_counts(database)
                raise AssertionError(f"jobs by status: {counts}\n{final.log()[-3000:]}") from None
            assert await final.terminate() == 0
        finally:
            for worker in workers:
                worker.kill()
            await queue.delete_all_keys()
            await memory.close()

    assert len(set(job_ids)) == EVENTS
    per_event = await sql_rows(
        database,
        "SELECT e.id, count(DISTINCT s.observation_id), count(DISTINCT j.id) "
        "FROM agent_events e "
        "LEFT JOIN observation_sources s ON s.agent_event_id = e.id "
        "LEFT JOIN observation_generation_jobs j ON j.agent_event_id = e.id "
        "GROUP BY e.id",
    )
    assert len(per_event) == EVENTS
    wrong = [row for row in per_event if row[1:] != (1, 1)]
    assert not wrong, f"events without exactly one observation set and one job: {wrong}"
    # Every event's answer is the same fact, so dedup keeps one row; what a kill must never
    # do is count an event's occurrence twice (a replay finds its generation key first).
    observations = await sql_rows(
        database,
        "SELECT count(*), count(DISTINCT generation_key), sum(occurrences) FROM observations",
    )
    assert observations == [(1, 1, EVENTS)]
    completions = await sql_rows(
        database,
        "SELECT generation_job_id, count(*) FROM observation_generation_job_events "
        "WHERE event_type = 'completed' GROUP BY generation_job_id HAVING count(*) <> 1",
    )
    assert not completions, f"jobs completed more than once: {completions}"
    killed_mid_job = await sql_rows(
        database, "SELECT count(*) FROM observation_generation_jobs WHERE attempts > 1"
    )
    assert killed_mid_job[0][0] > 0, "no kill landed on a job: the test proved nothing"


# -- short leases, renewed while the provider call runs ---------------------------------------

LEASE_S = 2.0
BEAT_S = 0.5


def _lease_env(
    database: str, redis_server: PrivateRedis, prefix: str, tmp_path: Path, fake: FakeLLMServer
) -> dict[str, str]:
    return base_env(
        database_url=database,
        redis_url=redis_server.url,
        prefix=prefix,
        data_dir=tmp_path / "data",
        CLAUDE_MEM_SERVER_PROVIDER="anthropic:claude-test",
        ANTHROPIC_API_KEY="test",
        ANTHROPIC_BASE_URL=fake.anthropic_base_url,
        CLAUDE_MEM_JOB_LEASE_SECONDS=str(LEASE_S),
        CLAUDE_MEM_JOB_HEARTBEAT_SECONDS=str(BEAT_S),
        CLAUDE_MEM_RECONCILE_INTERVAL_SECONDS="0.5",
        CLAUDE_MEM_WORKER_SHUTDOWN_GRACE_SECONDS="2",
    )


async def _one_job(memory: Memory) -> str:
    team, project = await memory.ensure_project("faults", "lease")
    scope = Scope(team_id=team.id, project_id=project.id)
    ingested = await memory.ingest(
        scope, event_type="tool_use", payload={"tool_name": "Edit", "tool_input": {"f": "a.py"}}
    )
    assert ingested.job is not None
    return ingested.job.id


async def _job_row(database: str, job_id: str) -> tuple[str, int]:
    rows = await sql_rows(
        database,
        "SELECT status, attempts FROM observation_generation_jobs WHERE id = %s",
        (job_id,),
    )
    return str(rows[0][0]), int(rows[0][1])


async def _completions(database: str, job_id: str) -> int:
    rows = await sql_rows(
        database,
        "SELECT count(*) FROM observation_generation_job_events "
        "WHERE generation_job_id = %s AND event_type = 'completed'",
        (job_id,),
    )
    return int(rows[0][0])


async def test_a_killed_workers_job_is_retaken_within_a_lease_and_not_before(
    database: str, redis_server: PrivateRedis, prefix: str, tmp_path: Path, worker_runner: str
) -> None:
    """Worker A hangs in a provider call for three leases (beating), with worker B idle
    beside it: B does not take the job. A is SIGKILLed: B completes the job within a
    lease and a small margin (reconcile interval, the provider call, the writes)."""
    queue = TaskiqQueue.from_url(redis_server.url, prefix=prefix)
    memory = Memory(
        storage=SqlAlchemyStorage.from_url(database), queue=queue, provider=OfflineProvider()
    )
    async with FakeLLMServer(default_text=_reply) as fake:
        fake.anthropic.push(Delay(seconds=120.0))  # A's call: answered only after the test
        env = _lease_env(database, redis_server, prefix, tmp_path, fake)
        first = WorkerProcess(env, tmp_path / "worker-a.log", runner=worker_runner)
        second = WorkerProcess(env, tmp_path / "worker-b.log", runner=worker_runner)
        try:
            first.start()
            await first.started(within=40)
            job_id = await _one_job(memory)

            async def called() -> bool:
                return len(fake.anthropic.requests) >= 1

            await until(called, within=15, what="worker A's provider call")
            second.start()
            await second.started(within=40)
            await asyncio.sleep(3 * LEASE_S)  # A is alive and beating: nobody takes over
            assert len(fake.anthropic.requests) == 1, "a live worker's job was taken over"
            assert await _job_row(database, job_id) == ("processing", 1)

            first.kill()
            killed = time.monotonic()

            async def completed() -> bool:
                return (await _job_row(database, job_id))[0] == "completed"

            await until(completed, within=LEASE_S + 8, what="worker B to take the job over")
            took = time.monotonic() - killed
            assert took <= LEASE_S + 3.0, f"retaken {took:.1f}s after the kill"
            assert await second.terminate() == 0
        finally:
            first.kill()
            second.kill()
            await queue.delete_all_keys()
            await memory.close()
    assert await _job_row(database, job_id) == ("completed", 2)
    assert len(fake.anthropic.requests) == 2
    assert await _completions(database, job_id) == 1
    assert await sql_rows(database, "SELECT count(*) FROM observations") == [(1,)]


async def test_a_provider_call_slower_than_several_leases_completes_once(
    database: str, redis_server: PrivateRedis, prefix: str, tmp_path: Path, worker_runner: str
) -> None:
    """One provider call of four leases, two live workers reconciling every 0.5 s: the
    heartbeat keeps the claim, so the job is processed once (one call, one attempt, one
    completion, one observation)."""
    queue = TaskiqQueue.from_url(redis_server.url, prefix=prefix)
    memory = Memory(
        storage=SqlAlchemyStorage.from_url(database), queue=queue, provider=OfflineProvider()
    )
    async with FakeLLMServer(default_text=_reply) as fake:
        fake.anthropic.push(Delay(seconds=4 * LEASE_S))
        env = _lease_env(database, redis_server, prefix, tmp_path, fake)
        workers = [
            WorkerProcess(env, tmp_path / f"worker-{n}.log", runner=worker_runner) for n in range(2)
        ]
        try:
            for worker in workers:
                worker.start()
            for worker in workers:
                await worker.started(within=40)
            job_id = await _one_job(memory)

            async def completed() -> bool:
                return (await _job_row(database, job_id))[0] == "completed"

            await until(completed, within=4 * LEASE_S + 10, what="the slow job to complete")
            await asyncio.sleep(2 * LEASE_S)  # time for a wrongful second run to show
            for worker in workers:
                assert await worker.terminate() == 0
        finally:
            for worker in workers:
                worker.kill()
            await queue.delete_all_keys()
            await memory.close()
    assert len(fake.anthropic.requests) == 1, "the job was processed twice"
    assert await _job_row(database, job_id) == ("completed", 1)
    assert await _completions(database, job_id) == 1
    assert await sql_rows(database, "SELECT count(*) FROM observations") == [(1,)]
    logs = "".join(worker.log() for worker in workers)
    assert "claim lost" not in logs
