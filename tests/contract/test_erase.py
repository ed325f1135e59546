"""Erase (issue #16, item 1) through the use cases, on every storage backend: who may
erase, what goes, what a replay of an erased event gets, what happens to running jobs, the
tombstone, and a whole project."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from claude_mem_core import Caller, EventInput, Gone, Memory, Scope
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.domain.models import JobStatus, ObservationKind
from claude_mem_core.domain.scopes import Need, missing_scope_message, validate_scopes
from claude_mem_core.errors import Forbidden, NotFound
from claude_mem_core.ports.provider import GenerationRequest, GenerationResult
from claude_mem_core.ports.storage import Page, Storage
from claude_mem_core.services import erase, ingest, memories, sessions


class HookedProvider(OfflineProvider):
    """The offline provider, running ``hook`` (once) before it answers a request of
    ``purpose``: what a caller does while a worker waits on the model."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[GenerationRequest], Awaitable[None]] | None = None
        self.purpose = "observations"

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        hook, self.hook = self.hook, None
        if hook is not None and request.purpose == self.purpose:
            await hook(request)
        return await super().generate(request)


@pytest.fixture
def provider() -> HookedProvider:
    return HookedProvider()


@pytest.fixture
async def mem(storage: Storage, provider: HookedProvider) -> Memory:
    return Memory(storage=storage, queue=InProcessQueue(), provider=provider)


def _source_id(word: str) -> str:
    """The client's id of the event about ``word`` (ids are not content: audit rows keep
    them, so they must not spell the word a test looks for)."""
    return "client-" + hashlib.sha256(word.encode()).hexdigest()[:12]


def _payload(word: str) -> dict[str, Any]:
    return {
        "tool_name": "Bash",
        "tool_input": {"command": f"grep -rn {word} src"},
        "tool_response": f"src/app.py:3: {word} = True",
    }


async def _ingest(
    mem: Memory, scope: Scope, word: str, *, session_id: str | None = None, source: bool = True
) -> ingest.IngestedEvent:
    return await mem.ingest(
        scope,
        event_type="tool_use",
        session_id=session_id,
        source_event_id=_source_id(word) if source else None,
        payload=_payload(word),
    )


async def _found(mem: Memory, scope: Scope, word: str) -> list[str]:
    return [r.observation.id for r in await mem.search(scope, word)]


async def _dump(mem: Memory, scope: Scope) -> str:
    """Every row of the project a caller can list, as one text (to look for a word)."""
    async with mem.storage.unit_of_work() as uow:
        audit, _ = await uow.audit.list(scope.team_id, page=Page(limit=1000))
        observations, _ = await uow.observations.list(
            scope.team_id, scope.project_id, Page(limit=1000)
        )
    rows = [repr(a) for a in audit] + [repr(o) for o in observations]
    return json.dumps(rows)


