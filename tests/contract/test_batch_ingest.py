"""``ingest_batch`` writes one statement per table, with the outcome of one ``ingest_event``
per item: the same rows, the same ``created`` flags and order, the same replays."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from claude_mem_core import Caller, EventInput, Memory, Scope
from claude_mem_core.domain.models import GenerationJob, JobEventType, JobStatus
from claude_mem_core.domain.redaction import RECEIVED_DIGEST_KEY
from claude_mem_core.errors import NotFound
from claude_mem_core.ports.storage import JobFilter, Page
from claude_mem_core.services import ingest


def _event(scope: Scope, n: int, **kw: Any) -> EventInput:
    fields: dict[str, Any] = {
        "project_id": scope.project_id,
        "source_adapter": "hook",
        "event_type": "tool_use",
        "occurred_at": datetime(2026, 11, 27, 10, 0, n, tzinfo=UTC),
        "source_event_id": f"tu_{n}",
        "payload": {"tool_name": "Edit", "n": n, "note": "a <private>secret</private> b"},
        "metadata": {"n": n},
    }
    fields.update(kw)
    return EventInput(**fields)


def _comparable(job: GenerationJob) -> dict[str, Any]:
    """A job without what differs between two ingests of equal events (ids, times)."""
    fields = attrs.asdict(job, recurse=False)
    for name in ("id", "agent_event_id", "source_id", "idempotency_key", "transport_id"):
        fields.pop(name)
    fields.pop("created_at"), fields.pop("updated_at")
    payload = dict(fields.pop("payload"))
    for name in ("generation_job_id", "agent_event_id", "source_id"):
        payload.pop(name)
    return {**fields, "payload": payload}


async def test_a_batch_stores_what_single_ingests_store(mem: Memory, scope: Scope) -> None:
    caller = Caller(team_id=scope.team_id, request_id="req-b", api_key_id=None, actor_id="me")
    single = await ingest.ingest_event(
        mem.deps, caller, _event(scope, 0), job_source="http_post_v1_events_batch"
    )
    batch = await ingest.ingest_batch(mem.deps, caller, [_event(scope, n) for n in (1, 2)])
    assert [r.created for r in batch] == [True, True]
    assert single.job is not None
    for result in batch:
        assert result.job is not None and result.transport == "enqueued"
        assert "secret" not in str(result.event.payload)
        assert result.job.agent_event_id == result.event.id
        assert result.job.payload["generation_job_id"] == result.job.id
        assert _comparable(result.job) == _comparable(single.job)
        stored = await mem.get_job(scope, result.job.id)
        assert stored == result.job
        log = await mem.job_events(scope, result.job.id)
        assert [(e.event_type, e.details) for e in log] == [
            (JobEventType.QUEUED, {"source": "http_post_v1_events_batch"})
        ]
        assert await mem.get_event(scope, result.event.id) == result.event


def _callers(metadata: dict[str, Any]) -> dict[str, Any]:
    """An event's metadata without the hash of its payload as received."""
    return {k: v for k, v in metadata.items() if k != RECEIVED_DIGEST_KEY}


async def test_replays_and_repeats_within_a_batch_are_in_order(mem: Memory, scope: Scope) -> None:
    first = await mem.ingest_batch(scope, [_event(scope, 1)])
    items = [
        _event(scope, 2),
        _event(scope, 1, metadata={"late": True}),  # replay of a stored event
        _event(scope, 2, metadata={"again": 1}),  # repeat of an item of this batch
        _event(scope, 3),
    ]
    results = await mem.ingest_batch(scope, items)
    assert [r.created for r in results] == [True, False, False, True]
    assert results[1].event.id == first[0].event.id
    assert _callers(results[1].event.metadata) == {"n": 1, "late": True}
    assert results[2].event.id == results[0].event.id
    assert _callers(results[2].event.metadata) == {"n": 2, "again": 1}
    jobs = [r.job for r in results]
    assert all(job is not None for job in jobs)
    assert jobs[1] == first[0].job and jobs[2] == jobs[0]
    stored = await mem.get_event(scope, results[0].event.id)
    assert _callers(stored.metadata) == {"n": 2, "again": 1}
    async with mem.storage.unit_of_work() as uow:
        page, total = await uow.jobs.list(JobFilter(team_id=scope.team_id), Page())
        assert total == 3 and {j.status for j in page} == {JobStatus.QUEUED}
        for job in page:
            assert len(await uow.job_events.list(scope.team_id, job.id)) == 1
    again = await mem.ingest_batch(scope, items)
    assert [r.created for r in again] == [False] * 4
    assert [r.event.id for r in again] == [r.event.id for r in results]


async def test_a_batch_with_a_foreign_session_writes_nothing(mem: Memory, scope: Scope) -> None:
    sibling = await mem.create_project(scope.team_id, "sibling")
    other = Scope(team_id=scope.team_id, project_id=sibling.id)
    session = (await mem.start_session(other, external_session_id="s-1")).session
    mine = (await mem.start_session(scope, external_session_id="s-2")).session
    items = [
        _event(scope, 1, server_session_id=mine.id),
        _event(scope, 2, server_session_id=session.id),
    ]
    with pytest.raises(NotFound):
        await mem.ingest_batch(scope, items)
    async with mem.storage.unit_of_work() as uow:
        _, total = await uow.jobs.list(JobFilter(team_id=scope.team_id), Page())
    assert total == 0
    done = await mem.ingest_batch(scope, items[:1])
    assert done[0].created and done[0].event.server_session_id == mine.id
