"""In-memory storage: contract-complete, for embedders' tests and ``memory://`` URLs.

One lock serialises units of work (so transactions are trivially isolated), and each unit of
work copies a table the first time it writes to it, so an exception rolls everything back.
The state and the repositories live in the ``memory_*`` modules beside this one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from claude_mem_core.adapters.memory_budgets import (
    MemoryBudgets,
    MemoryProviderPauses,
    MemoryProviderRates,
)
from claude_mem_core.adapters.memory_change_feed import InMemoryChangeFeed
from claude_mem_core.adapters.memory_erasure import MemoryErasure, erased_key
from claude_mem_core.adapters.memory_events import MemoryEvents, MemorySessions
from claude_mem_core.adapters.memory_exports import MemoryExportReads
from claude_mem_core.adapters.memory_jobs import MemoryJobEvents, MemoryJobs
from claude_mem_core.adapters.memory_ledger import MemoryLedger
from claude_mem_core.adapters.memory_observations import (
    MemoryAudit,
    MemoryObservations,
    MemorySources,
)
from claude_mem_core.adapters.memory_search import MemorySearchIndex, MemorySearchVectors
from claude_mem_core.adapters.memory_state import (
    TABLES,
    Tables,
    Tx,
    is_deleted,
    require_project,
    require_session,
)
from claude_mem_core.adapters.memory_tenancy import MemoryApiKeys, MemoryProjects, MemoryTeams
from claude_mem_core.domain.redaction import PROJECT_SETTING
from claude_mem_core.errors import NotFound
from claude_mem_core.ports.change_feed import ChangeFeed
from claude_mem_core.ports.clock import Clock, SystemClock
from claude_mem_core.ports.storage import FreshEvent, FreshMemory

# TABLES stays importable from here: tests walk every table by these names.
__all__ = ["TABLES", "InMemoryStorage", "InMemoryUnitOfWork"]


class InMemoryUnitOfWork:
    def __init__(self, tx: Tx) -> None:
        self.teams = MemoryTeams(tx)
        self.projects = MemoryProjects(tx)
        self.api_keys = MemoryApiKeys(tx)
        self.sessions = MemorySessions(tx)
        self.events = MemoryEvents(tx)
        self.jobs = MemoryJobs(tx)
        self.job_events = MemoryJobEvents(tx)
        self.observations = MemoryObservations(tx)
        self.sources = MemorySources(tx)
        self.search = MemorySearchIndex(tx)
        self.audit = MemoryAudit(tx)
        self.vectors = MemorySearchVectors(tx)
        self.erasure = MemoryErasure(tx)
        self.exports = MemoryExportReads(tx)
        self.ledger = MemoryLedger(tx)
        self.budgets = MemoryBudgets(tx)
        self.provider_pauses = MemoryProviderPauses(tx)
        self.provider_rates = MemoryProviderRates(tx)


class InMemoryStorage:
    """Storage held in this process's memory; gone when the process ends."""

    name = "memory"

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._tables = Tables(clock or SystemClock())
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[InMemoryUnitOfWork]:
        async with self._lock:
            tx = Tx(self._tables)
            yield InMemoryUnitOfWork(tx)
            tx.commit()

    async def add_fresh_events(self, items: Sequence[FreshEvent]) -> set[str]:
        written: set[str] = set()
        async with self.unit_of_work() as uow:
            tx = uow.events._tx
            stored = {e.idempotency_key for e in tx.read("events").values()}
            for item in items:
                event = item.event
                if event.idempotency_key in stored:
                    continue
                try:  # out of scope: left out, not refused
                    require_project(tx, event.team_id, event.project_id)
                    require_session(tx, event.team_id, event.project_id, event.server_session_id)
                except NotFound:
                    continue
                if PROJECT_SETTING in tx.read("projects")[event.project_id].metadata:
                    continue  # built with the server's settings, not the project's own
                if is_deleted(tx, event.project_id) or erased_key(tx, event):
                    continue  # being erased, or an erased event's key
                if item.key_id is not None:
                    key = tx.read("api_keys").get(item.key_id)
                    if key is None or not key.is_usable(tx.now()):
                        continue
                stored.add(event.idempotency_key)
                await uow.events.add(event)
                if item.job is not None:
                    await uow.jobs.add(item.job)
                if item.job_event is not None:
                    await uow.job_events.add(item.job_event)
                await uow.audit.add(item.audit)
                written.add(event.id)
        return written

    async def add_fresh_memories(self, items: Sequence[FreshMemory]) -> set[str]:
        written: set[str] = set()
        async with self.unit_of_work() as uow:
            tx = uow.observations._tx
            for item in items:
                o = item.observation
                try:  # out of scope: left out, not refused
                    require_project(tx, o.team_id, o.project_id)
                    require_session(tx, o.team_id, o.project_id, o.server_session_id)
                except NotFound:
                    continue
                if is_deleted(tx, o.project_id):
                    continue
                if item.key_id is not None:
                    key = tx.read("api_keys").get(item.key_id)
                    if key is None or not key.is_usable(tx.now()):
                        continue
                await uow.observations.add(o)
                await uow.sources.add(item.source)
                await uow.search.add(item.passages)
                await uow.audit.add(item.audit)
                written.add(o.id)
        return written

    def change_feed(self) -> ChangeFeed:
        return InMemoryChangeFeed(self._tables)

    def peek(self, table: str) -> dict[str, Any]:
        """Backdoor for contract tests: the committed rows of one table, by id."""
        return dict(self._tables.data[table])

    def poke(self, table: str, row: Any, key: Callable[[Any], str] = lambda r: r.id) -> None:
        """Backdoor for contract tests: write a committed row directly."""
        self._tables.data[table][key(row)] = row

    async def check_schema(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
