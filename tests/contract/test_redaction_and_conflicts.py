"""Credentials are redacted on every ingest path, and a replayed ``source_event_id`` with
another payload is a conflict (audited, nothing changed), on every storage backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from claude_mem_core import Caller, EventInput, Memory, Scope
from claude_mem_core.domain.models import Project
from claude_mem_core.domain.redaction import RECEIVED_DIGEST_KEY, REDACTIONS_KEY
from claude_mem_core.errors import EventConflict
from claude_mem_core.ports.storage import FreshEvent, Page, Storage
from claude_mem_core.services import compat, ingest
from claude_mem_core.services.group_commit import GroupCommitIngest
from claude_mem_core.services.tenancy import audit_entry
from claude_mem_core.testing.contracts import Factory

AWS = "AKIAIOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8"


def _event(scope: Scope, n: int, **kw: Any) -> EventInput:
    fields: dict[str, Any] = {
        "project_id": scope.project_id,
        "source_adapter": "hook",
        "event_type": "tool_use",
        "occurred_at": datetime(2026, 11, 27, 10, 0, n % 60, tzinfo=UTC),
        "source_event_id": f"tu_{n}",
        "payload": {
            "tool_name": "Bash",
            "tool_response": {
                "stdout": f"key {AWS}\nPASSWORD=hunter2\n<private>{GITHUB}</private>"
            },
            "commit": "3f786850e387550fdab836ed7e6dc881de23001b",
        },
    }
    fields.update(kw)
    return EventInput(**fields)


def _assert_redacted(payload: Any) -> None:
    text = str(payload)
    assert AWS not in text and "hunter2" not in text and GITHUB not in text
    assert "[REDACTED:aws-access-key]" in text and "PASSWORD=[REDACTED:env-secret]" in text
    assert "3f786850e387550fdab836ed7e6dc881de23001b" in text


async def _audit(mem: Memory, scope: Scope, action: str) -> list[Any]:
    async with mem.storage.unit_of_work() as uow:
        rows, _ = await uow.audit.list(scope.team_id, action=action, page=Page(limit=100))
    return list(rows)


async def test_single_events_are_redacted_and_counted(mem: Memory, scope: Scope) -> None:
    result = await mem.ingest(
        scope, event_type="tool_use", payload=_event(scope, 1).payload, source_event_id="a"
    )
    _assert_redacted(result.event.payload)
    assert result.event.metadata[REDACTIONS_KEY] == {"aws-access-key": 1, "env-secret": 1}
    stored = await mem.get_event(scope, result.event.id)
    _assert_redacted(stored.payload)
    assert stored.metadata[REDACTIONS_KEY] == {"aws-access-key": 1, "env-secret": 1}


async def test_group_commit_and_batches_redact(mem: Memory, scope: Scope) -> None:
    writer = GroupCommitIngest(mem.deps)
    caller = Caller(team_id=scope.team_id)
    grouped = await asyncio.gather(*(writer.ingest(caller, _event(scope, n)) for n in range(8)))
    batch = await mem.ingest_batch(scope, [_event(scope, n) for n in range(10, 14)])
    for result in [*grouped, *batch]:
        stored = await mem.get_event(scope, result.event.id)
        _assert_redacted(stored.payload)
        assert stored.metadata[REDACTIONS_KEY] == {"aws-access-key": 1, "env-secret": 1}


async def test_memories_are_redacted_and_counted(mem: Memory, scope: Scope) -> None:
    """A memory is returned by search and handed to the next session: its content and
    title lose the same credentials as events, before storage."""
    stored = await mem.add_memory(
        scope,
        f"deploy key {AWS}, commit 3f786850e387550fdab836ed7e6dc881de23001b",
        title=f"rotated {GITHUB}",
    )
    [again] = [o for o in await mem.recent(scope) if o.id == stored.id]
    for memory in (stored, again):
        assert AWS not in memory.content and GITHUB not in (memory.title or "")
        assert "[REDACTED:aws-access-key]" in memory.content
        assert "3f786850e387550fdab836ed7e6dc881de23001b" in memory.content
        assert memory.metadata[REDACTIONS_KEY] == {"aws-access-key": 1, "github-token": 1}
    assert [h.observation.id for h in await mem.search(scope, "rotated deploy key")] == [stored.id]
    assert await mem.search(scope, AWS) == []


async def test_compat_tool_use_is_redacted(mem: Memory, scope: Scope) -> None:
    recorded = await compat.record_tool_use(
        mem.deps,
        Caller(team_id=scope.team_id, project_id=scope.project_id),
        scope.project_id,
        compat.ToolUse(
            content_session_id="claude-1",
            tool_name="Bash",
            tool_input={"command": "env"},
            tool_response=f"AWS_ACCESS_KEY_ID={AWS}",
            tool_use_id="toolu_1",
        ),
    )
    assert recorded.result is not None
    stored = await mem.get_event(scope, recorded.result.event.id)
    assert AWS not in str(stored.payload)


async def test_redaction_can_be_turned_off_per_project(mem: Memory, scope: Scope) -> None:
    now = datetime.now(UTC)
    project = Project(
        id="proj-raw",
        team_id=scope.team_id,
        name="raw",
        metadata={"redaction": {"enabled": False}},
        created_at=now,
        updated_at=now,
    )
    async with mem.storage.unit_of_work() as uow:
        await uow.projects.add(project)
    raw = Scope(team_id=scope.team_id, project_id=project.id)
    writer = GroupCommitIngest(mem.deps)
    caller = Caller(team_id=scope.team_id)
    # Group commit builds events with the server's settings: a project with its own is
    # left to the ordinary path, which reads it.
    results = await asyncio.gather(*(writer.ingest(caller, _event(raw, n)) for n in range(4)))
    batch = await mem.ingest_batch(raw, [_event(raw, n) for n in range(10, 12)])
    for result in [*results, *batch]:
        stored = await mem.get_event(raw, result.event.id)
        assert AWS in str(stored.payload) and "hunter2" in str(stored.payload)
        assert GITHUB not in str(stored.payload)  # <private> still goes
        assert REDACTIONS_KEY not in stored.metadata
    # The other projects keep the server's default.
    mine = await writer.ingest(caller, _event(scope, 50))
    _assert_redacted((await mem.get_event(scope, mine.event.id)).payload)


async def test_an_identical_replay_is_still_a_replay(mem: Memory, scope: Scope) -> None:
    first = await mem.ingest_batch(scope, [_event(scope, 1)])
    writer = GroupCommitIngest(mem.deps)
    caller = Caller(team_id=scope.team_id)
    again = await writer.ingest(caller, _event(scope, 1))
    also = await ingest.ingest_event(mem.deps, caller, _event(scope, 1))
    batch = await mem.ingest_batch(scope, [_event(scope, 1), _event(scope, 1)])
    ids = {first[0].event.id, again.event.id, also.event.id, *(r.event.id for r in batch)}
    assert len(ids) == 1
    assert not again.created and not also.created
    assert await _audit(mem, scope, "event.conflict") == []


async def test_a_different_payload_is_a_conflict_on_every_path(mem: Memory, scope: Scope) -> None:
    caller = Caller(team_id=scope.team_id, request_id="req-1")
    first = await ingest.ingest_event(mem.deps, caller, _event(scope, 1))
    stored_before = await mem.get_event(scope, first.event.id)
    other = _event(
        scope, 1, payload={"tool_name": "Bash", "stdout": "different"}, metadata={"x": 1}
    )
    with pytest.raises(EventConflict) as single:
        await ingest.ingest_event(mem.deps, caller, other)
    assert single.value.event_id == first.event.id
    assert single.value.source_event_id == "tu_1" and single.value.index is None
    with pytest.raises(EventConflict):
        await GroupCommitIngest(mem.deps).ingest(caller, other)
    with pytest.raises(EventConflict) as batched:
        await mem.ingest_batch(scope, [_event(scope, 2), other])
    assert batched.value.index == 1 and batched.value.event_id == first.event.id
    # Nothing of the attempts is kept: not the batch's new event, not their metadata.
    assert await mem.get_event(scope, first.event.id) == stored_before
    with pytest.raises(EventConflict):  # tu_2 was rolled back with its batch
        await mem.ingest_batch(scope, [_event(scope, 2, payload={"other": True}), other])
    rows = await _audit(mem, scope, "event.conflict")
    assert len(rows) == 4
    assert all(r.resource_id == first.event.id for r in rows)
    assert all(r.details["sourceEventId"] == "tu_1" for r in rows)
    assert sum(r.details.get("requestId") == "req-1" for r in rows) == 2


async def test_a_conflict_within_one_batch(mem: Memory, scope: Scope) -> None:
    other = _event(scope, 1, payload={"different": True})
    with pytest.raises(EventConflict) as found:
        await mem.ingest_batch(scope, [_event(scope, 1), other])
    assert found.value.index == 1
    async with mem.storage.unit_of_work() as uow:
        _, total = await uow.audit.list(scope.team_id, action="event.batch_received", page=Page())
    assert total == 0  # all or nothing


async def test_compat_conflict_is_reported_not_raised(mem: Memory, scope: Scope) -> None:
    caller = Caller(team_id=scope.team_id, project_id=scope.project_id)

    def use(response: str) -> compat.ToolUse:
        return compat.ToolUse(
            content_session_id="claude-1",
            tool_name="Bash",
            tool_response=response,
            tool_use_id="toolu_1",
        )

    first = await compat.record_tool_use(mem.deps, caller, scope.project_id, use("one"))
    assert first.result is not None and first.conflict is None
    # The compat route stamps each tool use with the time it arrives: a replay is still
    # the same payload.
    replay = await compat.record_tool_use(mem.deps, caller, scope.project_id, use("one"))
    assert replay.result is not None and replay.result.event.id == first.result.event.id
    clash = await compat.record_tool_use(mem.deps, caller, scope.project_id, use("two"))
    assert clash.result is None and clash.conflict is not None
    assert clash.conflict.event_id == first.result.event.id
    assert len(await _audit(mem, scope, "event.conflict")) == 1


async def test_the_digest_hashes_the_payload_as_received(mem: Memory, scope: Scope) -> None:
    from claude_mem_core.domain.keys import payload_digest

    item = _event(scope, 7)
    result = await mem.ingest_batch(scope, [item])
    assert result[0].event.metadata[RECEIVED_DIGEST_KEY] == payload_digest(item.payload)
    # Callers cannot set the server's keys.
    forged = _event(scope, 8, metadata={RECEIVED_DIGEST_KEY: "x", REDACTIONS_KEY: {"a": 9}})
    event = (await mem.ingest_batch(scope, [forged]))[0].event
    assert event.metadata[RECEIVED_DIGEST_KEY] == payload_digest(forged.payload)
    assert event.metadata[REDACTIONS_KEY] == {"aws-access-key": 1, "env-secret": 1}
    # Without a source id there is nothing to compare (the key hashes the payload).
    bare = (await mem.ingest_batch(scope, [_event(scope, 9, source_event_id=None)]))[0].event
    assert RECEIVED_DIGEST_KEY not in bare.metadata


async def test_a_replay_keeps_the_server_metadata_of_the_stored_event(
    storage: Storage, backdoor: Any
) -> None:
    make = Factory()
    team = make.team()
    project = make.project(team)
    async with storage.unit_of_work() as uow:
        await uow.teams.add(team)
        await uow.projects.add(project)
    event = make.event(
        project, metadata={"m": 1, RECEIVED_DIGEST_KEY: "a", REDACTIONS_KEY: {"jwt": 1}}
    )
    replay = make.event(
        project,
        idempotency_key=event.idempotency_key,
        metadata={"extra": 2, RECEIVED_DIGEST_KEY: "b", REDACTIONS_KEY: {"x": 3}},
    )
    repeat = make.event(
        project, idempotency_key=event.idempotency_key, metadata={RECEIVED_DIGEST_KEY: "c"}
    )
    async with storage.unit_of_work() as uow:
        await uow.events.add(event)
    async with storage.unit_of_work() as uow:
        stored, created = await uow.events.add(replay)
    assert not created
    expected = {"m": 1, "extra": 2, RECEIVED_DIGEST_KEY: "a", REDACTIONS_KEY: {"jwt": 1}}
    assert stored.metadata == expected
    async with storage.unit_of_work() as uow:
        results = await uow.events.add_many([replay, repeat])
    assert [r.metadata for r, _ in results] == [expected, expected]
    (row,) = await backdoor.rows("events")
    assert row["metadata"] == expected


async def test_fresh_events_of_a_project_with_its_own_setting_are_left_out(
    mem: Memory, scope: Scope
) -> None:
    now = datetime.now(UTC)
    async with mem.storage.unit_of_work() as uow:
        await uow.projects.add(
            Project(
                id="proj-own",
                team_id=scope.team_id,
                name="own",
                metadata={"redaction": {"enabled": True}},
                created_at=now,
                updated_at=now,
            )
        )
    caller = Caller(team_id=scope.team_id)
    own = Scope(team_id=scope.team_id, project_id="proj-own")

    def fresh(s: Scope, n: int) -> FreshEvent:
        event = ingest.candidate(mem.deps, caller, _event(s, n))
        entry = audit_entry(mem.deps, caller, "event.received", resource_id=event.id)
        return FreshEvent(event=event, audit=entry)

    left_out, written = fresh(own, 1), fresh(scope, 2)
    assert await mem.storage.add_fresh_events([left_out, written]) == {written.event.id}
