"""Budgets, provider pauses and provider rate windows of the in-memory storage
(``ports/budgets.py``). The storage's one lock serialises units of work, so a
reservation's (or a rate window's) check and write are atomic as the SQL adapters'
guarded UPDATE is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import attrs

from claude_mem_core.domain.budgets import held_reason
from claude_mem_core.domain.models import JobStatus
from claude_mem_core.ports.budgets import Budget, BudgetPeriod, Reservation


class _Tx(Protocol):
    """The in-memory unit of work's view of the tables (``adapters/memory_state.py``)."""

    def read(self, table: str) -> dict[str, Any]: ...

    def write(self, table: str) -> dict[str, Any]: ...


# The tables these repositories add to the in-memory storage.
BUDGET_TABLES = (
    "budgets",
    "budget_periods",
    "budget_reservations",
    "provider_pauses",
    "provider_rates",
)


def _key(team_id: str, project_id: str) -> str:
    return f"{team_id}\x00{project_id}"


def _period_key(team_id: str, project_id: str, start: datetime) -> str:
    return f"{team_id}\x00{project_id}\x00{start.isoformat()}"


class MemoryBudgets:
    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    def _live(self, team_id: str, project_id: str) -> bool:
        project = self._tx.read("projects").get(project_id)
        return (
            project is not None
            and project.team_id == team_id
            and project_id not in self._tx.read("deleted_projects")
        )

    async def get(self, team_id: str, project_id: str) -> Budget | None:
        budget: Budget | None = self._tx.read("budgets").get(_key(team_id, project_id))
        return budget

    async def gate_reads(
        self, team_id: str, project_id: str, provider: str, *, now: datetime
    ) -> tuple[Budget | None, datetime | None]:
        budget = await self.get(team_id, project_id)
        return budget, await MemoryProviderPauses(self._tx).paused_until(provider, now=now)

    async def put(self, budget: Budget) -> bool:
        if not self._live(budget.team_id, budget.project_id):
            return False
        self._tx.write("budgets")[_key(budget.team_id, budget.project_id)] = budget
        return True

    async def clear(self, team_id: str, project_id: str) -> bool:
        key = _key(team_id, project_id)
        if key not in self._tx.read("budgets"):
            return False
        del self._tx.write("budgets")[key]
        return True

    async def period(self, team_id: str, project_id: str, start: datetime) -> BudgetPeriod:
        row: BudgetPeriod | None = self._tx.read("budget_periods").get(
            _period_key(team_id, project_id, start)
        )
        return row or BudgetPeriod(team_id=team_id, project_id=project_id, start=start)

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
        held: Reservation | None = self._tx.read("budget_reservations").get(job_id)
        if held is not None:
            job = self._tx.read("jobs").get(job_id)
            if job is not None and job.status is JobStatus.PROCESSING:
                return False  # another worker's call of this job holds it
            await self.release_for_job(job_id)  # stale: its release failed
        row = await self.period(budget.team_id, budget.project_id, start)
        if alone and row.in_flight > 0:
            return False
        if (
            budget.token_limit is not None
            and row.spent_tokens + row.reserved_tokens + tokens > budget.token_limit
        ):
            return False
        if budget.usd_limit is not None and row.spent_usd + row.reserved_usd + usd > (
            budget.usd_limit
        ):
            return False
        self._store(
            row,
            reserved_tokens=row.reserved_tokens + tokens,
            reserved_usd=row.reserved_usd + usd,
            in_flight=row.in_flight + 1,
        )
        self._tx.write("budget_reservations")[job_id] = Reservation(
            job_id=job_id,
            team_id=budget.team_id,
            project_id=budget.project_id,
            start=start,
            tokens=tokens,
            usd=usd,
        )
        return True

    def _take(self, job_id: str) -> Reservation | None:
        """Remove and return job ``job_id``'s reservation (the lock makes it once)."""
        held: Reservation | None = self._tx.read("budget_reservations").get(job_id)
        if held is not None:
            del self._tx.write("budget_reservations")[job_id]
        return held

    async def settle(self, reservation: Reservation, *, tokens: int, usd: float) -> None:
        held = self._take(reservation.job_id)
        start = held.start if held is not None else reservation.start
        row = await self.period(reservation.team_id, reservation.project_id, start)
        self._store(
            row,
            reserved_tokens=max(row.reserved_tokens - (held.tokens if held else 0), 0),
            reserved_usd=max(row.reserved_usd - (held.usd if held else 0.0), 0.0),
            in_flight=max(row.in_flight - (1 if held else 0), 0),
            spent_tokens=row.spent_tokens + tokens,
            spent_usd=row.spent_usd + usd,
            calls=row.calls + 1,
        )

    async def release(self, reservation: Reservation) -> bool:
        return await self.release_for_job(reservation.job_id)

    async def release_for_job(self, job_id: str) -> bool:
        held = self._take(job_id)
        if held is None:
            return False
        row = await self.period(held.team_id, held.project_id, held.start)
        self._store(
            row,
            reserved_tokens=max(row.reserved_tokens - held.tokens, 0),
            reserved_usd=max(row.reserved_usd - held.usd, 0.0),
            in_flight=max(row.in_flight - 1, 0),
        )
        return True

    async def transfer(self, reservation: Reservation, job_id: str) -> Reservation:
        if job_id == reservation.job_id:
            return reservation
        await self.release_for_job(job_id)
        held = self._take(reservation.job_id)
        moved = attrs.evolve(held or reservation, job_id=job_id)
        if held is not None:
            self._tx.write("budget_reservations")[job_id] = moved
        return moved

    def _store(self, row: BudgetPeriod, **changes: Any) -> None:
        if not self._live(row.team_id, row.project_id):
            return
        key = _period_key(row.team_id, row.project_id, row.start)
        self._tx.write("budget_periods")[key] = attrs.evolve(row, **changes)

    async def list_all(self, *, limit: int) -> Sequence[Budget]:
        rows = [b for b in self._tx.read("budgets").values() if self._live(b.team_id, b.project_id)]
        rows.sort(key=lambda b: (b.team_id, b.project_id))
        return rows[:limit]

    async def held_jobs(self) -> Mapping[str, int]:
        counts: dict[str, int] = {}
        for job in self._tx.read("jobs").values():
            reason = held_reason(job)
            if reason is not None:
                counts[reason] = counts.get(reason, 0) + 1
        return counts


