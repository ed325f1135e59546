"""Group commit: concurrent single events share a transaction, yet each caller gets what
``ingest_event`` would have given it, and one bad event never fails its neighbours.
Runs on every storage backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from claude_mem_core import Caller, EventInput, Memory, Scope
from claude_mem_core.domain.models import JobEventType
from claude_mem_core.errors import Forbidden, InvalidInput, NotFound
from claude_mem_core.ports.storage import JobFilter, Page
from claude_mem_core.services.group_commit import GroupCommitIngest


def _event(project_id: str, n: int, **kw: Any) -> EventInput:
    fields: dict[str, Any] = {
        "project_id": project_id,
        "source_adapter": "hook",
        "event_type": "tool_use",
        "occurred_at": datetime(2026, 11, 27, 10, 0, n % 60, tzinfo=UTC),
        "source_event_id": f"tu_{n}",
        "payload": {"tool_name": "Edit", "n": n, "note": "a <private>secret</private> b"},
    }
    fields.update(kw)
    return EventInput(**fields)


def _caller(scope: Scope, n: int) -> Caller:
    return Caller(team_id=scope.team_id, request_id=f"req-{n}", actor_id=f"agent-{n}")


async def _count_transactions(mem: Memory) -> list[int]:
    """Wrap the storage to count the transactions the writer opens: units of work, and
    ``add_fresh_events`` calls (each its own transaction, whatever it uses inside)."""
    opened = [0]
    inside = [False]
    storage = mem.deps.storage
    original, original_fresh = storage.unit_of_work, storage.add_fresh_events

    def counting() -> Any:
        opened[0] += 0 if inside[0] else 1
        return original()

    async def counting_fresh(items: Any) -> set[str]:
        opened[0] += 1
        inside[0] = True
        try:
            return await original_fresh(items)
        finally:
            inside[0] = False

    storage.unit_of_work = counting  # type: ignore[method-assign]
    storage.add_fresh_events = counting_fresh  # type: ignore[method-assign]
    return opened


async def test_concurrent_events_share_transactions_and_keep_their_own_rows(
    mem: Memory, scope: Scope
) -> None:
    writer = GroupCommitIngest(mem.deps, max_in_flight=1)
    opened = await _count_transactions(mem)
    results = await asyncio.gather(
        *(writer.ingest(_caller(scope, n), _event(scope.project_id, n)) for n in range(20))
    )
    # The first event is written alone; the 19 that queued behind it share one group.
    assert opened[0] == 2
    assert [r.event.source_event_id for r in results] == [f"tu_{n}" for n in range(20)]
    assert all(r.created and r.job is not None for r in results)
    assert all(r.transport == "enqueued" for r in results)
    assert all("secret" not in str(r.event.payload) for r in results)
    async with mem.storage.unit_of_work() as uow:
        jobs, total = await uow.jobs.list(JobFilter(team_id=scope.team_id), Page(limit=100))
        assert total == 20
        assert {j.agent_event_id for j in jobs} == {r.event.id for r in results}
        for r in results:
            assert r.job is not None
            log = await uow.job_events.list(scope.team_id, r.job.id)
            assert [e.event_type for e in log] == [JobEventType.QUEUED]
        audit, _ = await uow.audit.list(
            scope.team_id, action="event.received", page=Page(limit=100)
        )
    # One audit row per event, each with its own caller's request id and actor.
    by_event = {a.resource_id: a for a in audit}
    assert len(by_event) == 20
    for n, r in enumerate(results):
        row = by_event[r.event.id]
        assert row.details["requestId"] == f"req-{n}"
        assert row.actor_id == f"agent-{n}"
        assert r.job is not None and row.details["generationJobId"] == r.job.id
        assert row.details["replay"] is False


async def test_a_replay_in_the_same_group_is_a_replay(mem: Memory, scope: Scope) -> None:
    writer = GroupCommitIngest(mem.deps, max_in_flight=1)
    first, *same = await asyncio.gather(
        writer.ingest(_caller(scope, 0), _event(scope.project_id, 99)),
        *(writer.ingest(_caller(scope, n), _event(scope.project_id, 99)) for n in (1, 2)),
    )
    assert first.created and not any(r.created for r in same)
    assert {r.event.id for r in same} == {first.event.id}
    assert {r.job.id for r in same if r.job} == {first.job.id if first.job else None}
    again = await writer.ingest(_caller(scope, 3), _event(scope.project_id, 99))
    assert not again.created and again.event.id == first.event.id


async def test_a_bad_event_fails_alone(mem: Memory, scope: Scope) -> None:
    writer = GroupCommitIngest(mem.deps, max_in_flight=1)
    other_team, other_project = await mem.ensure_project("globex", "api")
    session = await mem.start_session(Scope(team_id=other_team.id, project_id=other_project.id))
    calls = [
        writer.ingest(_caller(scope, 0), _event(scope.project_id, 0)),
        writer.ingest(_caller(scope, 1), _event(scope.project_id, 1)),
        # A session of another team: not found, to this caller.
        writer.ingest(
            _caller(scope, 2), _event(scope.project_id, 2, server_session_id=session.session.id)
        ),
        # A project id that does not exist in the caller's team.
        writer.ingest(_caller(scope, 3), _event("no-such-project", 3)),
        writer.ingest(_caller(scope, 4), _event(scope.project_id, 4)),
    ]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[2], NotFound) and "Session" in str(outcomes[2])
    assert isinstance(outcomes[3], NotFound) and "Project" in str(outcomes[3])
    stored = [o for n, o in enumerate(outcomes) if n not in (2, 3)]
    assert all(not isinstance(o, BaseException) and o.created for o in stored)
    async with mem.storage.unit_of_work() as uow:
        _, total = await uow.jobs.list(JobFilter(team_id=scope.team_id), Page())
    assert total == 3


async def test_a_group_the_database_refuses_is_written_event_by_event(
    mem: Memory, scope: Scope, storage_url: str
) -> None:
    # Only PostgreSQL refuses NUL in text; elsewhere the same group simply succeeds.
    refuses_nul = storage_url.startswith("postgresql")
    writer = GroupCommitIngest(mem.deps, max_in_flight=1)
    outcomes = await asyncio.gather(
        writer.ingest(_caller(scope, 0), _event(scope.project_id, 0)),
        writer.ingest(_caller(scope, 1), _event(scope.project_id, 1)),
        writer.ingest(_caller(scope, 2), _event(scope.project_id, 2, event_type="nul\x00here")),
        writer.ingest(_caller(scope, 3), _event(scope.project_id, 3)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[2], InvalidInput) is refuses_nul
    assert all(not isinstance(o, BaseException) for n, o in enumerate(outcomes) if n != 2)
    async with mem.storage.unit_of_work() as uow:
        _, total = await uow.jobs.list(JobFilter(team_id=scope.team_id), Page())
    assert total == (3 if refuses_nul else 4)


async def test_input_errors_never_join_a_group(mem: Memory, scope: Scope) -> None:
    writer = GroupCommitIngest(mem.deps)
    opened = await _count_transactions(mem)
    with pytest.raises(InvalidInput) as raised:
        await writer.ingest(_caller(scope, 0), _event(scope.project_id, 0, event_type=" "))
    assert "event_type" in str(raised.value.issues)
    project_key = Caller(team_id=scope.team_id, project_id="another-project")
    with pytest.raises(NotFound):
        await writer.ingest(project_key, _event(scope.project_id, 1))
    assert opened[0] == 0


async def test_memory_ingest_goes_through_the_group_writer(mem: Memory, scope: Scope) -> None:
    results = await asyncio.gather(
        *(mem.ingest(scope, event_type="tool_use", payload={"n": n}) for n in range(10))
    )
    assert len({r.event.id for r in results}) == 10
    await mem.close()


async def test_an_event_under_a_revoked_key_is_refused_and_not_written(
    mem: Memory, scope: Scope
) -> None:
    issued = await mem.create_api_key(
        name="agent", team_id=scope.team_id, project_id=scope.project_id, scopes=["*"]
    )
    writer = GroupCommitIngest(mem.deps, max_in_flight=1)
    keyed = attrs.evolve(_caller(scope, 0), api_key_id=issued.key.id)
    assert (await writer.ingest(keyed, _event(scope.project_id, 0))).created
    await mem.revoke_api_key(issued.key.id)
    outcomes = await asyncio.gather(
        writer.ingest(keyed, _event(scope.project_id, 1)),  # new: refused by the statement
        writer.ingest(keyed, _event(scope.project_id, 0)),  # a replay: refused all the same
        writer.ingest(_caller(scope, 2), _event(scope.project_id, 2)),  # no key: written
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], Forbidden) and isinstance(outcomes[1], Forbidden)
    assert not isinstance(outcomes[2], BaseException) and outcomes[2].created
    async with mem.storage.unit_of_work() as uow:
        _, total = await uow.jobs.list(JobFilter(team_id=scope.team_id), Page())
    assert total == 2
