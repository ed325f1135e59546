"""``Storage.add_fresh_events``: new events with their job, first job-log entry and audit
row, each item whole or not at all; replays and out-of-scope items are left out untouched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from claude_mem_core import Caller, EventInput, Memory, Scope
from claude_mem_core.domain.models import AgentEvent, JobEventType
from claude_mem_core.domain.redaction import RECEIVED_DIGEST_KEY
from claude_mem_core.errors import NotFound
from claude_mem_core.ports.storage import FreshEvent, Page
from claude_mem_core.services import ingest, outbox
from claude_mem_core.services.tenancy import audit_entry


def _input(scope: Scope, n: int, **kw: Any) -> EventInput:
    fields: dict[str, Any] = {
        "project_id": scope.project_id,
        "source_adapter": "hook",
        "event_type": "tool_use",
        "occurred_at": datetime(2026, 11, 27, 10, 0, n % 60, tzinfo=UTC),
        "source_event_id": f"tu_{n}",
        "payload": {"tool_name": "Edit", "n": n},
        "metadata": {"n": n},
    }
    fields.update(kw)
    return EventInput(**fields)


def _caller(scope: Scope) -> Caller:
    return Caller(team_id=scope.team_id, request_id="req-f", api_key_id=None, actor_id="me")


def _fresh(mem: Memory, caller: Caller, item: EventInput, *, job: bool = True) -> FreshEvent:
    deps = mem.deps
    event = ingest.candidate(deps, caller, item)
    new_job = outbox.new_event_job(deps, caller, event) if job else None
    return FreshEvent(
        event=event,
        job=new_job,
        job_event=(
            outbox.job_event(deps, new_job, JobEventType.QUEUED, {"source": "test"})
            if new_job
            else None
        ),
        audit=audit_entry(
            deps,
            caller,
            "event.received",
            project_id=event.project_id,
            resource_id=event.id,
            details=ingest.received_details(event, new_job, True),
        ),
    )


async def _event(mem: Memory, scope: Scope, event_id: str) -> AgentEvent | None:
    try:
        return await mem.get_event(scope, event_id)
    except NotFound:
        return None


async def _audit_ids(mem: Memory, scope: Scope) -> list[str | None]:
    async with mem.deps.storage.unit_of_work() as uow:
        rows, _ = await uow.audit.list(scope.team_id, action="event.received", page=Page(limit=500))
    return sorted(r.resource_id for r in rows if r.resource_id is not None)


async def test_new_events_are_written_with_all_their_rows(mem: Memory, scope: Scope) -> None:
    caller = _caller(scope)
    items = [_fresh(mem, caller, _input(scope, n)) for n in range(3)]
    items.append(_fresh(mem, caller, _input(scope, 3), job=False))
    written = await mem.deps.storage.add_fresh_events(items)
    assert written == {i.event.id for i in items}
    for item in items:
        assert await _event(mem, scope, item.event.id) == item.event
        if item.job is None:
            continue
        assert await mem.get_job(scope, item.job.id) == item.job
        log = await mem.job_events(scope, item.job.id)
        assert [(e.id, e.event_type, e.details) for e in log] == [
            (item.job_event.id, JobEventType.QUEUED, {"source": "test"})  # type: ignore[union-attr]
        ]
    assert await _audit_ids(mem, scope) == sorted(i.event.id for i in items)
    assert await mem.deps.storage.add_fresh_events([]) == set()


async def test_replays_and_repeats_are_left_out_untouched(mem: Memory, scope: Scope) -> None:
    caller = _caller(scope)
    stored = await mem.deps.storage.add_fresh_events([_fresh(mem, caller, _input(scope, 1))])
    assert len(stored) == 1
    replay = _fresh(mem, caller, _input(scope, 1, metadata={"late": True}))
    new = _fresh(mem, caller, _input(scope, 2))
    repeat = _fresh(mem, caller, _input(scope, 2, metadata={"again": True}))
    written = await mem.deps.storage.add_fresh_events([replay, new, repeat])
    assert written == {new.event.id}
    original = next(iter(stored))
    event = await _event(mem, scope, original)
    assert event is not None
    assert event.metadata == {"n": 1, RECEIVED_DIGEST_KEY: event.metadata[RECEIVED_DIGEST_KEY]}
    # (no merge on this path)
    for left_out in (replay, repeat):
        assert await _event(mem, scope, left_out.event.id) is None
        assert left_out.job is not None
        with pytest.raises(NotFound):
            await mem.get_job(scope, left_out.job.id)
    assert await _audit_ids(mem, scope) == sorted([original, new.event.id])


async def test_items_out_of_scope_are_left_out(mem: Memory, scope: Scope) -> None:
    caller = _caller(scope)
    other_team, other_project = await mem.ensure_project("globex", "api")
    other = Scope(team_id=other_team.id, project_id=other_project.id)
    second = await mem.create_project(scope.team_id, "second")
    session = (await mem.start_session(other, external_session_id="s-other")).session
    mine = (
        await mem.start_session(
            Scope(team_id=scope.team_id, project_id=second.id), external_session_id="s-2"
        )
    ).session
    items = [
        _fresh(mem, caller, _input(scope, 1, project_id=other.project_id)),  # not our team's
        _fresh(mem, caller, _input(scope, 2, server_session_id=session.id)),  # foreign session
        _fresh(mem, caller, _input(scope, 3, server_session_id=mine.id)),  # another project's
        _fresh(mem, caller, _input(scope, 4, project_id="prj_missing")),
        _fresh(mem, caller, _input(scope, 5)),
    ]
    written = await mem.deps.storage.add_fresh_events(items)
    assert written == {items[-1].event.id}
    assert await _audit_ids(mem, scope) == [items[-1].event.id]
    for item in items[:-1]:
        assert await _event(mem, other, item.event.id) is None
        assert await _event(mem, scope, item.event.id) is None


async def test_items_under_a_key_that_no_longer_works_are_left_out(
    mem: Memory, scope: Scope
) -> None:
    async def key(name: str) -> str:
        issued = await mem.create_api_key(
            name=name, team_id=scope.team_id, project_id=scope.project_id, scopes=["*"]
        )
        return issued.key.id

    live, revoked, expired = await key("live"), await key("revoked"), await key("expired")
    await mem.revoke_api_key(revoked)
    async with mem.storage.unit_of_work() as uow:
        stored = await uow.api_keys.get_unscoped(expired)
        assert stored is not None
        await uow.api_keys.save(
            attrs.evolve(stored, expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    items = [
        attrs.evolve(_fresh(mem, _caller(scope), _input(scope, n)), key_id=key_id)
        for n, key_id in enumerate([live, revoked, expired, "key_missing", None])
    ]
    written = await mem.deps.storage.add_fresh_events(items)
    assert written == {items[0].event.id, items[4].event.id}
    assert await _audit_ids(mem, scope) == sorted([items[0].event.id, items[4].event.id])
    for item in items[1:4]:
        assert await _event(mem, scope, item.event.id) is None
