from datetime import timedelta
from typing import Any

import attrs
import pytest

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.domain import jobs as machine
from claude_mem_core.domain.models import (
    AuditEntry,
    GenerationJob,
    JobEventType,
    JobStatus,
    ObservationSource,
    ObservationSourceType,
)
from claude_mem_core.domain.passages import observation_passage
from claude_mem_core.domain.tokens import parse_query
from claude_mem_core.ports.budgets import Budget
from claude_mem_core.ports.ledger import LedgerEntry
from claude_mem_core.ports.storage import Storage
from claude_mem_core.testing.contracts import T0, Backdoor, Factory, StorageContract
from claude_mem_core.testing.fakes import ScriptedProvider

OBSERVATION = (
    "<observation><type>change</type><title>Edited a file</title>"
    "<narrative>It was edited.</narrative></observation>"
)


def _audit(job: GenerationJob, action: str, n: int) -> AuditEntry:
    return AuditEntry(
        id=f"aud-{action}-{n}",
        team_id=job.team_id,
        project_id=job.project_id,
        action=action,
        resource_type="generation_job",
        resource_id=job.id,
        details={"n": n},
        created_at=T0 + timedelta(seconds=n),
    )


def _call(job: GenerationJob, n: int) -> LedgerEntry:
    return LedgerEntry(
        id=f"call-{n}",
        team_id=job.team_id,
        project_id=job.project_id,
        job_id=job.id,
        purpose="observations",
        provider="anthropic",
        model="m",
        input_tokens=n,
        output_tokens=1,
        cost_usd=None,
        called_at=T0 + timedelta(seconds=n),
    )


