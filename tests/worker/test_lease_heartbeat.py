"""Leases are short and renewed by a heartbeat while the provider call runs.

In-process, on the in-memory adapter with real time: a provider call several leases long
is never taken over while its worker beats (neither by another worker's claim nor by
reconciliation), and a worker whose claim was lost mid-call (an operator cancelled the
job) stops the call and writes nothing. The same with real worker processes, PostgreSQL
and Redis, and SIGKILL: ``tests/faults/test_worker_kill.py``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.memory import InMemoryStorage
from claude_mem_core.domain.models import JobStatus
from claude_mem_core.errors import StorageUnavailable
from claude_mem_core.ports.provider import GenerationRequest, GenerationResult
from claude_mem_core.services import reconcile
from claude_mem_core.services.context import PipelineOptions
from claude_mem_core.services.generation import Generator

OBSERVATION = (
    "<observation><type>change</type><title>Edited a file</title>"
    "<narrative>It was edited.</narrative></observation>"
)
LEASE = 0.3
BEAT = 0.1


class SlowProvider:
    """Answers after ``seconds``; records each call and whether it was cancelled."""

    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self.cancelled = 0
        self.called = asyncio.Event()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self.calls += 1
        self.called.set()
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return GenerationResult(text=OBSERVATION, provider=self.name, model="slow-1")

    async def close(self) -> None:
        return None


async def _setup(provider: SlowProvider) -> tuple[Memory, Scope, str]:
    memory = Memory(
        storage=InMemoryStorage(),
        queue=None,
        provider=provider,
        options=PipelineOptions(lease_seconds=LEASE, heartbeat_seconds=BEAT),
        worker_id="worker-a",
    )
    team, project = await memory.ensure_project("lease", "heartbeat")
    scope = Scope(team_id=team.id, project_id=project.id)
    ingested = await memory.ingest(scope, event_type="tool_use", payload={"tool_name": "Edit"})
    assert ingested.job is not None
    return memory, scope, ingested.job.id


async def test_a_call_slower_than_several_leases_is_never_taken_over() -> None:
    provider = SlowProvider(seconds=LEASE * 5)
    memory, scope, job_id = await _setup(provider)
    other = Generator(memory.deps, provider, worker_id="worker-b")
    running = asyncio.create_task(memory.generator.process(job_id))
    others: list[str] = []
    stalled = 0
    while not running.done():
        await asyncio.sleep(LEASE / 4)
        report = await reconcile.reconcile(memory.deps, republish_after_seconds=0.0)
        stalled += report.released + report.failed
        if not running.done():
            others.append((await other.process(job_id)).outcome)
    result = await running
    assert result.outcome == "completed"
    assert stalled == 0, "reconciliation took a live worker's job"
    assert set(others) <= {"busy", "skipped"} and "busy" in others
    assert provider.calls == 1 and provider.cancelled == 0
    job = await memory.get_job(scope, job_id)
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 1)
    kinds = [e.event_type.value for e in await memory.job_events(scope, job_id)]
    assert kinds.count("processing") == 1 and kinds.count("completed") == 1


async def test_a_lost_claim_stops_the_call_and_writes_nothing() -> None:
    provider = SlowProvider(seconds=30.0)
    memory, scope, job_id = await _setup(provider)
    running = asyncio.create_task(memory.generator.process(job_id))
    await asyncio.wait_for(provider.called.wait(), timeout=5.0)
    await memory.cancel_job(scope, job_id)
    started = time.monotonic()
    result = await asyncio.wait_for(running, timeout=5.0)
    assert result.outcome == "lost_lease"
    assert time.monotonic() - started < BEAT * 5, "the call was not stopped at the next beat"
    assert provider.cancelled == 1
    job = await memory.get_job(scope, job_id)
    assert job.status is JobStatus.CANCELLED
    async with memory.storage.unit_of_work() as uow:
        made = await uow.observations.list_for_job(scope.team_id, scope.project_id, job_id)
    assert list(made) == []


async def test_a_heartbeat_survives_a_failed_renewal() -> None:
    """A renewal that cannot reach the database is tried again at the next beat."""
    provider = SlowProvider(seconds=LEASE * 3)
    memory, _, job_id = await _setup(provider)
    storage = memory.storage
    assert isinstance(storage, InMemoryStorage)
    real = storage.unit_of_work
    failures = 0

    def flaky() -> Any:
        nonlocal failures
        if provider.calls and failures < 1:
            failures += 1
            raise StorageUnavailable("database briefly down")
        return real()

    storage.unit_of_work = flaky  # type: ignore[method-assign]
    try:
        result = await memory.generator.process(job_id)
    finally:
        storage.unit_of_work = real  # type: ignore[method-assign]
    assert failures == 1
    assert result.outcome == "completed"


@pytest.mark.parametrize("beat", [None, 0.2])
def test_heartbeat_defaults_to_a_third_of_the_lease(beat: float | None) -> None:
    options = PipelineOptions(lease_seconds=30, heartbeat_seconds=beat)
    assert options.heartbeat_interval == (10.0 if beat is None else beat)
