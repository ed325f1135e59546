"""The change feed of the in-memory storage: the entries its commits append
(``Tables.feed``), read with the rows as they are now."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime

from claude_mem_core.adapters.memory_state import Tables
from claude_mem_core.domain.tenancy import TenantScope
from claude_mem_core.ports.change_feed import Change, ChangeKind, FeedPosition, Record

_TABLE_OF = {
    ChangeKind.EVENT: "events",
    ChangeKind.OBSERVATION: "observations",
    ChangeKind.SUMMARY: "observations",
    ChangeKind.JOB: "jobs",
}


_PRUNED = ("", "", "", "")  # an entry pruned: its place kept, so serials do not move


class InMemoryChangeFeed:
    """One writer at a time (the storage's lock), so an entry's serial is commit order;
    ``txid`` is always 0."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def head(self) -> FeedPosition:
        return FeedPosition(0, len(self._tables.feed))

    async def read(
        self,
        after: FeedPosition,
        *,
        team_id: str | None = None,
        project_id: str | None = None,
        kinds: Collection[ChangeKind] | None = None,
        limit: int = 100,
    ) -> Sequence[Change]:
        # A cursor of another backend (txid > 0) is read as its serial: a position past
        # this feed's end finds nothing, as it would in the database it came from.
        changes: list[Change] = []
        scope = TenantScope(team_id, project_id)
        feed = self._tables.feed
        for index in range(max(after.serial, self._tables.feed_pruned), len(feed)):
            kind_name, team, project, row_id = feed[index]
            kind = ChangeKind(kind_name)
            if not scope.admits(team, project):
                continue
            if kinds is not None and kind not in kinds:
                continue
            changes.append(
                Change(
                    position=FeedPosition(0, index + 1),
                    kind=kind,
                    team_id=team,
                    project_id=project,
                    row_id=row_id,
                    record=self._load(kind, team, project, row_id),
                )
            )
            if len(changes) >= limit:
                break
        return changes

    async def prune(self, *, before: datetime, limit: int = 10_000) -> int:
        tables = self._tables
        start = tables.feed_pruned
        end = start
        while end < len(tables.feed) and end - start < limit and tables.feed_at[end] < before:
            tables.feed[end] = _PRUNED
            end += 1
        tables.feed_pruned = end
        return end - start

    async def horizon(self) -> FeedPosition:
        return FeedPosition(0, self._tables.feed_pruned)

    def _load(self, kind: ChangeKind, team_id: str, project_id: str, row_id: str) -> Record | None:
        data = self._tables.data
        if project_id in data["deleted_projects"]:
            return None
        row: Record | None = data[_TABLE_OF[kind]].get(row_id)
        if row is None or (row.team_id, row.project_id) != (team_id, project_id):
            return None
        return row

    def on_commit(self, wake: Callable[[], None]) -> Callable[[], None]:
        listeners = self._tables.on_commit
        listeners.append(wake)

        def unsubscribe() -> None:
            if wake in listeners:
                listeners.remove(wake)

        return unsubscribe
