"""Publishing committed jobs: one call to the queue for several jobs, and what each job's
transport says when that call succeeds, fails, or cannot be made."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from attrs import evolve

from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.memory import InMemoryStorage
from claude_mem_core.domain.models import GenerationJob, JobStatus, JobType, SourceType
from claude_mem_core.errors import QueueError
from claude_mem_core.ports.queue import EVENT_LANE, SUMMARY_LANE, QueueMessage
from claude_mem_core.services import outbox
from claude_mem_core.services.context import Deps, PipelineOptions
from claude_mem_core.testing.fakes import FixedClock

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def job(n: int, *, summary: bool = False, status: JobStatus = JobStatus.QUEUED) -> GenerationJob:
    return GenerationJob(
        id=f"job-{n}",
        team_id="t",
        project_id="p",
        source_type=SourceType.SESSION_SUMMARY if summary else SourceType.AGENT_EVENT,
        source_id=f"src-{n}",
        job_type=JobType.GENERATE_SESSION_SUMMARY if summary else JobType.GENERATE_FOR_EVENT,
        status=status,
        idempotency_key=f"key-{n}",
        transport_id=f"evt_{n}",
        payload={"n": n},
        created_at=NOW,
        updated_at=NOW,
    )


class CountingQueue(InProcessQueue):
    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.calls: list[list[tuple[QueueMessage, float]]] = []

    async def publish_many(self, messages: Sequence[tuple[QueueMessage, float]]) -> None:
        self.calls.append(list(messages))
        if self.fail:
            raise QueueError("broker down")
        await super().publish_many(messages)


def deps(queue: CountingQueue | None, policy: str = "per-event") -> Deps:
    return Deps(
        storage=InMemoryStorage(),
        queue=queue,
        clock=FixedClock(NOW),
        options=PipelineOptions(session_policy=policy),
    )


async def test_several_jobs_go_to_the_queue_in_one_call() -> None:
    queue = CountingQueue()
    jobs = [job(1), job(2), job(3, summary=True)]
    outcome = await outbox.publish_for_policy(deps(queue), jobs)
    assert outcome == {"job-1": "enqueued", "job-2": "enqueued", "job-3": "enqueued"}
    [call] = queue.calls
    assert [(m.job_id, m.lane, delay) for m, delay in call] == [
        ("job-1", EVENT_LANE, 0.0),
        ("job-2", EVENT_LANE, 0.0),
        ("job-3", SUMMARY_LANE, 0.0),
    ]
    assert call[0][0] == outbox.message_for(jobs[0])
    assert await queue.depth() == {EVENT_LANE: 2, SUMMARY_LANE: 1}


async def test_a_failed_call_leaves_every_job_to_reconciliation() -> None:
    queue = CountingQueue(fail=True)
    outcome = await outbox.publish_for_policy(deps(queue), [job(1), job(2)])
    assert outcome == {"job-1": "queued_only", "job-2": "queued_only"}
    assert await queue.depth() == {}


async def test_jobs_not_queued_or_without_a_queue_are_not_published() -> None:
    queue = CountingQueue()
    outcome = await outbox.publish_many(
        deps(queue), [(job(1), 0.0), (job(2, status=JobStatus.COMPLETED), 0.0)]
    )
    assert outcome == {"job-1": "enqueued", "job-2": "queued_only"}
    assert [[m.job_id for m, _ in call] for call in queue.calls] == [["job-1"]]
    assert await outbox.publish_many(deps(None), [(job(1), 0.0), (job(2), 0.0)]) == {
        "job-1": "queued_only",
        "job-2": "queued_only",
    }


async def test_end_of_session_events_with_a_session_wait_for_the_summary() -> None:
    queue = CountingQueue()
    in_session = evolve(job(1), server_session_id="s1")
    outcome = await outbox.publish_for_policy(
        deps(queue, "end-of-session"), [in_session, job(2), job(3)]
    )
    assert outcome == {"job-1": "queued_only", "job-2": "enqueued", "job-3": "enqueued"}
    assert [[m.job_id for m, _ in call] for call in queue.calls] == [["job-2", "job-3"]]
