"""A project erase cut short (marked deleted, rows not purged yet) is finished by the
upkeep of whoever generates: the worker's upkeep round and the embedded server's loop.

The worker is built from the environment (connecting to nothing) and given an in-memory
storage, so no Redis or database is needed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.config import Settings
from claude_mem_core.domain.models import Scope
from claude_mem_core.facade import Memory
from claude_mem_core.ports.storage import Page
from claude_mem_core.services import erase
from claude_mem_core.services.context import Caller
from claude_mem_worker.app import build_worker


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "CLAUDE_MEM_DATA_DIR": str(tmp_path),
        "CLAUDE_MEM_SERVER_DATABASE_URL": "memory://",
        "CLAUDE_MEM_QUEUE_ENGINE": "redis",
        "CLAUDE_MEM_REDIS_URL": "redis://127.0.0.1:6379/0",
        "CLAUDE_MEM_QUEUE_REDIS_PREFIX": "cm_erase_upkeep",
        "CLAUDE_MEM_DOCKER": "0",
    }


async def _project_erased_not_purged(memory: Memory) -> tuple[str, str]:
    team, project = await memory.ensure_project("acme", "webapp")
    scope = Scope(team_id=team.id, project_id=project.id)
    for n in range(3):
        await memory.ingest(
            scope, event_type="tool_use", payload={"n": n}, source_event_id=f"t-{n}"
        )
    marked = await erase.erase_project(
        memory.deps, Caller.embedded(team.id), project.id, purge=False
    )
    assert not marked.complete and marked.removed.total == 0
    return team.id, project.id


async def _pending(memory: Memory) -> list[tuple[str, str]]:
    async with memory.storage.unit_of_work() as uow:
        return list(await uow.erasure.projects_to_purge())


async def _purged_audit(memory: Memory, team: str) -> list[object]:
    async with memory.storage.unit_of_work() as uow:
        rows, _ = await uow.audit.list(team, action="project.purged", page=Page(limit=10))
    return list(rows)


async def test_the_worker_upkeep_round_finishes_a_purge_cut_short(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = _env(tmp_path)
    runtime = build_worker(Settings.from_env(env), env=env)
    memory = Memory(storage=storage_from_url("memory://"), queue=None, provider=OfflineProvider())
    runtime.memory = memory
    try:
        team, project = await _project_erased_not_purged(memory)
        assert await _pending(memory) == [(team, project)]

        with caplog.at_level(logging.INFO, logger="claude_mem.erase"):
            await runtime._upkeep_round()

        assert await _pending(memory) == []
        assert "erased project(s); 1 finished" in caplog.text
        assert len(await _purged_audit(memory, team)) == 1

        caplog.clear()
        with caplog.at_level(logging.INFO, logger="claude_mem.erase"):
            await runtime._upkeep_round()  # nothing left: nothing logged about purging
        assert "purged" not in caplog.text
    finally:
        await memory.close()


async def test_a_failing_purge_is_logged_and_left_for_the_next_round(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(tmp_path)
    runtime = build_worker(Settings.from_env(env), env=env)
    memory = Memory(storage=storage_from_url("memory://"), queue=None, provider=OfflineProvider())
    runtime.memory = memory
    try:

        async def down(*args: object, **kwargs: object) -> None:
            raise OSError("database unreachable")

        monkeypatch.setattr(erase, "purge_pending", down)
        with caplog.at_level(logging.WARNING, logger="claude_mem.upkeep"):
            await runtime._upkeep_round()
        assert "purging erased projects failed: OSError" in caplog.text
        assert runtime.counters.errors == 1
    finally:
        await memory.close()


async def test_a_purge_round_is_bounded_and_finishes_a_purge_cut_short() -> None:
    """What each upkeep round runs (the worker's, and the embedded server's loop)."""
    memory = Memory(storage=storage_from_url("memory://"), queue=None, provider=OfflineProvider())
    try:
        team, project = await _project_erased_not_purged(memory)

        first = await erase.continue_purges(
            memory.deps, max_batches=1
        )  # bounded: one batch a round
        assert first > 0 and await _pending(memory) == [(team, project)]
        while await _pending(memory):
            await erase.continue_purges(memory.deps, max_batches=1)

        assert len(await _purged_audit(memory, team)) == 1
        assert await erase.continue_purges(memory.deps) == 0
    finally:
        await memory.close()
