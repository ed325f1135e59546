"""Use case: find the generation work the queue lost and hand it to the queue again."""

from __future__ import annotations

from datetime import timedelta

from attrs import frozen

from claude_mem_core.domain import jobs as machine
from claude_mem_core.domain.models import GenerationJob, JobEventType, JobStatus, SourceType
from claude_mem_core.services import outbox
from claude_mem_core.services.context import Deps
from claude_mem_core.services.job_outcome import caller_for
from claude_mem_core.services.tenancy import audit


@frozen(kw_only=True)
class ReconcileReport:
    republished: int = 0
    released: int = 0
    failed: int = 0


async def reconcile(
    deps: Deps,
    *,
    republish_after_seconds: float = 30.0,
    limit: int = 500,
    batch: int | None = None,
) -> ReconcileReport:
    """Find work the queue lost: queued rows that are due and not published for
    ``republish_after_seconds`` are published again; processing rows whose lease expired
    go back to queued (or fail when out of attempts). The database is the source of
    truth, the queue only delivers.

    Each republished row is stamped (``next_attempt_at``) in the same transaction, by a
    guarded write that only one of several racing reconcilers wins, so a stranded job is
    published at most once per ``republish_after_seconds`` however many workers
    reconcile and however often; at most ``batch`` (``PipelineOptions.reconcile_batch``)
    rows a pass, the rest in the next passes."""
    now = deps.clock.now()
    lease = timedelta(seconds=deps.options.lease_seconds)
    untouched_since = now - timedelta(seconds=max(republish_after_seconds, 0.0))
    batch = deps.options.reconcile_batch if batch is None else batch
    republish: list[GenerationJob] = []
    released = failed = 0
    async with deps.storage.unit_of_work() as uow:
        # Queued rows are listed as due at ``untouched_since``: one republished (or given
        # a retry time) since then is not listed, so it cannot crowd the others out.
        due = await uow.jobs.list_due(
            now=untouched_since, lease_expired_before=now - lease, limit=limit
        )
        stranded: list[GenerationJob] = []
        for job in due:
            if job.status is JobStatus.PROCESSING:
                new = machine.release_expired(job, now=now)
                if not await uow.jobs.compare_and_set(job, new):
                    continue
                # Its worker died mid-call: the call's reservation will never be settled.
                await uow.budgets.release_for_job(job.id)
                await outbox.append_job_event(
                    uow,
                    deps,
                    new,
                    JobEventType.QUEUED if new.status is JobStatus.QUEUED else JobEventType.FAILED,
                    {"source": "reconcile_lease_expired", "lockedBy": job.locked_by},
                )
                await audit(
                    uow,
                    deps,
                    caller_for(job),
                    "generation_job.stalled",
                    project_id=job.project_id,
                    resource_id=job.id,
                    details={
                        "lockedBy": job.locked_by,
                        "attempts": job.attempts,
                        "statusAfter": new.status.value,
                    },
                )
                if new.status is JobStatus.QUEUED:
                    released += 1
                    republish.append(new)
                else:
                    failed += 1
                continue
            if _held_by_policy(deps, job):
                continue
            last_touch = job.next_attempt_at or job.updated_at
            if last_touch <= untouched_since and len(stranded) < batch:
                stranded.append(job)
        if stranded:
            won = await uow.jobs.mark_republished(
                [job.id for job in stranded], now=now, untouched_since=untouched_since
            )
            republish += [job for job in stranded if job.id in won]
    # One round trip for all of them (a waiting job's marker keeps it from doubling).
    sent = await outbox.publish_many(deps, [(job, 0.0) for job in republish]) if republish else {}
    published = sum(1 for state in sent.values() if state == "enqueued")
    return ReconcileReport(republished=published, released=released, failed=failed)


def _held_by_policy(deps: Deps, job: GenerationJob) -> bool:
    return (
        deps.options.session_policy == "end-of-session"
        and job.source_type is SourceType.AGENT_EVENT
        and job.server_session_id is not None
    )
