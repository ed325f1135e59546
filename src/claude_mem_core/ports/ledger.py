"""The token ledger port: one row per paid provider call, and sums of them
(``services/usage.py``). Part of the storage's unit of work (``uow.ledger``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, Protocol

from attrs import frozen

UsageGrouping = Literal["day", "model", "project"]


@frozen(kw_only=True)
class LedgerEntry:
    """One provider call: made for ``job_id`` (the first of ``job_count`` jobs when one
    call served a batch), what it was for (``purpose``: observations or summary), the
    tokens the provider reported and the estimated cost (None: unknown)."""

    id: str
    team_id: str
    project_id: str
    job_id: str | None
    job_count: int = 1
    purpose: str
    provider: str
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    called_at: datetime


@frozen(kw_only=True)
class UsageRow:
    """Sums over the calls of one group: a day (``YYYY-MM-DD``, UTC), a ``provider/model``
    or a project id. ``cost_usd`` sums the known estimates; ``unpriced_calls`` counts the
    calls without one, so a total is never silently low."""

    group: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    unpriced_calls: int


class LedgerRepository(Protocol):
    async def add(self, entry: LedgerEntry, *, alone: bool = False) -> None:
        """Write ``entry``. ``alone``: the unit of work writes nothing else (so the row
        may be committed on its own, at once)."""
        ...

    async def usage(
        self,
        team_id: str,
        project_id: str | None,
        *,
        since: datetime,
        until: datetime,
        group_by: UsageGrouping,
    ) -> Sequence[UsageRow]:
        """Sums of the team's calls (or one project's) made in ``[since, until)``, one row
        per group, in group order."""


__all__ = ["LedgerEntry", "LedgerRepository", "UsageGrouping", "UsageRow"]
