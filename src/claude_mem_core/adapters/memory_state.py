"""The in-memory storage's shared state: its tables, the copy-on-write view a unit of work
writes through, the base of every repository, and the checks several repositories share."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from claude_mem_core.adapters.memory_budgets import BUDGET_TABLES
from claude_mem_core.domain.tenancy import TenantScope
from claude_mem_core.errors import NotFound
from claude_mem_core.ports.clock import Clock
from claude_mem_core.ports.storage import Page

T = TypeVar("T")


TABLES = (
    "teams",
    "projects",
    "api_keys",
    "sessions",
    "events",
    "jobs",
    "job_events",
    "observations",
    "sources",
    "passages",
    "audit",
    "vectors",
    # Erase (services/erase.py): project id -> (deleted at, purged at or None), and
    # "<team>\x00<project>\x00<idempotency key>" -> the erased event's ids.
    "deleted_projects",
    "erased_events",
    # The token ledger (services/usage.py): entry id -> LedgerEntry.
    "ledger",
    # Budgets and provider pauses (adapters/memory_budgets.py).
    *BUDGET_TABLES,
)


class Tables:
    """The committed state: one dict per table, keyed by id; and the clock that says
    whether a key has expired."""

    def __init__(self, clock: Clock) -> None:
        self.data: dict[str, dict[str, Any]] = {name: {} for name in TABLES}
        self.clock = clock
        # The change feed (adapters/memory_change_feed.py): (kind, team, project, row id)
        # per new event, observation and job status change, appended at commit, so an
        # entry's serial (its index + 1) is commit order; and who to wake after a commit.
        self.feed: list[tuple[str, str, str, str]] = []
        self.feed_at: list[datetime] = []  # when each entry was committed, for pruning
        self.feed_pruned = 0  # entries pruned from the front (kept as blanks: serials stay)
        self.on_commit: list[Callable[[], None]] = []


def is_deleted(tx: Tx, project_id: str) -> bool:
    """Whether the project is marked deleted (being erased): missing to every read."""
    return project_id in tx.read("deleted_projects")


def in_scope(row: Any, team_id: str | None, project_id: str | None = None) -> bool:
    """Whether a stored row (anything with ``team_id`` and ``project_id``) is visible in
    the scope of ``team_id`` (and ``project_id``): ``TenantScope.admits``, the one rule."""
    return TenantScope(team_id, project_id).admits(row.team_id, row.project_id)


def paged(rows: list[T], page: Page) -> tuple[list[T], int]:
    return rows[page.offset : page.offset + page.limit], len(rows)


class Tx:
    """Copy-on-write view of the tables for one unit of work."""

    def __init__(self, base: Tables) -> None:
        self._base = base
        self._written: dict[str, dict[str, Any]] = {}

    def now(self) -> datetime:
        return self._base.clock.now()

    def read(self, table: str) -> dict[str, Any]:
        return self._written.get(table, self._base.data[table])

    def write(self, table: str) -> dict[str, Any]:
        if table not in self._written:
            self._written[table] = dict(self._base.data[table])
        return self._written[table]

    def commit(self) -> None:
        entries = _feed_entries(self._base.data, self._written)
        self._base.data.update(self._written)
        if entries:
            self._base.feed.extend(entries)
            self._base.feed_at.extend([self._base.clock.now()] * len(entries))
            for wake in tuple(self._base.on_commit):
                wake()


def _feed_entries(
    before: dict[str, dict[str, Any]], written: dict[str, dict[str, Any]]
) -> list[tuple[str, str, str, str]]:
    """The change feed's entries of a commit: rows new to events, jobs and observations,
    and jobs whose status changed."""
    entries: list[tuple[str, str, str, str]] = []
    for table in ("events", "jobs", "observations"):
        rows = written.get(table)
        if rows is None:
            continue
        old = before[table]
        for row_id, row in rows.items():
            prior = old.get(row_id)
            if prior is not None and (table != "jobs" or prior.status is row.status):
                continue
            kind = {"events": "event", "jobs": "job"}.get(table) or (
                "summary" if row.kind == "summary" else "observation"
            )
            entries.append((kind, row.team_id, row.project_id, row_id))
    return entries


class Repo:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx


def require_project(tx: Tx, team_id: str, project_id: str) -> None:
    project = tx.read("projects").get(project_id)
    if project is None or project.team_id != team_id:
        raise NotFound("Project not found")


def require_session(tx: Tx, team_id: str, project_id: str, session_id: str | None) -> None:
    """A row's session (if any) must be of the row's own team and project."""
    if session_id is None:
        return
    session = tx.read("sessions").get(session_id)
    if session is None or (session.team_id, session.project_id) != (team_id, project_id):
        raise NotFound("Session not found")
