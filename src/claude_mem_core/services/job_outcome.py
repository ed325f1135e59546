"""What processing a generation job ends in (:class:`ProcessResult`), and what each step
records with it: the caller the job acts for, and, for a session summary, its session's
generation status."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from attrs import frozen

from claude_mem_core.domain.models import (
    GenerationJob,
    SessionGenerationStatus,
    SourceType,
)
from claude_mem_core.ports.storage import UnitOfWork
from claude_mem_core.services.context import Caller

Outcome = Literal[
    "completed",
    "skipped",
    "retry_scheduled",
    "failed",
    "missing",
    "busy",
    "lost_lease",
    "held",  # left queued by the provider gate (a budget spent, a provider's pause)
]


@frozen(kw_only=True)
class ProcessResult:
    job_id: str
    outcome: Outcome
    observation_ids: tuple[str, ...] = ()
    error: str | None = None


def caller_for(job: GenerationJob) -> Caller:
    """The caller a job acts for: the key, actor and request recorded when it was queued."""
    payload = job.payload
    return Caller(
        team_id=job.team_id,
        project_id=job.project_id,
        api_key_id=payload.get("api_key_id")
        if isinstance(payload.get("api_key_id"), str)
        else None,
        actor_id=payload.get("actor_id") if isinstance(payload.get("actor_id"), str) else None,
        request_id=payload.get("request_id")
        if isinstance(payload.get("request_id"), str)
        else None,
    )


def is_summary(job: GenerationJob) -> bool:
    return job.source_type is SourceType.SESSION_SUMMARY and job.server_session_id is not None


async def set_summary_status(
    uow: UnitOfWork,
    job: GenerationJob,
    status: SessionGenerationStatus,
    now: datetime,
    *,
    error: str | None = None,
) -> None:
    """A summary job's progress is its session's generation status; other jobs have none."""
    if is_summary(job) and job.server_session_id is not None:
        await uow.sessions.set_generation_status(
            job.team_id, job.project_id, job.server_session_id, status, now=now, error=error
        )
