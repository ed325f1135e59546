"""No sequence of worker and operator operations can put a job in an illegal state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from claude_mem_core.domain import jobs as machine
from claude_mem_core.domain.models import GenerationJob, JobStatus, JobType, SourceType
from claude_mem_core.errors import Conflict, IllegalTransition

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def new_job(max_attempts: int = 3) -> GenerationJob:
    return GenerationJob(
        id="j",
        team_id="t",
        project_id="p",
        agent_event_id="e",
        source_type=SourceType.AGENT_EVENT,
        source_id="e",
        job_type=JobType.GENERATE_FOR_EVENT,
        idempotency_key="k",
        max_attempts=max_attempts,
        created_at=T0,
        updated_at=T0,
    )


class JobLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.job = new_job()
        self.clock = T0

    def _tick(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def _attempt(self, op: object) -> None:
        before = self.job
        try:
            self.job = op()  # type: ignore[operator]
        except (IllegalTransition, Conflict):
            assert self.job == before  # a refused operation changes nothing
        else:
            if self.job is None:  # operator no-op
                self.job = before

    @rule(status=st.sampled_from(list(JobStatus)), worker=st.sampled_from(["a", "b"]))
    def worker_transition(self, status: JobStatus, worker: str) -> None:
        now = self._tick()
        self._attempt(
            lambda: machine.transition(
                self.job,
                status,
                now=now,
                worker_id=worker,
                next_attempt_at=now + timedelta(seconds=5),
                last_error={"reason": "x"},
            )
        )

    @rule()
    def operator_retry(self) -> None:
        now = self._tick()
        self._attempt(lambda: machine.operator_retry(self.job, now=now))

    @rule()
    def operator_cancel(self) -> None:
        now = self._tick()
        self._attempt(lambda: machine.operator_cancel(self.job, now=now))

    @rule(lease=st.sampled_from([0.0, 10.0, 1e9]))
    def lease_recovery(self, lease: float) -> None:
        now = self._tick()
        if machine.lease_expired(self.job, now=now, lease_seconds=lease):
            self._attempt(lambda: machine.release_expired(self.job, now=now))

    @invariant()
    def legal(self) -> None:
        job = self.job
        assert 0 <= job.attempts <= job.max_attempts
        assert (job.locked_at is not None) == (job.status is JobStatus.PROCESSING)
        assert (job.locked_by is not None) == (job.status is JobStatus.PROCESSING)
        assert (job.completed_at is not None) == (job.status is JobStatus.COMPLETED)
        assert (job.failed_at is not None) == (job.status is JobStatus.FAILED)
        assert (job.cancelled_at is not None) == (job.status is JobStatus.CANCELLED)
        if job.next_attempt_at is not None:
            assert job.status is JobStatus.QUEUED
        if job.status is JobStatus.PROCESSING:
            assert job.attempts >= 1


TestJobLifecycle = JobLifecycle.TestCase


@given(st.sampled_from([s for s in JobStatus if s.terminal]), st.sampled_from(list(JobStatus)))
def test_terminal_states_accept_no_worker_transition(
    terminal: JobStatus, target: JobStatus
) -> None:
    job = attrs.evolve(new_job(), status=terminal)
    with pytest.raises(IllegalTransition, match="terminal status"):
        machine.transition(job, target, now=T0)


def test_claim_counts_attempts_and_stops_at_max() -> None:
    job = new_job(max_attempts=1)
    claimed = machine.transition(job, JobStatus.PROCESSING, now=T0, worker_id="w")
    assert (claimed.attempts, claimed.locked_by) == (1, "w")
    with pytest.raises(IllegalTransition, match="max_attempts"):
        machine.transition(claimed, JobStatus.QUEUED, now=T0)
    failed = machine.transition(claimed, JobStatus.FAILED, now=T0)
    retried = machine.operator_retry(failed, now=T0)
    assert retried is not None and retried.attempts == 0  # max_attempts - 1
    assert machine.release_expired(claimed, now=T0).status is JobStatus.FAILED


def test_operator_rules() -> None:
    job = new_job()
    assert machine.operator_retry(job, now=T0) is None
    processing = machine.transition(job, JobStatus.PROCESSING, now=T0, worker_id="w")
    with pytest.raises(Conflict, match="currently processing"):
        machine.operator_retry(processing, now=T0)
    done = machine.transition(processing, JobStatus.COMPLETED, now=T0)
    with pytest.raises(Conflict, match="duplicate observations"):
        machine.operator_retry(done, now=T0)
    with pytest.raises(Conflict, match="cannot cancel"):
        machine.operator_cancel(done, now=T0)
    cancelled = machine.operator_cancel(processing, now=T0)
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    assert machine.operator_cancel(cancelled, now=T0) is None


def test_backoff_grows_and_is_capped() -> None:
    delays = [machine.retry_delay_seconds(n) for n in range(1, 6)]
    assert delays == sorted(delays) and delays[0] == 5.0 and delays[-1] == 600.0