class MemoryProviderPauses:
    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def pause(self, provider: str, until: datetime, *, now: datetime) -> datetime:
        stored: datetime | None = self._tx.read("provider_pauses").get(provider)
        if stored is None or stored < until:
            self._tx.write("provider_pauses")[provider] = until
            return until
        return stored

    async def paused_until(self, provider: str, *, now: datetime) -> datetime | None:
        until: datetime | None = self._tx.read("provider_pauses").get(provider)
        return until if until is not None and until > now else None


# Windows older than this before the one being counted are forgotten.
RATE_WINDOWS_KEPT = timedelta(hours=1)


class MemoryProviderRates:
    """Rows: "<provider>\x00<window start>" -> (provider, window start, calls)."""

    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def take(self, provider: str, window: datetime, *, limit: int) -> bool:
        key = f"{provider}\x00{window.isoformat()}"
        counted = await self.calls(provider, window)
        if counted >= limit:
            return False
        rows = self._tx.write("provider_rates")
        if counted == 0:
            horizon = window - RATE_WINDOWS_KEPT
            for old, (name, start, _) in list(rows.items()):
                if name == provider and start < horizon:
                    del rows[old]
        rows[key] = (provider, window, counted + 1)
        return True

    async def calls(self, provider: str, window: datetime) -> int:
        row = self._tx.read("provider_rates").get(f"{provider}\x00{window.isoformat()}")
        return int(row[2]) if row is not None else 0