class TestStorage(StorageContract):
    """Runs the shipped storage contract against every backend (see conftest)."""

    async def test_advance_writes_a_job_step_all_or_nothing(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project, job = await make.stored_event_job(storage)
        now = T0 + timedelta(seconds=5)
        claimed = machine.transition(job, JobStatus.PROCESSING, now=now, worker_id="w")
        processing = make.job_event(claimed, event_type=JobEventType.PROCESSING)
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.advance(job, claimed, event=processing) is True
        # A stale expectation writes nothing but the rows written in any case.
        stale = machine.transition(job, JobStatus.PROCESSING, now=now, worker_id="x")
        async with storage.unit_of_work() as uow:
            lost = make.job_event(stale, event_type=JobEventType.PROCESSING)
            assert (
                await uow.jobs.advance(
                    job,
                    stale,
                    event=lost,
                    audit=[_audit(job, "never", 1)],
                    audit_always=[_audit(job, "always", 2)],
                    ledger=[_call(job, 2)],
                )
                is False
            )
        done = machine.transition(claimed, JobStatus.COMPLETED, now=now)
        completed = make.job_event(done, event_type=JobEventType.COMPLETED)
        made = [
            make.observation(
                project, f"seen {i}", generation_key=f"gk-{i}", created_by_job_id=job.id
            )
            for i in range(2)
        ]
        links = [
            ObservationSource(
                id=f"src-{i}",
                observation_id=obs.id,
                team_id=team.id,
                project_id=project.id,
                source_type=ObservationSourceType.AGENT_EVENT,
                source_id=job.source_id,
                agent_event_id=job.agent_event_id,
                generation_job_id=job.id,
                metadata={"index": i},
                created_at=now,
            )
            for i, obs in enumerate(made)
        ]
        async with storage.unit_of_work() as uow:
            written = await uow.jobs.advance(
                claimed,
                done,
                event=completed,
                observations=made,
                sources=links,
                audit=[_audit(job, "completed", 4)],
                audit_always=[_audit(job, "processing", 3)],
                passages=[observation_passage(o) for o in made],
                ledger=[_call(job, 3)],
            )
            assert written is True
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.get(team.id, job.id) == done
            assert await uow.observations.list_for_job(team.id, project.id, job.id) == made
            pairs = await uow.observations.list_for_source(
                team.id, project.id, "agent_event", job.source_id
            )
            assert sorted(link.id for _, link in pairs) == ["src-0", "src-1"]
            listed = await uow.job_events.list(team.id, job.id)
            audit, _ = await uow.audit.list(team.id)
            found = await uow.search.search(team.id, project.id, parse_query("seen"), limit=5)
        assert {h.observation.id for h in found} == {o.id for o in made}
        assert [(e.event_type, e.status_after) for e in listed] == [
            (JobEventType.PROCESSING, JobStatus.PROCESSING),
            (JobEventType.COMPLETED, JobStatus.COMPLETED),
        ]
        assert listed == [processing, completed]
        assert sorted(a.action for a in audit) == ["always", "completed", "processing"]
        # The ledger's rows are written in any case, as ``audit_always``.
        day = T0 + timedelta(days=1)
        async with storage.unit_of_work() as uow:
            (spent,) = await uow.ledger.usage(
                team.id, project.id, since=T0, until=day, group_by="project"
            )
        assert (spent.calls, spent.input_tokens) == (2, 5)

        # A clash with a stored row (the generation key is taken): nothing written, None.
        clash = make.observation(project, "seen 0", generation_key="gk-0")
        event = make.event(project)
        rerun = make.job(event)
        async with storage.unit_of_work() as uow:
            await uow.events.add(event)
            await uow.jobs.add(rerun)
        taken = machine.transition(rerun, JobStatus.PROCESSING, now=now, worker_id="w")
        async with storage.unit_of_work() as uow:
            assert (
                await uow.jobs.advance(
                    rerun,
                    taken,
                    event=make.job_event(taken, event_type=JobEventType.PROCESSING),
                    observations=[clash],
                    audit_always=[_audit(rerun, "clash", 5)],
                    passages=[observation_passage(clash)],
                    ledger=[_call(rerun, 5)],
                )
                is None
            )
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.get(team.id, rerun.id) == rerun
            assert await uow.job_events.list(team.id, rerun.id) == []
            audit, _ = await uow.audit.list(team.id, action="clash")
            assert audit == []
            # Nothing indexed either: the two passages of the first step, no third.
            again = await uow.search.search(team.id, project.id, parse_query("seen"), limit=5)
            assert [h.observation.id for h in again] == [h.observation.id for h in found]
            assert [h.score for h in again] == [h.score for h in found]
            (spent,) = await uow.ledger.usage(
                team.id, project.id, since=T0, until=day, group_by="project"
            )
            assert spent.calls == 2
        assert len(await backdoor.rows("observations")) == 2

    async def test_advance_after_a_write_joins_or_declines(
        self, storage: Storage, make: Factory
    ) -> None:
        team, _, job = await make.stored_event_job(storage)
        claimed = machine.transition(job, JobStatus.PROCESSING, now=T0, worker_id="w")
        event = make.job_event(claimed, event_type=JobEventType.PROCESSING)
        with pytest.raises(RuntimeError):
            async with storage.unit_of_work() as uow:
                await uow.audit.add(_audit(job, "first", 1))
                written = await uow.jobs.advance(job, claimed, event=event)
                # PostgreSQL declines once the unit of work has written; others join it.
                assert written is (None if getattr(storage, "name", "") == "postgres" else True)
                raise RuntimeError("roll back")
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.get(team.id, job.id) == job

    async def test_get_unscoped_with_event_reads_the_job_and_its_event(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project, job = await make.stored_event_job(storage)
        async with storage.unit_of_work() as uow:
            (event,) = await uow.events.get_many(team.id, project.id, [job.source_id])
            assert await uow.jobs.get_unscoped_with_event(job.id) == (job, event)
            assert await uow.jobs.get_unscoped_with_event("missing") is None
        session = make.session(project)
        summary = make.summary_job(session)
        async with storage.unit_of_work() as uow:
            await uow.sessions.add(session)
            await uow.jobs.add(summary)
            assert await uow.jobs.get_unscoped_with_event(summary.id) == (summary, None)

    async def test_get_for_generation_reads_the_gate_with_the_job(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project, job = await make.stored_event_job(storage)
        until = T0 + timedelta(seconds=30)
        async with storage.unit_of_work() as uow:
            (event,) = await uow.events.get_many(team.id, project.id, [job.source_id])
            assert await uow.jobs.get_for_generation(job.id, provider="anthropic", now=T0) == (
                job,
                event,
                (None, None),
            )
            assert await uow.jobs.get_for_generation("missing", provider="x", now=T0) is None
            await uow.provider_pauses.pause("anthropic", until, now=T0)
            budget = Budget(
                team_id=team.id, project_id=project.id, period="day", token_limit=9, updated_at=T0
            )
            await uow.budgets.put(budget)
        async with storage.unit_of_work() as uow:
            found = await uow.jobs.get_for_generation(job.id, provider="anthropic", now=T0)
            assert found == (job, event, (budget, until))
            assert found[2] == await uow.budgets.gate_reads(
                team.id, project.id, "anthropic", now=T0
            )
            found = await uow.jobs.get_for_generation(job.id, provider="openai", now=T0)
            assert found == (job, event, (budget, None))


async def test_a_rerun_job_finds_its_stored_observations(
    storage: Storage, backdoor: Any, scope: Scope
) -> None:
    """The generator's one-call steps (``jobs.advance``) decline when a generation key is
    taken; the step by step path then answers with the stored observation: still one."""
    mem = Memory(
        storage=storage, queue=InProcessQueue(), provider=ScriptedProvider(default=OBSERVATION)
    )
    ingested = await mem.ingest(scope, event_type="tool_use", payload={"tool_name": "Edit"})
    assert ingested.job is not None
    job_id = ingested.job.id
    first = await mem.generator.process(job_id)
    assert first.outcome == "completed" and len(first.observation_ids) == 1
    async with storage.unit_of_work() as uow:  # an operator runs it again
        done = await uow.jobs.get(scope.team_id, job_id)
        assert done is not None and done.status is JobStatus.COMPLETED
        queued = attrs.evolve(
            done, status=JobStatus.QUEUED, completed_at=None, locked_at=None, locked_by=None
        )
        assert await uow.jobs.compare_and_set(done, queued)
    second = await mem.generator.process(job_id)
    assert second.outcome == "completed"
    assert second.observation_ids == first.observation_ids
    assert len(await backdoor.rows("observations")) == 1
    assert len(await backdoor.rows("sources")) == 1
    async with storage.unit_of_work() as uow:
        events = await uow.job_events.list(scope.team_id, job_id)
        created, _ = await uow.audit.list(scope.team_id, action="observation.created")
    assert [e.event_type for e in events][-2:] == [
        JobEventType.PROCESSING,
        JobEventType.COMPLETED,
    ]
    assert [a.resource_id for a in created] == list(first.observation_ids) * 2
