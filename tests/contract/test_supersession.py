"""Supersession on every storage backend (see conftest): the storage contract
(``claude_mem_core.testing.supersession_contracts``), and the generation path with the
offline provider: a file written twice leaves the newer observation current, search and
context put it first, erase and export/import keep the rule."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.memory import InMemoryStorage
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.domain import ranking
from claude_mem_core.ports.storage import Storage
from claude_mem_core.services.generation import Generator
from claude_mem_core.testing.supersession_contracts import SupersessionContract


class TestSupersession(SupersessionContract):
    """Runs the shipped supersession contract against every backend."""


def _write(n: int, path: str = "src/app.py") -> dict[str, Any]:
    return {
        "tool_name": "Write",
        "tool_input": {"file_path": path, "content": f"kestrel = {n}\n"},
        "tool_response": "ok",
    }


READ = {"tool_name": "Read", "tool_input": {"file_path": "src/app.py"}, "tool_response": "ok"}


async def _generated(mem: Memory, scope: Scope, payloads: list[dict[str, Any]]) -> list[str]:
    """Ingest each payload and generate its job, one after the other; the event ids."""
    events = []
    for n, payload in enumerate(payloads):
        ingested = await mem.ingest(
            scope, event_type="tool_use", payload=payload, source_event_id=f"e-{n}-{id(payload)}"
        )
        assert ingested.job is not None
        result = await Generator(mem.deps, OfflineProvider(), worker_id="w").process(
            ingested.job.id
        )
        assert result.outcome == "completed"
        events.append(ingested.event.id)
    return events


async def _memory(storage: Storage) -> tuple[Memory, Scope]:
    mem = Memory(storage=storage, queue=InProcessQueue(), provider=OfflineProvider())
    team, project = await mem.ensure_project("acme", "webapp")
    return mem, Scope(team_id=team.id, project_id=project.id)


def _generated_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((r for r in rows if r["kind"] == "observation"), key=lambda r: r["created_at"])


async def test_a_file_written_again_supersedes_the_older_observation(
    storage: Storage, backdoor: Any
) -> None:
    mem, scope = await _memory(storage)
    events = await _generated(mem, scope, [_write(1), READ, _write(2), READ, _write(3, "b.py")])
    rows = _generated_rows(await backdoor.rows("observations"))
    by_title: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_title.setdefault(r["title"], []).append(r)
    older, newer = by_title["Wrote src/app.py"]
    assert older["superseded_by"] == newer["id"] and older["superseded_at"] is not None
    assert older["subject"] == newer["subject"] is not None
    # Nothing else is superseded: the read (no file modified; stored once by dedup) and
    # the other file.
    assert [r["id"] for r in rows if r["superseded_by"] is not None] == [older["id"]]
    assert by_title["Wrote b.py"][0]["subject"] not in (None, newer["subject"])
    # Search: the current observation first; the older one still found, weighted.
    hits = await mem.search(scope, "kestrel app.py")
    ids = [h.observation.id for h in hits]
    assert ids.index(newer["id"]) < ids.index(older["id"])
    old_hit = next(h for h in hits if h.observation.id == older["id"])
    assert old_hit.observation.superseded_by == newer["id"]
    context = await mem.context(scope, "kestrel app.py")
    assert context.observations[0].id == newer["id"]
    # History: the older observation, whole, under its own event.
    async with storage.unit_of_work() as uow:
        linked = await uow.observations.list_for_source(
            scope.team_id, scope.project_id, "agent_event", events[0]
        )
    assert [(o.id, o.superseded_by) for o, _ in linked] == [(older["id"], newer["id"])]
    # Erasing the newer one's event: the older one is current again, at full weight.
    before = {h.observation.id: h.score for h in hits}
    await mem.erase_event(scope, events[2])
    [again] = [r for r in await backdoor.rows("observations") if r["id"] == older["id"]]
    assert (again["superseded_by"], again["superseded_at"]) == (None, None)
    after = {h.observation.id: h.score for h in await mem.search(scope, "kestrel app.py")}
    assert after[older["id"]] > before[older["id"]]
    assert ranking.SUPERSEDED_WEIGHT < 1.0


async def test_export_and_import_keep_superseded_observations_and_their_rank(
    storage: Storage,
) -> None:
    mem, scope = await _memory(storage)
    await _generated(mem, scope, [_write(1), _write(2), _write(3)])
    lines = [line async for line in mem.export_project(scope)]
    # Into another database (ids are kept), and back out.
    other, target = await _memory(InMemoryStorage())

    async def feed() -> Any:
        for line in lines:
            yield line

    await other.import_project(target, feed())
    again = [line async for line in other.export_project(target)]
    # The export names its project in the header only; the observations are the same.
    assert again[1:] == lines[1:]
    assert sum('"supersededBy":"' in line for line in lines) == 2
    original = [(h.observation.id, h.score) for h in await mem.search(scope, "kestrel")]
    imported = [(h.observation.id, h.score) for h in await other.search(target, "kestrel")]
    assert [i for i, _ in imported] == [i for i, _ in original]
    assert [s for _, s in imported] == pytest.approx([s for _, s in original], rel=1e-9)
    assert len({s for _, s in original}) == 2  # the current one, and two weighted alike


async def test_two_workers_writing_one_file_at_once_leave_one_current(
    storage: Storage, backdoor: Any
) -> None:
    mem, scope = await _memory(storage)
    jobs = []
    for n in range(4):
        ingested = await mem.ingest(
            scope, event_type="tool_use", payload=_write(n), source_event_id=f"w-{n}"
        )
        assert ingested.job is not None
        jobs.append(ingested.job)
    workers = [Generator(mem.deps, OfflineProvider(), worker_id=f"w{n}") for n in range(4)]
    results = await asyncio.gather(*(w.process(j.id) for w, j in zip(workers, jobs, strict=True)))
    assert [r.outcome for r in results] == ["completed"] * 4
    rows = _generated_rows(await backdoor.rows("observations"))
    assert len(rows) == 4
    current = [r for r in rows if r["superseded_by"] is None]
    newest = max(rows, key=lambda r: (r["created_at"], r["id"]))
    assert [r["id"] for r in current] == [newest["id"]]
