"""Budgets and the shared provider pause (issue #16, item 4) with N concurrent workers, on
every storage backend: a budget of K tokens lets exactly the calls within K reach the
provider, held jobs stay queued without using an attempt and run in the next period or
when the budget is raised; a 429 with retry-after is waited out by every worker; a
worker killed mid-call does not keep its reservation once its lease expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.domain.budgets import held_reason
from claude_mem_core.domain.models import JobEventType, JobStatus
from claude_mem_core.errors import InvalidInput, ProviderError
from claude_mem_core.ports.storage import Storage
from claude_mem_core.services import provider_gate
from claude_mem_core.services.generation import Generator
from claude_mem_core.services.reconcile import reconcile
from claude_mem_core.testing.concurrent_workers import (
    CALL_INPUT_TOKENS,
    CALL_OUTPUT_TOKENS,
    SlowPaidProvider,
    process_concurrently,
    project_jobs,
    queue_edits,
)
from claude_mem_core.testing.fakes import FixedClock

# Tokens per call of the provider (more than the prompt, ~500).
COST = CALL_INPUT_TOKENS + CALL_OUTPUT_TOKENS


START = datetime(2026, 6, 14, 12, tzinfo=UTC)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def provider() -> SlowPaidProvider:
    return SlowPaidProvider()


@pytest.fixture
async def mem(storage: Storage, clock: FixedClock, provider: SlowPaidProvider) -> Memory:
    return Memory(storage=storage, queue=InProcessQueue(), provider=provider, clock=clock)


@pytest.mark.parametrize(("limit", "workers"), [(10_500, 4), (10_000, 6)])
async def test_a_budget_of_k_tokens_lets_exactly_the_calls_within_k_through(
    mem: Memory, provider: SlowPaidProvider, limit: int, workers: int
) -> None:
    team, project = await mem.ensure_project("acme", "app")
    scope = Scope(team_id=team.id, project_id=project.id)
    await mem.set_budget(scope, period="month", token_limit=limit)
    job_ids = await queue_edits(mem, scope, 14)

    await process_concurrently(mem.deps, provider, job_ids, workers)

    assert len(provider.requests) == limit // COST
    assert provider.most_at_once > 1  # the workers did call at the same time
    jobs = await project_jobs(mem, scope)
    held = [j for j in jobs if j.status is JobStatus.QUEUED]
    assert len([j for j in jobs if j.status is JobStatus.COMPLETED]) == limit // COST
    assert len(held) == 14 - limit // COST
    next_month = datetime(2026, 7, 1, tzinfo=UTC)
    for job in held:
        assert held_reason(job) == "budget"
        assert job.attempts == 0  # holding uses up no attempt
        assert job.next_attempt_at == next_month
    status = await mem.budget(scope)
    assert status is not None
    assert status.period.spent_tokens == COST * (limit // COST)
    assert (status.period.reserved_tokens, status.period.in_flight) == (0, 0)
    assert status.remaining_tokens == limit - COST * (limit // COST)
    report = await mem.usage_report(scope, days=1)
    assert report.total.calls == limit // COST  # the ledger agrees


async def test_a_held_job_logs_one_event_and_resumes_in_the_next_period(
    mem: Memory, provider: SlowPaidProvider, clock: FixedClock
) -> None:
    team, project = await mem.ensure_project("acme", "app")
    scope = Scope(team_id=team.id, project_id=project.id)
    await mem.set_budget(scope, period="day", token_limit=2_500)
    await queue_edits(mem, scope, 4)
    await mem.drain()
    assert len(provider.requests) == 2
    held = [j for j in await project_jobs(mem, scope) if j.status is JobStatus.QUEUED]
    assert len(held) == 2
    # Delivered again while still held (a duplicate message): no second event, no call.
    gen = Generator(mem.deps, provider, worker_id="again")
    assert (await gen.process(held[0].id)).outcome == "held"
    await mem.drain()
    assert len(provider.requests) == 2
    for job in held:
        async with mem.deps.storage.unit_of_work() as uow:
            events = await uow.job_events.list(scope.team_id, job.id)
        holds = [e for e in events if e.details.get("heldReason") == "budget"]
        assert len(holds) == 1
        assert holds[0].event_type is JobEventType.RETRY_SCHEDULED
        assert holds[0].status_after is JobStatus.QUEUED
        assert holds[0].details["nextAttemptAt"] == "2026-06-15T00:00:00Z"

    clock.advance(12 * 3600)  # midnight UTC: a new day, a new budget
    await mem.drain()
    assert len(provider.requests) == 4
    jobs = await project_jobs(mem, scope)
    assert all(j.status is JobStatus.COMPLETED and j.attempts == 1 for j in jobs)


async def test_raising_or_clearing_the_budget_runs_held_jobs_now(
    mem: Memory, provider: SlowPaidProvider
) -> None:
    team, project = await mem.ensure_project("acme", "app")
    scope = Scope(team_id=team.id, project_id=project.id)
    await mem.set_budget(scope, period="month", token_limit=1_000)
    await queue_edits(mem, scope, 4)
    await mem.drain()
    assert len(provider.requests) == 1

    await mem.set_budget(scope, period="month", token_limit=3_000)  # two more calls
    await mem.drain()
    assert len(provider.requests) == 3
    remaining = [j for j in await project_jobs(mem, scope) if j.status is JobStatus.QUEUED]
    assert [held_reason(j) for j in remaining] == ["budget"]

    await mem.clear_budget(scope)
    assert await mem.budget(scope) is None
    await mem.drain()
    assert len(provider.requests) == 4
    assert all(j.status is JobStatus.COMPLETED for j in await project_jobs(mem, scope))


async def test_a_budget_in_dollars_holds_too(mem: Memory, provider: SlowPaidProvider) -> None:
    team, project = await mem.ensure_project("acme", "app")
    scope = Scope(team_id=team.id, project_id=project.id)
    per_call = (CALL_INPUT_TOKENS * 3.0 + CALL_OUTPUT_TOKENS * 15.0) / 1e6  # list price
    await mem.set_budget(scope, period="day", usd_limit=per_call * 2.5)
    await queue_edits(mem, scope, 5)
    await mem.drain()
    assert len(provider.requests) == 2
    status = await mem.budget(scope)
    assert status is not None and status.remaining_usd == pytest.approx(per_call * 0.5)


async def test_budgets_are_per_project(mem: Memory, provider: SlowPaidProvider) -> None:
    team, project = await mem.ensure_project("acme", "app")
    _, other = await mem.ensure_project("acme", "other")
    scope = Scope(team_id=team.id, project_id=project.id)
    free = Scope(team_id=team.id, project_id=other.id)
    await mem.set_budget(scope, period="day", token_limit=1_000)
    await queue_edits(mem, scope, 2)
    await queue_edits(mem, free, 3)
    await mem.drain()
    assert len(provider.requests) == 4
    assert await mem.budget(free) is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"period": "week", "token_limit": 10}, "period"),
        ({"token_limit": -1}, "tokenLimit"),
        ({"token_limit": 1.5}, "tokenLimit"),
        ({"usd_limit": 0}, "usdLimit"),
        ({"usd_limit": "5"}, "usdLimit"),
    ],
)
async def test_bad_budgets_name_the_field(
    mem: Memory, kwargs: dict[str, object], field: str
) -> None:
    team, project = await mem.ensure_project("acme", "app")
    scope = Scope(team_id=team.id, project_id=project.id)
    with pytest.raises(InvalidInput) as raised:
        await mem.set_budget(scope, **kwargs)  # type: ignore[arg-type]
    assert raised.value.issues[0].path == field


async def test_a_429_with_retry_after_is_waited_out_by_every_worker(
    mem: Memory, provider: SlowPaidProvider, clock: FixedClock
) -> None:
    team, project = await mem.ensure_project("acme", "app")
    scope = Scope(team_id=team.id, project_id=project.id)
    job_ids = await queue_edits(mem, scope, 4)
    provider.script.append(ProviderError("slow down", kind="rate_limit", retry_after=30))
    workers = [Generator(mem.deps, provider, worker_id=f"w{i}") for i in range(3)]

    first = await workers[0].process(job_ids[0])
    assert first.outcome == "retry_scheduled"  # the job that got the 429 counts its try
    calls = len(provider.requests)
    for i, job_id in enumerate(job_ids[1:], start=1):
        result = await workers[i % 3].process(job_id)
        assert result.outcome == "held"
    assert len(provider.requests) == calls  # nobody called while paused
    paused_until = START + timedelta(seconds=30)
    for job in await project_jobs(mem, scope):
        if job.id == job_ids[0]:
            assert job.attempts == 1
            continue
        assert (job.status, job.attempts, held_reason(job)) == (
            JobStatus.QUEUED,
            0,
            "rate_limit",
        )
        assert job.next_attempt_at == paused_until

    clock.advance(29)
    assert (await workers[2].process(job_ids[1])).outcome == "held"
    assert len(provider.requests) == calls
    clock.advance(1)
    results = [await workers[i % 3].process(j) for i, j in enumerate(job_ids)]
    assert [r.outcome for r in results] == ["completed"] * 4
    assert len(provider.requests) == calls + 4


async def _die_mid_call(mem: Memory, provider: SlowPaidProvider, job_id: str) -> None:
    """A worker passes the gate and claims ``job_id`` (one commit, as ``process`` does),
    then is killed before its provider call returns: nothing settles or releases."""
    gen = Generator(mem.deps, provider, worker_id="killed")
    async with mem.deps.storage.unit_of_work() as uow:
        job = await uow.jobs.get_unscoped(job_id)
        assert job is not None
        gate = await provider_gate.admit(
            uow, mem.deps, provider, job, prompt_tokens=lambda: _tokens(500)
        )
        assert isinstance(gate, provider_gate.Admit) and gate.ticket is not None
        assert await gen.claim(uow, job, mem.deps.clock.now()) is not None


async def _tokens(n: int) -> int:
    return n


@pytest.mark.parametrize("rescuer", ["reconcile", "another_worker"])
async def test_a_killed_workers_reservation_is_given_back_when_its_lease_expires(
    mem: Memory, provider: SlowPaidProvider, clock: FixedClock, rescuer: str
) -> None:
    team, project = await mem.ensure_project("acme", "app")
    scope = Scope(team_id=team.id, project_id=project.id)
    await mem.set_budget(scope, period="month", token_limit=3_000)
    dead, other = await queue_edits(mem, scope, 2)
    await _die_mid_call(mem, provider, dead)

    status = await mem.budget(scope)
    assert status is not None
    assert (status.period.reserved_tokens, status.period.in_flight) == (500, 1)
    # The period's first call runs alone: while the dead call counts, nothing else runs.
    assert (await Generator(mem.deps, provider, worker_id="w").process(other)).outcome == "busy"

    clock.advance(mem.deps.options.lease_seconds + 1)
    if rescuer == "reconcile":
        report = await reconcile(mem.deps, republish_after_seconds=3600)
        assert report.released == 1
        status = await mem.budget(scope)
        assert status is not None
        assert (status.period.reserved_tokens, status.period.in_flight) == (0, 0)
        await mem.drain()
    else:
        # The next worker delivered the job takes it over: it gives the dead call's
        # reservation back before reserving its own, in the same transaction.
        result = await Generator(mem.deps, provider, worker_id="next").process(dead)
        assert result.outcome == "completed"
        await Generator(mem.deps, provider, worker_id="next").process(other)

    assert len(provider.requests) == 2
    jobs = {job.id: job for job in await project_jobs(mem, scope)}
    assert jobs[dead].status is JobStatus.COMPLETED and jobs[other].status is JobStatus.COMPLETED
    status = await mem.budget(scope)
    assert status is not None
    assert (status.period.spent_tokens, status.period.calls) == (2 * COST, 2)
    assert (status.period.reserved_tokens, status.period.in_flight) == (0, 0)
    assert status.remaining_tokens == 1_000  # the dead call took nothing for good


async def test_erasing_a_project_removes_its_reservations(
    mem: Memory, provider: SlowPaidProvider
) -> None:
    team, project = await mem.ensure_project("acme", "app")
    scope = Scope(team_id=team.id, project_id=project.id)
    await mem.set_budget(scope, period="month", token_limit=3_000)
    (dead,) = await queue_edits(mem, scope, 1)
    await _die_mid_call(mem, provider, dead)

    await mem.erase_project(scope)
    async with mem.deps.storage.unit_of_work() as uow:
        assert not await uow.budgets.release_for_job(dead)  # its row went with the project
