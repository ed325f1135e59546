"""Dedup and its generation path on every storage backend (see conftest): the storage
contract (``claude_mem_core.testing.dedup_contracts``), and two workers generating the same
fact from two events at once."""

from __future__ import annotations

import asyncio
from typing import Any

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.ports.storage import Storage
from claude_mem_core.services.generation import Generator
from claude_mem_core.testing.dedup_contracts import DedupContract


class TestDedup(DedupContract):
    """Runs the shipped dedup contract against every backend."""


READ = {"tool_name": "Read", "tool_input": {"file_path": "src/app.py"}, "tool_response": "ok"}


async def test_two_workers_generating_one_fact_store_one_observation(
    storage: Storage, backdoor: Any
) -> None:
    mem = Memory(storage=storage, queue=InProcessQueue(), provider=OfflineProvider())
    team, project = await mem.ensure_project("acme", "webapp")
    scope = Scope(team_id=team.id, project_id=project.id)
    jobs = []
    for n in range(2):
        ingested = await mem.ingest(
            scope, event_type="tool_use", payload=READ, source_event_id=f"read-{n}"
        )
        assert ingested.job is not None
        jobs.append(ingested.job)
    workers = [Generator(mem.deps, OfflineProvider(), worker_id=f"w{n}") for n in range(2)]
    results = await asyncio.gather(*(w.process(j.id) for w, j in zip(workers, jobs, strict=True)))
    assert [r.outcome for r in results] == ["completed", "completed"]
    [obs] = [r for r in await backdoor.rows("observations") if r["kind"] == "observation"]
    assert obs["occurrences"] == 2
    assert results[0].observation_ids == results[1].observation_ids == (obs["id"],)
    links = [r for r in await backdoor.rows("sources") if r["observation_id"] == obs["id"]]
    assert sorted(r["source_id"] for r in links) == sorted(j.agent_event_id for j in jobs)
    # The audit says what happened: one row made, one fact seen again.
    actions = sorted(
        r["action"]
        for r in await backdoor.rows("audit")
        if r["resource_id"] == obs["id"] and r["action"].startswith("observation.")
    )
    assert actions == ["observation.created", "observation.repeated"]
    # A memory with the same words is its own row: memories are stored as sent.
    for _ in range(2):
        await mem.add_memory(scope, title=obs["title"], content=obs["content"])
    memos = [r for r in await backdoor.rows("observations") if r["kind"] != "observation"]
    assert len(memos) == 2 and all(r["fingerprint"] is None for r in memos)
