"""The library's by-id calls honour the whole scope, team AND project, on every backend.

A row of a sibling project (same team) must be indistinguishable from a missing one: the
same ``NotFound`` message, and nothing changed by a write that was refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from claude_mem_core import Memory, Scope
from claude_mem_core.domain.models import JobStatus
from claude_mem_core.errors import NotFound

MISSING = "00000000-0000-4000-8000-000000000000"

ById = Callable[[Memory, Scope, str], Awaitable[Any]]

EVENT_CALLS: dict[str, ById] = {"get_event": lambda m, s, i: m.get_event(s, i)}
JOB_CALLS: dict[str, ById] = {
    "get_job": lambda m, s, i: m.get_job(s, i),
    "job_events": lambda m, s, i: m.job_events(s, i),
    "retry_job": lambda m, s, i: m.retry_job(s, i),
    "cancel_job": lambda m, s, i: m.cancel_job(s, i),
}
SESSION_CALLS: dict[str, ById] = {
    "get_session": lambda m, s, i: m.get_session(s, i),
    "end_session": lambda m, s, i: m.end_session(s, i),
}


@pytest.fixture
async def scopes(mem: Memory) -> tuple[Scope, Scope]:
    """Two projects of one team: the owner's scope and its sibling's."""
    team, project = await mem.ensure_project("acme", "webapp")
    sibling = await mem.create_project(team.id, "api")
    return (
        Scope(team_id=team.id, project_id=project.id),
        Scope(team_id=team.id, project_id=sibling.id),
    )


async def not_found(call: Awaitable[Any]) -> str:
    with pytest.raises(NotFound) as caught:
        await call
    return caught.value.message


async def test_a_sibling_projects_rows_are_missing(
    mem: Memory, scopes: tuple[Scope, Scope]
) -> None:
    owner, sibling = scopes
    ingested = await mem.ingest(owner, event_type="tool_use", payload={"tool_name": "Read"})
    assert ingested.job is not None
    session = (await mem.start_session(owner, external_session_id="claude-1")).session
    log = [e.status_after for e in await mem.job_events(owner, ingested.job.id)]
    assert log
    rows: list[tuple[dict[str, ById], str]] = [
        (EVENT_CALLS, ingested.event.id),
        (JOB_CALLS, ingested.job.id),
        (SESSION_CALLS, session.id),
    ]
    for calls, row_id in rows:
        for name, call in calls.items():
            missing = await not_found(call(mem, sibling, MISSING))
            assert await not_found(call(mem, sibling, row_id)) == missing, name

    # The refused writes changed nothing; the owner still reads and acts on its rows.
    assert (await mem.get_session(owner, session.id)).ended_at is None
    job = await mem.get_job(owner, ingested.job.id)
    assert job.status is JobStatus.QUEUED
    assert (await mem.get_event(owner, ingested.event.id)).id == ingested.event.id
    assert [e.status_after for e in await mem.job_events(owner, job.id)] == log
    ended = await mem.end_session(owner, session.id)
    assert ended.session.ended_at is not None
    assert (await mem.cancel_job(owner, job.id)).job.status is JobStatus.CANCELLED


async def test_another_teams_scope_with_the_same_project_id_sees_nothing(
    mem: Memory, scopes: tuple[Scope, Scope]
) -> None:
    owner, _ = scopes
    other = await mem.create_team("globex")
    intruder = Scope(team_id=other.id, project_id=owner.project_id)
    ingested = await mem.ingest(owner, event_type="tool_use", payload={"n": 1})
    assert await not_found(mem.get_event(intruder, ingested.event.id)) == await not_found(
        mem.get_event(intruder, MISSING)
    )
