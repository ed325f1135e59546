"""The deployment pipeline end to end: PostgreSQL + Redis + a real worker process.

The test process is the producer (the core services with a :class:`TaskiqQueue`, as the
HTTP server runs them); ``python -m claude_mem_worker`` runs in a subprocess with the
Anthropic SDK pointed at a local fake LLM server (or the offline provider). Every wait polls
the database with a deadline.

"Redis restarted" is simulated by deleting every key under the test's prefix rather than
restarting the shared Redis server: other test runs use that server concurrently, and it
keeps nothing on disk, so an emptied key space is exactly what a restart leaves behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.adapters.sqlalchemy import SqlAlchemyStorage
from claude_mem_core.adapters.taskiq_queue import TaskiqQueue
from claude_mem_core.domain.models import JobStatus, ObservationKind
from claude_mem_core.services.context import PipelineOptions
from claude_mem_core.testing.databases import create_postgres_database, drop_postgres_database
from claude_mem_core.testing.fake_llm import Delay, FakeLLMServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

T = TypeVar("T")

OBSERVATION = """<observation>
  <type>bugfix</type>
  <title>Fixed the login redirect loop</title>
  <facts><fact>auth/middleware.py compared the callback URL without its query</fact></facts>
  <narrative>The login redirect looped because the callback check ignored the query.</narrative>
  <files_modified><file>auth/middleware.py</file></files_modified>
</observation>"""

SUMMARY = """<summary>
  <request>Fix the login redirect</request>
  <investigated>auth middleware</investigated>
  <learned>the callback check ignored the query string</learned>
  <completed>redirect fixed</completed>
  <next_steps>add a regression test</next_steps>
