"""Several workers at once, in one process: for tests of what must hold whatever the number
of workers (budgets, rate limits, dedup races)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from claude_mem_core.ports.provider import Provider
from claude_mem_core.services.context import Deps
from claude_mem_core.services.generation import Generator

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
