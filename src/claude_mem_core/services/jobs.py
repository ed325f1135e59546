"""Use cases for operators: read, list, retry and cancel generation jobs.

Retry and cancel go through the guarded transitions and a compare-and-set write, in one
transaction with their job event and audit row, so they cannot race a worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs
from attrs import frozen

from claude_mem_core.domain import jobs as machine
from claude_mem_core.domain.models import (
    GenerationJob,
    JobEvent,
    JobEventType,
    JobStatus,
    SourceType,
)
from claude_mem_core.domain.scopes import Need, allows, require
from claude_mem_core.errors import Conflict, Forbidden, InvalidInput, NotFound
from claude_mem_core.ports.storage import JobFilter, Page, UnitOfWork
from claude_mem_core.services import outbox
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.tenancy import audit, require_project

MAX_PAGE = 200


@frozen(kw_only=True)
class JobPage:
    jobs: Sequence[GenerationJob]
    total: int
    limit: int
    offset: int


@frozen(kw_only=True)
class RetryOutcome:
    job: GenerationJob
    retried_count: int
    already_queued: bool
    transport: outbox.Transport


@frozen(kw_only=True)
class CancelOutcome:
    job: GenerationJob
    already_cancelled: bool


async def _load(uow: UnitOfWork, caller: Caller, job_id: str) -> GenerationJob:
    job = await uow.jobs.get(caller.team_id, job_id)
    if job is None or not caller.scope.admits(job.team_id, job.project_id):
        raise NotFound("Generation job not found")
    return job


async def get_job(deps: Deps, caller: Caller, job_id: str) -> GenerationJob:
    require(caller.scopes, Need.READ_JOBS)
    async with deps.storage.unit_of_work() as uow:
        return await _load(uow, caller, job_id)


async def job_events(deps: Deps, caller: Caller, job_id: str) -> Sequence[JobEvent]:
    require(caller.scopes, Need.READ_JOBS)
    async with deps.storage.unit_of_work() as uow:
        job = await _load(uow, caller, job_id)
        return await uow.job_events.list(caller.team_id, job.id)


def parse_status(value: str | None) -> JobStatus | None:
    if value is None:
        return None
    try:
        return JobStatus(value)
    except ValueError:
        raise InvalidInput.field(
            "status", f"must be one of {', '.join(s.value for s in JobStatus)}"
        ) from None


def parse_source_type(value: str | None) -> SourceType | None:
    if value is None:
        return None
    try:
        return SourceType(value)
    except ValueError:
        raise InvalidInput.field(
            "source_type", f"must be one of {', '.join(s.value for s in SourceType)}"
        ) from None


async def list_jobs(
    deps: Deps,
    caller: Caller,
    *,
    project_id: str | None = None,
    status: JobStatus | None = None,
    source_type: SourceType | None = None,
    since: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
    mode: str = "jobs_list",
    team_id: str | None = None,
    include_payload: bool = False,
) -> JobPage:
    """Jobs of the caller's team (or of one project), newest first, paged.

    ``team_id``, when given, must be the caller's own team (anything else is not found).
    Stored payloads hold key ids and request ids, so returning them (``include_payload``)
    needs the admin scope.
    """
    require(caller.scopes, Need.READ_JOBS)
    if team_id is not None and team_id != caller.team_id:
        raise NotFound("Team not found")
    if include_payload and not allows(caller.scopes, Need.ADMIN):
        raise Forbidden("`include=payload` requires the admin or memories:admin scope")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInput.field("limit", f"must be an integer from 1 to {MAX_PAGE}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput.field("offset", "must be a non-negative integer")
    effective_project = project_id if project_id is not None else caller.project_id
    async with deps.storage.unit_of_work() as uow:
        if effective_project is not None:
            await require_project(uow, caller, effective_project)
        rows, total = await uow.jobs.list(
            JobFilter(
                team_id=caller.team_id,
                project_id=effective_project,
                status=status,
                source_type=source_type,
                since=since,
            ),
            Page(limit=limit, offset=offset),
        )
        await audit(
            uow,
            deps,
            caller,
            "observation.read",
            project_id=effective_project,
            details={
                "mode": mode,
                "teamId": caller.team_id,
                "projectId": effective_project,
                "status": status.value if status else None,
                "sourceType": source_type.value if source_type else None,
                "limit": limit,
                "offset": offset,
                "since": since.isoformat() if since else None,
                "includePayload": include_payload,
                "resultCount": len(rows),
            },
        )
    return JobPage(jobs=rows, total=total, limit=limit, offset=offset)


def _retried_count(payload: dict[str, Any]) -> int:
    value = payload.get("retried_count")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return int(value)
    return 0


async def retry_job(
    deps: Deps, caller: Caller, job_id: str, *, source: str = "operator_retry"
) -> RetryOutcome:
    """Requeue a failed or cancelled job; a queued one is left as it is."""
    require(caller.scopes, Need.OPERATE_JOBS)
    now = deps.clock.now()
    async with deps.storage.unit_of_work() as uow:
        job = await _load(uow, caller, job_id)
        new = machine.operator_retry(job, now=now)
        if new is None:
            await audit(
                uow,
                deps,
                caller,
                "generation_job.retried_by_operator",
                project_id=job.project_id,
                resource_id=job.id,
                details={
                    "outcome": "noop_already_queued",
                    "currentAttempts": job.attempts,
                    "source": source,
                },
            )
            count = _retried_count(job.payload)
            already = True
        else:
            count = _retried_count(job.payload) + 1
            payload = {
                **job.payload,
                "retried_count": count,
                "last_retried_by_actor": caller.actor_id,
                "last_retried_by_api_key_id": caller.api_key_id,
                "last_retried_request_id": caller.request_id,
                "request_id": caller.request_id,
            }
            new = attrs.evolve(new, payload=payload)
            if not await uow.jobs.compare_and_set(job, new):
                raise Conflict("Generation job changed while retrying; try again")
            await uow.jobs.save_payload(new)
            await outbox.append_job_event(
                uow,
                deps,
                new,
                JobEventType.QUEUED,
                {"source": source, "requestId": caller.request_id, "retriedCount": count},
            )
            await audit(
                uow,
                deps,
                caller,
                "generation_job.retried_by_operator",
                project_id=job.project_id,
                resource_id=job.id,
                details={
                    "previousStatus": job.status.value,
                    "currentStatus": new.status.value,
                    "retriedCount": count,
                    "source": source,
                },
            )
            job = new
            already = False
    transport = await outbox.publish(deps, job)
    return RetryOutcome(job=job, retried_count=count, already_queued=already, transport=transport)


async def cancel_job(
    deps: Deps, caller: Caller, job_id: str, *, source: str = "operator_cancel"
) -> CancelOutcome:
    """Cancel a queued or processing job. A worker holding it sees the status change
    when it tries to complete, and its results are discarded."""
    require(caller.scopes, Need.OPERATE_JOBS)
    now = deps.clock.now()
    async with deps.storage.unit_of_work() as uow:
        job = await _load(uow, caller, job_id)
        new = machine.operator_cancel(job, now=now)
        if new is None:
            await audit(
                uow,
                deps,
                caller,
                "generation_job.cancelled_by_operator",
                project_id=job.project_id,
                resource_id=job.id,
                details={"outcome": "noop_already_cancelled", "source": source},
            )
            return CancelOutcome(job=job, already_cancelled=True)
        if not await uow.jobs.compare_and_set(job, new):
            raise Conflict("Generation job changed while cancelling; try again")
        await outbox.append_job_event(
            uow,
            deps,
            new,
            JobEventType.CANCELLED,
            {"source": source, "requestId": caller.request_id},
        )
        await audit(
            uow,
            deps,
            caller,
            "generation_job.cancelled_by_operator",
            project_id=job.project_id,
            resource_id=job.id,
            details={
                "previousStatus": job.status.value,
                "currentStatus": new.status.value,
                "source": source,
            },
        )
    return CancelOutcome(job=new, already_cancelled=False)


async def job_counts(deps: Deps, team_id: str | None = None) -> dict[JobStatus, int]:
    async with deps.storage.unit_of_work() as uow:
        return await uow.jobs.count_by_status(team_id)


WAIT_POLL_FIRST_S = 0.05
WAIT_POLL_MAX_S = 0.5


async def wait_for_job(
    deps: Deps, caller: Caller, job: GenerationJob, *, deadline: float
) -> tuple[GenerationJob, bool]:
    """Wait until ``job`` (which the caller just wrote) is terminal or the monotonic
    ``deadline`` passes; returns the last row seen and whether time ran out.

    Each poll is its own short unit of work, so no connection is held while waiting, and
    the interval backs off. Reading back one's own job needs only the write scope that
    created it.
    """
    if not allows(caller.scopes, Need.WRITE_EVENTS):
        require(caller.scopes, Need.READ_JOBS)
    delay = WAIT_POLL_FIRST_S
    while not job.status.terminal:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return job, True
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, WAIT_POLL_MAX_S)
        async with deps.storage.unit_of_work() as uow:
            job = await _load(uow, caller, job.id)
    return job, False