async def test_erasing_needs_the_erase_scope(mem: Memory, scope: Scope) -> None:
    event = (await _ingest(mem, scope, "walrus")).event
    session = (await mem.start_session(scope, external_session_id="s")).session
    assert validate_scopes(["erase"]) == {"erase"}
    expected = missing_scope_message(Need.ERASE)
    assert expected == "API key lacks the scope this needs: erase, admin or memories:admin"
    for held in (
        {"memories:read", "memories:write"},
        {"events:write", "sessions:write", "observations:read", "jobs:read"},
        {"jobs:write"},
    ):
        caller = Caller(team_id=scope.team_id, scopes=held)
        for attempt in (
            erase.erase_event(mem.deps, caller, event.id),
            erase.erase_session(mem.deps, caller, session.id),
            erase.erase_project(mem.deps, caller, scope.project_id),
        ):
            with pytest.raises(Forbidden) as refused:
                await attempt
            # The refusal every missing scope gets, naming the scopes that would do.
            assert refused.value.message == expected
    assert await mem.get_event(scope, event.id) == event
    # A key holding it, through the key lookup as a server would.
    issued = await mem.create_api_key(
        team_id=scope.team_id, project_id=scope.project_id, scopes=["erase"]
    )
    caller = await mem.verify_api_key(issued.raw_key)
    done = await erase.erase_event(mem.deps, caller, event.id)
    assert done.removed.events == 1
    for held in ({"admin"}, {"memories:admin"}, {"*"}):
        other = (await _ingest(mem, scope, f"seal{len(held)}{sorted(held)[0][0]}")).event
        caller = Caller(team_id=scope.team_id, scopes=held)
        assert (await erase.erase_event(mem.deps, caller, other.id)).removed.events == 1
    # Scope of the tenant: another project's key, another team: "not found".
    _, elsewhere = await mem.ensure_project("acme", "elsewhere")
    foreign = Caller(team_id=scope.team_id, project_id=elsewhere.id, scopes={"erase"})
    with pytest.raises(NotFound, match="Session not found"):
        await erase.erase_session(mem.deps, foreign, session.id)
    with pytest.raises(NotFound, match="Project not found"):
        await erase.erase_project(mem.deps, foreign, scope.project_id)
    with pytest.raises(NotFound, match="Event not found"):
        await erase.erase_event(mem.deps, Caller(team_id="other-team"), event.id)


async def test_erase_event_removes_what_was_made_from_it(mem: Memory, scope: Scope) -> None:
    session = (await mem.start_session(scope, external_session_id="s")).session
    gone = await _ingest(mem, scope, "narwhal", session_id=session.id)
    kept = await _ingest(mem, scope, "okapi", session_id=session.id)
    await mem.drain()
    await mem.end_session(scope, session.id)
    await mem.drain()
    summaries = await mem.recent(scope, kind="summary")
    assert len(summaries) == 1 and "narwhal" in summaries[0].content
    assert await _found(mem, scope, "narwhal")
    result = await mem.erase_event(scope, gone.event.id)
    assert result.kind == "event" and result.id == gone.event.id
    # Its observation and the session's summary (made from every event of the session).
    assert result.counts["events"] == 1 and result.counts["observations"] == 2
    assert result.counts["jobs"] == 1 and result.counts["passages"] >= 2
    assert await _found(mem, scope, "narwhal") == []
    assert await mem.recent(scope, kind="summary") == []
    assert len(await _found(mem, scope, "okapi")) == 1
    with pytest.raises(NotFound):
        await mem.get_event(scope, gone.event.id)
    assert gone.job is not None
    with pytest.raises(NotFound):
        await mem.get_job(scope, gone.job.id)
    assert "narwhal" not in await _dump(mem, scope)
    assert (await mem.get_event(scope, kept.event.id)).id == kept.event.id


async def test_a_replay_of_an_erased_event_is_refused(mem: Memory, scope: Scope) -> None:
    first = await _ingest(mem, scope, "dugong")
    await mem.drain()
    await mem.erase_event(scope, first.event.id)
    # Single events (group commit), batches, the ordinary path: all refused, nothing kept.
    with pytest.raises(Gone) as refused:
        await _ingest(mem, scope, "dugong")
    assert refused.value.source_event_id == _source_id("dugong") and refused.value.index is None
    item = EventInput(
        project_id=scope.project_id,
        source_adapter="api",
        event_type="tool_use",
        occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
        source_event_id=_source_id("dugong"),
        payload={"different": "payload, same id"},
    )
    fresh = EventInput(
        project_id=scope.project_id,
        source_adapter="api",
        event_type="tool_use",
        occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
        source_event_id="client-fresh",
        payload={"x": 1},
    )
    with pytest.raises(Gone) as in_batch:
        await mem.ingest_batch(scope, [fresh, item])
    assert in_batch.value.index == 1
    caller = Caller.embedded(scope.team_id, project_id=scope.project_id)
    with pytest.raises(Gone):
        await ingest.ingest_event(mem.deps, caller, item)
    async with mem.storage.unit_of_work() as uow:
        listed, total = await uow.jobs.list(
            _filter(scope), Page(limit=10)
        )  # the batch rolled back whole: no job of "client-fresh"
    assert total == 0, listed
    # The same id from another source, or in another project, is another event.
    other = await mem.ingest(
        scope,
        event_type="tool_use",
        source="hook",
        source_event_id=_source_id("dugong"),
        payload={},
    )
    assert other.created
    team, elsewhere = await mem.ensure_project("acme", "elsewhere")
    there = Scope(team_id=team.id, project_id=elsewhere.id)
    assert (await _ingest(mem, there, "dugong")).created