</summary>"""


def _llm_text(body: Mapping[str, Any]) -> str:
    text = str(body.get("messages", "")) + str(body.get("system", ""))
    return SUMMARY if "exactly one <summary> element" in text else OBSERVATION


async def until(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


class WorkerProcess:
    """A worker with a log file, started and stopped by signal: ``python -m
    claude_mem_worker`` (runner ``claude-mem``) or ``taskiq worker claude_mem_worker:broker``
    with one worker process (runner ``taskiq``), from the same environment."""

    def __init__(self, env: dict[str, str], log_path: Path, runner: str = "claude-mem") -> None:
        self.env = env
        self.log_path = log_path
        self.runner = runner
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, **extra_env: str) -> WorkerProcess:
        env = {**self.env, **extra_env}
        if self.runner == "taskiq":
            grace = env.get("CLAUDE_MEM_WORKER_SHUTDOWN_GRACE_SECONDS", "10")
            command = ["taskiq", "worker", "claude_mem_worker:broker", "--workers", "1"]
            command += ["--wait-tasks-timeout", grace]
            env["CLAUDE_MEM_WORKER_CONCURRENCY"] = "4"
        else:
            command = ["claude_mem_worker", "--concurrency", "4"]
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.runner == "taskiq",
            )
        finally:
            log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def started(self, within: float = 15.0) -> None:
        async def probe() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            return self.log().count(" starting: ") >= self.starts

        self.starts = self.log().count(" starting: ") + 1
        await until(probe, within=within, what="the worker to start")

    async def stop(self, sig: int = signal.SIGTERM, within: float = 10.0) -> tuple[int, float]:
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(sig)

        async def exited() -> bool:
            assert self.proc is not None
            return self.proc.poll() is not None

        try:
            await until(exited, within=within, what="the worker to exit")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log:\n{self.log()}") from None
        return int(self.proc.returncode), time.monotonic() - began

    def kill_now(self) -> None:
        if self.proc is None:
            return
        if self.runner == "taskiq":  # taskiq's process manager and its worker process
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        elif self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
async def database(postgres_base_url: str) -> AsyncIterator[str]:
    url = await create_postgres_database(postgres_base_url)
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(default_text=_llm_text) as server:
        yield server


class Stack:
    def __init__(self, database: str, redis_url: str, tmp_path: Path) -> None:
        self.database = database
        self.redis_url = redis_url
        self.prefix = f"cmtest_{secrets.token_hex(4)}"
        self.tmp_path = tmp_path
        self.workers: list[WorkerProcess] = []
        self.memory: Memory | None = None
        self.queue: TaskiqQueue | None = None

    def env(self, fake: FakeLLMServer | None, **extra: str) -> dict[str, str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CLAUDE_MEM_", "ANTHROPIC_", "OPENAI_", "OPENROUTER_", "GEMINI_"))
        }
        base.update(
            CLAUDE_MEM_DATA_DIR=str(self.tmp_path / "data"),
            CLAUDE_MEM_SERVER_DATABASE_URL=self.database,
            CLAUDE_MEM_QUEUE_ENGINE="redis",
            CLAUDE_MEM_REDIS_URL=self.redis_url,
            CLAUDE_MEM_QUEUE_REDIS_PREFIX=self.prefix,
            CLAUDE_MEM_RECONCILE_INTERVAL_SECONDS="0.5",
            CLAUDE_MEM_WORKER_SHUTDOWN_GRACE_SECONDS="5",
            PYTHONUNBUFFERED="1",
            CLAUDE_MEM_LOG_LEVEL="DEBUG",
        )
        if fake is None:
            base["CLAUDE_MEM_SERVER_PROVIDER"] = "offline"
        else:
            base.update(
                CLAUDE_MEM_SERVER_PROVIDER="anthropic:claude-test",
                ANTHROPIC_API_KEY="test",
                ANTHROPIC_BASE_URL=fake.anthropic_base_url,
            )
        base.update(extra)
        return base

    def worker(
        self, fake: FakeLLMServer | None, *, runner: str = "claude-mem", **extra: str
    ) -> WorkerProcess:
        proc = WorkerProcess(
            self.env(fake, **extra), self.tmp_path / f"worker-{len(self.workers)}.log", runner
        )
        self.workers.append(proc)
        return proc

    async def open(self, options: PipelineOptions | None = None) -> Memory:
        self.queue = TaskiqQueue.from_url(self.redis_url, prefix=self.prefix)
        self.memory = Memory(
            storage=SqlAlchemyStorage.from_url(self.database),
            queue=self.queue,
            provider=OfflineProvider(),  # never used: this process only produces
            options=options or PipelineOptions(),
        )
        return self.memory

    async def close(self) -> None:
        for proc in self.workers:
            proc.kill_now()
        if self.queue is not None:
            await self.queue.delete_all_keys()
        if self.memory is not None:
            await self.memory.close()


@pytest.fixture
async def stack(database: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    made = Stack(database, redis_url, tmp_path)
    try:
        yield made
    finally:
        await made.close()


async def _scope(mem: Memory) -> Scope:
    team, project = await mem.ensure_project("acme", "webapp")
    return Scope(team_id=team.id, project_id=project.id)


def _tool_event(n: int) -> dict[str, Any]:
    return {
        "tool_name": "Edit",
        "tool_input": {"file_path": f"auth/middleware_{n}.py"},
        "tool_response": f"patched redirect check {n}",
    }


async def _status(mem: Memory, scope: Scope, job_id: str) -> JobStatus:
    return (await mem.get_job(scope, job_id)).status


async def _all_completed(mem: Memory, scope: Scope, job_ids: list[str]) -> bool:
    return all([await _status(mem, scope, j) is JobStatus.COMPLETED for j in job_ids])


RUNNERS = pytest.mark.parametrize("runner", ["claude-mem", "taskiq"])


@RUNNERS
async def test_events_become_searchable_observations_and_a_summary(
    stack: Stack, fake_llm: FakeLLMServer, runner: str
) -> None:
    worker = stack.worker(fake_llm, runner=runner).start()
    mem = await stack.open()
    scope = await _scope(mem)
    await worker.started()
    session = (await mem.start_session(scope, external_session_id="s-1")).session
    ingested = [
        await mem.ingest(
            scope, event_type="tool_use", session_id=session.id, payload=_tool_event(n)
        )
        for n in range(2)
    ]
    assert all(i.transport == "enqueued" for i in ingested)
    job_ids = [i.job.id for i in ingested if i.job]
    await until(lambda: _all_completed(mem, scope, job_ids), what="event jobs to complete")

    hits = await mem.search(scope, "login redirect loop")
    assert hits and hits[0].observation.kind is ObservationKind.OBSERVATION
    assert hits[0].observation.metadata["provider"] == "anthropic"
    events = [e.event_type.value for e in await mem.job_events(scope, job_ids[0])]
    assert events == ["queued", "processing", "completed"]
    job = await mem.get_job(scope, job_ids[0])
    assert job.attempts == 1 and job.locked_by is None

    ended = await mem.end_session(scope, session.id)
    assert ended.job is not None
    summary_job = ended.job.id
    await until(lambda: _all_completed(mem, scope, [summary_job]), what="the summary")
    summaries = [o for o in await mem.recent(scope) if o.kind is ObservationKind.SUMMARY]
    assert len(summaries) == 1 and "callback check ignored" in summaries[0].content
    assert (await mem.get_session(scope, session.id)).generation_status.value == "completed"
    assert len(fake_llm.anthropic.requests) == 3  # two events and one summary, no retries

    code, took = await worker.stop(signal.SIGTERM)
    assert code == 0
    assert took < 5, worker.log()
    assert "completed=3" in worker.log()


async def test_sigterm_lets_an_in_flight_job_finish_then_exits_zero(
    stack: Stack, fake_llm: FakeLLMServer
) -> None:
    fake_llm.anthropic.push(Delay(seconds=1.0))  # then the default answer
    worker = stack.worker(fake_llm).start()
    mem = await stack.open()
    scope = await _scope(mem)
    await worker.started()
    job = (await mem.ingest(scope, event_type="tool_use", payload=_tool_event(1))).job
    assert job is not None
    await until(lambda: _ready(fake_llm.anthropic.requests), what="the provider call")
    code, took = await worker.stop(signal.SIGTERM)
    assert code == 0 and took < 5
    assert await _status(mem, scope, job.id) is JobStatus.COMPLETED


@RUNNERS
async def test_a_job_cut_off_by_shutdown_goes_back_to_the_queue(
    stack: Stack, fake_llm: FakeLLMServer, runner: str
) -> None:
    fake_llm.anthropic.push(Delay(seconds=10.0))
    worker = stack.worker(
        fake_llm, runner=runner, CLAUDE_MEM_WORKER_SHUTDOWN_GRACE_SECONDS="0.3"
    ).start()
    mem = await stack.open()
    scope = await _scope(mem)
    await worker.started()
    job = (await mem.ingest(scope, event_type="tool_use", payload=_tool_event(1))).job
    assert job is not None
    await until(lambda: _ready(fake_llm.anthropic.requests), what="the provider call")
    code, took = await worker.stop(signal.SIGTERM)
    assert code == 0 and took < 5, worker.log()
    released = await mem.get_job(scope, job.id)
    assert released.status is JobStatus.QUEUED
    assert released.attempts == 0  # an interrupted try is not an attempt
    last = (await mem.job_events(scope, job.id))[-1]
    assert last.details["source"] == "worker_shutdown"
    assert stack.queue is not None
    assert (await stack.queue.depth())["server_beta_generate_event"] == 1  # published again


async def test_a_second_sigterm_stops_at_once_and_releases_the_job(
    stack: Stack, fake_llm: FakeLLMServer
) -> None:
    fake_llm.anthropic.push(Delay(seconds=20.0))
    worker = stack.worker(fake_llm, CLAUDE_MEM_WORKER_SHUTDOWN_GRACE_SECONDS="30").start()
    mem = await stack.open()
    scope = await _scope(mem)
    await worker.started()
    job = (await mem.ingest(scope, event_type="tool_use", payload=_tool_event(1))).job
    assert job is not None
    await until(lambda: _ready(fake_llm.anthropic.requests), what="the provider call")
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)  # waits up to 30 s for the job ...
    await asyncio.sleep(0.5)
    code, took = await worker.stop(signal.SIGTERM)  # ... unless told twice
    assert code == 0 and took < 5, worker.log()
    assert "second stop request" in worker.log()
    released = await mem.get_job(scope, job.id)
    assert released.status is JobStatus.QUEUED and released.attempts == 0


async def _ready(items: list[Any]) -> bool:
    return bool(items)


async def test_a_job_killed_mid_call_completes_once_on_another_worker(
    stack: Stack, fake_llm: FakeLLMServer
) -> None:
    fake_llm.anthropic.push(Delay(seconds=10.0))  # the first call hangs until we kill it
    first = stack.worker(fake_llm).start()
    mem = await stack.open()
    scope = await _scope(mem)
    await first.started()
    job = (await mem.ingest(scope, event_type="tool_use", payload=_tool_event(1))).job
    assert job is not None
    await until(lambda: _ready(fake_llm.anthropic.requests), what="the first provider call")
    assert await _status(mem, scope, job.id) is JobStatus.PROCESSING
    await first.stop(signal.SIGKILL)

    second = stack.worker(fake_llm, CLAUDE_MEM_JOB_LEASE_SECONDS="2").start()
    await second.started()
    await until(lambda: _all_completed(mem, scope, [job.id]), within=12, what="the rerun")

    done = await mem.get_job(scope, job.id)
    assert done.attempts == 2
    async with mem.storage.unit_of_work() as uow:
        observations = await uow.observations.list_for_job(scope.team_id, scope.project_id, job.id)
    assert len(observations) == 1
    kinds = [e.event_type.value for e in await mem.job_events(scope, job.id)]
    assert kinds.count("completed") == 1
    assert kinds.count("processing") == 2
    assert len(fake_llm.anthropic.requests) == 2
    assert (await second.stop())[0] == 0


async def test_queued_jobs_complete_after_redis_loses_its_data(stack: Stack) -> None:
    mem = await stack.open()
    scope = await _scope(mem)
    # Jobs published while no worker runs, then Redis "restarts" empty.
    early = [
        (await mem.ingest(scope, event_type="tool_use", payload=_tool_event(n))).job
        for n in range(3)
    ]
    assert stack.queue is not None
    assert sum((await stack.queue.depth()).values()) == 3
    await stack.queue.delete_all_keys()
    # A stranded job is published again once per lease: a short one keeps the test short.
    worker = stack.worker(None, CLAUDE_MEM_JOB_LEASE_SECONDS="2").start()
    await worker.started()
    early_ids = [j.id for j in early if j]
    await until(lambda: _all_completed(mem, scope, early_ids), what="reconciled jobs")

    # And again under a running worker: its streams and group vanish mid-run.
    await stack.queue.delete_all_keys()
    late = (await mem.ingest(scope, event_type="tool_use", payload=_tool_event(9))).job
    assert late is not None
    await stack.queue.delete_all_keys()  # this message is lost too
    await until(lambda: _all_completed(mem, scope, [late.id]), what="the late job")
    assert (await worker.stop())[0] == 0
    assert "reconciled=" in worker.log()


async def test_debounce_coalesces_a_sessions_events_into_one_provider_call(
    stack: Stack, fake_llm: FakeLLMServer
) -> None:
    policy = {"CLAUDE_MEM_SERVER_SESSION_POLICY": "debounce"}
    worker = stack.worker(fake_llm, CLAUDE_MEM_SERVER_SESSION_DEBOUNCE_MS="600", **policy).start()
    mem = await stack.open(PipelineOptions(session_policy="debounce", debounce_seconds=0.6))
    scope = await _scope(mem)
    await worker.started()
    session = (await mem.start_session(scope, external_session_id="s-deb")).session
    jobs = [
        (
            await mem.ingest(
                scope, event_type="tool_use", session_id=session.id, payload=_tool_event(n)
            )
        ).job
        for n in range(3)
    ]
    job_ids = [j.id for j in jobs if j]
    await until(lambda: _all_completed(mem, scope, job_ids), what="the coalesced jobs")
    assert len(fake_llm.anthropic.requests) == 1
    prompt = str(fake_llm.anthropic.requests[0].json["messages"])
    assert all(f"middleware_{n}.py" in prompt for n in range(3))
    details = [(await mem.job_events(scope, j))[-1].details for j in job_ids]
    lead = [d for d in details if "coalescedInto" not in d]
    assert len(lead) == 1
    assert (
        sorted(d.get("coalescedInto", "") for d in details if "coalescedInto" in d)
        == [job_ids[0]] * 2
    )
    assert (await worker.stop())[0] == 0


async def test_end_of_session_events_wait_for_the_summary_which_covers_them(
    stack: Stack, fake_llm: FakeLLMServer
) -> None:
    policy = {"CLAUDE_MEM_SERVER_SESSION_POLICY": "end-of-session"}
    worker = stack.worker(fake_llm, **policy).start()
    mem = await stack.open(PipelineOptions(session_policy="end-of-session"))
    scope = await _scope(mem)
    await worker.started()
    session = (await mem.start_session(scope, external_session_id="s-eos")).session
    ingested = [
        await mem.ingest(
            scope, event_type="tool_use", session_id=session.id, payload=_tool_event(n)
        )
        for n in range(2)
    ]
    assert [i.transport for i in ingested] == ["queued_only", "queued_only"]
    job_ids = [i.job.id for i in ingested if i.job]
    ended = await mem.end_session(scope, session.id)
    assert ended.job is not None
    await until(
        lambda: _all_completed(mem, scope, [ended.job.id, *job_ids]),  # type: ignore[union-attr]
        what="summary and covered events",
    )
    assert len(fake_llm.anthropic.requests) == 1  # only the summary was generated
    last = (await mem.job_events(scope, job_ids[0]))[-1]
    assert last.event_type.value == "completed"
    assert last.details["summaryJobId"] == ended.job.id
    assert (await worker.stop())[0] == 0


async def test_the_worker_refuses_an_unmigrated_database_or_the_memory_queue(
    stack: Stack, postgres_base_url: str
) -> None:
    empty = await create_postgres_database(postgres_base_url, migrated=False)
    try:
        proc = stack.worker(None, CLAUDE_MEM_SERVER_DATABASE_URL=empty).start()
        assert proc.proc is not None
        assert await asyncio.to_thread(proc.proc.wait, 15) == 1
        assert "claude-mem migrate" in proc.log()
    finally:
        await drop_postgres_database(empty)
    proc = stack.worker(None, CLAUDE_MEM_QUEUE_ENGINE="memory").start()
    assert proc.proc is not None
    assert await asyncio.to_thread(proc.proc.wait, 15) == 1
    text = proc.log()
    assert "CLAUDE_MEM_QUEUE_ENGINE=redis" in text and "CLAUDE_MEM_REDIS_URL" in text


async def test_the_worker_embeds_generated_observations_and_backfills_memories(
    stack: Stack,
) -> None:
    """Semantic recall on: the worker embeds what its jobs stored, and (periodically) what
    was written without a job; it logs the model, never the key."""
    from claude_mem_core.testing.fake_embeddings import FakeEmbeddingsServer

    secret = "sk-worker-embeddings-SECRET-0123456789"
    async with FakeEmbeddingsServer(dimensions=8, require_api_key=secret) as fake:
        worker = stack.worker(
            None,
            CLAUDE_MEM_EMBEDDINGS_URL=fake.openai_base_url,
            CLAUDE_MEM_EMBEDDINGS_MODEL="fake-model",
            CLAUDE_MEM_EMBEDDINGS_API_KEY=secret,
            CLAUDE_MEM_EMBEDDINGS_INTERVAL_SECONDS="0.5",
        ).start()
        mem = await stack.open()
        scope = await _scope(mem)
        await worker.started()

        async def missing() -> int:
            async with mem.storage.unit_of_work() as uow:
                return await uow.vectors.count_missing(
                    "fake-model", team_id=scope.team_id, project_id=scope.project_id
                )

        ingested = await mem.ingest(scope, event_type="tool_use", payload=_tool_event(1))
        assert ingested.job is not None
        job_id = ingested.job.id
        await until(lambda: _all_completed(mem, scope, [job_id]), what="the job to complete")
        await until(lambda: _zero(missing), within=15, what="generated passages embedded")
        await mem.add_memory(scope, "The on-call rotation changes on Mondays")
        assert await missing() == 1
        await until(lambda: _zero(missing), within=15, what="the memory to be backfilled")

        assert (await worker.stop())[0] == 0
        log = worker.log()
        assert "semantic-recall=fake-model" in log
        assert secret not in log
        assert fake.requests and {r.api_key for r in fake.requests} == {secret}


async def _zero(count: Callable[[], Awaitable[int]]) -> bool:
    return await count() == 0


async def test_the_worker_serves_taskiqs_prometheus_metrics_when_asked(
    stack: Stack, tmp_path: Path
) -> None:
    """``CLAUDE_MEM_WORKER_METRICS_PORT`` switches taskiq's Prometheus middleware on."""
    pytest.importorskip("prometheus_client")  # the ``metrics`` extra
    import aiohttp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    worker = stack.worker(
        None,
        CLAUDE_MEM_WORKER_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    ).start()
    mem = await stack.open()
    scope = await _scope(mem)
    await worker.started()
    job = (await mem.ingest(scope, event_type="tool_use", payload=_tool_event(1))).job
    assert job is not None
    await until(lambda: _all_completed(mem, scope, [job.id]), what="the job")

    async def scraped() -> str:
        with contextlib.suppress(aiohttp.ClientError):
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/metrics") as response,
            ):
                text = await response.text()
                if 'success_tasks_total{task_name="claude_mem.generate"} 1.0' in text:
                    return text
        return ""

    text = await until(scraped, what="the metrics page")
    assert 'received_tasks_total{task_name="claude_mem.generate"} 1.0' in text
    # Ours beside taskiq's: the provider call the job made, by provider and purpose.
    assert re.search(
        r'claude_mem_generation_duration_seconds_count\{[^}]*provider="offline"'
        r'[^}]*purpose="observations"[^}]*\} 1\.0',
        text,
    ), text
    assert (await worker.stop())[0] == 0
