"""The upkeep both generating loops run: every step each round it is due, a failing step
logged and counted without stopping the others, periodic steps not run again before
their interval."""

from __future__ import annotations

import logging

import pytest

from claude_mem_core import Memory
from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.services import erase, retention, stream, upkeep


async def test_each_due_step_runs_and_a_failure_does_not_stop_the_others(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    async def purges(deps: object, **kw: object) -> int:
        ran.append("purges")
        raise OSError("database unreachable")

    async def sweep(deps: object) -> int:
        ran.append("sweep")
        return 0

    async def prune(deps: object) -> int:
        ran.append("prune")
        return 0

    monkeypatch.setattr(erase, "continue_purges", purges)
    monkeypatch.setattr(retention, "sweep_all", sweep)
    monkeypatch.setattr(stream, "prune_feed", prune)
    memory = Memory(storage=storage_from_url("memory://"), queue=None, provider=OfflineProvider())
    try:
        steps = upkeep.Upkeep(retention_every_s=3600, feed_prune_every_s=3600)
        with caplog.at_level(logging.WARNING, logger="claude_mem.upkeep"):
            assert await steps.run(memory.deps) == 1
        assert ran == ["purges", "sweep", "prune"]
        assert "purging erased projects failed: OSError" in caplog.text
        # Within their interval the periodic steps wait; the purges run every round.
        assert await steps.run(memory.deps) == 1
        assert ran == ["purges", "sweep", "prune", "purges"]
    finally:
        await memory.close()
