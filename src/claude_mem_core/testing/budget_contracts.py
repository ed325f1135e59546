"""The contract of the budget ports (``ports/budgets.py``) that every storage adapter
passes (memory, SQLite, PostgreSQL): a budget per project, a reservation that refuses to
pass a limit, settle and release (each given back once, by the job it is for), a
provider pause that only grows, and a provider's
calls per minute that never pass their limit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from claude_mem_core.domain.models import Project, Team
from claude_mem_core.ports.budgets import Budget, Reservation
from claude_mem_core.ports.storage import Storage

AT = datetime(2026, 6, 1, tzinfo=UTC)


async def _project(storage: Storage) -> tuple[str, str]:
    async with storage.unit_of_work() as uow:
        await uow.teams.add(Team(id="t-budget", name="acme", created_at=AT, updated_at=AT))
        await uow.projects.add(
            Project(id="p-budget", team_id="t-budget", name="app", created_at=AT, updated_at=AT)
        )
    return "t-budget", "p-budget"


def _daily_tokens(team: str, project: str, limit: int) -> Budget:
    return Budget(team_id=team, project_id=project, period="day", token_limit=limit, updated_at=AT)


def _job(job_id: str) -> dict[str, Any]:
    """The job a reservation is for, and when it is made."""
    return {"job_id": job_id, "at": AT}


class BudgetContract:
    """Mix into a test class that has a ``storage`` fixture."""

    async def test_a_budget_is_set_replaced_and_cleared(self, storage: Storage) -> None:
        team, project = await _project(storage)
        budget = _daily_tokens(team, project, 10)
        async with storage.unit_of_work() as uow:
            assert await uow.budgets.put(budget)
            assert not await uow.budgets.put(
                Budget(
                    team_id="other", project_id=project, period="day", token_limit=1, updated_at=AT
                )
            )
        async with storage.unit_of_work() as uow:
            assert await uow.budgets.get(team, project) == budget
            await uow.budgets.put(
                Budget(
                    team_id=team, project_id=project, period="month", usd_limit=2.5, updated_at=AT
                )
            )
        async with storage.unit_of_work() as uow:
            stored = await uow.budgets.get(team, project)
            assert stored is not None
            assert (stored.period, stored.token_limit, stored.usd_limit) == ("month", None, 2.5)
            assert [b.project_id for b in await uow.budgets.list_all(limit=10)] == [project]
            assert await uow.budgets.clear(team, project)
            assert not await uow.budgets.clear(team, project)
        async with storage.unit_of_work() as uow:
            assert await uow.budgets.get(team, project) is None

    async def test_reservations_never_pass_a_limit(self, storage: Storage) -> None:
        team, project = await _project(storage)
        budget = Budget(
            team_id=team,
            project_id=project,
            period="day",
            token_limit=100,
            usd_limit=1.0,
            updated_at=AT,
        )
        async with storage.unit_of_work() as uow:
            await uow.budgets.put(budget)
            assert await uow.budgets.reserve(
                budget, AT, tokens=60, usd=0.1, alone=True, **_job("a")
            )
            # Alone: not while another call is in flight, even if it fits.
            assert not await uow.budgets.reserve(
                budget, AT, tokens=10, usd=0.1, alone=True, **_job("x")
            )
            assert await uow.budgets.reserve(
                budget, AT, tokens=40, usd=0.1, alone=False, **_job("b")
            )
            assert not await uow.budgets.reserve(
                budget, AT, tokens=1, usd=0.0, alone=False, **_job("x")
            )
        first = Reservation(
            job_id="a", team_id=team, project_id=project, start=AT, tokens=60, usd=0.1
        )
        second = Reservation(
            job_id="b", team_id=team, project_id=project, start=AT, tokens=40, usd=0.1
        )
        async with storage.unit_of_work() as uow:
            await uow.budgets.settle(first, tokens=50, usd=0.2)
            await uow.budgets.release(second)
            period = await uow.budgets.period(team, project, AT)
        assert (period.spent_tokens, period.reserved_tokens, period.in_flight, period.calls) == (
            50,
            0,
            0,
            1,
        )
        assert period.spent_usd == 0.2 and period.reserved_usd == 0.0
        async with storage.unit_of_work() as uow:
            # 50 spent: 50 more fit, 51 do not; the dollar limit guards too.
            assert not await uow.budgets.reserve(
                budget, AT, tokens=51, usd=0.0, alone=False, **_job("c")
            )
            assert not await uow.budgets.reserve(
                budget, AT, tokens=1, usd=0.9, alone=False, **_job("c")
            )
            assert await uow.budgets.reserve(
                budget, AT, tokens=50, usd=0.8, alone=False, **_job("c")
            )
            # Another period has its own counter.
            tomorrow = AT + timedelta(days=1)
            assert await uow.budgets.reserve(
                budget, tomorrow, tokens=100, usd=0.0, alone=True, **_job("d")
            )

    async def test_a_reservation_is_given_back_once(self, storage: Storage) -> None:
        team, project = await _project(storage)
        budget = _daily_tokens(team, project, 100)
        first = Reservation(
            job_id="a", team_id=team, project_id=project, start=AT, tokens=30, usd=0.0
        )
        second = attrs.evolve(first, job_id="b", tokens=40)
        async with storage.unit_of_work() as uow:
            await uow.budgets.put(budget)
            assert await uow.budgets.reserve(
                budget, AT, tokens=30, usd=0.0, alone=True, **_job("a")
            )
            assert await uow.budgets.reserve(
                budget, AT, tokens=40, usd=0.0, alone=False, **_job("b")
            )
        async with storage.unit_of_work() as uow:
            assert await uow.budgets.release(first)
            # Released twice (a late release by a worker thought dead): nothing more
            # goes, and the other call's reservation is untouched.
            assert not await uow.budgets.release(first)
            assert not await uow.budgets.release_for_job("a")
            period = await uow.budgets.period(team, project, AT)
        assert (period.reserved_tokens, period.in_flight) == (40, 1)
        async with storage.unit_of_work() as uow:
            await uow.budgets.settle(second, tokens=35, usd=0.0)
            assert not await uow.budgets.release(second)  # settled: nothing to give back
            period = await uow.budgets.period(team, project, AT)
        assert (period.spent_tokens, period.reserved_tokens, period.in_flight, period.calls) == (
            35,
            0,
            0,
            1,
        )

    async def test_a_jobs_reservation_is_released_by_its_id(self, storage: Storage) -> None:
        team, project = await _project(storage)
        budget = _daily_tokens(team, project, 100)
        yesterday = AT - timedelta(days=1)
        async with storage.unit_of_work() as uow:
            await uow.budgets.put(budget)
            assert await uow.budgets.reserve(
                budget, yesterday, tokens=70, usd=0.0, alone=True, **_job("old")
            )
            assert await uow.budgets.reserve(
                budget, AT, tokens=50, usd=0.0, alone=True, **_job("j")
            )
            assert await uow.budgets.reserve(
                budget, AT, tokens=20, usd=0.0, alone=False, **_job("k")
            )
            # The estimate fits no more: 50 + 20 reserved of 100.
            assert not await uow.budgets.reserve(
                budget, AT, tokens=31, usd=0.0, alone=False, **_job("m")
            )
        async with storage.unit_of_work() as uow:
            assert await uow.budgets.release_for_job("j")
            assert not await uow.budgets.release_for_job("j")
            assert not await uow.budgets.release_for_job("never-reserved")
            # A reservation of an earlier period goes back to that period's counters.
            assert await uow.budgets.release_for_job("old")
        async with storage.unit_of_work() as uow:
            today = await uow.budgets.period(team, project, AT)
            before = await uow.budgets.period(team, project, yesterday)
            assert (today.reserved_tokens, today.in_flight) == (20, 1)
            assert (before.reserved_tokens, before.in_flight) == (0, 0)
            assert await uow.budgets.reserve(
                budget, AT, tokens=31, usd=0.0, alone=False, **_job("m")
            )
            # The released call did report after all (its worker was only slow): what it
            # spent counts, and no reservation is taken off twice.
            late = Reservation(
                job_id="j", team_id=team, project_id=project, start=AT, tokens=50, usd=0.0
            )
            await uow.budgets.settle(late, tokens=45, usd=0.0)
            today = await uow.budgets.period(team, project, AT)
        assert (today.spent_tokens, today.calls, today.reserved_tokens, today.in_flight) == (
            45,
            1,
            51,
            2,
        )

    async def test_a_job_holds_one_reservation(self, storage: Storage) -> None:
        team, project = await _project(storage)
        budget = _daily_tokens(team, project, 100)
        async with storage.unit_of_work() as uow:
            await uow.budgets.put(budget)
            assert await uow.budgets.reserve(
                budget, AT, tokens=60, usd=0.0, alone=True, **_job("j")
            )
        async with storage.unit_of_work() as uow:
            # Reserved again for the same job, which is not processing (its release
            # failed): the kept reservation is given back first, so this one fits.
            assert await uow.budgets.reserve(
                budget, AT, tokens=70, usd=0.0, alone=True, **_job("j")
            )
            period = await uow.budgets.period(team, project, AT)
            assert (period.reserved_tokens, period.in_flight) == (70, 1)
            # A batch's reservation moves to its lead.
            held = Reservation(
                job_id="j", team_id=team, project_id=project, start=AT, tokens=70, usd=0.0
            )
            moved = await uow.budgets.transfer(held, "lead")
            assert moved.job_id == "lead"
            assert not await uow.budgets.release_for_job("j")
            assert await uow.budgets.release_for_job("lead")
            period = await uow.budgets.period(team, project, AT)
        assert (period.reserved_tokens, period.in_flight) == (0, 0)

    async def test_racing_releases_give_back_once(self, storage: Storage) -> None:
        team, project = await _project(storage)
        budget = _daily_tokens(team, project, 1_000)
        async with storage.unit_of_work() as uow:
            await uow.budgets.put(budget)
            assert await uow.budgets.reserve(
                budget, AT, tokens=60, usd=0.0, alone=True, **_job("j")
            )
            assert await uow.budgets.reserve(
                budget, AT, tokens=25, usd=0.0, alone=False, **_job("k")
            )

        async def release() -> bool:
            async with storage.unit_of_work() as uow:
                return await uow.budgets.release_for_job("j")

        released = await asyncio.gather(*(release() for _ in range(4)))
        assert sorted(released) == [False, False, False, True]
        async with storage.unit_of_work() as uow:
            period = await uow.budgets.period(team, project, AT)
        assert (period.reserved_tokens, period.in_flight) == (25, 1)

    async def test_a_pause_only_grows_and_ends(self, storage: Storage) -> None:
        later, sooner = AT + timedelta(seconds=30), AT + timedelta(seconds=10)
        async with storage.unit_of_work() as uow:
            assert await uow.provider_pauses.paused_until("anthropic", now=AT) is None
            assert await uow.provider_pauses.pause("anthropic", later, now=AT) == later
        async with storage.unit_of_work() as uow:
            assert await uow.provider_pauses.pause("anthropic", sooner, now=AT) == later
            assert await uow.provider_pauses.paused_until("anthropic", now=AT) == later
            assert await uow.provider_pauses.paused_until("openai", now=AT) is None
            assert await uow.provider_pauses.paused_until("anthropic", now=later) is None

    async def test_the_gate_reads_budget_and_pause_together(self, storage: Storage) -> None:
        team, project = await _project(storage)
        until = AT + timedelta(seconds=30)
        budget = Budget(
            team_id=team, project_id=project, period="month", usd_limit=5.0, updated_at=AT
        )
        async with storage.unit_of_work() as uow:
            # Neither: one answer with both empty (the project has no budget row).
            assert await uow.budgets.gate_reads(team, project, "anthropic", now=AT) == (
                None,
                None,
            )
            await uow.provider_pauses.pause("anthropic", until, now=AT)
        async with storage.unit_of_work() as uow:
            assert await uow.budgets.gate_reads(team, project, "anthropic", now=AT) == (
                None,
                until,
            )
            await uow.budgets.put(budget)
        async with storage.unit_of_work() as uow:
            assert await uow.budgets.gate_reads(team, project, "anthropic", now=AT) == (
                budget,
                until,
            )
            # Another provider is not paused; a pause that ended is none; another
            # project's budget is not this one's.
            assert await uow.budgets.gate_reads(team, project, "openai", now=AT) == (budget, None)
            assert await uow.budgets.gate_reads(team, project, "anthropic", now=until) == (
                budget,
                None,
            )
            assert await uow.budgets.gate_reads("other", project, "anthropic", now=AT) == (
                None,
                until,
            )

    async def test_a_rate_window_counts_up_to_its_limit(self, storage: Storage) -> None:
        minute = AT + timedelta(minutes=1)
        async with storage.unit_of_work() as uow:
            assert [await uow.provider_rates.take("anthropic", AT, limit=2) for _ in range(3)] == [
                True,
                True,
                False,
            ]
            # Each provider and each window has its own count.
            assert await uow.provider_rates.take("openai", AT, limit=1)
            assert await uow.provider_rates.take("anthropic", minute, limit=2)
        async with storage.unit_of_work() as uow:
            assert await uow.provider_rates.calls("anthropic", AT) == 2
            assert await uow.provider_rates.calls("anthropic", minute) == 1
            assert await uow.provider_rates.calls("gemini", AT) == 0
            # A lower limit (the setting changed) refuses, a higher one lets more in.
            assert not await uow.provider_rates.take("anthropic", AT, limit=1)
            assert await uow.provider_rates.take("anthropic", AT, limit=3)

    async def test_concurrent_units_of_work_never_pass_a_rate_limit(self, storage: Storage) -> None:
        async def one() -> bool:
            async with storage.unit_of_work() as uow:
                return await uow.provider_rates.take("anthropic", AT, limit=3)

        taken = await asyncio.gather(*(one() for _ in range(8)))
        assert sorted(taken) == [False] * 5 + [True] * 3
        async with storage.unit_of_work() as uow:
            assert await uow.provider_rates.calls("anthropic", AT) == 3

    async def test_old_rate_windows_are_forgotten(self, storage: Storage) -> None:
        later = AT + timedelta(hours=2)
        async with storage.unit_of_work() as uow:
            assert await uow.provider_rates.take("anthropic", AT, limit=1)
            assert await uow.provider_rates.take("openai", AT, limit=1)
        async with storage.unit_of_work() as uow:
            # The first count in a new window forgets the provider's windows of long ago.
            assert await uow.provider_rates.take("anthropic", later, limit=1)
        async with storage.unit_of_work() as uow:
            assert await uow.provider_rates.calls("anthropic", AT) == 0
            assert await uow.provider_rates.calls("openai", AT) == 1  # not another provider's


__all__ = ["BudgetContract"]
