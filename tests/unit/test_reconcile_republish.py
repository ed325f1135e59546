"""Reconciliation republishes a stranded job at most once per period, in bounded batches.

600 queued jobs whose messages never reach a worker (a queue that drops everything), two
workers reconciling every 5 s for two minutes: each job is published again at most once
per 30 s lease, each pass publishes at most the batch size, and every job is published
again in the end (none starves behind the others).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import attrs

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.memory import InMemoryStorage
from claude_mem_core.domain.models import GenerationJob
from claude_mem_core.ports.queue import QueueMessage
from claude_mem_core.services import reconcile
from claude_mem_core.services.context import PipelineOptions
from claude_mem_core.testing.fakes import FixedClock, ScriptedProvider

JOBS = 600
LEASE = 30.0
BATCH = 100
PASS_EVERY = 5.0
MINUTES = 2


class DroppingQueue:
    """Takes every message and delivers none; counts publishes per job."""

    name = "dropping"

    def __init__(self) -> None:
        self.published: Counter[str] = Counter()
        self.calls: list[int] = []

    async def publish(self, message: QueueMessage, *, delay: float = 0.0) -> None:
        self.published[message.job_id] += 1

    async def publish_many(self, messages: Sequence[tuple[QueueMessage, float]]) -> None:
        self.calls.append(len(messages))
        for message, _ in messages:
            self.published[message.job_id] += 1

    async def depth(self) -> dict[str, int]:
        return {}

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_each_stranded_job_is_republished_at_most_once_per_lease() -> None:
    clock = FixedClock()
    queue = DroppingQueue()
    options = PipelineOptions(lease_seconds=LEASE, reconcile_batch=BATCH)
    memory = Memory(
        storage=InMemoryStorage(),
        queue=queue,
        provider=ScriptedProvider(),
        options=options,
        clock=clock,
    )
    team, project = await memory.ensure_project("reconcile", "stranded")
    scope = Scope(team_id=team.id, project_id=project.id)
    for n in range(JOBS):
        await memory.ingest(scope, event_type="tool_use", payload={"n": n})
    await memory.event_writer.drain()
    assert len(queue.published) == JOBS
    queue.published.clear()
    queue.calls.clear()
    # Two workers reconciling the same storage (their passes interleave).
    other = attrs.evolve(memory.deps)
    per_pass: list[int] = []
    passes = int(MINUTES * 60 / PASS_EVERY)
    for n in range(passes):
        clock.advance(PASS_EVERY / 2)
        deps = memory.deps if n % 2 == 0 else other
        before = sum(queue.published.values())
        report = await reconcile.reconcile(deps, republish_after_seconds=LEASE)
        per_pass.append(sum(queue.published.values()) - before)
        assert report.republished == per_pass[-1]
    assert max(per_pass) <= BATCH
    assert all(size <= BATCH for size in queue.calls)
    # Over 2 minutes of 30 s periods (the first starting at ingest), at most 4 each.
    assert max(queue.published.values()) <= MINUTES * 60 / LEASE
    assert set(queue.published) == {job.id for job in await _jobs(memory, scope)}
    assert sum(queue.published.values()) < JOBS * MINUTES * 60 / LEASE


async def test_two_reconcilers_racing_publish_a_job_once() -> None:
    clock = FixedClock()
    queue = DroppingQueue()
    memory = Memory(
        storage=InMemoryStorage(),
        queue=queue,
        provider=ScriptedProvider(),
        options=PipelineOptions(lease_seconds=LEASE, reconcile_batch=BATCH),
        clock=clock,
    )
    team, project = await memory.ensure_project("reconcile", "race")
    scope = Scope(team_id=team.id, project_id=project.id)
    for n in range(10):
        await memory.ingest(scope, event_type="tool_use", payload={"n": n})
    await memory.event_writer.drain()
    queue.published.clear()
    clock.advance(LEASE + 1)
    reports = [
        await reconcile.reconcile(memory.deps, republish_after_seconds=LEASE) for _ in range(3)
    ]
    assert [r.republished for r in reports] == [10, 0, 0]
    assert set(queue.published.values()) == {1}


async def _jobs(memory: Memory, scope: Scope) -> list[GenerationJob]:
    jobs: list[GenerationJob] = []
    while True:
        page = await memory.list_jobs(scope, limit=200, offset=len(jobs))
        jobs += page.jobs
        if len(jobs) >= page.total:
            return jobs
