"""The change feed on every backend: what the writes record, in an order a reader resumes
from without gaps, scoped, with erased rows left out; on PostgreSQL, concurrent writers
that commit out of serial order never make a polling reader skip a row."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.domain.models import AgentEvent, GenerationJob, JobStatus, Observation
from claude_mem_core.ports.change_feed import START, Change, ChangeKind, FeedPosition
from claude_mem_core.ports.storage import Storage
from claude_mem_core.services import stream
from claude_mem_core.services.context import Caller, PipelineOptions
from claude_mem_core.testing.fakes import ScriptedProvider

OBSERVATION = """<observation>
  <type>bugfix</type>
  <title>Fixed the login redirect loop</title>
  <narrative>The callback check ignored the query.</narrative>
</observation>"""
SUMMARY = """<summary>
  <request>Fix the login redirect</request>
  <completed>redirect fixed</completed>
</summary>"""


@pytest.fixture
async def mem(storage: Storage) -> Memory:
    provider = ScriptedProvider(
        default=lambda r: SUMMARY if r.purpose == "summary" else OBSERVATION
    )
    return Memory(
        storage=storage,
        queue=InProcessQueue(),
        provider=provider,
        options=PipelineOptions(max_attempts=3),
    )


async def _settled(storage: Storage) -> None:
    """Wait until every transaction that began before now has ended (PostgreSQL: a reader
    holds back what commits after a transaction still running anywhere on the cluster,
    other tests' included, so reads right after writes wait for them first)."""
    if storage.name != "postgres":
        return
    import sqlalchemy as sa

    engine: Any = storage.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        now = int((await conn.execute(sa.text("SELECT pg_current_xact_id()::text"))).scalar())
    for _ in range(600):
        if (await storage.change_feed().head()).txid > now:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("a transaction of the cluster stayed open for 30 s")


async def _all(storage: Storage, after: FeedPosition = START, **kw: Any) -> list[Change]:
    """Every entry after ``after``, read a page of 3 at a time."""
    await _settled(storage)
    out: list[Change] = []
    while page := await storage.change_feed().read(after, limit=3, **kw):
        out.extend(page)
        after = page[-1].position
    return out


async def test_writes_record_events_jobs_observations_and_summaries(
    mem: Memory, scope: Scope
) -> None:
    started = await mem.start_session(scope, external_session_id="s-feed")
    ingested = await mem.ingest(
        scope, event_type="tool_use", session_id=started.session.id, payload={"tool": "Edit"}
    )
    assert ingested.job is not None
    assert await mem.drain() == 1
    ended = await mem.end_session(scope, started.session.id)
    assert await mem.drain() == 1

    changes = await _all(mem.storage)
    positions = [c.position for c in changes]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    by_kind: dict[ChangeKind, list[Change]] = {}
    for change in changes:
        assert (change.team_id, change.project_id) == (scope.team_id, scope.project_id)
        by_kind.setdefault(change.kind, []).append(change)

    [event] = by_kind[ChangeKind.EVENT]
    assert isinstance(event.record, AgentEvent) and event.record.id == ingested.event.id
    [observation] = by_kind[ChangeKind.OBSERVATION]
    assert isinstance(observation.record, Observation)
    assert observation.record.title == "Fixed the login redirect loop"
    [summary] = by_kind[ChangeKind.SUMMARY]
    assert isinstance(summary.record, Observation) and summary.record.kind == "summary"
    assert event.position < observation.position < summary.position
    # Each job: inserted (queued), then processing, then completed; the row is read as it
    # is now, so every entry of a job shows its current state.
    jobs = by_kind[ChangeKind.JOB]
    for job_id in (ingested.job.id, ended.job.id):
        mine = [c for c in jobs if c.row_id == job_id]
        assert len(mine) == 3
        assert all(
            isinstance(c.record, GenerationJob) and c.record.status is JobStatus.COMPLETED
            for c in mine
        )


async def test_head_is_now_and_a_reader_resumes_exactly_after_its_position(
    mem: Memory, scope: Scope
) -> None:
    first = await mem.ingest(scope, event_type="tool_use", payload={"n": 1})
    await _settled(mem.storage)
    head = await mem.storage.change_feed().head()
    assert await _all(mem.storage, head) == []

    second = await mem.ingest(scope, event_type="tool_use", payload={"n": 2})
    third = await mem.ingest(scope, event_type="tool_use", payload={"n": 3})
    events = await _all(mem.storage, head, kinds={ChangeKind.EVENT})
    assert [c.row_id for c in events] == [second.event.id, third.event.id]
    # From the first of them: only the one after it.
    after_second = await _all(mem.storage, events[0].position, kinds={ChangeKind.EVENT})
    assert [c.row_id for c in after_second] == [third.event.id]
    everything = [c.row_id for c in await _all(mem.storage, kinds={ChangeKind.EVENT})]
    assert everything == [first.event.id, second.event.id, third.event.id]


async def test_reads_are_scoped_by_team_project_and_kind(mem: Memory, scope: Scope) -> None:
    _, sibling = await mem.ensure_project("acme", "api")
    other_team, other_project = await mem.ensure_project("globex", "secret")
    sibling_scope = Scope(team_id=scope.team_id, project_id=sibling.id)
    other_scope = Scope(team_id=other_team.id, project_id=other_project.id)
    mine = await mem.ingest(scope, event_type="tool_use", payload={})
    theirs = await mem.ingest(sibling_scope, event_type="tool_use", payload={})
    foreign = await mem.ingest(other_scope, event_type="tool_use", payload={})
    memory = await mem.add_memory(scope, "a decision", kind="decision")

    def ids(changes: list[Change]) -> list[str]:
        return [c.row_id for c in changes if c.kind is not ChangeKind.JOB]

    team = await _all(mem.storage, team_id=scope.team_id)
    assert ids(team) == [mine.event.id, theirs.event.id, memory.id]
    project = await _all(mem.storage, team_id=scope.team_id, project_id=scope.project_id)
    assert ids(project) == [mine.event.id, memory.id]
    observations = await _all(
        mem.storage, team_id=scope.team_id, kinds={ChangeKind.OBSERVATION, ChangeKind.SUMMARY}
    )
    assert [c.row_id for c in observations] == [memory.id]
    assert ids(await _all(mem.storage, team_id=other_team.id)) == [foreign.event.id]
    # A project of another team under this team's id: nothing.
    assert await _all(mem.storage, team_id=scope.team_id, project_id=other_project.id) == []


async def test_erased_rows_are_never_read_back_but_are_passed(mem: Memory, scope: Scope) -> None:
    kept = await mem.ingest(scope, event_type="tool_use", payload={"keep": True})
    erased = await mem.ingest(scope, event_type="tool_use", payload={"secret": "x"})
    await mem.erase_event(scope, erased.event.id)

    raw = await _all(mem.storage, kinds={ChangeKind.EVENT})
    assert [c.row_id for c in raw] == [kept.event.id, erased.event.id]
    assert raw[1].record is None  # the reference stays, the content does not come back

    where = stream.StreamFilter(
        team_id=scope.team_id, project_id=scope.project_id, kinds=frozenset({ChangeKind.EVENT})
    )
    await _settled(mem.storage)
    page = await stream.read_page(mem.deps, where, START)
    assert [c.row_id for c in page.changes] == [kept.event.id]
    assert page.end == raw[1].position  # past the erased one: a reader moves on
    assert (await stream.read_page(mem.deps, where, page.end)).changes == []


async def test_a_project_marked_deleted_streams_nothing(mem: Memory, scope: Scope) -> None:
    await mem.ingest(scope, event_type="tool_use", payload={})
    await mem.erase_project(scope)
    changes = await _all(mem.storage, team_id=scope.team_id)
    assert changes and all(c.record is None for c in changes)


async def test_open_stream_scopes_kinds_by_the_keys_scopes(mem: Memory, scope: Scope) -> None:
    from claude_mem_core.errors import Forbidden, InvalidInput, NotFound

    hook = Caller(
        team_id=scope.team_id,
        project_id=scope.project_id,
        scopes=frozenset({"observations:read", "jobs:read"}),
    )
    opened = await stream.open_stream(mem.deps, hook)
    assert opened.kinds == {ChangeKind.OBSERVATION, ChangeKind.SUMMARY, ChangeKind.JOB}
    assert opened.project_id == scope.project_id
    with pytest.raises(Forbidden, match="memories:read"):
        await stream.open_stream(mem.deps, hook, kinds=[ChangeKind.EVENT])
    _, sibling = await mem.ensure_project("acme", "api")
    with pytest.raises(NotFound):
        await stream.open_stream(mem.deps, hook, project_id=sibling.id)
    writer = Caller(team_id=scope.team_id, scopes=frozenset({"events:write"}))
    with pytest.raises(Forbidden):
        await stream.open_stream(mem.deps, writer)
    with pytest.raises(InvalidInput) as bad:
        stream.parse_kinds("event,nope")
    assert bad.value.issues[0].path == "kinds"


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_concurrent_writers_committing_out_of_order_never_make_a_reader_skip(
    storage: Storage, storage_url: str, mem: Memory, scope: Scope
) -> None:
    """Writers take their serial in one order and commit in another (each sleeps a random
    while inside its transaction); a reader polling all along must end with every row
    exactly once, although a row often commits after one with a larger serial was read."""
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(storage_url, pool_size=20, max_overflow=10)
    rng = random.Random(7)
    writers, per_writer = 16, 8
    committed: list[str] = []
    done = asyncio.Event()
    feed = storage.change_feed()

    async def writer(n: int) -> None:
        for i in range(per_writer):
            event_id = f"ev-{n}-{i}"
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO agent_events (id, project_id, team_id, source_adapter,"
                        " idempotency_key, event_type, occurred_at)"
                        " VALUES (:id, :p, :t, 'api', :id, 'tool_use', :at)"
                    ),
                    {
                        "id": event_id,
                        "p": scope.project_id,
                        "t": scope.team_id,
                        "at": datetime.now(UTC),
                    },
                )
                await asyncio.sleep(rng.uniform(0, 0.03))
            committed.append(event_id)

    seen: list[Change] = []

    async def reader() -> None:
        after = await feed.head()
        while True:
            finished = done.is_set()
            if finished:
                await _settled(storage)
            page = await feed.read(after, kinds={ChangeKind.EVENT}, limit=7)
            seen.extend(page)
            if page:
                after = page[-1].position
            elif finished:
                return
            else:
                await asyncio.sleep(0.002)

    try:
        read = asyncio.create_task(reader())
        await asyncio.sleep(0.01)
        await asyncio.gather(*(writer(n) for n in range(writers)))
        done.set()
        await asyncio.wait_for(read, 30)
    finally:
        await engine.dispose()

    ids = [c.row_id for c in seen]
    assert len(ids) == len(set(ids)), "an entry was read twice"
    assert set(ids) == set(committed), "an entry was skipped"
    assert [c.position for c in seen] == sorted(c.position for c in seen)
    # The test means something only if serials and commits disagreed: some row committed
    # after a row with a larger serial.
    serial = {c.row_id: c.position.serial for c in seen}
    out_of_order = sum(
        1
        for i, later in enumerate(committed)
        if any(serial[earlier] > serial[later] for earlier in committed[:i])
    )
    assert out_of_order > 0


