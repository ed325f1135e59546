"""Export and import of a project (issue #16, item 2) on every storage backend: what an
export holds and in which form, the round trip into a fresh project (and across backends),
idempotency, and a bad line refused with nothing written."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.domain import export_format as fmt
from claude_mem_core.domain.models import JobStatus, ObservationKind
from claude_mem_core.errors import NotFound
from claude_mem_core.ports.storage import Storage
from claude_mem_core.services import project_import
from claude_mem_core.services.project_import import ImportConflict
from claude_mem_core.testing import databases


@pytest.fixture
async def mem(storage: Storage) -> Memory:
    return Memory(storage=storage, queue=InProcessQueue(), provider=OfflineProvider())


def _new_folder(parent: Path) -> Path:
    folder = parent / f"other-{len(list(parent.iterdir()))}"
    folder.mkdir()
    return folder


async def _fresh_storage_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return await databases.migrated_sqlite_url(_new_folder(tmp_path))
    return await databases.create_postgres_database(request.getfixturevalue("postgres_base_url"))


@pytest.fixture
async def other(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Memory]:
    """A second, empty database of the same backend (ids are global keys: an export is
    imported into another database, or into the project it came from)."""
    url = await _fresh_storage_url(backend, tmp_path, request)
    store = storage_from_url(url)
    memory = Memory(storage=store, queue=InProcessQueue(), provider=OfflineProvider())
    try:
        yield memory
    finally:
        await store.close()
        if backend == "postgres":
            await databases.drop_postgres_database(url)


async def _populate(mem: Memory, scope: Scope) -> None:
    """Two sessions with events, generated observations, a summary, and memories."""
    for n, word in enumerate(("alpha", "bravo")):
        started = await mem.start_session(scope, external_session_id=f"claude-{word}")
        session_id = started.session.id
        for step in range(3):
            await mem.ingest(
                scope,
                event_type="tool_use",
                session_id=session_id,
                source_event_id=f"tool-{word}-{step}",
                payload={
                    "tool_name": "Bash",
                    "tool_input": {"command": f"grep -rn {word}{step} src"},
                    "tool_response": f"src/app.py:{step}: {word}{step} = True  # ünïcode ✓",
                },
            )
        await mem.ingest(
            scope, event_type="user_prompt", session_id=session_id, payload={"prompt": f"fix {n}"}
        )
        await mem.end_session(scope, session_id)
    await mem.drain()
    await mem.add_memory(scope, "We deploy with blue-green switches.", title="Deploys")
    await mem.add_memory(scope, "Decided: keep zanzibar as auth.", kind="decision")


async def _export(mem: Memory, scope: Scope) -> list[str]:
    return [line async for line in mem.export_project(scope)]


async def _lines(items: Iterable[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


def _records(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines[1:]]


async def _new_scope(mem: Memory, team: str = "acme", project: str = "copy") -> Scope:
    t, p = await mem.ensure_project(team, project)
    return Scope(team_id=t.id, project_id=p.id)


async def test_an_export_holds_every_kind_of_row_in_a_fixed_form(mem: Memory, scope: Scope) -> None:
    await _populate(mem, scope)
    lines = await _export(mem, scope)
    header = json.loads(lines[0])
    assert header["format"] == "claude-mem-export" and header["version"] == 1
    assert header["project"]["id"] == scope.project_id
    records = _records(lines)
    types = [r["type"] for r in records]
    assert types == sorted(types, key=fmt.RECORD_TYPES.index), "sessions, events, observations"
    assert types.count("session") == 2 and types.count("event") == 8
    kinds = {r["kind"] for r in records if r["type"] == "observation"}
    assert {"observation", "summary", "manual", "decision"} <= kinds
    assert header["counts"] == {
        "sessions": 2,
        "events": 8,
        "observations": types.count("observation"),
    }
    links = [s for r in records if r["type"] == "observation" for s in r["sources"]]
    events = {r["id"] for r in records if r["type"] == "event"}
    event_links = [s for s in links if s["sourceType"] == "agent_event"]
    assert event_links and {s["sourceId"] for s in event_links} <= events
    assert any(s["sourceType"] == "session_summary" for s in links)
    assert any(s["sourceType"] == "manual" for s in links)
    for line in lines:
        value = json.loads(line)
        assert (
            line
            == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        )
        assert "idempotencyKey" not in line and "apiKey" not in line
    # Within a type: by time, then id.
    for kind, moment in (
        ("session", "createdAt"),
        ("event", "occurredAt"),
        ("observation", "createdAt"),
    ):
        keys = [(r[moment], r["id"]) for r in records if r["type"] == kind]
        assert keys == sorted(keys)
    assert all(r["createdAt"].endswith("Z") and len(r["createdAt"]) == 24 for r in records)


async def test_small_pages_read_every_row_once(mem: Memory, scope: Scope) -> None:
    from claude_mem_core.services import export

    await _populate(mem, scope)
    caller = Memory._caller(scope)
    whole = [
        line
        async for line in (await export.open_export(mem.deps, caller, scope.project_id)).lines()
    ]
    paged = [
        line
        async for line in (
            await export.open_export(mem.deps, caller, scope.project_id, page_rows=2)
        ).lines()
    ]
    assert paged[1:] == whole[1:]


async def test_import_into_a_fresh_project_exports_the_same_lines(
    mem: Memory, scope: Scope, other: Memory
) -> None:
    await _populate(mem, scope)
    lines = await _export(mem, scope)
    target = await _new_scope(other, "elsewhere", "webapp-copy")
    report = await other.import_project(target, _lines(lines))
    records = _records(lines)
    assert report.sessions == 2 and report.events == 8
    assert report.observations == sum(r["type"] == "observation" for r in records)
    assert report.skipped == 0 and report.jobs == 0
    again = await _export(other, target)
    assert again[1:] == lines[1:]
    header, copied = json.loads(lines[0]), json.loads(again[0])
    for name in fmt.HEADER_FIELDS_THAT_DIFFER:
        header.pop(name), copied.pop(name)
    assert header == copied
    # No generation was queued, and search finds the imported observations, by their own
    # words and by the words of the events they were made from.
    assert (await other.list_jobs(target)).total == 0
    assert [r.observation.title for r in await other.search(target, "blue-green")] == ["Deploys"]
    found = await other.search(target, "bravo2")
    assert found and found[0].observation.kind == ObservationKind.OBSERVATION


async def test_importing_twice_adds_nothing(mem: Memory, scope: Scope, other: Memory) -> None:
    await _populate(mem, scope)
    lines = await _export(mem, scope)
    target = await _new_scope(other)
    await other.import_project(target, _lines(lines))
    before = await _export(other, target)
    hits = [r.observation.id for r in await other.search(target, "alpha1")]
    second = await other.import_project(target, _lines(lines))
    assert (second.sessions, second.events, second.observations, second.sources) == (0, 0, 0, 0)
    assert second.skipped == len(lines) - 1
    assert (await _export(other, target))[1:] == before[1:]
    assert [r.observation.id for r in await other.search(target, "alpha1")] == hits


async def test_importing_into_the_source_project_adds_nothing(mem: Memory, scope: Scope) -> None:
    await _populate(mem, scope)
    lines = await _export(mem, scope)
    report = await mem.import_project(scope, _lines(lines))
    assert report.skipped == len(lines) - 1 and report.events == 0
    assert (await _export(mem, scope))[1:] == lines[1:]


async def test_a_bad_line_is_named_and_nothing_is_written(
    mem: Memory, scope: Scope, other: Memory
) -> None:
    await _populate(mem, scope)
    lines = await _export(mem, scope)
    target = await _new_scope(other)
    events = [n for n, line in enumerate(lines) if json.loads(line).get("type") == "event"]
    broken = list(lines)
    bad = events[-1]
    value = json.loads(broken[bad])
    value["occurredAt"] = "yesterday"
    broken[bad] = json.dumps(value) + "\n"
    with pytest.raises(fmt.BadExportLine) as refused:
        await other.import_project(target, _lines(broken))
    assert refused.value.line == bad + 1 and refused.value.path == "occurredAt"
    assert f"line {bad + 1}" in refused.value.message
    assert (await _export(other, target))[1:] == []
    # Not JSON, an unknown field, a reference to nothing: each named, nothing written.
    for n, text, path in (
        (3, "{not json\n", ""),
        (2, json.dumps({**json.loads(lines[1]), "extra": 1}) + "\n", "extra"),
    ):
        changed = list(lines)
        changed[n - 1] = text
        with pytest.raises(fmt.BadExportLine) as refused:
            await other.import_project(target, _lines(changed))
        assert (refused.value.line, refused.value.path) == (n, path)
    dangling = [line for line in lines if json.loads(line).get("type") != "session"]
    with pytest.raises(fmt.BadExportLine) as refused:
        await other.import_project(target, _lines(dangling))
    assert refused.value.path == "sessionId" and "neither in the export" in refused.value.message
    assert (await _export(other, target))[1:] == []


async def test_a_future_version_is_refused_by_name(mem: Memory, scope: Scope) -> None:
    header = json.loads((await _export(mem, scope))[0])
    header["version"] = 2
    with pytest.raises(fmt.UnsupportedExportVersion) as refused:
        await mem.import_project(scope, _lines([json.dumps(header) + "\n"]))
    assert refused.value.version == 2 and "version 2" in refused.value.message
    with pytest.raises(fmt.BadExportLine):
        await mem.import_project(scope, _lines([]))


async def test_ids_of_another_project_are_a_conflict(mem: Memory, scope: Scope) -> None:
    await _populate(mem, scope)
    lines = await _export(mem, scope)
    sibling = await _new_scope(mem, "acme", "sibling")
    with pytest.raises(ImportConflict) as refused:
        await mem.import_project(sibling, _lines(lines))
    assert refused.value.line == 2
    assert (await _export(mem, sibling))[1:] == []


async def test_generate_queues_a_job_per_imported_event(
    mem: Memory, scope: Scope, other: Memory
) -> None:
    await _populate(mem, scope)
    lines = await _export(mem, scope)
    target = await _new_scope(other)
    report = await other.import_project(target, _lines(lines), generate=True)
    assert report.jobs == report.events == 8
    page = await other.list_jobs(target, limit=100)
    assert page.total == 8 and all(j.status is JobStatus.QUEUED for j in page.jobs)


async def test_a_project_of_another_team_is_not_found(mem: Memory, scope: Scope) -> None:
    outsider = await _new_scope(mem, "other-team", "webapp")
    foreign = Scope(team_id=outsider.team_id, project_id=scope.project_id)
    with pytest.raises(NotFound):
        await _export(mem, foreign)
    with pytest.raises(NotFound):
        await mem.import_project(foreign, _lines([]))


# -- across backends -----------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.sqlite
async def test_sqlite_to_postgres_to_sqlite_is_byte_for_byte(
    tmp_path: Path, postgres_base_url: str
) -> None:
    urls = []
    for name in ("first", "last"):
        (tmp_path / name).mkdir()
        urls.append(await databases.migrated_sqlite_url(tmp_path / name))
    pg = await databases.create_postgres_database(postgres_base_url)
    memories = [
        Memory(storage=storage_from_url(url), queue=InProcessQueue(), provider=OfflineProvider())
        for url in (urls[0], pg, urls[1])
    ]
    try:
        first, middle, last = memories
        source = await _new_scope(first, "acme", "webapp")
        await _populate(first, source)
        exported = await _export(first, source)
        for target_mem in (middle, last):
            target = await _new_scope(target_mem, "acme", "webapp")
            await target_mem.import_project(target, _lines(exported))
            again = await _export(target_mem, target)
            assert again[1:] == exported[1:]
            exported = again
    finally:
        for memory in memories:
            await memory.storage.close()
        await databases.drop_postgres_database(pg)


# -- generated projects --------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
# Memories hold words: a memory with nothing to index is another concern (search.py).
_words = st.from_regex(r"[a-z]{1,8}( [a-z0-9]{1,8}){0,3}", fullmatch=True)
_events = st.lists(
    st.tuples(st.sampled_from(["tool_use", "user_prompt", "note"]), _json_values, st.booleans()),
    max_size=6,
)
_projects = st.lists(
    st.tuples(st.one_of(st.none(), _text), _events, st.lists(_words, max_size=2)),
    min_size=1,
    max_size=3,
)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(project=_projects)
async def test_export_import_export_is_the_identity(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, project: Any
) -> None:
    urls = [await _fresh_storage_url(backend, tmp_path, request) for _ in range(2)]
    memories = [
        Memory(storage=storage_from_url(url), queue=InProcessQueue(), provider=OfflineProvider())
        for url in urls
    ]
    try:
        source, target_mem = memories
        scope = await _new_scope(source, "t", "p")
        for n, (external, events, notes) in enumerate(project):
            # A blank id is refused as input (sessions._validate): the project has none then.
            external_id = external if external and external.strip() else None
            started = await source.start_session(scope, external_session_id=external_id)
            for m, (event_type, payload, with_id) in enumerate(events):
                await source.ingest(
                    scope,
                    event_type=event_type,
                    session_id=started.session.id,
                    payload={"value": payload},
                    source_event_id=f"e-{n}-{m}" if with_id else None,
                    generate=False,
                )
            for note in notes:
                await source.add_memory(scope, note, server_session_id=started.session.id)
        exported = await _export(source, scope)
        target = await _new_scope(target_mem, "t2", "p2")
        await target_mem.import_project(target, _lines(exported))
        assert (await _export(target_mem, target))[1:] == exported[1:]
    finally:
        for memory in memories:
            await memory.storage.close()
        if backend == "postgres":
            for url in urls:
                await databases.drop_postgres_database(url)


def test_split_lines_holds_one_line() -> None:
    import asyncio

    async def chunks() -> AsyncIterator[bytes]:
        for part in (b'{"a":', b'1}\n{"b"', b":2}\n", b"tail"):
            yield part

    async def collect() -> list[bytes]:
        return [line async for line in project_import.split_lines(chunks())]

    assert asyncio.run(collect()) == [b'{"a":1}', b'{"b":2}', b"tail"]

    async def runaway() -> AsyncIterator[bytes]:
        yield b"x" * 100

    async def too_long() -> None:
        async for _ in project_import.split_lines(runaway(), max_line_bytes=10):
            pass

    with pytest.raises(fmt.BadExportLine):
        asyncio.run(too_long())