def _filter(scope: Scope) -> Any:
    from claude_mem_core.ports.storage import JobFilter

    return JobFilter(team_id=scope.team_id, project_id=scope.project_id)


async def test_a_worker_generating_from_an_erased_event_stores_nothing(
    mem: Memory, scope: Scope, provider: HookedProvider
) -> None:
    queued = await _ingest(mem, scope, "manatee")
    assert queued.job is not None
    await mem.erase_event(scope, queued.event.id)  # its queued job goes with it
    with pytest.raises(NotFound):
        await mem.get_job(scope, queued.job.id)
    await mem.drain()  # its message is consumed and finds no job
    assert await mem.recent(scope) == []

    running = await _ingest(mem, scope, "axolotl")
    assert running.job is not None

    async def erase_it(request: GenerationRequest) -> None:
        await mem.erase_event(scope, running.event.id)

    provider.hook = erase_it
    result = await mem.generator.process(running.job.id)
    assert result.outcome == "lost_lease"  # the job row is gone: nothing written
    assert await _found(mem, scope, "axolotl") == []
    assert await mem.recent(scope) == []
    assert "axolotl" not in await _dump(mem, scope)


async def test_a_running_summary_goes_back_to_the_queue_and_forgets_the_event(
    mem: Memory, scope: Scope, provider: HookedProvider
) -> None:
    session = (await mem.start_session(scope, external_session_id="s")).session
    gone = await _ingest(mem, scope, "pangolin", session_id=session.id)
    await _ingest(mem, scope, "tapir", session_id=session.id)
    await mem.drain()
    ended = await mem.end_session(scope, session.id)
    assert ended.job is not None

    async def erase_meanwhile(request: GenerationRequest) -> None:
        assert "pangolin" in request.prompt  # the summary read the event before the erase
        done = await mem.erase_event(scope, gone.event.id)
        assert done.requeued_jobs == 1

    provider.purpose, provider.hook = "summary", erase_meanwhile
    result = await mem.generator.process(ended.job.id)
    assert result.outcome == "lost_lease"
    job = await mem.get_job(scope, ended.job.id)
    assert job.status is JobStatus.QUEUED
    assert await mem.recent(scope, kind="summary") == []
    await mem.drain()  # the summary again, from what is left
    (summary,) = await mem.recent(scope, kind="summary")
    assert summary.kind is ObservationKind.SUMMARY
    assert "tapir" in summary.content and "pangolin" not in summary.content
    assert "pangolin" not in await _dump(mem, scope)


async def test_erase_session_removes_its_events_and_memories(mem: Memory, scope: Scope) -> None:
    session = (await mem.start_session(scope, external_session_id="s")).session
    other = (await mem.start_session(scope, external_session_id="t")).session
    await _ingest(mem, scope, "gharial", session_id=session.id)
    await _ingest(mem, scope, "kinkajou", session_id=other.id)
    await mem.add_memory(scope, "the gharial memo", server_session_id=session.id)
    await mem.drain()
    await mem.end_session(scope, session.id)
    await mem.drain()
    result = await mem.erase_session(scope, session.id)
    assert result.counts["sessions"] == 1 and result.counts["events"] == 1
    # Its observation, its summary, the memory written into it.
    assert result.counts["observations"] == 3
    with pytest.raises(NotFound):
        await mem.get_session(scope, session.id)
    assert await _found(mem, scope, "gharial") == []
    assert len(await _found(mem, scope, "kinkajou")) == 1
    assert "gharial" not in await _dump(mem, scope)
    with pytest.raises(Gone):
        await _ingest(mem, scope, "gharial")


