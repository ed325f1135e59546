"""The gate every paid provider call passes: a provider's shared pause, the project's
budget, then the provider's calls per minute. Used by the generation use case
(``services/generation.py``) and by debounce's batches (``services/debounce.py``), before
the job is claimed, so a held job never uses up an attempt.

* **Pause.** A 429 with ``retry-after`` pauses the provider for every worker until then
  (:func:`note_failure`, stored in ``provider_pauses``). A job that meets the pause stays
  ``queued`` with its next attempt at the pause's end (``heldReason: "rate_limit"``); only
  the job that got the 429 counts a failed attempt, as the wire's retry rules say.
* **Rate limit.** With ``CLAUDE_MEM_PROVIDER_RPM`` set, a call is counted against the
  provider's calls of the current UTC minute (``ProviderRateRepository.take``, one
  guarded UPDATE, after the budget's reservation), so all workers together never start
  more than the limit in a minute. A job over it stays ``queued`` until the next minute
  (``heldReason: "rate_limit"``, as for a pause), using no attempt.
* **Budget.** Before the call, :func:`admit` reserves an *estimate* of the call's tokens
  (and dollars) against the project's counter of the current UTC period, atomically
  (``BudgetRepository.reserve``); after the call, :func:`settle` replaces it by what the
  provider reported (with the ledger row, one transaction), or :func:`release` forgets
  it when no answer came. The estimate is the mean tokens (and cost) per call settled so
  far in the period. With no call settled yet in the period, it is the prompt's size (a
  token per four characters; :data:`PROBE_TOKENS` for a summary or a batch, whose
  prompt is built only once claimed) and that call runs alone: no other call of the
  project is reserved until it settles and the mean is known. So with a constant cost per
  call, exactly ``floor(limit / cost)`` calls are made whatever the number of workers;
  a project whose calls vary can overshoot by at most the calls in flight's error on
  the mean.
  A reservation refused because the period is spent (spent + estimate over a limit)
  holds the job until the next period (``heldReason: "budget"``); one refused only
  because calls in flight reserved the rest is tried again shortly.
  Each reservation is recorded as its job's (a batch's as its lead's), so a worker that
  dies mid-call does not keep it: when the job's lease expires, reconciliation (or the
  worker taking the job over) gives it back in the same transaction as the job's
  release, and a settle or release that comes after (the worker was only slow) gives
  nothing back twice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from attrs import define, frozen

from claude_mem_core.domain import budgets as rules
from claude_mem_core.domain import rate_limits as rates
from claude_mem_core.domain.models import GenerationJob, JobEventType, JobStatus
from claude_mem_core.domain.prices import FREE_PROVIDERS, estimate_cost
from claude_mem_core.errors import ProviderError
from claude_mem_core.ports.budgets import Budget, BudgetPeriod, GateReads, Reservation
from claude_mem_core.ports.provider import GenerationResult, Provider
from claude_mem_core.ports.storage import UnitOfWork
from claude_mem_core.services import outbox
from claude_mem_core.services.context import Deps

log = logging.getLogger("claude_mem.provider_gate")

# The first call in a period of a summary or a batch, whose prompt (several events) is not
# built before the claim.
PROBE_TOKENS = 2_000
# How soon a call refused only because others in flight reserved the rest is tried again.
BUSY_RETRY_SECONDS = 1.0


@define
class Ticket:
    """A reservation taken for one call; settled or released once."""

    reservation: Reservation
    done: bool = False


@frozen
class Admit:
    """Call the provider (``ticket``: the reservation to settle, None without a budget)."""

    ticket: Ticket | None = None


@frozen
class Hold:
    """Do not call: hold the job until ``until`` (``reason``: budget or rate_limit)."""

    reason: rules.HoldReason
    until: datetime
    message: str
    details: dict[str, Any]


@frozen
class Busy:
    """Do not call now: calls in flight reserved what remains; try again shortly."""

    retry_in: float = BUSY_RETRY_SECONDS


Decision = Admit | Hold | Busy


def gated(provider: Provider) -> bool:
    """Whether calls to ``provider`` pass the gate: only providers that send a bill (a
    free local model has no budget to keep and no shared rate limit)."""
    return provider.name.casefold() not in FREE_PROVIDERS


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def estimate(
    period: BudgetPeriod, *, prompt_tokens: int, provider: Provider
) -> tuple[int, float, bool]:
    """(tokens, dollars, alone) to reserve for one call: the period's mean per call, or,
    with no call settled in it yet, the prompt's size, alone."""
    if period.calls > 0:
        tokens = math.ceil(period.spent_tokens / period.calls)
        return tokens, period.spent_usd / period.calls, False
    usd = estimate_cost(provider.name, provider.model, prompt_tokens, 0) or 0.0
    return max(prompt_tokens, 1), usd, True


