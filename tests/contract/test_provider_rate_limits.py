"""Provider rate limits shared by every worker (issue #16, item 4), on every storage
backend: with a limit of K calls per minute and N concurrent workers, exactly K calls
reach the provider in a minute; the other jobs stay queued (no attempt used), held until
the next minute, and run then."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.domain.budgets import held_reason
from claude_mem_core.domain.models import GenerationJob, JobEventType, JobStatus
from claude_mem_core.domain.rate_limits import RateLimits, parse_rpm
from claude_mem_core.ports.storage import Storage
from claude_mem_core.services import debounce
from claude_mem_core.services.context import PipelineOptions
from claude_mem_core.services.generation import Generator
from claude_mem_core.testing.concurrent_workers import (
    SlowPaidProvider,
    process_concurrently,
    project_jobs,
    queue_edits,
)
from claude_mem_core.testing.fakes import FixedClock

# Half a minute in: the next window starts at 12:01:00, not a minute from now.
START = datetime(2026, 6, 14, 12, 0, 30, tzinfo=UTC)
NEXT_MINUTE = datetime(2026, 6, 14, 12, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


def _memory(storage: Storage, clock: FixedClock, provider: SlowPaidProvider, rpm: str) -> Memory:
    return Memory(
        storage=storage,
        queue=InProcessQueue(),
        provider=provider,
        clock=clock,
        options=PipelineOptions(provider_rpm=parse_rpm(rpm)),
    )


async def _queued(mem: Memory, n: int) -> tuple[Scope, list[str]]:
    team, project = await mem.ensure_project("acme", "app")
    scope = Scope(team_id=team.id, project_id=project.id)
    return scope, await queue_edits(mem, scope, n)


@pytest.mark.parametrize(("limit", "workers"), [(3, 4), (5, 6)])
async def test_k_calls_a_minute_whatever_the_number_of_workers(
    storage: Storage, clock: FixedClock, limit: int, workers: int
) -> None:
    provider = SlowPaidProvider()
    mem = _memory(storage, clock, provider, str(limit))
    scope, job_ids = await _queued(mem, 12)

    await process_concurrently(mem.deps, provider, job_ids, workers)

    assert len(provider.requests) == limit
    assert provider.most_at_once > 1  # the workers did call at the same time
    held = [j for j in await project_jobs(mem, scope) if j.status is JobStatus.QUEUED]
    assert len(held) == 12 - limit
    for job in held:
        assert held_reason(job) == "rate_limit"
        assert job.attempts == 0  # holding uses up no attempt
        assert job.next_attempt_at == NEXT_MINUTE

    # Still within the minute: nothing more is called.
    clock.advance(29)
    await process_concurrently(mem.deps, provider, [j.id for j in held], workers)
    assert len(provider.requests) == limit

    # Each new minute lets the next K through, until every job is done.
    for minute in range(1, math.ceil(12 / limit)):
        clock.advance(60 if minute > 1 else 1)
        pending = [j.id for j in await project_jobs(mem, scope) if j.status is JobStatus.QUEUED]
        await process_concurrently(mem.deps, provider, pending, workers)
        assert len(provider.requests) == min(12, limit * (minute + 1))
    jobs = await project_jobs(mem, scope)
    assert all(j.status is JobStatus.COMPLETED and j.attempts == 1 for j in jobs)


async def test_a_held_job_says_why_in_one_event(storage: Storage, clock: FixedClock) -> None:
    provider = SlowPaidProvider()
    mem = _memory(storage, clock, provider, "anthropic=2")
    scope, job_ids = await _queued(mem, 3)
    gen = Generator(mem.deps, provider, worker_id="w")
    outcomes = [(await gen.process(job_id)).outcome for job_id in job_ids]
    assert outcomes == ["completed", "completed", "held"]
    # Delivered again while still held (a duplicate message): no second event, no call.
    assert (await gen.process(job_ids[2])).outcome == "held"
    assert len(provider.requests) == 2
    async with mem.deps.storage.unit_of_work() as uow:
        events = await uow.job_events.list(scope.team_id, job_ids[2])
    holds = [e for e in events if e.details.get("heldReason") == "rate_limit"]
    assert len(holds) == 1
    assert holds[0].event_type is JobEventType.RETRY_SCHEDULED
    assert holds[0].status_after is JobStatus.QUEUED
    assert holds[0].details["nextAttemptAt"] == "2026-06-14T12:01:00Z"
    assert holds[0].details["callsPerMinute"] == 2
    assert holds[0].details["provider"] == "anthropic"

    clock.advance(30)
    await mem.drain()
    assert len(provider.requests) == 3


async def test_a_call_the_rate_limit_refuses_gives_its_budget_back(
    storage: Storage, clock: FixedClock
) -> None:
    provider = SlowPaidProvider()
    mem = _memory(storage, clock, provider, "2")
    scope, job_ids = await _queued(mem, 5)
    await mem.set_budget(scope, period="day", token_limit=1_000_000)
    await process_concurrently(mem.deps, provider, job_ids, 4)
    assert len(provider.requests) == 2
    status = await mem.budget(scope)
    assert status is not None
    assert status.period.spent_tokens == 2 * 1_000
    assert (status.period.reserved_tokens, status.period.in_flight) == (0, 0)


async def test_a_spent_budget_holds_before_the_rate_limit_counts(
    storage: Storage, clock: FixedClock
) -> None:
    provider = SlowPaidProvider()
    mem = _memory(storage, clock, provider, "3")
    scope, job_ids = await _queued(mem, 4)
    await mem.set_budget(scope, period="day", token_limit=1_000)
    gen = Generator(mem.deps, provider, worker_id="w")
    results = [await gen.process(job_id) for job_id in job_ids]
    assert [r.outcome for r in results] == ["completed", "held", "held", "held"]
    assert [r.error for r in results[1:]] == ["budget"] * 3
    async with mem.deps.storage.unit_of_work() as uow:
        # Only the call made was counted: the minute's other two slots stay free.
        assert await uow.provider_rates.calls("anthropic", START.replace(second=0)) == 1


async def test_a_debounced_batch_is_one_call_of_the_minute(
    storage: Storage, clock: FixedClock
) -> None:
    provider = SlowPaidProvider()
    mem = _memory(storage, clock, provider, "anthropic=1")
    team, project = await mem.ensure_project("acme", "app")
    scope = Scope(team_id=team.id, project_id=project.id)
    batches: list[list[GenerationJob]] = []
    for name in ("a", "b"):
        session = (await mem.start_session(scope, external_session_id=name)).session
        ids = []
        for i in range(3):
            got = await mem.ingest(
                scope,
                event_type="tool_use",
                session_id=session.id,
                payload={"tool_name": "Edit", "tool_input": {"file_path": f"{name}/m{i}.py"}},
            )
            assert got.job is not None
            ids.append(got.job.id)
        batches.append([await mem.get_job(scope, job_id) for job_id in ids])
    batcher = debounce.SessionBatcher(mem.generator)

    first = await batcher.process_batch(batches[0])
    assert {r.outcome for r in first} == {"completed"}
    second = await batcher.process_batch(batches[1])
    assert [(r.outcome, r.error) for r in second] == [("held", "rate_limit")] * 3
    assert len(provider.requests) == 1
    for job in batches[1]:
        current = await mem.get_job(scope, job.id)
        assert (current.status, current.attempts, current.next_attempt_at) == (
            JobStatus.QUEUED,
            0,
            NEXT_MINUTE,
        )

    clock.advance(30)
    again = await batcher.process_batch([await mem.get_job(scope, j.id) for j in batches[1]])
    assert {r.outcome for r in again} == {"completed"}
    assert len(provider.requests) == 2


async def test_limits_are_per_provider_and_free_providers_are_never_held(
    storage: Storage, clock: FixedClock
) -> None:
    for name in ("anthropic", "ollama"):
        provider = SlowPaidProvider(name)
        mem = _memory(storage, clock, provider, "openai=1")
        scope, job_ids = await _queued(mem, 3)
        await process_concurrently(mem.deps, provider, job_ids, 2)
        assert len(provider.requests) == 3, name
        assert all(j.status is JobStatus.COMPLETED for j in await project_jobs(mem, scope))
        clock.advance(timedelta(hours=1).total_seconds())

    provider = SlowPaidProvider("ollama")
    mem = _memory(storage, clock, provider, "1")  # every paid provider: not a free one
    _, job_ids = await _queued(mem, 3)
    await process_concurrently(mem.deps, provider, job_ids, 2)
    assert len(provider.requests) == 3


def test_a_limit_is_the_providers_or_the_default() -> None:
    limits = RateLimits(per_provider={"anthropic": 50}, default=200)
    assert limits.limit_for("Anthropic") == 50
    assert limits.limit_for("claude") == 50
    assert limits.limit_for("openai") == 200
    assert limits.limit_for("offline") is None
    assert RateLimits().limit_for("openai") is None
