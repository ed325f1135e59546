"""Budgets as pure functions: the UTC periods a budget counts in, and a held job.

A job held by a budget (or by a provider's shared pause) stays ``queued`` (no new status:
the statuses are wire) with its next attempt at the hold's end. Why it waits is kept in
its ``last_error`` (``{"reason", "classification", "heldReason", "heldUntil"}``), which
every status change clears, so a claimed, completed or failed job is never shown held.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

import attrs

from claude_mem_core.domain.models import GenerationJob, JobStatus

Period = Literal["day", "month"]
PERIODS: tuple[str, ...] = get_args(Period)
HoldReason = Literal["budget", "rate_limit"]
HELD_REASONS: tuple[str, ...] = get_args(HoldReason)


def period_start(now: datetime, period: Period) -> datetime:
    """The start (UTC) of the ``period`` that ``now`` falls in."""
    at = now.astimezone(UTC)
    if period == "day":
        return datetime(at.year, at.month, at.day, tzinfo=UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def next_period_start(now: datetime, period: Period) -> datetime:
    """The start (UTC) of the period after the one ``now`` falls in."""
    start = period_start(now, period)
    if period == "day":
        return start + timedelta(days=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def held_reason(job: GenerationJob) -> str | None:
    """Why a queued job is held (``budget`` or ``rate_limit``), or None."""
    if job.status is not JobStatus.QUEUED or not isinstance(job.last_error, dict):
        return None
    reason = job.last_error.get("heldReason")
    return reason if isinstance(reason, str) and reason in HELD_REASONS else None


def held_until(job: GenerationJob) -> str | None:
    """The ISO time a held job waits for (as stored), or None."""
    if held_reason(job) is None or job.last_error is None:
        return None
    until = job.last_error.get("heldUntil")
    return until if isinstance(until, str) else None


def hold(
    job: GenerationJob, reason: HoldReason, *, until: datetime, now: datetime, message: str
) -> GenerationJob:
    """``job`` (queued) held until ``until``: same status and attempts, so holding never
    uses up an attempt; the next attempt is at ``until``."""
    if job.status is not JobStatus.QUEUED:
        raise ValueError(f"only a queued job can be held, not a {job.status.value} one")
    return attrs.evolve(
        job,
        next_attempt_at=until,
        last_error={
            "reason": message,
            "classification": reason,
            "heldReason": reason,
            "heldUntil": until.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        },
        updated_at=now,
    )


def unhold(job: GenerationJob, *, now: datetime) -> GenerationJob:
    """A held ``job`` due now, its hold forgotten (the budget was raised or cleared)."""
    return attrs.evolve(job, next_attempt_at=now, last_error=None, updated_at=now)


__all__ = [
    "HELD_REASONS",
    "PERIODS",
    "HoldReason",
    "Period",
    "held_reason",
    "held_until",
    "hold",
    "next_period_start",
    "period_start",
    "unhold",
]