def _spent(budget: Budget, period: BudgetPeriod, tokens: int, usd: float) -> str | None:
    """Which limit the period has spent for a call of this estimate, if any."""
    if budget.token_limit is not None and period.spent_tokens + tokens > budget.token_limit:
        return "tokens"
    if budget.usd_limit is not None and period.spent_usd + usd > budget.usd_limit:
        return "usd"
    return None


async def admit(
    uow: UnitOfWork,
    deps: Deps,
    provider: Provider,
    job: GenerationJob,
    *,
    prompt_tokens: Callable[[], Awaitable[int]],
    reads: GateReads | None = None,
) -> Decision:
    """May ``job``'s call to ``provider`` be made now? Reserves its estimate when the
    project has a budget (in ``uow``: release it there if the job is then not claimed),
    and counts the call when the provider has a rate limit (a count is not given back:
    a job then not claimed leaves the minute's limit under-used, never exceeded).
    ``reads``: the budget and pause, when the caller read them with the job
    (``JobRepository.get_for_generation``)."""
    if not gated(provider):
        return Admit()
    now = deps.clock.now()
    if reads is None:
        reads = await uow.budgets.gate_reads(job.team_id, job.project_id, provider.name, now=now)
    budget, paused = reads
    if paused is not None:
        return Hold(
            "rate_limit",
            paused,
            f"provider {provider.name} asked to wait until {_iso(paused)}",
            {"provider": provider.name},
        )
    decision = await _budget(uow, provider, job, budget, now, prompt_tokens)
    if not isinstance(decision, Admit):
        return decision
    return await _rate(uow, deps, provider, decision, now)


async def _rate(
    uow: UnitOfWork, deps: Deps, provider: Provider, admitted: Admit, now: datetime
) -> Decision:
    """Count the call against the provider's calls per minute (after the budget, so a
    call the budget refuses uses no slot); over the limit, release what the budget
    reserved and hold the job until the next window."""
    limit = deps.options.provider_rpm.limit_for(provider.name)
    if limit is None:
        return admitted
    name = provider.name.casefold()
    window = rates.window_start(now)
    if await uow.provider_rates.take(name, window, limit=limit):
        return admitted
    await release(uow, admitted.ticket)
    until = rates.next_window(now)
    return Hold(
        "rate_limit",
        until,
        f"provider {provider.name} had its {limit} calls of the minute; next at {_iso(until)}",
        {"provider": provider.name, "callsPerMinute": limit, "windowStart": _iso(window)},
    )


async def _budget(
    uow: UnitOfWork,
    provider: Provider,
    job: GenerationJob,
    budget: Budget | None,
    now: datetime,
    prompt_tokens: Callable[[], Awaitable[int]],
) -> Decision:
    """Reserve the call's estimate against the project's ``budget``, if it has one."""
    if budget is None:
        return Admit()
    start = rules.period_start(now, budget.period)
    period = await uow.budgets.period(job.team_id, job.project_id, start)
    probe = period.calls == 0
    tokens, usd, alone = estimate(
        period,
        prompt_tokens=(await prompt_tokens()) if probe else 0,
        provider=provider,
    )
    if await uow.budgets.reserve(
        budget, start, job_id=job.id, tokens=tokens, usd=usd, alone=alone, at=now
    ):
        return Admit(
            Ticket(
                Reservation(
                    job_id=job.id,
                    team_id=job.team_id,
                    project_id=job.project_id,
                    start=start,
                    tokens=tokens,
                    usd=usd,
                )
            )
        )
    # Refused: spent for good in this period, or only reserved by calls in flight?
    period = await uow.budgets.period(job.team_id, job.project_id, start)
    limit = _spent(budget, period, tokens, usd)
    if limit is None:
        return Busy()
    until = rules.next_period_start(now, budget.period)
    return Hold(
        "budget",
        until,
        f"the project's {budget.period}ly budget ({limit}) is spent until {_iso(until)}",
        {
            "period": budget.period,
            "periodStart": _iso(start),
            "limit": limit,
            "spentTokens": period.spent_tokens,
            "spentUsd": round(period.spent_usd, 6),
            "estimateTokens": tokens,
        },
    )


