"""The change feed port: what was committed, in an order a reader can resume from.

Storage appends one entry per new event, new observation (``summary`` for a session
summary) and job status change, in the transaction that writes the row, so an entry exists
exactly when its row committed. An entry is a reference (kind, id, team, project), never
content: a reader loads the row as it is when it reads, and a row erased since is left out
(its entry is still passed, so the reader's position moves on).

Positions are totally ordered and a reader never finds a new entry behind one it has
passed: an adapter returns an entry only once no transaction that could still commit an
earlier one is running (on PostgreSQL, entries of transactions below the oldest running
one; on SQLite and in memory, writers commit one at a time and their serial is commit
order). So "everything after position P" read now and again later never skips anything.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Protocol

from attrs import frozen

from claude_mem_core.domain.models import AgentEvent, GenerationJob, Observation
from claude_mem_core.errors import InvalidInput


class ChangeKind(enum.StrEnum):
    EVENT = "event"
    OBSERVATION = "observation"
    SUMMARY = "summary"
    JOB = "job"


ALL_KINDS = frozenset(ChangeKind)

_CURSOR = re.compile(r"([0-9]{1,19})-([0-9]{1,19})")
_MAX = 2**63 - 1


@frozen(order=True)
class FeedPosition:
    """Where a reader is: ``txid`` (PostgreSQL's transaction id of the entry; 0 where the
    serial alone is commit order) then ``serial``. Compared as that pair."""

    txid: int
    serial: int

    def encode(self) -> str:
        return f"{self.txid}-{self.serial}"

    @classmethod
    def decode(cls, text: str, *, field: str) -> FeedPosition:
        """A cursor as :meth:`encode` writes it; ``InvalidInput`` naming ``field`` if not."""
        match = _CURSOR.fullmatch(text.strip())
        if match is None or int(match.group(1)) > _MAX or int(match.group(2)) > _MAX:
            raise InvalidInput.field(field, "must be a cursor this stream sent (an id: line)")
        return cls(int(match.group(1)), int(match.group(2)))


START = FeedPosition(0, 0)

Record = AgentEvent | Observation | GenerationJob


@frozen(kw_only=True)
class Change:
    """One entry: its position, what it refers to, and that row as read now (``record``
    None when the row is gone: erased, or its project marked deleted)."""

    position: FeedPosition
    kind: ChangeKind
    team_id: str
    project_id: str
    row_id: str
    record: Record | None


class ChangeFeed(Protocol):
    async def head(self) -> FeedPosition:
        """A position at or after every entry a reader can be given now: a reader that
        starts here receives only what commits from now on (or is still committing)."""

    async def read(
        self,
        after: FeedPosition,
        *,
        team_id: str | None = None,
        project_id: str | None = None,
        kinds: Collection[ChangeKind] | None = None,
        limit: int = 100,
    ) -> Sequence[Change]:
        """The first ``limit`` entries after ``after`` in position order, of the team
        (and project) when given (every team's when ``team_id`` is None: for a process's
        one shared reader), of ``kinds`` when given, each with its row loaded."""

    async def prune(self, *, before: datetime, limit: int = 10_000) -> int:
        """Remove at most ``limit`` of the oldest entries written before ``before`` (only
        entries a reader can be given already) and raise the horizon to the newest one
        removed; how many went."""

    async def horizon(self) -> FeedPosition:
        """The newest position pruned (:data:`START` when nothing was): a reader resuming
        from a position below it may have missed entries."""

    def on_commit(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` (from the event loop, without awaiting) after this process commits
        a write, so a reader need not wait for its next poll; returns the unsubscriber.
        Writes of other processes are found by polling."""


__all__ = [
    "ALL_KINDS",
    "START",
    "Change",
    "ChangeFeed",
    "ChangeKind",
    "FeedPosition",
    "Record",
]
