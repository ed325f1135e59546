"""Use cases: a project's token budget, per UTC day or month.

A budget limits what a project's generation may spend in a period: tokens (input +
output, as the provider reports them) and/or US dollars (estimated from
``domain/prices.py``). When the period's budget is spent, jobs that would call the
provider stay ``queued``, held until the next period (``services/provider_gate.py`` says
how calls are reserved, and so why N workers never spend more than the budget).

* :func:`set_budget` sets (or, with no limit, clears) it, audited as
  ``project.budget_set``; it needs what administering the team needs (it decides what the
  team pays). Any change wakes the project's jobs held by the budget, so a raised or
  cleared budget lets them run at once (a job still over the limit is held again).
* :func:`status` says the budget, what the current period spent, reserved and has left
  (``GET /v1/usage``, ``claude-mem budget show``, ``Memory.budget``).
"""

from __future__ import annotations

import math
from datetime import datetime

from attrs import frozen

from claude_mem_core.domain import budgets as rules
from claude_mem_core.domain.models import GenerationJob, JobEventType, JobStatus
from claude_mem_core.domain.scopes import Need, require
from claude_mem_core.errors import InvalidInput, NotFound
from claude_mem_core.ports.budgets import Budget, BudgetPeriod
from claude_mem_core.ports.storage import JobFilter, Page, UnitOfWork
from claude_mem_core.services import outbox
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.tenancy import audit_entry, project_visible

# The largest limits accepted (beyond them, "no limit" is what is meant).
MAX_TOKENS = 10**15
MAX_USD = 10.0**9
# Held jobs woken per page when a budget changes.
WAKE_PAGE = 500


@frozen(kw_only=True)
class BudgetStatus:
    """A project's budget and its current period: spent (settled calls), reserved (calls
    in flight) and what remains of each limit (None: no such limit)."""

    budget: Budget
    period: BudgetPeriod
    period_end: datetime

    @property
    def remaining_tokens(self) -> int | None:
        limit = self.budget.token_limit
        if limit is None:
            return None
        return max(limit - self.period.spent_tokens - self.period.reserved_tokens, 0)

    @property
    def remaining_usd(self) -> float | None:
        limit = self.budget.usd_limit
        if limit is None:
            return None
        return max(limit - self.period.spent_usd - self.period.reserved_usd, 0.0)

    @property
    def exhausted(self) -> bool:
        """Whether what remains is less than a call costs on average (or nothing): the
        project's jobs are held until the period ends."""
        p = self.period
        tokens, usd = self.remaining_tokens, self.remaining_usd
        mean_tokens = math.ceil(p.spent_tokens / p.calls) if p.calls else 1
        mean_usd = p.spent_usd / p.calls if p.calls else 0.0
        return (tokens is not None and tokens < max(mean_tokens, 1)) or (
            usd is not None and (usd <= 0.0 or usd < mean_usd)
        )


def parse_period(value: object) -> rules.Period:
    if value not in rules.PERIODS:
        raise InvalidInput.field("period", "must be one of " + ", ".join(rules.PERIODS))
    period: rules.Period = value  # type: ignore[assignment]
    return period


def parse_tokens(value: object, field: str = "tokenLimit") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput.field(field, "must be a whole number of tokens, or null")
    if not 1 <= value <= MAX_TOKENS:
        raise InvalidInput.field(field, f"must be between 1 and {MAX_TOKENS}")
    return value


def parse_usd(value: object, field: str = "usdLimit") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput.field(field, "must be a number of US dollars, or null")
    if not 0 < value <= MAX_USD or value != value:  # NaN fails both sides
        raise InvalidInput.field(field, f"must be more than 0 and at most {MAX_USD:.0f}")
    return float(value)


