"""The shared 429 pause end to end: the real Anthropic adapter against the local fake
server. The server's ``retry-after`` header travels through the SDK and the adapter's
error into the pause every worker reads, so no worker calls the server again before it
ends (issue #16: "a 429 with retry-after is waited out by all workers")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.anthropic_provider import AnthropicProvider
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.domain.budgets import held_reason
from claude_mem_core.domain.models import JobStatus
from claude_mem_core.ports.storage import JobFilter, Page, Storage
from claude_mem_core.services.generation import Generator
from claude_mem_core.testing.fake_llm import FakeLLMServer
from claude_mem_core.testing.fakes import FixedClock

START = datetime(2026, 6, 14, 12, tzinfo=UTC)
OBSERVATION = (
    "<observation><type>change</type><title>Edited the redirect check</title>"
    "<narrative>One edit.</narrative></observation>"
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(default_text=OBSERVATION) as server:
        yield server


async def test_a_429_from_the_server_pauses_every_worker_until_retry_after(
    storage: Storage, fake: FakeLLMServer
) -> None:
    clock = FixedClock(START)
    provider = AnthropicProvider(
        "sk-ant-test-key", "claude-test", base_url=fake.anthropic_base_url, timeout=5.0
    )
    mem = Memory(storage=storage, queue=InProcessQueue(), provider=provider, clock=clock)
    try:
        team, project = await mem.ensure_project("acme", "app")
        scope = Scope(team_id=team.id, project_id=project.id)
        for i in range(3):
            await mem.ingest(
                scope,
                event_type="tool_use",
                payload={"tool_name": "Edit", "tool_input": {"file_path": f"src/f{i}.py"}},
            )
        async with storage.unit_of_work() as uow:
            rows, _ = await uow.jobs.list(
                JobFilter(team_id=team.id, project_id=project.id), Page(limit=10)
            )
        job_ids = [job.id for job in rows]
        workers = [Generator(mem.deps, provider, worker_id=f"w{i}") for i in range(3)]
        fake.anthropic.rate_limited(retry_after="20")

        first = await workers[0].process(job_ids[0])
        assert first.outcome == "retry_scheduled"
        assert len(fake.anthropic.requests) == 1
        for worker, job_id in zip(workers[1:], job_ids[1:], strict=True):
            assert (await worker.process(job_id)).outcome == "held"
        assert len(fake.anthropic.requests) == 1  # nobody else reached the server

        async with storage.unit_of_work() as uow:
            held = [await uow.jobs.get(team.id, job_id) for job_id in job_ids[1:]]
        for job in held:
            assert job is not None
            assert (job.status, job.attempts, held_reason(job)) == (
                JobStatus.QUEUED,
                0,
                "rate_limit",
            )
            assert job.next_attempt_at == START + timedelta(seconds=20)

        clock.advance(20)
        outcomes = [(await w.process(j)).outcome for w, j in zip(workers, job_ids, strict=True)]
        assert outcomes == ["completed"] * 3
        assert len(fake.anthropic.requests) == 4
    finally:
        await provider.close()
