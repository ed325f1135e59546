"""Coalesced key lookups: concurrent requests with one key share a read, yet a revocation
is seen by every request that arrives after it. Runs on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from claude_mem_core import Memory
from claude_mem_core.errors import Forbidden
from claude_mem_core.ports.storage import Storage, UnitOfWork
from claude_mem_core.services.context import Deps
from claude_mem_core.services.key_lookup import CoalescedKeyLookup


class _Reads:
    """Counts the units of work the lookup opens, and can hold the next one at its start."""

    def __init__(self, storage: Storage) -> None:
        self.opened = 0
        self.hold: asyncio.Event | None = None
        self.held = asyncio.Event()
        self._storage = storage

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        self.opened += 1
        if self.hold is not None:
            hold, self.hold = self.hold, None
            self.held.set()
            await hold.wait()
        async with self._storage.unit_of_work() as uow:
            yield uow

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


async def _issued_key(mem: Memory) -> tuple[str, str]:
    team, project = await mem.ensure_project("acme", "webapp")
    issued = await mem.create_api_key(
        name="agent", team_id=team.id, project_id=project.id, scopes=["memories:write"]
    )
    return issued.raw_key, issued.key.id


async def test_concurrent_lookups_of_one_key_share_reads(mem: Memory) -> None:
    raw, key_id = await _issued_key(mem)
    reads = _Reads(mem.storage)
    lookup = CoalescedKeyLookup(Deps(storage=reads), record_use=False)  # type: ignore[arg-type]
    callers = await asyncio.gather(*(lookup.verify(raw, request_id=f"r{n}") for n in range(30)))
    assert {c.api_key_id for c in callers} == {key_id}
    assert [c.request_id for c in callers] == [f"r{n}" for n in range(30)]
    # All 30 arrived before the read was sent, so they share it.
    assert reads.opened == 1
    with pytest.raises(Forbidden):
        await lookup.verify("cm_not_a_key")
    with pytest.raises(Forbidden):
        await lookup.verify("")


async def test_a_revocation_is_seen_by_a_request_that_arrives_during_a_read(
    mem: Memory,
) -> None:
    raw, key_id = await _issued_key(mem)
    reads = _Reads(mem.storage)
    lookup = CoalescedKeyLookup(Deps(storage=reads), record_use=False)  # type: ignore[arg-type]
    gate = asyncio.Event()
    reads.hold = gate
    before = asyncio.create_task(lookup.verify(raw))
    await reads.held.wait()  # the first read is in flight, its statement not yet sent
    await mem.revoke_api_key(key_id)
    after = asyncio.create_task(lookup.verify(raw))
    await asyncio.sleep(0)
    gate.set()
    # The request that arrived after the revocation never shares the read in flight: it
    # gets a read of its own, and is refused.
    with pytest.raises(Forbidden):
        await after
    await asyncio.gather(before, return_exceptions=True)
    assert reads.opened == 2


async def test_a_failed_read_fails_its_requests_and_the_next_read_recovers(
    mem: Memory,
) -> None:
    raw, _ = await _issued_key(mem)
    failing = {"left": 1}
    storage = mem.storage

    class _Flaky:
        def unit_of_work(self) -> Any:
            if failing["left"]:
                failing["left"] -= 1
                raise ConnectionError("database went away")
            return storage.unit_of_work()

    lookup = CoalescedKeyLookup(Deps(storage=_Flaky()), record_use=False)  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await lookup.verify(raw)
    assert (await lookup.verify(raw)).team_id


async def test_a_known_key_is_not_read_again_until_forgotten(mem: Memory) -> None:
    raw, key_id = await _issued_key(mem)
    reads = _Reads(mem.storage)
    lookup = CoalescedKeyLookup(Deps(storage=reads), record_use=False)  # type: ignore[arg-type]
    first = await lookup.verify_known(raw, request_id="r1")
    second = await lookup.verify_known(raw, request_id="r2")
    assert (first.api_key_id, second.api_key_id, second.request_id) == (key_id, key_id, "r2")
    assert reads.opened == 1
    await lookup.verify(raw)  # the plain lookup always reads
    assert reads.opened == 2
    await mem.revoke_api_key(key_id)
    # Still known: the write's own statement is what refuses it (group commit tests).
    assert (await lookup.verify_known(raw)).api_key_id == key_id
    lookup.forget(key_id)
    with pytest.raises(Forbidden):
        await lookup.verify_known(raw)
    with pytest.raises(Forbidden):  # an unusable key is never kept
        await lookup.verify_known(raw)
    assert reads.opened == 4