async def test_pruning_drops_old_entries_and_a_cursor_behind_them_is_refused(
    mem: Memory, scope: Scope
) -> None:
    from claude_mem_core.errors import CursorExpired

    # SQLite's CURRENT_TIMESTAMP has whole seconds: leave a second either side of the cut.
    pause = 1.1 if mem.storage.name == "sqlite" else 0.05
    old = await mem.ingest(scope, event_type="tool_use", payload={"n": 1})
    await mem.ingest(scope, event_type="tool_use", payload={"n": 2})
    await _settled(mem.storage)
    await asyncio.sleep(pause)
    cut = datetime.now(UTC)
    await asyncio.sleep(pause)
    new = await mem.ingest(scope, event_type="tool_use", payload={"n": 3})
    feed = mem.storage.change_feed()
    before = await _all(mem.storage)
    assert await feed.horizon() == START
    await stream.check_resumable(mem.deps, START, field="after")  # nothing pruned yet

    assert await feed.prune(before=cut, limit=1) == 1  # bounded
    pruned = 1 + await feed.prune(before=cut)
    horizon = await feed.horizon()
    assert pruned == sum(1 for c in before if c.position <= horizon)
    remaining = await _all(mem.storage)
    assert [c.row_id for c in remaining if c.kind is ChangeKind.EVENT] == [new.event.id]
    assert old.event.id not in {c.row_id for c in remaining}
    assert horizon >= max(c.position for c in before if c.row_id == old.event.id)
    assert horizon < min(c.position for c in remaining)

    with pytest.raises(CursorExpired) as refused:
        await stream.check_resumable(mem.deps, START, field="Last-Event-ID")
    assert refused.value.field == "Last-Event-ID"
    await stream.check_resumable(mem.deps, horizon, field="after")  # from the horizon: whole
    # Nothing older is left; pruning again removes nothing and never lowers the horizon.
    assert await feed.prune(before=cut) == 0
    assert await feed.horizon() == horizon


async def test_prune_feed_removes_what_is_older_than_the_retention(
    storage: Storage, scope: Scope
) -> None:
    import attrs

    mem = Memory(
        storage=storage,
        queue=InProcessQueue(),
        provider=ScriptedProvider(default=OBSERVATION),
        # SQLite stores whole seconds: a fresh entry may look up to a second older.
        options=attrs.evolve(
            PipelineOptions(), stream_retain_seconds=2.0 if storage.name == "sqlite" else 0.5
        ),
    )
    await mem.ingest(scope, event_type="tool_use", payload={"n": 1})
    await _settled(storage)
    await asyncio.sleep(3.2 if storage.name == "sqlite" else 0.6)  # older than the retention
    fresh = await mem.ingest(scope, event_type="tool_use", payload={"n": 2})
    pruned = 0
    for _ in range(100):  # PostgreSQL: once no older transaction of the cluster runs
        pruned = await stream.prune_feed(mem.deps)
        if pruned:
            break
        await asyncio.sleep(0.1)
    assert pruned > 0
    assert await storage.change_feed().horizon() != START
    kept = await _all(storage, await storage.change_feed().horizon())
    assert fresh.event.id in {c.row_id for c in kept}  # within the retention: kept
