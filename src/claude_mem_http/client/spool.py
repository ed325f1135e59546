"""The hooks' spool: an append-only JSONL file of records not yet delivered, safe across
processes (``fcntl`` locks, fsync'ed writes, mode 0600). :mod:`~claude_mem_http.client.hooks`
appends every record of a hook to it first and delivers from it, oldest first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("claude_mem.hooks")

LOCK_POLL_S = 0.01


class LockBusy(Exception):
    """The lock could not be taken before the deadline."""


@contextlib.contextmanager
def flocked(path: Path, *, blocking_s: float | None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``. ``blocking_s`` None waits forever, 0 tries
    once, otherwise polls until that many seconds passed (then :class:`LockBusy`)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if blocking_s is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + blocking_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockBusy(str(path)) from None
                    time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class Spool:
    """An append-only JSONL file of undelivered records, safe across processes.

    ``spool.lock`` guards the file's content (held for milliseconds); ``spool.flush.lock``
    makes one process at a time the flusher, so records go out in order."""

    def __init__(self, path: Path, *, lock_wait_s: float = 1.0) -> None:
        self.path = path
        self.rejected_path = path.with_name(path.stem + ".rejected.jsonl")
        self._lock = path.with_name(path.name + ".lock")
        self._flush_lock = path.with_name(path.name + ".flush.lock")
        self.lock_wait_s = lock_wait_s

    def _open_append(self, path: Path) -> IO[str]:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8")

    def append(self, records: Sequence[Mapping[str, Any]], *, path: Path | None = None) -> None:
        if not records:
            return
        lines = "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in records)
        with (
            flocked(self._lock, blocking_s=self.lock_wait_s),
            self._open_append(path or self.path) as handle,
        ):
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())

    def read(self) -> list[dict[str, Any]]:
        with flocked(self._lock, blocking_s=self.lock_wait_s):
            return self._read_unlocked()

    def _read_unlocked(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        records: list[dict[str, Any]] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                # A torn write (crash mid-append): unreadable, skip it.
                log.warning("spool: skipping an unreadable line")
                continue
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                records.append(item)
        return records

    def remove(self, ids: set[str]) -> None:
        """Drop the given records, keeping everything else (including records appended
        since they were read) in order."""
        if not ids:
            return
        with flocked(self._lock, blocking_s=None):
            kept = [r for r in self._read_unlocked() if r["id"] not in ids]
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                for record in kept:
                    handle.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)

    def reject(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.append(records, path=self.rejected_path)

    def __len__(self) -> int:
        return len(self.read())

    @contextlib.contextmanager
    def flusher(self, *, wait_s: float) -> Iterator[bool]:
        """True when this process became the flusher (within ``wait_s``)."""
        try:
            with flocked(self._flush_lock, blocking_s=wait_s):
                yield True
        except LockBusy:
            yield False


__all__ = ["LockBusy", "Spool", "flocked"]
