"""The storage contract, jobs: the outbox rows, their guarded status changes, leases,
listing and reconciliation reads. Part of
:class:`~claude_mem_core.testing.contracts.StorageContract` (same fixtures)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import attrs
import pytest

from claude_mem_core.domain import jobs as machine
from claude_mem_core.domain.models import (
    GenerationJob,
    JobEventType,
    JobStatus,
    Project,
    SourceType,
)
from claude_mem_core.errors import InvalidInput, NotFound
from claude_mem_core.ports.storage import JobFilter, Page, Storage
from claude_mem_core.testing.storage_fixtures import T0, Backdoor, Factory


class JobStorageContract:
    """Jobs and their events on every storage adapter."""

    # -- jobs ------------------------------------------------------------------------

    async def test_job_add_is_idempotent_and_keeps_the_stored_row(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, _, job = await make.stored_event_job(storage)
        duplicate = attrs.evolve(
            job, id="job-other", payload={"kind": "changed"}, transport_id="evt_other"
        )
        async with storage.unit_of_work() as uow:
            stored, created = await uow.jobs.add(duplicate)
        assert (stored, created) == (job, False)
        rows = await backdoor.rows("jobs")
        assert len(rows) == 1 and rows[0]["payload"] == job.payload
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.get(team.id, job.id) == job
            assert await uow.jobs.get("other-team", job.id) is None
            assert await uow.jobs.get_unscoped(job.id) == job

    async def test_compare_and_set_has_one_winner(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, _, job = await make.stored_event_job(storage)
        now = T0 + timedelta(seconds=5)
        a = machine.transition(job, JobStatus.PROCESSING, now=now, worker_id="a")
        b = machine.transition(job, JobStatus.PROCESSING, now=now, worker_id="b")

        async def claim(new: GenerationJob) -> bool:
            async with storage.unit_of_work() as uow:
                return await uow.jobs.compare_and_set(job, new)

        results = await asyncio.gather(claim(a), claim(b))
        assert sorted(results) == [False, True]
        (row,) = await backdoor.rows("jobs")
        assert row["status"] == "processing" and row["attempts"] == 1
        assert row["locked_by"] == ("a" if results[0] else "b")
        winner = a if results[0] else b
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.get(team.id, job.id) == winner
            done = machine.transition(winner, JobStatus.COMPLETED, now=now)
            # A stale expectation (the pre-claim row) must not overwrite the claim.
            assert await uow.jobs.compare_and_set(job, done) is False
            assert await uow.jobs.compare_and_set(winner, done) is True

    async def test_compare_and_set_logs_its_event_only_when_it_wins(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, _, job = await make.stored_event_job(storage)
        now = T0 + timedelta(seconds=5)
        claimed = machine.transition(job, JobStatus.PROCESSING, now=now, worker_id="w")
        done = machine.transition(claimed, JobStatus.COMPLETED, now=now)
        async with storage.unit_of_work() as uow:
            await uow.job_events.add(make.job_event(job))
            processing = make.job_event(claimed, event_type=JobEventType.PROCESSING)
            assert await uow.jobs.compare_and_set(job, claimed, event=processing)
            stale = make.job_event(claimed, event_type=JobEventType.FAILED)
            assert await uow.jobs.compare_and_set(job, claimed, event=stale) is False
        async with storage.unit_of_work() as uow:
            completed = make.job_event(done, event_type=JobEventType.COMPLETED)
            assert await uow.jobs.compare_and_set(claimed, done, event=completed)
            assert await uow.jobs.get(team.id, job.id) == done
            listed = await uow.job_events.list(team.id, job.id)
        assert [(e.event_type, e.status_after, e.attempt) for e in listed] == [
            (JobEventType.QUEUED, JobStatus.QUEUED, 0),
            (JobEventType.PROCESSING, JobStatus.PROCESSING, 1),
            (JobEventType.COMPLETED, JobStatus.COMPLETED, 1),
        ]
        assert listed[1] == processing and listed[2] == completed
        assert len(await backdoor.rows("job_events")) == 3
        (row,) = await backdoor.rows("jobs")
        assert row["status"] == "completed"
        with pytest.raises(InvalidInput):
            async with storage.unit_of_work() as uow:
                other = make.job_event(attrs.evolve(done, id="job-other"))
                await uow.jobs.compare_and_set(done, done, event=other)

    async def test_job_listing_filters_pages_and_counts(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        sibling = make.project(team, "sibling")
        async with storage.unit_of_work() as uow:
            await uow.projects.add(sibling)
        made: list[GenerationJob] = []
        for target in (project, project, sibling):
            event = make.event(target)
            job = make.job(event)
            async with storage.unit_of_work() as uow:
                await uow.events.add(event)
                await uow.jobs.add(job)
            made.append(job)
        failed = machine.transition(
            made[0], JobStatus.FAILED, now=T0 + timedelta(hours=1), last_error={"reason": "x"}
        )
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.compare_and_set(made[0], failed)
            page, total = await uow.jobs.list(JobFilter(team_id=team.id), Page(limit=2))
            assert total == 3 and [j.id for j in page] == [made[2].id, made[1].id]
            only_project, total = await uow.jobs.list(
                JobFilter(team_id=team.id, project_id=project.id), Page()
            )
            assert total == 2 and {j.id for j in only_project} == {made[0].id, made[1].id}
            queued, total = await uow.jobs.list(
                JobFilter(team_id=team.id, status=JobStatus.QUEUED), Page()
            )
            assert total == 2
            since, total = await uow.jobs.list(
                JobFilter(team_id=team.id, since=made[2].created_at), Page()
            )
            assert [j.id for j in since] == [made[2].id]
            _, none = await uow.jobs.list(JobFilter(team_id="nobody"), Page())
            assert none == 0
            counts = await uow.jobs.count_by_status(team.id)
            assert counts[JobStatus.QUEUED] == 2 and counts[JobStatus.FAILED] == 1
            summary_only, total = await uow.jobs.list(
                JobFilter(team_id=team.id, source_type=SourceType.SESSION_SUMMARY), Page()
            )
            assert total == 0
        del queued, summary_only

    async def _queued_jobs(
        self, storage: Storage, make: Factory, project: Project, count: int
    ) -> list[GenerationJob]:
        """``count`` queued jobs of the project, each with its event, stored one by one."""
        rows = []
        for _ in range(count):
            event = make.event(project)
            job = make.job(event)
            async with storage.unit_of_work() as uow:
                await uow.events.add(event)
                await uow.jobs.add(job)
            rows.append(job)
        return rows

    async def test_due_jobs_and_expired_leases(self, storage: Storage, make: Factory) -> None:
        _, project = await make.stored_tenant(storage)
        rows = await self._queued_jobs(storage, make, project, 3)
        now = T0 + timedelta(hours=1)
        later = machine.transition(
            machine.transition(rows[1], JobStatus.PROCESSING, now=now, worker_id="w"),
            JobStatus.QUEUED,
            now=now,
            next_attempt_at=now + timedelta(minutes=10),
        )
        stale = machine.transition(
            rows[2], JobStatus.PROCESSING, now=now - timedelta(hours=1), worker_id="dead"
        )
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.compare_and_set(rows[1], later)
            assert await uow.jobs.compare_and_set(rows[2], stale)
            due = await uow.jobs.list_due(
                now=now, lease_expired_before=now - timedelta(minutes=5), limit=10
            )
        assert {j.id for j in due} == {rows[0].id, rows[2].id}

    async def test_job_lease_renewal_is_fenced_by_the_claim(
        self, storage: Storage, make: Factory
    ) -> None:
        team, _, job = await make.stored_event_job(storage)
        start = T0 + timedelta(minutes=1)
        claimed = machine.transition(job, JobStatus.PROCESSING, now=start, worker_id="w1")
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.renew_lease(claimed, now=start) is False  # still queued
            assert await uow.jobs.compare_and_set(job, claimed)
        beat = start + timedelta(seconds=20)
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.renew_lease(claimed, now=beat) is True
        async with storage.unit_of_work() as uow:
            stored = await uow.jobs.get(team.id, job.id)
            assert stored is not None
            assert (stored.locked_at, stored.status, stored.attempts) == (
                beat,
                JobStatus.PROCESSING,
                1,
            )
            # A renewed lease is not expired where the first one would be.
            due = await uow.jobs.list_due(
                now=beat, lease_expired_before=start + timedelta(seconds=10), limit=10
            )
            assert job.id not in {j.id for j in due}
            # Another holder, another attempt or another team: not this claim.
            stranger = attrs.evolve(claimed, locked_by="w2")
            assert await uow.jobs.renew_lease(stranger, now=beat) is False
            assert await uow.jobs.renew_lease(attrs.evolve(claimed, attempts=2), now=beat) is False
            assert (
                await uow.jobs.renew_lease(attrs.evolve(claimed, team_id="other"), now=beat)
                is False
            )
        # The lease expired and another worker took the job over: the first claim is lost.
        released = machine.release_expired(stored, now=beat + timedelta(minutes=5))
        retaken = machine.transition(
            released, JobStatus.PROCESSING, now=beat + timedelta(minutes=5), worker_id="w2"
        )
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.compare_and_set(stored, released)
            assert await uow.jobs.compare_and_set(released, retaken)
            assert await uow.jobs.renew_lease(claimed, now=beat) is False
            assert await uow.jobs.renew_lease(retaken, now=beat + timedelta(minutes=6)) is True
            done = machine.transition(retaken, JobStatus.COMPLETED, now=beat)
            assert await uow.jobs.compare_and_set(retaken, done)
            assert await uow.jobs.renew_lease(retaken, now=beat) is False

    async def test_mark_republished_stamps_each_job_once_per_period(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        rows = await self._queued_jobs(storage, make, project, 3)
        # rows[2] is being processed: never stamped.
        claimed = machine.transition(
            rows[2], JobStatus.PROCESSING, now=T0 + timedelta(hours=1), worker_id="w"
        )
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.compare_and_set(rows[2], claimed)
        ids = [j.id for j in rows] + ["missing"]
        now = T0 + timedelta(hours=1)
        async with storage.unit_of_work() as uow:
            first = await uow.jobs.mark_republished(
                ids, now=now, untouched_since=now - timedelta(seconds=30)
            )
        assert first == {rows[0].id, rows[1].id}
        async with storage.unit_of_work() as uow:
            stored = await uow.jobs.get(team.id, rows[0].id)
            assert stored is not None and stored.next_attempt_at == now
            assert stored.status is JobStatus.QUEUED
            # Still due (next_attempt_at is not in the future).
            due = await uow.jobs.list_due(now=now, lease_expired_before=T0, limit=10)
            assert {rows[0].id, rows[1].id} <= {j.id for j in due}
            # Within the period nobody stamps them again (a second reconciler loses).
            again = await uow.jobs.mark_republished(
                ids, now=now + timedelta(seconds=10), untouched_since=now - timedelta(seconds=20)
            )
            assert again == set()
        later = now + timedelta(seconds=31)
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.mark_republished(
                ids[:1], now=later, untouched_since=later - timedelta(seconds=30)
            ) == {rows[0].id}
            assert await uow.jobs.mark_republished([], now=later, untouched_since=later) == set()

    async def test_completed_event_ids(self, storage: Storage, make: Factory) -> None:
        team, project, job = await make.stored_event_job(storage)
        now = T0 + timedelta(minutes=1)
        claimed = machine.transition(job, JobStatus.PROCESSING, now=now, worker_id="w")
        done = machine.transition(claimed, JobStatus.COMPLETED, now=now)
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.completed_event_ids(team.id, project.id, [job.source_id]) == set()
            assert await uow.jobs.compare_and_set(job, claimed)
            assert await uow.jobs.compare_and_set(claimed, done)
            assert await uow.jobs.completed_event_ids(
                team.id, project.id, [job.source_id, "x"]
            ) == {job.source_id}

    async def test_job_events_append_in_order_and_refuse_foreign_scope(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, _, job = await make.stored_event_job(storage)
        first = make.job_event(job)
        second = make.job_event(
            job, event_type=JobEventType.PROCESSING, created_at=first.created_at
        )
        async with storage.unit_of_work() as uow:
            await uow.job_events.add(first)
            await uow.job_events.add(second)
        with pytest.raises(NotFound):
            async with storage.unit_of_work() as uow:
                await uow.job_events.add(make.job_event(job, team_id="other-team"))
        async with storage.unit_of_work() as uow:
            listed = await uow.job_events.list(team.id, job.id)
            assert list(await uow.job_events.list("other-team", job.id)) == []
        assert [e.id for e in listed] == [first.id, second.id]
        assert len(await backdoor.rows("job_events")) == 2
