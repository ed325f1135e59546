"""Where an import keeps the lines it has checked until it writes them: a temporary SQLite
file (the standard library's ``sqlite3``), so a stream of any size is checked whole before
the first row is written while the process holds one batch at a time.

It holds each line's text, the ids the lines define (a second definition of an id is
refused) and the ids they refer to (a session, an event), so the references that no line
defines can be listed afterwards and looked up in the target project. Every call is one
short blocking statement batch; callers run them off the event loop
(:meth:`ImportSpool.call`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from typing import TypeVar

from attrs import frozen

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE lines (n INTEGER PRIMARY KEY, kind TEXT NOT NULL, text TEXT NOT NULL)",
    "CREATE TABLE ids (kind TEXT NOT NULL, id TEXT NOT NULL, n INTEGER NOT NULL,"
    " PRIMARY KEY (kind, id)) WITHOUT ROWID",
    "CREATE TABLE refs (n INTEGER NOT NULL, field TEXT NOT NULL, kind TEXT NOT NULL,"
    " id TEXT NOT NULL)",
)


@frozen
class Definition:
    """An id a line defines: its kind, the id, the line."""

    kind: str
    id: str
    line: int


@frozen
class Reference:
    """An id a line refers to: the line, the field holding it, what it names, the id."""

    line: int
    field: str
    kind: str
    id: str


class DuplicateId(Exception):
    def __init__(self, definition: Definition, first_line: int) -> None:
        super().__init__(f"{definition.kind} {definition.id} defined twice")
        self.definition = definition
        self.first_line = first_line


class ImportSpool:
    """A temporary file; :meth:`close` removes it."""

    def __init__(self) -> None:
        handle, self.path = tempfile.mkstemp(prefix="claude-mem-import-", suffix=".sqlite")
        os.close(handle)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = asyncio.Lock()
        # A scratch file: nothing to recover after a crash, so no journal and no syncs.
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        for statement in _SCHEMA:
            self._db.execute(statement)

    async def call(self, work: Callable[[], T]) -> T:
        """Run one of the blocking methods below on a thread, one at a time."""
        async with self._lock:
            return await asyncio.to_thread(work)

    def add(
        self,
        lines: Sequence[tuple[int, str, str]],
        definitions: Sequence[Definition],
        references: Sequence[Reference],
    ) -> None:
        """Keep checked lines ``(n, kind, text)`` with the ids they define and name.
        Raises :class:`DuplicateId` (nothing of the call kept) when an id is defined
        twice."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT INTO lines (n, kind, text) VALUES (?, ?, ?)", lines)
            try:
                db.executemany(
                    "INSERT INTO ids (kind, id, n) VALUES (?, ?, ?)",
                    [(d.kind, d.id, d.line) for d in definitions],
                )
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK")
                raise self._duplicate(definitions) from None
            db.executemany(
                "INSERT INTO refs (n, field, kind, id) VALUES (?, ?, ?, ?)",
                [(r.line, r.field, r.kind, r.id) for r in references],
            )
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _duplicate(self, definitions: Sequence[Definition]) -> DuplicateId:
        seen: dict[tuple[str, str], int] = {}
        for d in definitions:
            row = self._db.execute(
                "SELECT n FROM ids WHERE kind = ? AND id = ?", (d.kind, d.id)
            ).fetchone()
            first = row[0] if row is not None else seen.get((d.kind, d.id))
            if first is not None:
                return DuplicateId(d, first)
            seen[(d.kind, d.id)] = d.line
        raise AssertionError("an insert failed without a duplicate id")  # pragma: no cover

    def unresolved(self, *, after: tuple[int, str, str] | None, limit: int) -> list[Reference]:
        """References no line defines, by line (then field and id), after ``after``
        (the last one's line, field and id)."""
        where, params = "", tuple[object, ...]()
        if after is not None:
            where, params = "AND (r.n, r.field, r.id) > (?, ?, ?)", tuple(after)
        rows = self._db.execute(
            "SELECT r.n, r.field, r.kind, r.id FROM refs r WHERE NOT EXISTS "
            "(SELECT 1 FROM ids i WHERE i.kind = r.kind AND i.id = r.id) "
            f"{where} ORDER BY r.n, r.field, r.id LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [Reference(n, field, kind, ref) for n, field, kind, ref in rows]

    def read(self, *, after: int, limit: int) -> list[tuple[int, str, str]]:
        """Kept lines ``(n, kind, text)`` after line ``after``, in order."""
        rows = self._db.execute(
            "SELECT n, kind, text FROM lines WHERE n > ? ORDER BY n LIMIT ?", (after, limit)
        ).fetchall()
        return [(int(n), str(kind), str(text)) for n, kind, text in rows]

    def close(self) -> None:
        self._db.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


__all__ = ["Definition", "DuplicateId", "ImportSpool", "Reference"]
