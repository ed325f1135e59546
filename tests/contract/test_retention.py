"""Retention (issue #16, item 3) through the use cases, on every storage backend: what a
sweep erases (idle sessions, old events without a session) and what it keeps (a session
still in use, however old its start; memories outside sessions), bounded rounds, who may
set a retention, and the audit it leaves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.errors import Forbidden, InvalidInput, NotFound
from claude_mem_core.ports.storage import Page, Storage
from claude_mem_core.services import retention
from claude_mem_core.services.context import Caller
from claude_mem_core.testing.fakes import FixedClock

START = datetime(2026, 3, 1, tzinfo=UTC)


def _memory(storage: Storage, clock: FixedClock) -> Memory:
    return Memory(storage=storage, queue=InProcessQueue(), provider=OfflineProvider(), clock=clock)


def _payload(word: str) -> dict[str, Any]:
    return {
        "tool_name": "Bash",
        "tool_input": {"command": f"grep -rn {word} src"},
        "tool_response": f"src/app.py:3: {word} = True",
    }


async def _event(mem: Memory, scope: Scope, word: str, session_id: str | None = None) -> str:
    ingested = await mem.ingest(
        scope, event_type="tool_use", session_id=session_id, payload=_payload(word)
    )
    return ingested.event.id


async def _found(mem: Memory, scope: Scope, word: str) -> bool:
    return bool(await mem.search(scope, word))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
async def mem(storage: Storage, clock: FixedClock) -> Memory:
    return _memory(storage, clock)


@pytest.fixture
async def scope(mem: Memory) -> Scope:
    team, project = await mem.ensure_project("acme", "app")
    return Scope(team_id=team.id, project_id=project.id)


async def test_a_sweep_erases_idle_sessions_and_old_loose_events_and_keeps_the_rest(
    mem: Memory, scope: Scope, clock: FixedClock
) -> None:
    idle = (await mem.start_session(scope, external_session_id="idle")).session
    live = (await mem.start_session(scope, external_session_id="live")).session
    await _event(mem, scope, "idleword", idle.id)
    await _event(mem, scope, "startword", live.id)
    await _event(mem, scope, "looseword")
    await mem.add_memory(scope, content="keepword is what we chose to remember")
    await mem.drain()
    for word in ("idleword", "startword", "looseword", "keepword"):
        assert await _found(mem, scope, word), word

    clock.advance(timedelta(days=10).total_seconds())
    await _event(mem, scope, "freshword", live.id)  # the live session is still in use
    await mem.drain()
    project = await mem.set_retention(scope, 7)
    assert project.retain_days == 7

    swept = await mem.sweep_retention()

    assert [(s.project_id, s.sessions, s.events) for s in swept] == [(scope.project_id, 1, 1)]
    assert swept[0].rows > 0
    assert not await _found(mem, scope, "idleword")
    assert not await _found(mem, scope, "looseword")
    for word in ("startword", "freshword", "keepword"):
        assert await _found(mem, scope, word), word
    with pytest.raises(NotFound):
        await mem.get_session(scope, idle.id)
    assert (await mem.get_session(scope, live.id)).id == live.id
    # Nothing more is due: the next round erases nothing.
    again = await mem.sweep_retention()
    assert [(s.sessions, s.events) for s in again] == [(0, 0)]


async def test_without_a_retention_nothing_is_swept(
    mem: Memory, scope: Scope, clock: FixedClock
) -> None:
    await _event(mem, scope, "oldword")
    await mem.drain()
    clock.advance(timedelta(days=400).total_seconds())
    assert await mem.sweep_retention() == []
    await mem.set_retention(scope, 30)
    await mem.set_retention(scope, None)  # removed again: kept until erased
    assert await mem.sweep_retention() == []
    assert await _found(mem, scope, "oldword")


async def test_rounds_are_bounded_and_resume(mem: Memory, scope: Scope, clock: FixedClock) -> None:
    for n in range(3):
        session = (await mem.start_session(scope, external_session_id=f"s{n}")).session
        await _event(mem, scope, f"word{n}", session.id)
    await mem.drain()
    clock.advance(timedelta(days=2).total_seconds())
    await mem.set_retention(scope, 1)
    rounds = [
        (await retention.sweep(mem.deps, per_project=2))[0].sessions,
        (await retention.sweep(mem.deps, per_project=2))[0].sessions,
        (await retention.sweep(mem.deps, per_project=2))[0].sessions,
    ]
    assert rounds == [2, 1, 0]
    assert not any([await _found(mem, scope, f"word{n}") for n in range(3)])


async def test_the_sweep_only_touches_the_projects_it_is_asked_for(
    mem: Memory, scope: Scope, clock: FixedClock
) -> None:
    team, other_project = await mem.ensure_project("acme", "other")
    other = Scope(team_id=team.id, project_id=other_project.id)
    await _event(mem, scope, "mineword")
    await _event(mem, other, "otherword")
    await mem.drain()
    clock.advance(timedelta(days=5).total_seconds())
    await mem.set_retention(scope, 1)
    await mem.set_retention(other, 1)
    swept = await mem.sweep_retention(project_id=other.project_id)
    assert [s.project_id for s in swept] == [other.project_id]
    assert await _found(mem, scope, "mineword")
    assert not await _found(mem, other, "otherword")


@pytest.mark.parametrize("bad", [0, -3, 36_501, "7", 7.5, True, [7]])
async def test_a_bad_retention_is_refused_naming_the_field(
    mem: Memory, scope: Scope, bad: object
) -> None:
    with pytest.raises(InvalidInput) as raised:
        await mem.set_retention(scope, bad)  # type: ignore[arg-type]
    assert raised.value.issues[0].path == "retainDays"


async def test_who_may_set_a_retention(mem: Memory, scope: Scope) -> None:
    reader = Caller(team_id=scope.team_id, project_id=scope.project_id, scopes={"memories:read"})
    with pytest.raises(Forbidden):
        await retention.set_retention(mem.deps, reader, scope.project_id, 7)
    team, elsewhere = await mem.ensure_project("acme", "elsewhere")
    other_key = Caller(team_id=team.id, project_id=elsewhere.id, scopes={"erase"})
    with pytest.raises(NotFound):
        await retention.set_retention(mem.deps, other_key, scope.project_id, 7)
    stranger = Caller(team_id="no-such-team", scopes={"erase"})
    with pytest.raises(NotFound):
        await retention.set_retention(mem.deps, stranger, scope.project_id, 7)


async def test_the_sweep_is_audited_by_the_retention_actor(
    mem: Memory, scope: Scope, clock: FixedClock, storage: Storage
) -> None:
    session = (await mem.start_session(scope, external_session_id="old")).session
    await _event(mem, scope, "auditword", session.id)
    await mem.drain()
    clock.advance(timedelta(days=3).total_seconds())
    await mem.set_retention(scope, 2)
    await mem.sweep_retention()
    async with storage.unit_of_work() as uow:
        entries, _ = await uow.audit.list(scope.team_id, page=Page(limit=500))
    by_action = {e.action: e for e in entries}
    assert by_action["project.retention_set"].details["retainDays"] == 2
    erased = by_action["session.erased"]
    assert erased.actor_id == retention.RETENTION_ACTOR
    assert erased.resource_id == session.id
    swept = by_action["retention.swept"]
    assert swept.details["sessions"] == 1
    assert "auditword" not in repr([e.details for e in entries])
