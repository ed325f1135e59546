"""A state machine over two teams and several projects: random writes and reads, and no
read may ever return another tenant's row. Runs on every storage backend."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from claude_mem_core import Caller, EventInput, Memory, Scope
from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.errors import NotFound
from claude_mem_core.services import ingest, jobs, memories, sessions
from claude_mem_core.testing.fakes import ScriptedProvider

WORDS = ["login", "redirect", "cache", "deploy", "schema", "token", "worker", "parser"]
_run = itertools.count()


def make_machine(url: str) -> type[RuleBasedStateMachine]:
    class Tenancy(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.runner = asyncio.Runner()
            self.mem = Memory(
                storage=storage_from_url(url),
                queue=InProcessQueue(),
                provider=ScriptedProvider(default="<skip_summary/>"),
            )
            run = next(_run)
            self.projects: list[tuple[str, str]] = []  # (team, project)
            self.owner: dict[str, tuple[str, str]] = {}  # row id -> (team, project)
            self.events: list[str] = []
            self.jobs: list[str] = []
            self.sessions: list[str] = []
            for t in range(2):
                team = self.call(self.mem.create_team(f"team-{run}-{t}"))
                for p in range(2):
                    project = self.call(self.mem.create_project(team.id, f"p{p}"))
                    self.projects.append((team.id, project.id))

        def call(self, coro: Any) -> Any:
            return self.runner.run(coro)

        def teardown(self) -> None:
            self.call(self.mem.close())
            self.runner.close()

        @staticmethod
        def caller(team: str, project: str | None = None) -> Caller:
            return Caller(team_id=team, project_id=project)

        @rule(where=st.integers(0, 3), word=st.sampled_from(WORDS), n=st.integers(0, 10**6))
        def ingest_event(self, where: int, word: str, n: int) -> None:
            team, project = self.projects[where]
            result = self.call(
                ingest.ingest_event(
                    self.mem.deps,
                    self.caller(team),
                    EventInput(
                        project_id=project,
                        source_adapter="api",
                        event_type=word,
                        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
                        payload={"n": n},
                    ),
                )
            )
            self.owner[result.event.id] = (team, project)
            self.events.append(result.event.id)
            self.owner[result.job.id] = (team, project)
            self.jobs.append(result.job.id)

        @rule(where=st.integers(0, 3), word=st.sampled_from(WORDS))
        def add_memory(self, where: int, word: str) -> None:
            team, project = self.projects[where]
            obs = self.call(
                memories.add_memory(
                    self.mem.deps,
                    self.caller(team),
                    memories.MemoryInput(project_id=project, content=f"{word} notes for {project}"),
                )
            )
            self.owner[obs.id] = (team, project)

        @rule(where=st.integers(0, 3), ext=st.sampled_from(["a", "b", "c"]))
        def start_session(self, where: int, ext: str) -> None:
            team, project = self.projects[where]
            started = self.call(
                sessions.start_session(
                    self.mem.deps,
                    self.caller(team),
                    sessions.SessionInput(project_id=project, external_session_id=ext),
                )
            )
            assert self.owner.setdefault(started.session.id, (team, project)) == (team, project)
            self.sessions.append(started.session.id)

        @rule(data=st.data(), who=st.integers(0, 3), project_key=st.booleans())
        def read_by_id(self, data: st.DataObject, who: int, project_key: bool) -> None:
            team, project = self.projects[who]
            caller = self.caller(team, project if project_key else None)
            kinds = [
                k
                for k, ids in (
                    ("event", self.events),
                    ("job", self.jobs),
                    ("session", self.sessions),
                )
                if ids
            ]
            if not kinds:
                return
            kind = data.draw(st.sampled_from(kinds))
            ids = {"event": self.events, "job": self.jobs, "session": self.sessions}[kind]
            row_id = data.draw(st.sampled_from(ids))
            getter = {
                "event": memories.get_event,
                "job": jobs.get_job,
                "session": sessions.get_session,
            }[kind]
            owner_team, owner_project = self.owner[row_id]
            visible = owner_team == team and (not project_key or owner_project == project)
            try:
                row = self.call(getter(self.mem.deps, caller, row_id))
            except NotFound:
                assert not visible, f"{kind} {row_id} hidden from its own tenant"
            else:
                assert visible, f"{kind} {row_id} leaked to team {team}"
                assert (row.team_id, row.project_id) == (owner_team, owner_project)

        def by_id(self, kind: str, op: str, scope: Scope, row_id: str) -> Any:
            """One of the library's by-id calls (``Memory``, a :class:`Scope` in hand)."""
            calls = {
                ("event", "get"): self.mem.get_event,
                ("job", "get"): self.mem.get_job,
                ("job", "events"): self.mem.job_events,
                ("job", "retry"): self.mem.retry_job,
                ("job", "cancel"): self.mem.cancel_job,
                ("session", "get"): self.mem.get_session,
                ("session", "end"): self.mem.end_session,
            }
            return self.call(calls[kind, op](scope, row_id))

        def not_found(self, kind: str, op: str, scope: Scope, row_id: str) -> str:
            try:
                self.by_id(kind, op, scope, row_id)
            except NotFound as missing:
                return missing.message
            raise AssertionError(f"{kind} {op} {row_id} found from {scope}")

        @rule(data=st.data(), who=st.integers(0, 3))
        def library_by_id(self, data: st.DataObject, who: int) -> None:
            """A library scope is team AND project: a sibling project's row (same team) is
            as missing as another team's or a never-seen id, with the very same message."""
            team, project = self.projects[who]
            scope = Scope(team_id=team, project_id=project)
            ids = {"event": self.events, "job": self.jobs, "session": self.sessions}
            kinds = [kind for kind, rows in ids.items() if rows]
            if not kinds:
                return
            kind = data.draw(st.sampled_from(kinds))
            row_id = data.draw(st.sampled_from(ids[kind]))
            owner = self.owner[row_id]
            mine = owner == (team, project)
            reads = ["get", "events"] if kind == "job" else ["get"]
            writes = {"job": ["retry", "cancel"], "session": ["end"]}.get(kind, [])
            # Writes only at rows outside the scope: they must change nothing.
            op = data.draw(st.sampled_from(reads if mine else reads + writes))
            if mine:
                row = self.by_id(kind, op, scope, row_id)
                if op == "get":
                    assert (row.team_id, row.project_id) == owner
                return
            owner_scope = Scope(team_id=owner[0], project_id=owner[1])
            before = self.by_id(kind, "get", owner_scope, row_id)
            missing = self.not_found(kind, op, scope, f"missing-{row_id}")
            assert self.not_found(kind, op, scope, row_id) == missing
            assert self.by_id(kind, "get", owner_scope, row_id) == before

        @rule(who=st.integers(0, 3), into=st.integers(0, 3), word=st.sampled_from(WORDS))
        def search(self, who: int, into: int, word: str) -> None:
            team, _ = self.projects[who]
            t_team, t_project = self.projects[into]
            try:
                found = self.call(
                    memories.search(
                        self.mem.deps, self.caller(team), project_id=t_project, query=word
                    )
                )
            except NotFound:
                assert t_team != team
                return
            assert t_team == team
            for result in found:
                obs = result.observation
                assert (obs.team_id, obs.project_id) == (team, t_project)
                assert self.owner[obs.id] == (team, t_project)

        @invariant()
        def job_lists_stay_in_team(self) -> None:
            for team, project in self.projects[::2]:
                page = self.call(jobs.list_jobs(self.mem.deps, self.caller(team), limit=200))
                assert all(j.team_id == team for j in page.jobs)
                mine = {j for j in self.jobs if self.owner[j][0] == team}
                assert {j.id for j in page.jobs} == mine
                del project

    return Tenancy


@pytest.mark.slow
def test_no_read_crosses_tenants(storage_url: str) -> None:
    machine = make_machine(storage_url)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=15,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