async def hold(
    uow: UnitOfWork, deps: Deps, job: GenerationJob, decision: Hold, *, worker_id: str
) -> GenerationJob | None:
    """Hold queued ``job`` as ``decision`` says (same status and attempts; the next attempt
    at its end) with one job event. None when there is nothing to write: the job is held
    so already (a redelivery), or is no longer queued. Publish the result after commit."""
    if job.status is not JobStatus.QUEUED:
        return None
    if rules.held_reason(job) == decision.reason and rules.held_until(job) == _iso(decision.until):
        return None
    now = deps.clock.now()
    target = rules.hold(
        job, decision.reason, until=decision.until, now=now, message=decision.message
    )
    if not await uow.jobs.compare_and_set(job, target):
        return None
    await outbox.append_job_event(
        uow,
        deps,
        target,
        JobEventType.RETRY_SCHEDULED,
        {
            "source": "held",
            "heldReason": decision.reason,
            "nextAttemptAt": _iso(decision.until),
            "reason": decision.message,
            "workerId": worker_id,
            **decision.details,
        },
    )
    return target


async def publish_held(deps: Deps, job: GenerationJob) -> None:
    """Wake ``job`` (just held) at its hold's end; reconciliation would too."""
    if job.next_attempt_at is None:
        return
    delay = max((job.next_attempt_at - deps.clock.now()).total_seconds(), 0.0)
    await outbox.publish(deps, job, delay=delay)


async def transfer(uow: UnitOfWork, ticket: Ticket | None, job_id: str) -> None:
    """Make ``ticket``'s reservation job ``job_id``'s, in ``uow``: a batch reserves for its
    first job, and when another job leads it, the lead's lease is the one whose expiry
    must give the reservation back."""
    if ticket is None or ticket.done or ticket.reservation.job_id == job_id:
        return
    ticket.reservation = await uow.budgets.transfer(ticket.reservation, job_id)


async def release(uow: UnitOfWork, ticket: Ticket | None) -> None:
    """Forget ``ticket``'s reservation (the call was not made), in ``uow``."""
    if ticket is not None and not ticket.done:
        ticket.done = True
        await uow.budgets.release(ticket.reservation)


async def release_now(deps: Deps, ticket: Ticket | None) -> None:
    """:func:`release` in a unit of work of its own; a failure is logged (the reservation
    is then given back when the job is next reserved for, or its lease expires)."""
    if ticket is None or ticket.done:
        return
    try:
        async with deps.storage.unit_of_work() as uow:
            await release(uow, ticket)
    except Exception as exc:
        log.warning("budget reservation not released: %s: %s", type(exc).__name__, exc)


async def settle(
    uow: UnitOfWork, deps: Deps, ticket: Ticket | None, result: GenerationResult
) -> None:
    """The call of ``ticket`` returned ``result``: count what it spent, in ``uow`` (the
    ledger row's)."""
    if ticket is None or ticket.done:
        return
    ticket.done = True
    tokens = (result.usage.input_tokens or 0) + (result.usage.output_tokens or 0)
    usd = estimate_cost(
        result.provider,
        result.model,
        result.usage.input_tokens,
        result.usage.output_tokens,
        prices=deps.options.prices,
    )
    await uow.budgets.settle(ticket.reservation, tokens=tokens, usd=usd or 0.0)


async def note_failure(
    deps: Deps, provider: Provider, ticket: Ticket | None, error: BaseException
) -> None:
    """The call failed: release its reservation, and on a 429 with ``retry-after`` pause
    the provider for every worker until then."""
    retry_after = error.retry_after if isinstance(error, ProviderError) else None
    rate_limited = isinstance(error, ProviderError) and error.kind == "rate_limit"
    if not (rate_limited and retry_after) or not gated(provider):
        await release_now(deps, ticket)
        return
    now = deps.clock.now()
    until = now + timedelta(seconds=float(retry_after))
    try:
        async with deps.storage.unit_of_work() as uow:
            await release(uow, ticket)
            await uow.provider_pauses.pause(provider.name, until, now=now)
    except Exception as exc:
        log.warning("provider pause not stored: %s: %s", type(exc).__name__, exc)
        await release_now(deps, ticket)


__all__ = [
    "BUSY_RETRY_SECONDS",
    "PROBE_TOKENS",
    "Admit",
    "Busy",
    "Decision",
    "Hold",
    "Ticket",
    "admit",
    "estimate",
    "gated",
    "hold",
    "note_failure",
    "publish_held",
    "release",
    "release_now",
    "settle",
    "transfer",
]
