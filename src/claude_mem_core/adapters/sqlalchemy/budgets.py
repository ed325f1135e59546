"""Budgets and provider pauses on SQL (``ports/budgets.py``).

A reservation is one guarded UPDATE of the period's counter row: PostgreSQL re-checks its
WHERE on the row's newest version after waiting for a concurrent writer's lock, and
SQLite has one writer at a time, so of N workers reserving at once exactly those whose
estimates fit are let through."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.connection import _Db
from claude_mem_core.adapters.sqlalchemy.tenant_filter import of_tenant
from claude_mem_core.domain.budgets import HELD_REASONS
from claude_mem_core.domain.models import JobStatus
from claude_mem_core.ports.budgets import Budget, BudgetPeriod, GateReads, Reservation

_PERIOD_KEY = ("team_id", "project_id", "period_start")


def _budget(r: Mapping[Any, Any]) -> Budget:
    return Budget(
        team_id=r["team_id"],
        project_id=r["project_id"],
        period=r["period"],
        token_limit=r["token_limit"],
        usd_limit=r["usd_limit"],
        updated_at=r["updated_at"],
    )


def paused_subquery() -> sa.ScalarSelect[Any]:
    """The end of the provider's (``:provider``) pause, when later than ``:now``."""
    pauses = t.provider_pauses.c
    now = sa.bindparam("now", type_=pauses.paused_until.type)
    return (
        sa.select(pauses.paused_until)
        .where(pauses.provider == sa.bindparam("provider"), pauses.paused_until > now)
        .scalar_subquery()
    )


def gate_reads_of(row: Mapping[Any, Any], prefix: str = "") -> GateReads:
    """The gate's reads in a row with :func:`_gate_reads`'s columns (``paused`` and the
    budget's), each named with ``prefix``."""
    paused: datetime | None = row[prefix + "paused"]
    if row[prefix + "team_id"] is None:
        return None, paused
    if prefix:
        row = {c.key: row[prefix + c.key] for c in t.project_budgets.columns}
    return _budget(row), paused


def _gate_reads() -> sa.Select[Any]:
    """Before every paid call: the project's budget and the provider's pause, in one
    statement (one row whether or not the project has a budget). Built once: the gate
    runs it for every job."""
    b = t.project_budgets.c
    paused = paused_subquery()
    one = sa.select(sa.literal(1).label("one")).subquery("one")
    on = sa.and_(b.team_id == sa.bindparam("team_id"), b.project_id == sa.bindparam("project_id"))
    return sa.select(paused.label("paused"), *t.project_budgets.columns).select_from(
        one.outerjoin(t.project_budgets, on)
    )


_GATE_READS = _gate_reads()


class BudgetRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def get(self, team_id: str, project_id: str) -> Budget | None:
        c = t.project_budgets.c
        row = await self._db.one_or_none(
            self._db.select(t.project_budgets).where(of_tenant(team_id, project_id, c))
        )
        return _budget(row) if row is not None else None

    async def gate_reads(
        self, team_id: str, project_id: str, provider: str, *, now: datetime
    ) -> GateReads:
        params = {"team_id": team_id, "project_id": project_id, "provider": provider, "now": now}
        row = (await self._db.run(_GATE_READS, params)).mappings().one_or_none()
        if row is None:  # pragma: no cover - the outer join always gives one row
            return None, None
        return gate_reads_of(row)

    async def put(self, budget: Budget) -> bool:
        p = t.projects.c
        live = await self._db.exists(
            t.projects,
            p.id == budget.project_id,
            p.team_id == budget.team_id,
            p.deleted_at.is_(None),
        )
        if not live:
            return False
        values = {
            "team_id": budget.team_id,
            "project_id": budget.project_id,
            "period": budget.period,
            "token_limit": budget.token_limit,
            "usd_limit": budget.usd_limit,
            "updated_at": budget.updated_at,
        }
        stmt = dialects.insert(self._db.dialect, t.project_budgets).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["team_id", "project_id"],
            set_={k: v for k, v in values.items() if k not in ("team_id", "project_id")},
        )
        await self._db.write(stmt, not_found=f"project {budget.project_id} not found")
        return True

    async def clear(self, team_id: str, project_id: str) -> bool:
        c = t.project_budgets.c
        result = await self._db.write(
            sa.delete(t.project_budgets).where(of_tenant(team_id, project_id, c))
        )
        return bool(result.rowcount)

    def _where(self, team_id: str, project_id: str, start: datetime) -> list[Any]:
        c = t.budget_periods.c
        return [of_tenant(team_id, project_id, c), c.period_start == start]

    async def period(self, team_id: str, project_id: str, start: datetime) -> BudgetPeriod:
        row = await self._db.one_or_none(
            self._db.select(t.budget_periods).where(*self._where(team_id, project_id, start))
        )
        if row is None:
            return BudgetPeriod(team_id=team_id, project_id=project_id, start=start)
        return BudgetPeriod(
            team_id=team_id,
            project_id=project_id,
            start=start,
            spent_tokens=int(row["spent_tokens"]),
            spent_usd=float(row["spent_usd"]),
            reserved_tokens=int(row["reserved_tokens"]),
            reserved_usd=float(row["reserved_usd"]),
            in_flight=int(row["in_flight"]),
            calls=int(row["calls"]),
        )

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
        c = t.budget_periods.c
        # A reservation the job kept while not processing (its release failed) is stale.
        await self._give_back(job_id, unless_processing=True)
        await self._db.write(
            dialects.insert(self._db.dialect, t.budget_periods)
            .values(team_id=budget.team_id, project_id=budget.project_id, period_start=start)
            .on_conflict_do_nothing(index_elements=list(_PERIOD_KEY)),
            not_found=f"project {budget.project_id} not found",
        )
        guards = self._where(budget.team_id, budget.project_id, start)
        if alone:
            guards.append(c.in_flight == 0)
        if budget.token_limit is not None:
            guards.append(c.spent_tokens + c.reserved_tokens + tokens <= budget.token_limit)
        if budget.usd_limit is not None:
            guards.append(c.spent_usd + c.reserved_usd + usd <= budget.usd_limit)
        result = await self._db.write(
            sa.update(t.budget_periods)
            .where(*guards)
            .values(
                reserved_tokens=c.reserved_tokens + tokens,
                reserved_usd=c.reserved_usd + usd,
                in_flight=c.in_flight + 1,
            )
        )
        if result.rowcount != 1:
            return False
        r = t.budget_reservations.c
        row = dict(
            job_id=job_id,
            team_id=budget.team_id,
            project_id=budget.project_id,
            period_start=start,
            tokens=tokens,
            usd=usd,
            reserved_at=at,
        )
        recorded = await self._db.write(
            dialects.insert(self._db.dialect, t.budget_reservations)
            .values(row)
            .on_conflict_do_nothing(index_elements=["job_id"])
            .returning(r.job_id)  # a row back: this INSERT made it
        )
        if recorded.first() is not None:
            return True
        # Another worker's call of this job reserved meanwhile (a duplicate delivery):
        # take back what was just added; that worker's claim wins.
        await self._counters(budget.team_id, budget.project_id, start, tokens, usd, 1)
        return False

    async def _give_back(
        self, job_id: str, *, unless_processing: bool = False
    ) -> RowMapping | None:
        """Delete job ``job_id``'s reservation row and take what it held off its period's
        counters, in one step each: the DELETE locks the row, so of two racing releases
        only one gets it back (and subtracts). The row deleted, or None."""
        r = t.budget_reservations.c
        stmt = sa.delete(t.budget_reservations).where(r.job_id == job_id)
        if unless_processing:
            j = t.observation_generation_jobs.c
            processing = sa.exists().where(j.id == job_id, j.status == JobStatus.PROCESSING.value)
            stmt = stmt.where(~processing)
        held = await self._db.write(
            stmt.returning(r.team_id, r.project_id, r.period_start, r.tokens, r.usd)
        )
        row = held.mappings().one_or_none()
        if row is not None:
            await self._counters(
                row["team_id"],
                row["project_id"],
                row["period_start"],
                int(row["tokens"]),
                float(row["usd"]),
                1,
            )
        return row

    async def _counters(
        self,
        team_id: str,
        project_id: str,
        start: datetime,
        tokens: int,
        usd: float,
        in_flight: int,
        **spent: Any,
    ) -> None:
        """Take ``tokens``/``usd`` and ``in_flight`` calls off the period's reservations
        (never below zero), adding ``spent`` (column: amount) to its spent counters."""
        c = t.budget_periods.c
        await self._db.write(
            sa.update(t.budget_periods)
            .where(*self._where(team_id, project_id, start))
            .values(
                reserved_tokens=self._floor(c.reserved_tokens - tokens),
                reserved_usd=self._floor(c.reserved_usd - usd),
                in_flight=self._floor(c.in_flight - in_flight),
                **{name: c[name] + amount for name, amount in spent.items()},
            )
        )

    async def settle(self, reservation: Reservation, *, tokens: int, usd: float) -> None:
        r = t.budget_reservations.c
        held = await self._db.write(
            sa.delete(t.budget_reservations)
            .where(r.job_id == reservation.job_id)
            .returning(r.period_start, r.tokens, r.usd)
        )
        row = held.mappings().one_or_none()
        # Released already (its lease expired meanwhile): what it spent still counts.
        back_tokens, back_usd, back_calls = (
            (int(row["tokens"]), float(row["usd"]), 1) if row is not None else (0, 0.0, 0)
        )
        await self._counters(
            reservation.team_id,
            reservation.project_id,
            row["period_start"] if row is not None else reservation.start,
            back_tokens,
            back_usd,
            back_calls,
            spent_tokens=tokens,
            spent_usd=usd,
            calls=1,
        )

    async def release(self, reservation: Reservation) -> bool:
        return await self._give_back(reservation.job_id) is not None

    async def release_for_job(self, job_id: str) -> bool:
        return await self._give_back(job_id) is not None

    async def transfer(self, reservation: Reservation, job_id: str) -> Reservation:
        if job_id == reservation.job_id:
            return reservation
        await self._give_back(job_id)
        r = t.budget_reservations.c
        await self._db.write(
            sa.update(t.budget_reservations)
            .where(r.job_id == reservation.job_id)
            .values(job_id=job_id)
        )
        return attrs.evolve(reservation, job_id=job_id)

    def _floor(self, value: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """``value`` but never below zero (SQLite's two-argument max is PostgreSQL's
        greatest)."""
        if self._db.dialect == dialects.POSTGRES:
            return sa.func.greatest(value, 0)
        return sa.func.max(value, 0)

    async def list_all(self, *, limit: int) -> Sequence[Budget]:
        c = t.project_budgets.c
        rows = await self._db.all(
            self._db.select(t.project_budgets)
            .where(t.live_project(t.project_budgets))
            .order_by(c.team_id, c.project_id)
            .limit(limit)
        )
        return [_budget(r) for r in rows]

    async def held_jobs(self) -> Mapping[str, int]:
        j = t.observation_generation_jobs.c
        reason = j.last_error["heldReason"].as_string().label("reason")
        rows = await self._db.all(
            sa.select(reason, sa.func.count().label("n"))
            .where(j.status == JobStatus.QUEUED.value, reason.in_(HELD_REASONS))
            .group_by(reason)
        )
        return {str(r["reason"]): int(r["n"]) for r in rows}


class ProviderPauseRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def pause(self, provider: str, until: datetime, *, now: datetime) -> datetime:
        c = t.provider_pauses.c
        stmt = dialects.insert(self._db.dialect, t.provider_pauses).values(
            provider=provider, paused_until=until, updated_at=now
        )
        # A later pause already stored wins (two workers answered 429 at once).
        stmt = stmt.on_conflict_do_update(
            index_elements=["provider"],
            set_={"paused_until": until, "updated_at": now},
            where=c.paused_until < until,
        )
        await self._db.write(stmt)
        stored = await self._db.one_or_none(sa.select(c.paused_until).where(c.provider == provider))
        return stored["paused_until"] if stored is not None else until

    async def paused_until(self, provider: str, *, now: datetime) -> datetime | None:
        c = t.provider_pauses.c
        row = await self._db.one_or_none(
            sa.select(c.paused_until).where(c.provider == provider, c.paused_until > now)
        )
        return row["paused_until"] if row is not None else None