async def test_the_tombstone_says_who_what_when_and_how_much_but_no_content(
    mem: Memory, scope: Scope
) -> None:
    session = (await mem.start_session(scope, external_session_id="s")).session
    event = await _ingest(mem, scope, "quetzal", session_id=session.id)
    await _ingest(mem, scope, "caracal", session_id=session.id)
    await mem.drain()
    issued = await mem.create_api_key(team_id=scope.team_id, scopes=["erase"], name="ops")
    caller = await mem.verify_api_key(issued.raw_key)
    erased = await erase.erase_event(mem.deps, caller, event.event.id)
    await erase.erase_session(mem.deps, caller, session.id)
    async with mem.storage.unit_of_work() as uow:
        rows, _ = await uow.audit.list(scope.team_id, action="event.erased")
        (tombstone,) = rows
        (session_row,), _ = await uow.audit.list(scope.team_id, action="session.erased")
    assert tombstone.resource_type == "agent_event" and tombstone.resource_id == event.event.id
    assert tombstone.api_key_id == issued.key.id and tombstone.actor_id == caller.actor_id
    assert tombstone.project_id == scope.project_id
    assert tombstone.created_at == erased.erased_at
    assert tombstone.details["removed"] == erased.counts and tombstone.details["kind"] == "event"
    assert session_row.resource_id == session.id and session_row.details["removed"]["events"] == 1
    text = await _dump(mem, scope)
    assert "quetzal" not in text and "caracal" not in text


async def test_erasing_a_project_hides_it_at_once_then_purges_it(mem: Memory, scope: Scope) -> None:
    session = (await mem.start_session(scope, external_session_id="s")).session
    event = await _ingest(mem, scope, "vicuna", session_id=session.id)
    await _ingest(mem, scope, "ocelot")
    memo = await mem.add_memory(scope, "vicuna memo")
    await mem.drain()
    team, elsewhere = await mem.ensure_project("acme", "elsewhere")
    there = Scope(team_id=team.id, project_id=elsewhere.id)
    await _ingest(mem, there, "vicuna")
    await mem.drain()
    project_key = await mem.create_api_key(
        team_id=scope.team_id, project_id=scope.project_id, scopes=["memories:read"]
    )
    team_caller = Caller(team_id=scope.team_id, scopes={"*"})

    marked = await erase.erase_project(mem.deps, team_caller, scope.project_id, purge=False)
    assert marked.revoked_keys == 1 and not marked.complete
    # Missing to every read, refusing every write, before a row is purged.
    with pytest.raises(Forbidden):
        await mem.verify_api_key(project_key.raw_key)
    with pytest.raises(NotFound):
        await mem.get_event(scope, event.event.id)
    with pytest.raises(NotFound):
        await mem.get_session(scope, session.id)
    with pytest.raises(NotFound):
        await memories.get_memory(mem.deps, team_caller, memo.id)
    with pytest.raises(NotFound):
        await mem.recent(scope)
    assert await mem.search(scope, "vicuna") == []
    with pytest.raises(NotFound):
        await _ingest(mem, scope, "late")
    with pytest.raises(NotFound):
        await mem.add_memory(scope, "late memo")
    with pytest.raises(NotFound):
        await sessions.start_session(
            mem.deps, team_caller, sessions.SessionInput(project_id=scope.project_id)
        )
    projects, _ = await mem.list_projects(scope.team_id)
    assert scope.project_id not in {p.id for p in projects}

    partial = await erase.purge_project(
        mem.deps, scope.team_id, scope.project_id, batch_size=2, max_batches=2
    )
    assert not partial.complete and partial.removed.total > 0
    finished = await erase.purge_pending(mem.deps, batch_size=2)
    assert [f.complete for f in finished] == [True]
    assert await erase.purge_pending(mem.deps) == []
    async with mem.storage.unit_of_work() as uow:
        actions, _ = await uow.audit.list(scope.team_id, page=Page(limit=1000))
        left = await uow.observations.list(scope.team_id, scope.project_id, Page())
        events = await uow.events.list_for_session(
            scope.team_id, scope.project_id, session.id, limit=10
        )
    assert left == ([], 0) and list(events) == []
    assert {"project.erased", "project.purging", "project.purged"} <= {a.action for a in actions}
    assert len(await _found(mem, there, "vicuna")) == 1  # the other project is whole
    # The name can be used again: a new project.
    _, again = await mem.ensure_project("acme", "webapp")
    assert again.id != scope.project_id
    # Erasing it again (a purge cut short) finds nothing left to do.
    done = await mem.erase_project(scope)
    assert done.complete and done.removed.total == 0


