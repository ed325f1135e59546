"""Leases: a claimed job's lease is renewed while its provider call runs, and the call is
abandoned when the claim turns out to be lost (so its results are never written)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from claude_mem_core.domain.models import GenerationJob
from claude_mem_core.errors import ClaudeMemError
from claude_mem_core.services.context import Deps

# The generation use case's logger: these lines are part of its story.
log = logging.getLogger("claude_mem.generation")

T = TypeVar("T")


class LeaseLost(Exception):
    """The claim of a job was lost while its provider call ran (cancelled, released or
    taken over by another worker): its results must not be written."""


async def holding_lease(deps: Deps, jobs: Sequence[GenerationJob], work: Awaitable[T]) -> T:
    """Run ``work`` (a provider call) while renewing the lease of the claimed ``jobs``
    every ``heartbeat_interval`` seconds, so a slow call is never taken over from a live
    worker, while a dead worker's job is taken over one lease after its last beat.

    Each renewal is fenced (:meth:`JobRepository.renew_lease`): when the first job's claim
    is found lost, ``work`` is cancelled and :class:`LeaseLost` raised. A renewal that
    fails (the database is briefly unreachable) is tried again at the next beat."""
    task = asyncio.ensure_future(work)
    stop = asyncio.Event()
    lost = False
    beat = deps.options.heartbeat_interval

    async def keep() -> None:
        nonlocal lost
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=beat)
            if stop.is_set():
                return
            try:
                now = deps.clock.now()
                async with deps.storage.unit_of_work() as uow:
                    held = [await uow.jobs.renew_lease(job, now=now) for job in jobs]
            except ClaudeMemError as exc:
                log.warning("could not renew the lease of job %s: %s", jobs[0].id, exc)
                continue
            if not held[0]:
                log.warning("job %s: claim lost while generating; discarding", jobs[0].id)
                lost = True
                task.cancel()
                return

    keeper = asyncio.create_task(keep(), name=f"claude-mem-lease-{jobs[0].id}")
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if lost and (current is None or not current.cancelling()):
            raise LeaseLost(jobs[0].id) from None
        raise
    finally:
        # Stopped between beats, not cancelled mid-renewal (the query would be cancelled
        # on the server, which can take a while).
        stop.set()
        if not task.done():
            task.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
