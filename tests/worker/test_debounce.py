"""Debounce coalescing (``services/debounce.py``) in-process: fast, no services needed.

The events of one session that wait when the debounce window closes become one provider
call; every job still ends ``completed``, the coalesced ones pointing at the lead job.
"""

from __future__ import annotations

from typing import Any

import pytest

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.memory import InMemoryStorage
from claude_mem_core.domain.models import JobStatus
from claude_mem_core.errors import ProviderError
from claude_mem_core.services import debounce
from claude_mem_core.services.context import PipelineOptions
from claude_mem_core.testing.fakes import ScriptedProvider

OBSERVATION = """<observation>
  <type>change</type>
  <title>Edited the redirect check</title>
  <narrative>Three edits to the auth middleware.</narrative>
</observation>"""


class Clock:
    now = 1000.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(clock: Clock) -> InProcessQueue:
    return InProcessQueue(monotonic=lambda: clock.now)


async def _setup(
    queue: InProcessQueue, provider: ScriptedProvider, policy: str = "debounce"
) -> tuple[Memory, Scope, debounce.SessionBatcher]:
    mem = Memory(
        storage=InMemoryStorage(),
        queue=queue,
        provider=provider,
        options=PipelineOptions(session_policy=policy, debounce_seconds=5.0),
    )
    team, project = await mem.ensure_project("acme", "webapp")
    return (
        mem,
        Scope(team_id=team.id, project_id=project.id),
        debounce.SessionBatcher(mem.generator),
    )


async def _events(mem: Memory, scope: Scope, session_id: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        got = await mem.ingest(
            scope,
            event_type="tool_use",
            session_id=session_id,
            payload={"tool_name": "Edit", "tool_input": {"file_path": f"auth/m{i}.py"}},
        )
        assert got.job is not None
        ids.append(got.job.id)
    return ids


async def test_publish_debounced_sends_one_message_per_session_and_restarts_the_window(
    queue: InProcessQueue, clock: Clock
) -> None:
    provider = ScriptedProvider(default=OBSERVATION)
    mem, scope, batcher = await _setup(queue, provider)
    session = (await mem.start_session(scope, external_session_id="s")).session
    job_ids = await _events(mem, scope, session.id, 3)
    queue._waiting.clear()  # drop what today's outbox published; publish the debounced way
    jobs = [await mem.get_job(scope, j) for j in job_ids]
    outcome = await debounce.publish_debounced(mem.deps, jobs[:2])
    clock.now += 4
    outcome |= await debounce.publish_debounced(mem.deps, jobs[2:])  # restarts the window
    assert set(outcome.values()) == {"enqueued"}
    assert (await queue.depth()) == {"server_beta_generate_event": 1}
    clock.now += 4  # 8 s after the first event, 4 s after the last: still waiting
    assert await queue.consume(batcher.handle) == 0
    clock.now += 1.5
    assert await queue.consume(batcher.handle) == 1
    assert len(provider.requests) == 1
    assert [(await mem.get_job(scope, j)).status for j in job_ids] == [JobStatus.COMPLETED] * 3


async def test_a_debounced_session_is_one_provider_call_with_every_event(
    queue: InProcessQueue, clock: Clock
) -> None:
    provider = ScriptedProvider(default=OBSERVATION)
    mem, scope, batcher = await _setup(queue, provider)
    session = (await mem.start_session(scope, external_session_id="s")).session
    job_ids = await _events(mem, scope, session.id, 3)
    clock.now += 6
    await queue.consume(batcher.handle)
    assert len(provider.requests) == 1
    assert all(f"auth/m{i}.py" in provider.requests[0].prompt for i in range(3))
    jobs = [await mem.get_job(scope, j) for j in job_ids]
    assert [j.status for j in jobs] == [JobStatus.COMPLETED] * 3
    last = {j: (await mem.job_events(scope, j))[-1].details for j in job_ids}
    [lead] = [j for j in job_ids if "coalescedInto" not in last[j]]
    assert all(last[j]["coalescedInto"] == lead for j in job_ids if j != lead)
    lead_events = await mem.job_events(scope, lead)
    assert [e.event_type.value for e in lead_events] == ["queued", "processing", "completed"]
    hits = await mem.search(scope, "redirect check")
    assert len(hits) == 1 and hits[0].observation.created_by_job_id == lead


async def test_a_failed_batch_call_schedules_a_retry_for_every_job(
    queue: InProcessQueue, clock: Clock
) -> None:
    provider = ScriptedProvider(
        [ProviderError("overloaded", kind="transient")], default=OBSERVATION
    )
    mem, scope, batcher = await _setup(queue, provider)
    session = (await mem.start_session(scope, external_session_id="s")).session
    job_ids = await _events(mem, scope, session.id, 2)
    clock.now += 6
    await queue.consume(batcher.handle)
    jobs = [await mem.get_job(scope, j) for j in job_ids]
    assert [j.status for j in jobs] == [JobStatus.QUEUED] * 2
    assert all(j.last_error and j.last_error["classification"] == "transient" for j in jobs)


@pytest.mark.parametrize("policy", ["per-event", "end-of-session"])
async def test_other_policies_pass_straight_to_the_generator(
    queue: InProcessQueue, clock: Clock, policy: str
) -> None:
    provider = ScriptedProvider(default=OBSERVATION)
    mem, scope, batcher = await _setup(queue, provider, policy)
    job_ids = await _events(mem, scope, "", 0)
    got = await mem.ingest(scope, event_type="tool_use", payload={"tool_name": "Read"})
    assert got.job is not None
    message: Any = debounce.session_message(got.job)
    results = await batcher.process(message)
    assert [r.outcome for r in results] == ["completed"]
    assert job_ids == []
