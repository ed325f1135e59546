"""SIGKILL the worker 20 times at random points under a stream of events.

The real worker process (``python -m claude_mem_worker``) consumes the real taskiq Redis
queue (a private Redis) and calls a fake Anthropic server that answers after small random
delays, so kills land before, during and after provider calls and commits. Leases are 2 s,
so a killed worker's jobs come back quickly. At the end every event has exactly one
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
                worker = WorkerProcess(env, tmp_path / f"worker-{kills}.log").start()
                workers.append(worker)
                await worker.started()
                await asyncio.sleep(rng.uniform(0.05, 0.5))
                worker.kill()
                kills += 1
            job_ids = await producer

            final = WorkerProcess(env, tmp_path / "worker-final.log").start()
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
    observations = await sql_rows(
        database, "SELECT count(*), count(DISTINCT generation_key) FROM observations"
    )
    assert observations == [(EVENTS, EVENTS)]
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