class TestSqlStatistics:
    """What only the SQL schema keeps: the statistics written with the passages
    (``search_stats``, ``search_terms``) equal, after erases, those of the passages left."""

    @pytest.fixture(
        params=[
            pytest.param("sqlite", marks=pytest.mark.sqlite),
            pytest.param("postgres", marks=pytest.mark.postgres),
        ]
    )
    def backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    async def _exact(self, url: str) -> None:
        import sqlalchemy as sa

        from claude_mem_core.adapters.sqlalchemy import dialects, tables

        engine = dialects.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            async with engine.connect() as conn:
                passages = (await conn.execute(sa.select(tables.search_passages))).mappings()
                counted: dict[tuple[str, str], list[int]] = {}
                df: dict[tuple[str, str, str], int] = {}
                for p in passages.all():
                    scope = (p["team_id"], p["project_id"])
                    entry = counted.setdefault(scope, [0, 0])
                    entry[0] += 1
                    entry[1] += p["length"]
                    for term in p["tf"]:
                        df[(*scope, term)] = df.get((*scope, term), 0) + 1
                stats: dict[tuple[str, str], list[int]] = {}
                for r in (await conn.execute(sa.select(tables.search_stats))).mappings():
                    entry = stats.setdefault((r["team_id"], r["project_id"]), [0, 0])
                    entry[0] += r["passages"]
                    entry[1] += r["tokens"]
                terms: dict[tuple[str, str, str], int] = {}
                for r in (await conn.execute(sa.select(tables.search_terms))).mappings():
                    key = (r["team_id"], r["project_id"], r["term"])
                    terms[key] = terms.get(key, 0) + r["df"]
        finally:
            await engine.dispose()
        assert stats == counted
        assert terms == df

    async def test_statistics_stay_exact_through_erases(
        self, mem: Memory, scope: Scope, storage_url: str
    ) -> None:
        session = (await mem.start_session(scope, external_session_id="s")).session
        other = (await mem.start_session(scope, external_session_id="t")).session
        words = ["login redirect", "login cache", "cache worker", "redirect worker"]
        made = []
        for n, word in enumerate(words):
            where = session.id if n % 2 == 0 else other.id
            made.append(await _ingest(mem, scope, f"{word} w{n}", session_id=where))
        await mem.add_memory(scope, "login worker memo")
        await mem.drain()
        await mem.end_session(scope, session.id)
        await mem.drain()
        await self._exact(storage_url)
        await mem.erase_event(scope, made[1].event.id)
        await self._exact(storage_url)
        await mem.erase_session(scope, session.id)
        await self._exact(storage_url)
        await mem.erase_project(scope)
        await self._exact(storage_url)
