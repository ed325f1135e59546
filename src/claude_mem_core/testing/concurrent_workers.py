"""Several workers at once, in one process: for tests of what must hold whatever the number
of workers (budgets, rate limits, dedup races), and the jobs they work on."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from claude_mem_core.domain.models import GenerationJob, Scope
from claude_mem_core.errors import ProviderError
from claude_mem_core.facade import Memory
from claude_mem_core.ports.provider import GenerationRequest, GenerationResult, Provider, Usage
from claude_mem_core.ports.storage import JobFilter, Page
from claude_mem_core.services.context import Deps
from claude_mem_core.services.generation import Generator
from claude_mem_core.testing.fakes import ScriptedProvider

EDIT_OBSERVATION = """<observation>
  <type>change</type>
  <title>Edited the redirect check</title>
  <narrative>One edit to the auth middleware.</narrative>
</observation>"""

# What every call of a :class:`SlowPaidProvider` costs (more than the prompt, ~500 tokens).
CALL_INPUT_TOKENS = 700
CALL_OUTPUT_TOKENS = 300
CALL_SECONDS = 0.03


class SlowPaidProvider(ScriptedProvider):
    """A paid provider (``name``) whose every call takes :data:`CALL_SECONDS`, so concurrent
    workers overlap, and costs :data:`CALL_INPUT_TOKENS` + :data:`CALL_OUTPUT_TOKENS`; a
    ``ProviderError`` in its script is raised by the next call. ``most_at_once``: the most
    calls that were in flight together."""

    def __init__(self, name: str = "anthropic") -> None:
        super().__init__(default=EDIT_OBSERVATION, model="claude-sonnet-4-5-20250929")
        self.name = name
        self.in_flight = self.most_at_once = 0

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self.requests.append(request)
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        try:
            await asyncio.sleep(CALL_SECONDS)
        finally:
            self.in_flight -= 1
        if self.script:
            reply = self.script.popleft()
            if isinstance(reply, ProviderError):
                raise reply
        return GenerationResult(
            text=EDIT_OBSERVATION,
            provider=self.name,
            model=self.model,
            usage=Usage(input_tokens=CALL_INPUT_TOKENS, output_tokens=CALL_OUTPUT_TOKENS),
        )


# How long a worker waits before taking again a job another worker held a moment ago.
BUSY_PAUSE_S = 0.002


async def process_concurrently(
    deps: Deps, provider: Provider, job_ids: Sequence[str], workers: int
) -> None:
    """``workers`` generators, each with its own worker id, take the jobs from one pile
    concurrently until every job was processed or held; a job refused as busy (another
    worker has it, or the budget's calls in flight) goes back in the pile."""
    pile = list(job_ids)

    async def work(i: int) -> None:
        gen = Generator(deps, provider, worker_id=f"worker-{i}")
        while pile:
            job_id = pile.pop(0)
            result = await gen.process(job_id)
            if result.outcome == "busy":
                pile.append(job_id)
                await asyncio.sleep(BUSY_PAUSE_S)

    await asyncio.gather(*(work(i) for i in range(workers)))


async def queue_edits(memory: Memory, scope: Scope, n: int) -> list[str]:
    """Ingest ``n`` Edit tool uses (of ``src/f<i>.py``) in ``scope``; the ids of every job
    of the project afterwards."""
    for i in range(n):
        await memory.ingest(
            scope,
            event_type="tool_use",
            payload={"tool_name": "Edit", "tool_input": {"file_path": f"src/f{i}.py"}},
        )
    return [job.id for job in await project_jobs(memory, scope)]


async def project_jobs(memory: Memory, scope: Scope) -> list[GenerationJob]:
    """The jobs of ``scope``'s project as stored now (at most 500)."""
    async with memory.deps.storage.unit_of_work() as uow:
        rows, _ = await uow.jobs.list(
            JobFilter(team_id=scope.team_id, project_id=scope.project_id), Page(limit=500)
        )
    return list(rows)
