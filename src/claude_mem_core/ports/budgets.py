"""The budget ports (``services/budgets.py``, ``services/provider_gate.py``): a project's
budget and its per-period counters, the pause a provider asked of every worker, and the
calls per minute counted against a provider's rate limit. Part of the storage's unit of
work (``uow.budgets``, ``uow.provider_pauses``, ``uow.provider_rates``).

Exactness rests on :meth:`BudgetRepository.reserve`: one atomic step (a guarded UPDATE on
SQL, under the lock in memory) that adds an estimate to the period's reservations only if
what is spent, what is reserved and the estimate stay within every limit. Each reservation
is also a row of its own, keyed by the job whose call it is, so the reservation of a job
whose worker died (its lease expired) can be given back (:meth:`release_for_job`), and a
second settle or release of the same call changes nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from attrs import frozen

from claude_mem_core.domain.budgets import Period


@frozen(kw_only=True)
class Budget:
    """A project's limit per UTC ``period``: tokens (input + output) and/or estimated US
    dollars; at least one is set."""

    team_id: str
    project_id: str
    period: Period
    token_limit: int | None = None
    usd_limit: float | None = None
    updated_at: datetime


@frozen(kw_only=True)
class BudgetPeriod:
    """A project's counters in the period starting at ``start``: settled calls (their
    tokens and estimated cost) and what calls in flight have reserved."""

    team_id: str
    project_id: str
    start: datetime
    spent_tokens: int = 0
    spent_usd: float = 0.0
    reserved_tokens: int = 0
    reserved_usd: float = 0.0
    in_flight: int = 0
    calls: int = 0


@frozen(kw_only=True)
class Reservation:
    """What the call of job ``job_id`` reserved in one period (settled or released there,
    even after the period rolled over)."""

    job_id: str
    team_id: str
    project_id: str
    start: datetime
    tokens: int
    usd: float


# What the provider gate reads before a paid call: the project's budget (None: it has
# none) and the end of the provider's pause (None: not paused).
GateReads = tuple[Budget | None, datetime | None]


class BudgetRepository(Protocol):
    async def get(self, team_id: str, project_id: str) -> Budget | None: ...

    async def gate_reads(
        self, team_id: str, project_id: str, provider: str, *, now: datetime
    ) -> GateReads:
        """The project's budget and the provider's pause (its end, when later than
        ``now``), read together: what the provider gate reads before every paid call, in
        one statement where the backend can."""

    async def put(self, budget: Budget) -> bool:
        """Set (insert or replace) the project's budget; False if the project is not the
        team's (or is being erased)."""

    async def clear(self, team_id: str, project_id: str) -> bool:
        """Remove the project's budget; True if there was one."""

    async def period(self, team_id: str, project_id: str, start: datetime) -> BudgetPeriod:
        """The counters of the period starting at ``start`` (zeros if none yet)."""

    async def reserve(
        self,
        budget: Budget,
        start: datetime,
        *,
        job_id: str,
        tokens: int,
        usd: float,
        alone: bool,
        at: datetime,
    ) -> bool:
        """Atomically add ``tokens``/``usd`` to the period's reservations (and one call in
        flight) if spent + reserved + these stay within each limit of ``budget`` and, when
        ``alone``, no other call is in flight, and record it as job ``job_id``'s (made
        ``at``). False
        (nothing written) otherwise, or when the job already holds a reservation that
        another worker's call may be using (its job is ``processing``); one the job still
        holds while not processing (a release that failed) is given back first."""

    async def settle(self, reservation: Reservation, *, tokens: int, usd: float) -> None:
        """The call of ``reservation`` returned: what it spent is counted and its
        reservation, if its job still holds it, is given back (only once)."""

    async def release(self, reservation: Reservation) -> bool:
        """The call of ``reservation`` was not made or reported nothing: give back its
        reservation if its job still holds it (True), else nothing (False)."""

    async def release_for_job(self, job_id: str) -> bool:
        """Give back the reservation job ``job_id`` holds, if any (its worker's lease
        expired: the call will never be settled). True if there was one."""

    async def transfer(self, reservation: Reservation, job_id: str) -> Reservation:
        """Make ``reservation`` job ``job_id``'s (a batch's call, reserved for its first
        job, made by another it claimed)."""

    async def list_all(self, *, limit: int) -> Sequence[Budget]:
        """Every project's budget (of live projects), at most ``limit`` (for metrics)."""

    async def held_jobs(self) -> Mapping[str, int]:
        """Queued jobs held, by reason (``budget``, ``rate_limit``), for the metrics."""


class ProviderPauseRepository(Protocol):
    async def pause(self, provider: str, until: datetime, *, now: datetime) -> datetime:
        """Ask every worker to leave ``provider`` alone until ``until`` (a later pause
        already stored wins); returns the pause now stored."""

    async def paused_until(self, provider: str, *, now: datetime) -> datetime | None:
        """The end of ``provider``'s pause if it is later than ``now``."""


class ProviderRateRepository(Protocol):
    """Calls started per provider and minute window, shared by every worker
    (``domain/rate_limits.py``)."""

    async def take(self, provider: str, window: datetime, *, limit: int) -> bool:
        """Atomically count one call of ``provider`` in the window starting at ``window``
        if fewer than ``limit`` were counted there; False (nothing written) otherwise.
        Windows an hour older than ``window`` may be forgotten on the way."""

    async def calls(self, provider: str, window: datetime) -> int:
        """The calls counted for ``provider`` in the window starting at ``window``."""


__all__ = [
    "Budget",
    "BudgetPeriod",
    "BudgetRepository",
    "ProviderPauseRepository",
    "ProviderRateRepository",
    "Reservation",
]
