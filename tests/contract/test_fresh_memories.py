"""Memories in groups: ``Storage.add_fresh_memories`` (each item whole, out-of-scope items
left out, statistics exact) and ``GroupCommitMemories`` (concurrent callers share a write,
each gets its own observation and audit row, a bad memory fails alone). Every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from claude_mem_core import Caller, Memory, Scope
from claude_mem_core.domain.models import ObservationKind
from claude_mem_core.domain.tokens import parse_query
from claude_mem_core.errors import Forbidden, InvalidInput, NotFound
from claude_mem_core.ports.storage import FreshMemory, Page
from claude_mem_core.services import memories
from claude_mem_core.services.memories import MemoryInput
from claude_mem_core.services.memory_writer import GroupCommitMemories


def _caller(scope: Scope, n: int, **kw: Any) -> Caller:
    return Caller(team_id=scope.team_id, request_id=f"req-{n}", actor_id=f"agent-{n}", **kw)


def _memory(project_id: str, n: int, **kw: Any) -> MemoryInput:
    fields: dict[str, Any] = {
        "project_id": project_id,
        "content": f"memory {n}: the retry_backoff of worker_{n} <private>secret</private>",
        "kind": "decision",
        "title": f"Decision {n}",
    }
    fields.update(kw)
    return MemoryInput(**fields)


def _fresh(mem: Memory, scope: Scope, n: int, **kw: Any) -> FreshMemory:
    item = _memory(kw.pop("project_id", scope.project_id), n, **kw)
    return memories.fresh_memory(mem.deps, _caller(scope, n), item)


async def _stored(mem: Memory, scope: Scope, kind: str | None = None) -> list[Any]:
    async with mem.storage.unit_of_work() as uow:
        rows, _ = await uow.observations.list(
            scope.team_id, scope.project_id, Page(limit=500), kind=kind
        )
    return list(rows)


async def _audited(mem: Memory, scope: Scope) -> dict[str | None, Any]:
    async with mem.storage.unit_of_work() as uow:
        rows, _ = await uow.audit.list(scope.team_id, action="memory.write", page=Page(limit=500))
    return {r.resource_id: r for r in rows}


async def test_fresh_memories_are_written_whole_and_searchable(mem: Memory, scope: Scope) -> None:
    items = [_fresh(mem, scope, n) for n in range(3)]
    written = await mem.storage.add_fresh_memories(items)
    assert written == {i.observation.id for i in items}
    assert await mem.storage.add_fresh_memories([]) == set()
    stored = {o.id: o for o in await _stored(mem, scope)}
    for item in items:
        assert stored[item.observation.id] == item.observation
        assert stored[item.observation.id].kind == "decision"
        assert "secret" not in stored[item.observation.id].content
    assert set(await _audited(mem, scope)) == set(written)
    async with mem.storage.unit_of_work() as uow:
        pairs = await uow.observations.list_for_source(
            scope.team_id, scope.project_id, "manual", "agent-1"
        )
        hits = await uow.search.search(
            scope.team_id, scope.project_id, parse_query("worker_1"), limit=5
        )
    assert [(o.id, s.id) for o, s in pairs] == [(items[1].observation.id, items[1].source.id)]
    assert [h.observation.id for h in hits][:1] == [items[1].observation.id]


async def test_statistics_count_only_what_was_written(mem: Memory, scope: Scope) -> None:
    """A left-out memory's passages are not counted: the scores are those of the same
    memories written one by one into a project of their own."""
    second = await mem.create_project(scope.team_id, "second")
    alone = Scope(team_id=scope.team_id, project_id=second.id)
    items = [
        _fresh(mem, scope, 1),
        _fresh(mem, scope, 2, server_session_id="ses_missing"),
        _fresh(mem, scope, 3),
    ]
    written = await mem.storage.add_fresh_memories(items)
    assert written == {items[0].observation.id, items[2].observation.id}
    for n in (1, 3):
        await memories.write_memory(mem.deps, _caller(alone, n), _fresh(mem, alone, n))
    query = parse_query("retry_backoff worker_3 decision")
    async with mem.storage.unit_of_work() as uow:
        grouped = await uow.search.search(scope.team_id, scope.project_id, query, limit=5)
        reference = await uow.search.search(alone.team_id, alone.project_id, query, limit=5)
    assert [h.observation.title for h in grouped] == [h.observation.title for h in reference]
    assert [h.score for h in grouped] == pytest.approx([h.score for h in reference], rel=1e-9)


async def test_out_of_scope_and_refused_keys_are_left_out(mem: Memory, scope: Scope) -> None:
    other_team, other_project = await mem.ensure_project("globex", "api")
    foreign = (
        await mem.start_session(
            Scope(team_id=other_team.id, project_id=other_project.id), external_session_id="s"
        )
    ).session

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
    good = [attrs.evolve(_fresh(mem, scope, 0), key_id=live), _fresh(mem, scope, 1)]
    bad = [
        attrs.evolve(_fresh(mem, scope, 2), key_id=revoked),
        attrs.evolve(_fresh(mem, scope, 3), key_id=expired),
        attrs.evolve(_fresh(mem, scope, 4), key_id="key_missing"),
        _fresh(mem, scope, 5, server_session_id=foreign.id),
        _fresh(mem, scope, 6, project_id=other_project.id),
    ]
    written = await mem.storage.add_fresh_memories([bad[0], good[0], *bad[1:], good[1]])
    assert written == {i.observation.id for i in good}
    assert {o.id for o in await _stored(mem, scope)} == written
    assert set(await _audited(mem, scope)) == written


async def test_concurrent_memories_share_a_write_and_keep_their_own_rows(
    mem: Memory, scope: Scope
) -> None:
    writer = GroupCommitMemories(mem.deps, max_in_flight=1)
    calls = [0]
    original = mem.storage.add_fresh_memories

    async def counting(items: Any) -> set[str]:
        calls[0] += 1
        return await original(items)

    mem.storage.add_fresh_memories = counting  # type: ignore[method-assign]
    kinds = ["decision", "note", "summary", "team:infra/bug-fix.v2", "Discovery"]
    results = await asyncio.gather(
        *(
            writer.add(_caller(scope, n), _memory(scope.project_id, n, kind=kinds[n % 5]))
            for n in range(20)
        )
    )
    # The first memory is written alone; the 19 that queued behind it share one write.
    assert calls[0] == 2
    assert [r.title for r in results] == [f"Decision {n}" for n in range(20)]
    assert [r.kind for r in results] == [kinds[n % 5] for n in range(20)]
    assert results[2].kind is ObservationKind.SUMMARY
    audited = await _audited(mem, scope)
    for n, r in enumerate(results):
        assert audited[r.id].details["requestId"] == f"req-{n}"
        assert audited[r.id].actor_id == f"agent-{n}"
    notes = await _stored(mem, scope, kind="note")
    assert sorted(o.id for o in notes) == sorted(r.id for r in results if r.kind == "note")
    recent = await mem.recent(scope, kind="team:infra/bug-fix.v2", limit=100)
    assert {o.id for o in recent} == {r.id for r in results if r.kind == "team:infra/bug-fix.v2"}


async def test_a_bad_memory_fails_alone(mem: Memory, scope: Scope, storage_url: str) -> None:
    writer = GroupCommitMemories(mem.deps, max_in_flight=1)
    other_team, other_project = await mem.ensure_project("globex", "api")
    session = await mem.start_session(Scope(team_id=other_team.id, project_id=other_project.id))
    issued = await mem.create_api_key(
        name="agent", team_id=scope.team_id, project_id=scope.project_id, scopes=["*"]
    )
    await mem.revoke_api_key(issued.key.id)
    refuses_nul = storage_url.startswith("postgresql")
    outcomes = await asyncio.gather(
        writer.add(_caller(scope, 0), _memory(scope.project_id, 0)),
        writer.add(_caller(scope, 1), _memory(scope.project_id, 1)),
        writer.add(
            _caller(scope, 2), _memory(scope.project_id, 2, server_session_id=session.session.id)
        ),
        writer.add(_caller(scope, 3), _memory("no-such-project", 3)),
        writer.add(_caller(scope, 4, api_key_id=issued.key.id), _memory(scope.project_id, 4)),
        writer.add(_caller(scope, 5), _memory(scope.project_id, 5, title="nul\x00here")),
        writer.add(_caller(scope, 6), _memory(scope.project_id, 6)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[2], NotFound) and "Session" in str(outcomes[2])
    assert isinstance(outcomes[3], NotFound) and "Project" in str(outcomes[3])
    assert isinstance(outcomes[4], Forbidden)
    assert isinstance(outcomes[5], InvalidInput) is refuses_nul
    good = [o for n, o in enumerate(outcomes) if n in (0, 1, 6) or (n == 5 and not refuses_nul)]
    assert all(not isinstance(o, BaseException) for o in good)
    assert {o.id for o in await _stored(mem, scope)} == {o.id for o in good}  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["", "   ", "a b", "x" * 65, "semi;colon", "new\nline", 7, None])
async def test_bad_kinds_are_refused_before_any_write(mem: Memory, scope: Scope, kind: Any) -> None:
    writer = GroupCommitMemories(mem.deps)
    with pytest.raises(InvalidInput) as raised:
        await writer.add(_caller(scope, 0), _memory(scope.project_id, 0, kind=kind))
    assert [i.path for i in raised.value.issues] == ["kind"]
    assert "letters, digits" in raised.value.issues[0].message
    assert await _stored(mem, scope) == []


async def test_kinds_are_trimmed_and_kept_as_sent(mem: Memory, scope: Scope) -> None:
    made = await mem.add_memory(scope, "We chose PostgreSQL", kind="  Architecture-Decision ")
    assert made.kind == "Architecture-Decision"
    assert (await mem.recent(scope, kind="Architecture-Decision"))[0].id == made.id
    assert await mem.recent(scope, kind="architecture-decision") == []
    assert (await mem.add_memory(scope, "x" * 3, kind="k" * 64)).kind == "k" * 64
    with pytest.raises(InvalidInput):
        await mem.recent(scope, kind="no spaces")
    await mem.close()


async def test_a_memory_with_no_searchable_word_is_stored(mem: Memory, scope: Scope) -> None:
    # Punctuation only: its passage has no term. SQLite was handed an empty parameter list
    # for the term rows, which SQLAlchemy deprecates (an error under this suite's warnings).
    stored = await mem.add_memory(scope, content="!!! ??? --- ...")
    assert stored.content == "!!! ??? --- ..."
    assert await mem.search(scope, "anything") == []
    later = await mem.add_memory(scope, content="the cache ttl is ten minutes")
    assert [r.observation.id for r in await mem.search(scope, "cache ttl")] == [later.id]