async def set_budget(
    deps: Deps,
    caller: Caller,
    project_id: str,
    *,
    period: object = "month",
    token_limit: object = None,
    usd_limit: object = None,
) -> BudgetStatus | None:
    """Set the project's budget (None for both limits clears it). Returns its status, or
    None once cleared. Wakes the jobs it held."""
    require(caller.scopes, Need.ADMIN)
    tokens = parse_tokens(token_limit)
    usd = parse_usd(usd_limit)
    cleared = tokens is None and usd is None
    per = parse_period(period) if not cleared or period is not None else "month"
    if not project_visible(caller, project_id):
        raise NotFound("Project not found")
    now = deps.clock.now()
    async with deps.storage.unit_of_work() as uow:
        if await uow.projects.get(caller.team_id, project_id) is None:
            raise NotFound("Project not found")
        if cleared:
            await uow.budgets.clear(caller.team_id, project_id)
        else:
            budget = Budget(
                team_id=caller.team_id,
                project_id=project_id,
                period=per,
                token_limit=tokens,
                usd_limit=usd,
                updated_at=now,
            )
            if not await uow.budgets.put(budget):
                raise NotFound("Project not found")
        await uow.audit.add(
            audit_entry(
                deps,
                caller,
                "project.budget_set",
                project_id=project_id,
                resource_id=project_id,
                details={
                    "period": None if cleared else per,
                    "tokenLimit": tokens,
                    "usdLimit": usd,
                },
                at=now,
            )
        )
        woken = await _wake_held(uow, deps, caller.team_id, project_id, now)
        result = await _status(uow, deps, caller.team_id, project_id)
    for job in woken:
        await outbox.publish(deps, job)
    return result


async def clear_budget(deps: Deps, caller: Caller, project_id: str) -> None:
    """Remove the project's budget (its held jobs run at once)."""
    await set_budget(deps, caller, project_id, period=None)


async def status(deps: Deps, caller: Caller, project_id: str) -> BudgetStatus | None:
    """The project's budget and current period, or None without a budget. Reading it
    needs what reading the usage needs."""
    require(caller.scopes, Need.READ_JOBS)
    if not project_visible(caller, project_id):
        raise NotFound("Project not found")
    async with deps.storage.unit_of_work() as uow:
        if await uow.projects.get(caller.team_id, project_id) is None:
            raise NotFound("Project not found")
        return await _status(uow, deps, caller.team_id, project_id)


async def _status(
    uow: UnitOfWork, deps: Deps, team_id: str, project_id: str
) -> BudgetStatus | None:
    budget = await uow.budgets.get(team_id, project_id)
    if budget is None:
        return None
    now = deps.clock.now()
    start = rules.period_start(now, budget.period)
    return BudgetStatus(
        budget=budget,
        period=await uow.budgets.period(team_id, project_id, start),
        period_end=rules.next_period_start(now, budget.period),
    )


async def _wake_held(
    uow: UnitOfWork, deps: Deps, team_id: str, project_id: str, now: datetime
) -> list[GenerationJob]:
    """The project's jobs held by its budget, made due now (publish them after commit)."""
    woken: list[GenerationJob] = []
    offset = 0
    while True:
        rows, total = await uow.jobs.list(
            JobFilter(team_id=team_id, project_id=project_id, status=JobStatus.QUEUED),
            Page(limit=WAKE_PAGE, offset=offset),
        )
        for job in rows:
            if rules.held_reason(job) != "budget":
                continue
            target = rules.unhold(job, now=now)
            if await uow.jobs.compare_and_set(job, target):
                await outbox.append_job_event(
                    uow, deps, target, JobEventType.QUEUED, {"source": "budget_changed"}
                )
                woken.append(target)
        offset += len(rows)
        if not rows or offset >= total:
            return woken


async def overview(deps: Deps, *, limit: int = 1000) -> tuple[list[BudgetStatus], dict[str, int]]:
    """Every budget's status and the held jobs by reason (for the metrics)."""
    async with deps.storage.unit_of_work() as uow:
        budgets = await uow.budgets.list_all(limit=limit)
        statuses = [
            s
            for b in budgets
            if (s := await _status(uow, deps, b.team_id, b.project_id)) is not None
        ]
        held = dict(await uow.budgets.held_jobs())
    return statuses, held


__all__ = [
    "MAX_TOKENS",
    "MAX_USD",
    "BudgetStatus",
    "clear_budget",
    "overview",
    "parse_period",
    "parse_tokens",
    "parse_usd",
    "set_budget",
    "status",
]
