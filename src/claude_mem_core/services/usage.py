"""Use cases: the token ledger — what each provider call cost — and usage reports.

Every call to a provider that sends a bill (all but the offline one; see
``domain/prices.py``) writes one ledger row: project, provider, model, the tokens the
provider reported, the estimated cost, and the job (or the first of the batch of jobs) it
was made for. It is written whatever becomes of the call's answer (stored, unparseable,
or a lease lost meanwhile): the tokens were spent either way. A call that fails (no
answer) reports no tokens and writes nothing; its job's log says why it failed.

The row is written in its own short transaction right after the call returns
(:func:`record_call`), except for one job's call with no budget reservation to settle
whose answer parses: that row goes into the statement completing the job
(``JobRepository.advance``, which writes it whether or not the job is still this
worker's), and on its own, as :func:`record_call` would, when that statement is not
used or fails.

:func:`report` sums the ledger for a team or a project over a period, by UTC day, by
``provider/model`` or by project: ``GET /v1/usage``, ``claude-mem usage``,
``Memory.usage``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import get_args

from attrs import frozen

from claude_mem_core.domain.models import GenerationJob
from claude_mem_core.domain.prices import FREE_PROVIDERS, estimate_cost
from claude_mem_core.domain.scopes import Need, require
from claude_mem_core.errors import InvalidInput, NotFound
from claude_mem_core.ports.ledger import LedgerEntry, UsageGrouping, UsageRow
from claude_mem_core.ports.provider import GenerationResult
from claude_mem_core.services import provider_gate
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.tenancy import project_visible

# The longest period one report covers.
MAX_REPORT_DAYS = 366
GROUPINGS: tuple[str, ...] = get_args(UsageGrouping)

log = logging.getLogger("claude_mem.usage")


async def record_call(
    deps: Deps,
    jobs: Sequence[GenerationJob],
    result: GenerationResult,
    *,
    purpose: str,
    ticket: provider_gate.Ticket | None = None,
) -> LedgerEntry | None:
    """Write the ledger row of one provider call made for ``jobs`` (one, or a batch of
    one session's), and settle the call's budget reservation (``ticket``) in the same
    transaction. None, and nothing written, for a provider that sends no bill. A failed
    write is logged, never raised: the call's answer must still be stored."""
    entry = ledger_entry(deps, jobs, result, purpose=purpose)
    if entry is None:
        await provider_gate.release_now(deps, ticket)
        return None
    return await record_entry(deps, entry, result, ticket=ticket)


def ledger_entry(
    deps: Deps, jobs: Sequence[GenerationJob], result: GenerationResult, *, purpose: str
) -> LedgerEntry | None:
    """The ledger row of one provider call made for ``jobs``; None for a provider that
    sends no bill."""
    if not jobs or result.provider.casefold() in FREE_PROVIDERS:
        return None
    first = jobs[0]
    return LedgerEntry(
        id=deps.ids.new_id(),
        team_id=first.team_id,
        project_id=first.project_id,
        job_id=first.id,
        job_count=len(jobs),
        purpose=purpose,
        provider=result.provider,
        model=result.model,
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
        cost_usd=estimate_cost(
            result.provider,
            result.model,
            result.usage.input_tokens,
            result.usage.output_tokens,
            prices=deps.options.prices,
        ),
        called_at=deps.clock.now(),
    )


async def record_entry(
    deps: Deps,
    entry: LedgerEntry,
    result: GenerationResult,
    *,
    ticket: provider_gate.Ticket | None = None,
) -> LedgerEntry | None:
    """Write ``entry`` (of the call that returned ``result``) in a transaction of its own,
    settling ``ticket`` there (see :func:`record_call`); None when the write failed
    (logged)."""
    try:
        async with deps.storage.unit_of_work() as uow:
            # Without a reservation to settle, the row is the transaction's only write.
            await uow.ledger.add(entry, alone=ticket is None or ticket.done)
            await provider_gate.settle(uow, deps, ticket, result)
    except Exception as exc:  # the project may be erased meanwhile; the answer goes on
        log.warning("token ledger row not written: %s: %s", type(exc).__name__, exc)
        if ticket is not None:
            ticket.done = False  # rolled back with the ledger row: still reserved
            await provider_gate.release_now(deps, ticket)
        return None
    return entry


@frozen(kw_only=True)
class UsageReport:
    """Sums over ``[since, until)`` by ``group_by``, and their total."""

    team_id: str
    project_id: str | None
    since: datetime
    until: datetime
    group_by: str
    rows: Sequence[UsageRow]

    @property
    def total(self) -> UsageRow:
        return UsageRow(
            group="total",
            calls=sum(r.calls for r in self.rows),
            input_tokens=sum(r.input_tokens for r in self.rows),
            output_tokens=sum(r.output_tokens for r in self.rows),
            cost_usd=sum(r.cost_usd for r in self.rows),
            unpriced_calls=sum(r.unpriced_calls for r in self.rows),
        )


def parse_days(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput.field("days", "must be a whole number of days")
    if not 1 <= value <= MAX_REPORT_DAYS:
        raise InvalidInput.field("days", f"must be between 1 and {MAX_REPORT_DAYS}")
    return value


def parse_grouping(value: object) -> UsageGrouping:
    if value not in GROUPINGS:
        raise InvalidInput.field("groupBy", "must be one of " + ", ".join(GROUPINGS))
    grouping: UsageGrouping = value  # type: ignore[assignment]
    return grouping


async def report(
    deps: Deps,
    caller: Caller,
    *,
    project_id: str | None = None,
    days: object = 30,
    group_by: object = "day",
) -> UsageReport:
    """What the caller's team (or one project) spent over the last ``days`` days, grouped.
    A project key sees only its project; a project it may not see is ``NotFound``. It
    needs what reading jobs needs: the ledger is what the jobs' provider calls cost."""
    require(caller.scopes, Need.READ_JOBS)
    period = parse_days(days)
    grouping = parse_grouping(group_by)
    if project_id is None:
        project_id = caller.project_id
    elif not project_visible(caller, project_id):
        raise NotFound("Project not found")
    until = deps.clock.now() + timedelta(microseconds=1)
    since = until - timedelta(days=period)
    async with deps.storage.unit_of_work() as uow:
        if project_id is not None and await uow.projects.get(caller.team_id, project_id) is None:
            raise NotFound("Project not found")
        if project_id is None and await uow.teams.get(caller.team_id) is None:
            raise NotFound("Team not found")
        rows = await uow.ledger.usage(
            caller.team_id, project_id, since=since, until=until, group_by=grouping
        )
    return UsageReport(
        team_id=caller.team_id,
        project_id=project_id,
        since=since,
        until=until,
        group_by=grouping,
        rows=rows,
    )


__all__ = [
    "GROUPINGS",
    "MAX_REPORT_DAYS",
    "UsageReport",
    "ledger_entry",
    "parse_days",
    "parse_grouping",
    "record_call",
    "record_entry",
    "report",
]
