"""Use cases end to end through the core services, on every storage backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from claude_mem_core import Caller, EventInput, Memory, Scope
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.domain.models import JobEventType, JobStatus, ObservationKind
from claude_mem_core.errors import Conflict, Forbidden, InvalidInput, NotFound, ProviderError
from claude_mem_core.ports.storage import Page, Storage
from claude_mem_core.services import admin, ingest, jobs, memories, sessions
from claude_mem_core.services.context import PipelineOptions
from claude_mem_core.testing.fakes import ScriptedProvider

OBSERVATION = """<observation>
  <type>bugfix</type>
  <title>Fixed the login redirect loop</title>
  <facts><fact>auth/middleware.py compared the callback URL without its query</fact></facts>
  <narrative>The login redirect looped because the callback check ignored the query.</narrative>
  <files_modified><file>auth/middleware.py</file></files_modified>
</observation>"""

SUMMARY = """<summary>
  <request>Fix the login redirect</request>
  <investigated>auth middleware</investigated>
  <learned>the callback check ignored the query string</learned>
  <completed>redirect fixed</completed>
  <next_steps>add a regression test</next_steps>
</summary>"""


def _reply(request: Any) -> str:
    return SUMMARY if request.purpose == "summary" else OBSERVATION


@pytest.fixture
def provider() -> ScriptedProvider:
    return ScriptedProvider(default=_reply)


@pytest.fixture
async def mem(storage: Storage, provider: ScriptedProvider) -> Memory:
    return Memory(
        storage=storage,
        queue=InProcessQueue(),
        provider=provider,
        options=PipelineOptions(max_attempts=3),
    )


@pytest.fixture
async def scope(mem: Memory) -> Scope:
    team, project = await mem.ensure_project("acme", "webapp")
    return Scope(team_id=team.id, project_id=project.id)


def _event(scope: Scope, **kw: Any) -> EventInput:
    fields: dict[str, Any] = {
        "project_id": scope.project_id,
        "source_adapter": "hook",
        "event_type": "tool_use",
        "occurred_at": datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
        "payload": {"tool_name": "Edit", "tool_input": {"file_path": "auth/middleware.py"}},
    }
    fields.update(kw)
    return EventInput(**fields)


async def test_ingest_writes_event_job_and_job_event_together(mem: Memory, scope: Scope) -> None:
    caller = Caller(team_id=scope.team_id, request_id="req-1", api_key_id=None)
    result = await ingest.ingest_event(mem.deps, caller, _event(scope))
    assert result.created and result.job is not None and result.transport == "enqueued"
    job = await mem.get_job(scope, result.job.id)
    assert job.status is JobStatus.QUEUED and job.agent_event_id == result.event.id
    assert job.payload["request_id"] == "req-1" and job.payload["generation_job_id"] == job.id
    log = await mem.job_events(scope, job.id)
    assert [(e.event_type, e.details["source"]) for e in log] == [
        (JobEventType.QUEUED, "http_post_v1_events")
    ]
    async with mem.storage.unit_of_work() as uow:
        audit, _ = await uow.audit.list(scope.team_id, action="event.received")
    assert audit[0].details["requestId"] == "req-1" and audit[0].resource_id == result.event.id


async def test_replay_by_source_event_id_returns_original_and_keeps_job(
    mem: Memory, scope: Scope
) -> None:
    first = await mem.ingest(
        scope, event_type="tool_use", payload={"a": 1}, source_event_id="tu_1", source="hook"
    )
    again = await mem.ingest(
        scope,
        event_type="tool_use",
        payload={"a": 1},
        source_event_id="tu_1",
        source="hook",
        metadata={"late": True},
    )
    assert again.event.id == first.event.id and not again.created
    assert again.event.payload == {"a": 1} and again.event.metadata.get("late") is True
    assert again.job is not None and first.job is not None and again.job.id == first.job.id
    assert again.job.payload["generation_job_id"] == first.job.id
    assert len(await mem.job_events(scope, first.job.id)) == 1


async def test_private_content_is_stripped_before_storage(mem: Memory, scope: Scope) -> None:
    result = await mem.ingest(
        scope,
        event_type="prompt",
        payload={"prompt": "deploy with <private>token=hunter2</private> please"},
    )
    assert "hunter2" not in str(result.event.payload)
    stored = await mem.get_event(scope, result.event.id)
    assert "hunter2" not in str(stored.payload)


async def test_batch_is_all_or_nothing(mem: Memory, scope: Scope) -> None:
    other_team, other_project = await mem.ensure_project("other", "elsewhere")
    good = _event(scope, source_event_id="b1")
    foreign = _event(
        Scope(team_id=other_team.id, project_id=other_project.id), source_event_id="b2"
    )
    with pytest.raises(NotFound):
        await mem.ingest_batch(scope, [good, foreign])
    with pytest.raises(InvalidInput) as bad:
        await mem.ingest_batch(scope, [good, _event(scope, event_type="")])
    assert bad.value.issues[0].path == "1.event_type"
    async with mem.storage.unit_of_work() as uow:
        page = await uow.jobs.list(jobs.JobFilter(team_id=scope.team_id), Page())
    assert page[1] == 0
    done = await mem.ingest_batch(scope, [good, _event(scope, source_event_id="b3")])
    assert [r.created for r in done] == [True, True]
    with pytest.raises(InvalidInput):
        await mem.ingest_batch(scope, [good] * 501)


async def test_project_key_cannot_reach_sibling_project(mem: Memory, scope: Scope) -> None:
    sibling = await mem.create_project(scope.team_id, "sibling")
    caller = Caller(team_id=scope.team_id, project_id=scope.project_id)
    with pytest.raises(NotFound):
        await ingest.ingest_event(
            mem.deps, caller, _event(Scope(team_id=scope.team_id, project_id=sibling.id))
        )
    other_event = await mem.ingest(
        Scope(team_id=scope.team_id, project_id=sibling.id), event_type="x"
    )
    with pytest.raises(NotFound):
        await memories.get_event(mem.deps, caller, other_event.event.id)
    assert other_event.job is not None
    with pytest.raises(NotFound):
        await jobs.get_job(mem.deps, caller, other_event.job.id)


async def test_invalid_input_names_the_field(mem: Memory, scope: Scope) -> None:
    with pytest.raises(InvalidInput) as err:
        await mem.ingest(scope, event_type="x", source="carrier-pigeon")
    assert [i.path for i in err.value.issues] == ["source_adapter"]
    with pytest.raises(InvalidInput) as err:
        await mem.search(scope, "x", limit=101)
    assert err.value.issues[0].path == "limit"
    with pytest.raises(InvalidInput) as err:
        await mem.add_memory(scope, "<private>only secret</private>")
    assert err.value.issues[0].path == "content"
    for payload in ({"x": float("nan")}, {"x": float("inf")}, {"x": {1, 2}}):
        with pytest.raises(InvalidInput) as err:  # not JSON: no key can be derived from it
            await mem.ingest(scope, event_type="x", payload=payload)
        assert err.value.issues[0].path == "payload"
        with pytest.raises(InvalidInput) as err:
            item = EventInput(
                project_id=scope.project_id,
                source_adapter="api",
                event_type="x",
                occurred_at=datetime.now(UTC),
                payload=payload,
            )
            await mem.ingest_batch(scope, [item])
        assert err.value.issues[0].path == "payload"


async def test_sessions_start_is_find_or_create_and_race_safe(mem: Memory, scope: Scope) -> None:
    results = await asyncio.gather(
        *(mem.start_session(scope, external_session_id="claude-123") for _ in range(5))
    )
    assert len({r.session.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    compat = await sessions.find_or_start_by_content_id(
        mem.deps,
        Caller.embedded(scope.team_id),
        project_id=scope.project_id,
        content_session_id="claude-123",
    )
    assert compat.id == results[0].session.id


async def test_end_session_is_idempotent_and_queues_one_summary(mem: Memory, scope: Scope) -> None:
    started = await mem.start_session(scope, external_session_id="s-end")
    first = await mem.end_session(scope, started.session.id)
    second = await mem.end_session(scope, started.session.id)
    assert first.job.id == second.job.id
    assert first.session.ended_at == second.session.ended_at is not None
    page = await mem.list_jobs(scope)
    assert [j.source_type.value for j in page.jobs] == ["session_summary"]
    with pytest.raises(NotFound):
        await mem.end_session(scope, "no-such-session")


async def test_pipeline_produces_observations_and_summary(
    mem: Memory, scope: Scope, provider: ScriptedProvider
) -> None:
    started = await mem.start_session(scope, external_session_id="s-gen")
    ev = await mem.ingest(
        scope, event_type="tool_use", session_id=started.session.id, payload={"tool_name": "Edit"}
    )
    assert await mem.drain() == 1
    job = await mem.get_job(scope, ev.job.id if ev.job else "")
    assert job.status is JobStatus.COMPLETED and job.attempts == 1
    hits = await mem.search(scope, "which file did we change to fix the login redirect?")
    assert hits and hits[0].observation.title == "Fixed the login redirect loop"
    assert hits[0].observation.files_modified == ("auth/middleware.py",)
    pairs = await memories.event_observations(mem.deps, Caller.embedded(scope.team_id), ev.event.id)
    assert [o.id for o, _ in pairs] == [hits[0].observation.id]
    ended = await mem.end_session(scope, started.session.id)
    assert await mem.drain() == 1
    summary = await mem.get_job(scope, ended.job.id)
    assert summary.status is JobStatus.COMPLETED
    # Both generations can land in the same millisecond (the clock's precision), so the
    # summary is found by kind rather than by being strictly newest.
    summaries = [o for o in await mem.recent(scope) if o.kind is ObservationKind.SUMMARY]
    assert len(summaries) == 1
    assert "Learned: the callback check ignored the query string" in summaries[0].content
    session = await mem.get_session(scope, started.session.id)
    assert session.generation_status.value == "completed"
    assert [r.purpose for r in provider.requests] == ["observations", "summary"]
    # Replaying the finished job changes nothing: exactly one set of observations.
    again = await mem.generator.process(job.id)
    assert again.outcome == "skipped"
    assert len(await mem.recent(scope)) == 2


async def test_rate_limit_then_success_completes_once_with_two_attempts(
    storage: Storage, scope: Scope
) -> None:
    provider = ScriptedProvider(
        [ProviderError("slow down", kind="rate_limit", status=429, retry_after=0.0)],
        default=_reply,
    )
    mem = Memory(storage=storage, queue=InProcessQueue(), provider=provider)
    ev = await mem.ingest(scope, event_type="tool_use", payload={"tool_name": "Edit"})
    assert ev.job is not None
    first = await mem.generator.process(ev.job.id)
    assert first.outcome == "retry_scheduled"
    second = await mem.generator.process(ev.job.id)
    assert second.outcome == "completed"
    job = await mem.get_job(scope, ev.job.id)
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 2)
    kinds = [e.event_type for e in await mem.job_events(scope, job.id)]
    assert kinds == [
        JobEventType.QUEUED,
        JobEventType.PROCESSING,
        JobEventType.RETRY_SCHEDULED,
        JobEventType.PROCESSING,
        JobEventType.COMPLETED,
    ]
    assert len(await mem.search(scope, "login redirect")) == 1


async def test_non_retryable_failure_is_a_dead_letter_operators_can_retry(
    storage: Storage, scope: Scope
) -> None:
    provider = ScriptedProvider([ProviderError("bad key", kind="auth", status=401)], default=_reply)
    mem = Memory(storage=storage, queue=InProcessQueue(), provider=provider)
    ev = await mem.ingest(scope, event_type="tool_use")
    assert ev.job is not None
    await mem.drain()
    failed = await mem.get_job(scope, ev.job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.last_error == {"reason": "bad key", "classification": "auth"}
    dead = await mem.list_jobs(scope, status="failed")
    assert [j.id for j in dead.jobs] == [failed.id]
    retried = await mem.retry_job(scope, failed.id)
    assert not retried.already_queued and retried.retried_count == 1
    assert retried.job.status is JobStatus.QUEUED
    assert await mem.drain() == 1
    assert (await mem.get_job(scope, failed.id)).status is JobStatus.COMPLETED
    with pytest.raises(Conflict):
        await mem.retry_job(scope, failed.id)
    with pytest.raises(Conflict):
        await mem.cancel_job(scope, failed.id)


async def test_cancel_then_worker_discards_its_result(mem: Memory, scope: Scope) -> None:
    ev = await mem.ingest(scope, event_type="tool_use")
    assert ev.job is not None
    cancelled = await mem.cancel_job(scope, ev.job.id)
    assert cancelled.job.status is JobStatus.CANCELLED and not cancelled.already_cancelled
    assert (await mem.cancel_job(scope, ev.job.id)).already_cancelled
    assert (await mem.generator.process(ev.job.id)).outcome == "skipped"
    retried = await mem.retry_job(scope, ev.job.id)
    assert retried.job.status is JobStatus.QUEUED
    assert (await mem.retry_job(scope, ev.job.id)).already_queued


async def test_revoked_key_fails_its_job_before_the_provider_is_called(
    mem: Memory, scope: Scope, provider: ScriptedProvider
) -> None:
    issued = await mem.create_api_key(team_id=scope.team_id, project_id=scope.project_id)
    caller = await mem.verify_api_key(issued.raw_key)
    ev = await ingest.ingest_event(mem.deps, caller, _event(scope))
    await mem.revoke_api_key(issued.key.id)
    assert ev.job is not None
    result = await mem.generator.process(ev.job.id)
    assert result.outcome == "failed" and result.error == "revoked_key"
    assert provider.requests == []


async def test_api_keys_are_hashed_verified_revoked_rotated_and_expire(
    mem: Memory, scope: Scope
) -> None:
    issued = await mem.create_api_key(team_id=scope.team_id, scopes=["events:write"], name="hook")
    assert issued.raw_key.startswith("cmem_") and issued.raw_key not in repr(issued)
    assert issued.key.key_hash == admin.hash_key(issued.raw_key)
    caller = await mem.verify_api_key(issued.raw_key)
    assert caller.team_id == scope.team_id and caller.project_id is None
    with pytest.raises(Forbidden):
        await mem.verify_api_key("cmem_wrong")
    rotated = await mem.rotate_api_key(issued.key.id)
    with pytest.raises(Forbidden):
        await mem.verify_api_key(issued.raw_key)
    assert (await mem.verify_api_key(rotated.raw_key)).scopes == frozenset({"events:write"})
    listed, total = await mem.list_api_keys(team_id=scope.team_id)
    assert total == 2 and all(not hasattr(k, "raw_key") for k in listed)
    soon = datetime.now(UTC) + timedelta(milliseconds=200)
    expiring = await mem.create_api_key(team_id=scope.team_id, expires_at=soon)
    await mem.verify_api_key(expiring.raw_key)
    await asyncio.sleep(0.25)
    with pytest.raises(Forbidden):
        await mem.verify_api_key(expiring.raw_key)
    with pytest.raises(InvalidInput):
        await mem.create_api_key(team_id=scope.team_id, scopes=["root"])
    with pytest.raises(NotFound):
        await mem.create_api_key(team_id="nope")


async def test_scope_vocabularies(mem: Memory, scope: Scope) -> None:
    reader = Caller(team_id=scope.team_id, scopes={"memories:read"})
    hook = Caller(
        team_id=scope.team_id,
        scopes={"events:write", "sessions:write", "observations:read", "jobs:read"},
    )
    with pytest.raises(Forbidden):
        await ingest.ingest_event(mem.deps, reader, _event(scope))
    await ingest.ingest_event(mem.deps, hook, _event(scope))
    started = await sessions.start_session(
        mem.deps, hook, sessions.SessionInput(project_id=scope.project_id, external_session_id="h")
    )
    await sessions.end_session(mem.deps, hook, started.session.id)
    await memories.search(mem.deps, hook, project_id=scope.project_id, query="anything")


async def test_search_is_tenant_scoped(mem: Memory, scope: Scope) -> None:
    other_team, other_project = await mem.ensure_project("rival", "webapp")
    other = Scope(team_id=other_team.id, project_id=other_project.id)
    await mem.add_memory(other, "the secret launch plan lives in plans/launch.md")
    assert await mem.search(scope, "launch plan") == []
    with pytest.raises(NotFound):
        await memories.search(
            mem.deps, Caller.embedded(scope.team_id), project_id=other.project_id, query="launch"
        )
    ctx = await mem.context(other, "launch plan")
    assert "plans/launch.md" in ctx.context


async def test_context_within_a_token_budget(mem: Memory, scope: Scope) -> None:
    for n in range(6):
        await mem.add_memory(scope, f"cache TTL note {n}: " + "the cache TTL is 300 s. " * 8)
    whole = await mem.context(scope, "cache TTL")
    assert len(whole.results) == 6
    assert whole.context == "\n\n".join(o.content for o in whole.observations)
    budgeted = await mem.context(scope, "cache TTL", max_tokens=100)
    assert len(budgeted.context) <= 100 * memories.CHARS_PER_TOKEN
    assert 1 <= len(budgeted.results) < 6
    # Each kept result is one block of the text: its title and its excerpt, best first.
    blocks = budgeted.context.split("\n\n")
    assert len(blocks) == len(budgeted.results)
    assert all(r.excerpt in b for r, b in zip(budgeted.results, blocks, strict=True))
    assert "**cache**" in budgeted.context
    tiny = await mem.context(scope, "cache TTL", max_tokens=2)
    assert len(tiny.results) == 1 and len(tiny.context) == 8 and tiny.context.endswith("…")
    for wrong in (0, -1, True):
        with pytest.raises(InvalidInput):
            await mem.context(scope, "cache TTL", max_tokens=wrong)


async def test_reconcile_returns_expired_leases_and_republishes(mem: Memory, scope: Scope) -> None:
    from claude_mem_core.domain import jobs as machine
    from claude_mem_core.services.reconcile import reconcile

    ev = await mem.ingest(scope, event_type="tool_use")
    assert ev.job is not None
    long_ago = ev.job.created_at - timedelta(hours=1)
    async with mem.storage.unit_of_work() as uow:
        claimed = machine.transition(
            ev.job, JobStatus.PROCESSING, now=long_ago, worker_id="dead-worker"
        )
        assert await uow.jobs.compare_and_set(ev.job, claimed)
    report = await reconcile(mem.deps)
    assert report.released == 1
    job = await mem.get_job(scope, ev.job.id)
    assert job.status is JobStatus.QUEUED and job.locked_by is None
    assert await mem.drain() == 1
    done = await mem.get_job(scope, ev.job.id)
    assert (done.status, done.attempts) == (JobStatus.COMPLETED, 2)


async def test_end_of_session_policy_waits_for_the_summary(
    storage: Storage, scope: Scope, provider: ScriptedProvider
) -> None:
    mem = Memory(
        storage=storage,
        queue=InProcessQueue(),
        provider=provider,
        options=PipelineOptions(session_policy="end-of-session"),
    )
    started = await mem.start_session(scope, external_session_id="eos")
    events = [
        await mem.ingest(
            scope,
            event_type="tool_use",
            session_id=started.session.id,
            payload={"tool_name": "Edit", "n": n},
        )
        for n in range(3)
    ]
    assert {e.transport for e in events} == {"queued_only"}
    assert await mem.drain() == 0  # nothing is generated before the session ends
    assert provider.requests == []
    ended = await mem.end_session(scope, started.session.id)
    assert await mem.drain() == 1
    assert [r.purpose for r in provider.requests] == ["summary"]
    assert len(provider.requests[0].events) == 3
    for e in events:
        assert e.job is not None
        job = await mem.get_job(scope, e.job.id)
        assert job.status is JobStatus.COMPLETED
        log = await mem.job_events(scope, job.id)
        assert log[-1].details["summaryJobId"] == ended.job.id


async def test_audit_chain_shares_the_request_id(mem: Memory, scope: Scope) -> None:
    caller = Caller(team_id=scope.team_id, request_id="op-correlation-007")
    result = await ingest.ingest_event(mem.deps, caller, _event(scope))
    await mem.drain()
    async with mem.storage.unit_of_work() as uow:
        entries, _ = await uow.audit.list(scope.team_id, page=Page(limit=100))
    chain = {
        e.action: e.details.get("requestId")
        for e in entries
        if e.resource_id in {result.event.id, result.job.id if result.job else None}
        or e.details.get("generationJobId") == (result.job.id if result.job else None)
    }
    assert chain == {
        "event.received": "op-correlation-007",
        "generation_job.processing": "op-correlation-007",
        "observation.created": "op-correlation-007",
        "generation_job.completed": "op-correlation-007",
    }


async def test_a_job_cancelled_during_the_provider_call_stores_nothing(
    storage: Storage, scope: Scope
) -> None:
    class CancellingProvider(ScriptedProvider):
        """Answers, but only after an operator cancelled the job it is working on."""

        memory: Memory

        async def generate(self, request: Any) -> Any:
            page = await self.memory.list_jobs(scope, status="processing")
            for job in page.jobs:
                await self.memory.cancel_job(scope, job.id)
            return await super().generate(request)

    provider = CancellingProvider(default=_reply)
    mem = Memory(storage=storage, queue=InProcessQueue(), provider=provider)
    provider.memory = mem
    ev = await mem.ingest(scope, event_type="tool_use", payload={"tool_name": "Edit"})
    assert ev.job is not None
    result = await mem.generator.process(ev.job.id)
    assert result.outcome == "lost_lease"
    assert (await mem.get_job(scope, ev.job.id)).status is JobStatus.CANCELLED
    assert await mem.recent(scope) == []
    assert (
        await memories.event_observations(mem.deps, Caller.embedded(scope.team_id), ev.event.id)
        == []
    )


async def test_legacy_tool_uses_attach_to_one_session_and_summarize_skips_subagents(
    mem: Memory, scope: Scope
) -> None:
    from claude_mem_core.services import compat

    caller = Caller.embedded(scope.team_id)
    use = compat.ToolUse(content_session_id="claude-42", tool_name="Edit", tool_use_id="tu_1")
    first = await compat.record_tool_use(mem.deps, caller, scope.project_id, use)
    again = await compat.record_tool_use(mem.deps, caller, scope.project_id, use)
    other = await compat.record_tool_use(
        mem.deps, caller, scope.project_id, attrs.evolve(use, tool_use_id="tu_2")
    )
    assert first.session.id == again.session.id == other.session.id
    assert again.result.event.id == first.result.event.id
    assert other.result.event.id != first.result.event.id
    assert first.result.event.source_adapter == "claude-code-compat"
    skipped = await compat.summarize(
        mem.deps, caller, scope.project_id, content_session_id="claude-42", agent_id="sub-1"
    )
    assert skipped is None
    assert (await mem.get_session(scope, first.session.id)).ended_at is None
    ended = await compat.summarize(
        mem.deps, caller, scope.project_id, content_session_id="claude-42"
    )
    assert ended is not None and ended.session.id == first.session.id
    assert ended.session.ended_at is not None
