"""A state machine of ingest, generation (the offline provider), session ends and erases of
events, sessions and a project: whatever the order, no stored row, search hit, event or
observation listing, export line or live stream message holds anything of what was
erased, and a replay of an erased event is refused. Each event carries a word of its own,
so "its content" is "that word anywhere".

Runs on every storage backend (few examples: each step reads every stored row)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from claude_mem_core import Gone, Memory, NotFound, Scope
from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.memory import InMemoryStorage
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.ports.storage import Page

_run = itertools.count()
_LETTERS = "bcdfghjklm"


def marker(n: int) -> str:
    """A word no other event holds, which the tokenizer keeps whole (letters only)."""
    return "zq" + "".join(_LETTERS[int(d)] for d in str(n)) + "qx"


async def stored_text(mem: Memory, url: str) -> str:
    """Every stored row of every table, as text."""
    storage = mem.storage
    if isinstance(storage, InMemoryStorage):
        from claude_mem_core.adapters.memory import TABLES

        return repr([storage.peek(table) for table in TABLES])
    import sqlalchemy as sa

    from claude_mem_core.adapters.sqlalchemy import dialects, tables

    engine = dialects.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        async with engine.connect() as conn:
            found = []
            for table in tables.metadata.sorted_tables:
                rows = await conn.execute(sa.select(table))
                found.append(repr([tuple(r) for r in rows]))
        return "\n".join(found)
    finally:
        await engine.dispose()


def make_machine(url: str) -> type[RuleBasedStateMachine]:
    class Erasing(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.runner = asyncio.Runner()
            self.mem = Memory(
                storage=storage_from_url(url), queue=InProcessQueue(), provider=OfflineProvider()
            )
            run = next(_run)
            team, project = self.call(self.mem.ensure_project(f"team-{run}", "main"))
            _, side = self.call(self.mem.ensure_project(f"team-{run}", "side"))
            self.scope = Scope(team_id=team.id, project_id=project.id)
            self.side = Scope(team_id=team.id, project_id=side.id)
            self.side_erased = False
            self.n = itertools.count(run * 1000)
            self.sessions: list[str] = []
            self.live: dict[str, tuple[str, Scope, str | None]] = {}  # event -> word, where
            self.sources: dict[str, str] = {}  # event -> its source event id
            self.erased_words: set[str] = set()
            self.erased_sources: list[tuple[Scope, str]] = []
            self.drained: set[str] = set()  # events whose generation ran

        def call(self, coro: Any) -> Any:
            return self.runner.run(coro)

        def teardown(self) -> None:
            self.call(self.mem.close())
            self.runner.close()

        def _add(
            self, where: Scope, session: str | None, with_source: bool
        ) -> tuple[str, str] | None:
            """Ingest an event about a word of its own; its id and word (None: refused)."""
            n = next(self.n)
            word = marker(n)
            source = f"client-{n}" if with_source else None
            try:
                result = self.call(
                    self.mem.ingest(
                        where,
                        event_type="tool_use",
                        session_id=session,
                        source_event_id=source,
                        payload={
                            "tool_name": "Bash",
                            "tool_input": {"command": f"grep -rn {word} src"},
                            "tool_response": f"src/app.py:{n}: {word} found",
                        },
                    )
                )
            except NotFound:
                assert where == self.side and self.side_erased
                return None
            assert not (where == self.side and self.side_erased)
            self.live[result.event.id] = (word, where, session)
            if source is not None:
                self.sources[result.event.id] = source
            return result.event.id, word

        @rule(with_source=st.booleans(), side=st.booleans(), now=st.booleans())
        def ingest(self, with_source: bool, side: bool, now: bool) -> None:
            """An event outside any session, generated at once (``now``) or left queued."""
            self._add(self.side if side else self.scope, None, with_source)
            if now:
                self.generate()

        @rule(events=st.integers(1, 3), with_source=st.booleans(), end=st.booleans())
        def session(self, events: int, with_source: bool, end: bool) -> None:
            """A session of a few events, generated; ended (and summarized) when ``end``."""
            started = self.call(
                self.mem.start_session(self.scope, external_session_id=f"s{next(self.n)}")
            )
            session = started.session.id
            self.sessions.append(session)
            for _ in range(events):
                self._add(self.scope, session, with_source)
            self.generate()
            if end:
                self.call(self.mem.end_session(self.scope, session))
                self.generate()

        @precondition(lambda self: bool(self.sessions))
        @rule(data=st.data(), now=st.booleans())
        def ingest_into_session(self, data: st.DataObject, now: bool) -> None:
            """One more event in a session (maybe after it ended)."""
            self._add(self.scope, data.draw(st.sampled_from(self.sessions)), True)
            if now:
                self.generate()

        @rule()
        def generate(self) -> None:
            self.call(self.mem.drain())
            self.drained.update(self.live)

        def _forget(self, event_id: str) -> None:
            word, where, _ = self.live.pop(event_id)
            self.erased_words.add(word)
            source = self.sources.pop(event_id, None)
            if source is not None:
                self.erased_sources.append((where, source))

        @precondition(lambda self: any(w == self.scope for _, w, _ in self.live.values()))
        @rule(data=st.data())
        def erase_event(self, data: st.DataObject) -> None:
            mine = sorted(e for e, (_, w, _) in self.live.items() if w == self.scope)
            event_id = data.draw(st.sampled_from(mine))
            result = self.call(self.mem.erase_event(self.scope, event_id))
            assert result.removed.events == 1
            self._forget(event_id)

        @precondition(lambda self: bool(self.sessions))
        @rule(data=st.data())
        def erase_session(self, data: st.DataObject) -> None:
            session = data.draw(st.sampled_from(self.sessions))
            in_it = [e for e, (_, _, s) in self.live.items() if s == session]
            result = self.call(self.mem.erase_session(self.scope, session))
            assert result.removed.sessions == 1 and result.removed.events == len(in_it)
            self.sessions.remove(session)
            for event_id in in_it:
                self._forget(event_id)

        @precondition(lambda self: not self.side_erased)
        @rule(batch=st.integers(1, 4))
        def erase_side_project(self, batch: int) -> None:
            result = self.call(self.mem.erase_project(self.side, batch_size=batch))
            assert result.complete
            self.side_erased = True
            for event_id in [e for e, (_, w, _) in self.live.items() if w == self.side]:
                self._forget(event_id)

        @precondition(lambda self: bool(self.erased_sources))
        @rule(data=st.data())
        def replay_an_erased_event(self, data: st.DataObject) -> None:
            where, source = data.draw(st.sampled_from(self.erased_sources))
            with pytest.raises((Gone, NotFound)) as refused:
                self.call(
                    self.mem.ingest(
                        where, event_type="tool_use", source_event_id=source, payload={"again": 1}
                    )
                )
            # A project being erased is missing altogether; otherwise the event is gone.
            assert isinstance(refused.value, Gone) == (where == self.scope)

        @invariant()
        def nothing_erased_is_left(self) -> None:
            if not self.erased_words:
                return
            text = self.call(stored_text(self.mem, url))
            assert not [w for w in self.erased_words if w in text]
            recent = self.call(self.mem.recent(self.scope, limit=100))
            listed = " ".join(o.content for o in recent)
            for session in self.sessions:
                events = self.call(self._session_events(session))
                listed += " " + repr(events)
            assert not [w for w in self.erased_words if w in listed]
            for word in sorted(self.erased_words)[-3:]:
                assert self.call(self.mem.search(self.scope, word)) == []
            # Nor is anything of it in an export of the project, or in what the live
            # stream sends (the change feed's rows as it reads them).
            exported = self.call(self._export())
            assert not [w for w in self.erased_words if w in exported]
            streamed = self.call(self._streamed())
            assert not [w for w in self.erased_words if w in streamed]

        async def _export(self) -> str:
            return "".join([line async for line in self.mem.export_project(self.scope)])

        async def _streamed(self) -> str:
            from claude_mem_core.ports.change_feed import START

            feed = self.mem.storage.change_feed()
            sent: list[str] = []
            after = START
            while page := await feed.read(after, team_id=self.scope.team_id, limit=200):
                sent.extend(repr(c.record) for c in page if c.record is not None)
                after = page[-1].position
            return "\n".join(sent)

        async def _session_events(self, session: str) -> list[Any]:
            async with self.mem.storage.unit_of_work() as uow:
                return list(
                    await uow.events.list_for_session(
                        self.scope.team_id, self.scope.project_id, session
                    )
                )

        @invariant()
        def what_is_left_is_still_found(self) -> None:
            for event_id, (word, where, _) in list(self.live.items())[-3:]:
                assert self.call(self.mem.get_event(where, event_id)).id == event_id
                if event_id in self.drained:
                    assert self.call(self.mem.search(where, word)), word
            async_recent = self.call(self.mem.recent(self.scope, limit=100))
            del async_recent
            page, _ = self.call(self._observations())
            assert all(o.project_id == self.scope.project_id for o in page)

        async def _observations(self) -> Any:
            async with self.mem.storage.unit_of_work() as uow:
                return await uow.observations.list(
                    self.scope.team_id, self.scope.project_id, Page(limit=500)
                )

    return Erasing


@pytest.mark.slow
def test_nothing_erased_comes_back(storage_url: str, backend: str) -> None:
    examples = {"memory": 40, "sqlite": 10, "postgres": 5}[backend]
    run_state_machine_as_test(
        make_machine(storage_url),
        settings=settings(
            max_examples=examples,
            stateful_step_count=16,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
