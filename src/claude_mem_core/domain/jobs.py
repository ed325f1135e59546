"""The generation job state machine, as pure functions over :class:`GenerationJob`.

Every status change in the system goes through :func:`transition` (worker paths) or
:func:`operator_retry` / :func:`operator_cancel` (operator paths). Each returns the new row;
storage then writes it with a compare-and-set on the old row's (status, attempts, locked_by),
so two writers racing on one job cannot both win.

    queued ──▶ processing ──▶ completed
      │  ▲          │  │
      │  └──────────┘  └──▶ failed ──(operator retry)──▶ queued
      ├──▶ failed
      └──▶ cancelled ◀── processing        cancelled ──(operator retry)──▶ queued
"""

from __future__ import annotations

from datetime import datetime

import attrs

from claude_mem_core.domain.models import GenerationJob, JobStatus, JSONObject
from claude_mem_core.errors import Conflict, IllegalTransition

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.PROCESSING: frozenset(
        {JobStatus.QUEUED, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(job: GenerationJob, target: JobStatus) -> bool:
    if target not in ALLOWED[job.status]:
        return False
    return not (
        target in (JobStatus.PROCESSING, JobStatus.QUEUED) and job.attempts >= job.max_attempts
    )


def transition(
    job: GenerationJob,
    target: JobStatus,
    *,
    now: datetime,
    worker_id: str | None = None,
    next_attempt_at: datetime | None = None,
    last_error: JSONObject | None = None,
) -> GenerationJob:
    """Move ``job`` to ``target`` or raise :class:`IllegalTransition` saying why not."""
    if job.status.terminal:
        raise IllegalTransition(
            f"cannot transition generation job {job.id} from terminal status {job.status.value}"
        )
    if target not in ALLOWED[job.status]:
        raise IllegalTransition(
            f"illegal generation job transition from {job.status.value} to {target.value}"
        )
    if target is JobStatus.PROCESSING and job.attempts >= job.max_attempts:
        raise IllegalTransition(
            f"cannot process generation job {job.id} after max_attempts is reached"
        )
    if target is JobStatus.QUEUED and job.attempts >= job.max_attempts:
        raise IllegalTransition(
            f"cannot retry generation job {job.id} after max_attempts is reached"
        )
    processing = target is JobStatus.PROCESSING
    return attrs.evolve(
        job,
        status=target,
        attempts=job.attempts + 1 if processing else job.attempts,
        locked_at=now if processing else None,
        locked_by=worker_id if processing else None,
        next_attempt_at=next_attempt_at if target is JobStatus.QUEUED else None,
        completed_at=now if target is JobStatus.COMPLETED else None,
        failed_at=now if target is JobStatus.FAILED else None,
        cancelled_at=now if target is JobStatus.CANCELLED else None,
        last_error=last_error,
        updated_at=now,
    )


def operator_retry(job: GenerationJob, *, now: datetime) -> GenerationJob | None:
    """Requeue a failed or cancelled job for another try.

    Returns ``None`` when the job is already queued (nothing to do). A processing job would
    race the worker and a completed one would duplicate observations: both are conflicts.
    The attempt counter drops to ``max_attempts - 1`` at most so the job gets one more try
    without forgetting how many it has had.
    """
    if job.status is JobStatus.QUEUED:
        return None
    if job.status is JobStatus.PROCESSING:
        raise Conflict(
            "Generation job is currently processing; cancel or wait for completion before retrying"
        )
    if job.status is JobStatus.COMPLETED:
        raise Conflict("Generation job already completed; retrying would duplicate observations")
    return attrs.evolve(
        job,
        status=JobStatus.QUEUED,
        attempts=min(job.attempts, max(job.max_attempts - 1, 0)),
        locked_at=None,
        locked_by=None,
        next_attempt_at=None,
        completed_at=None,
        failed_at=None,
        cancelled_at=None,
        last_error=None,
        updated_at=now,
    )


def operator_cancel(job: GenerationJob, *, now: datetime) -> GenerationJob | None:
    """Cancel a queued or processing job. Returns ``None`` when it is already cancelled.

    A completed or failed job has already reached its end; cancelling it would rewrite
    history, so both are conflicts (retry a failed job instead).
    """
    if job.status is JobStatus.CANCELLED:
        return None
    if job.status is JobStatus.COMPLETED:
        raise Conflict("Generation job already completed; cannot cancel")
    if job.status is JobStatus.FAILED:
        raise Conflict("Generation job already failed; retry it instead of cancelling")
    return transition(job, JobStatus.CANCELLED, now=now, last_error=job.last_error)


def retry_delay_seconds(attempts: int, *, base: float = 5.0, cap: float = 600.0) -> float:
    """Exponential backoff before the next attempt (jitter is added by the caller)."""
    return float(min(base * (5 ** max(attempts - 1, 0)), cap))


def lease_expired(job: GenerationJob, *, now: datetime, lease_seconds: float) -> bool:
    if job.status is not JobStatus.PROCESSING or job.locked_at is None:
        return False
    return (now - job.locked_at).total_seconds() >= lease_seconds


def release_expired(
    job: GenerationJob, *, now: datetime, reason: str = "lease expired"
) -> GenerationJob:
    """A worker died holding ``job``: give it back to the queue, or fail it when it has
    used all its attempts (a dead letter an operator can retry)."""
    error = {"reason": reason, "classification": "stalled"}
    if job.attempts < job.max_attempts:
        return transition(job, JobStatus.QUEUED, now=now, next_attempt_at=now, last_error=error)
    return transition(job, JobStatus.FAILED, now=now, last_error=error)
