"""Use case: the upkeep every process that generates runs (the worker's upkeep, the
embedded server's loop), one round at a time.

Each step is bounded and resumable, so a round never holds a writer for long and what it
leaves the next round finds:

* finishing the purges of erased projects that were cut short (``services/erase.py``),
  every round;
* the retention sweep (``services/retention.py``), at most every :data:`RETENTION_EVERY_S`;
* pruning the change feed behind the live stream (``services/stream.py``), at most every
  :data:`FEED_PRUNE_EVERY_S`.

A step that fails (the database down, say) is logged and counted, and the others still
run; the failed one is tried again when it is next due.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from claude_mem_core.services import erase, retention, stream
from claude_mem_core.services.context import Deps

RETENTION_EVERY_S = 300.0
FEED_PRUNE_EVERY_S = 60.0

log = logging.getLogger("claude_mem.upkeep")

Step = Callable[[Deps], Awaitable[object]]


class Upkeep:
    """The upkeep of one process: when each periodic step is next due."""

    def __init__(
        self,
        *,
        retention_every_s: float = RETENTION_EVERY_S,
        feed_prune_every_s: float = FEED_PRUNE_EVERY_S,
    ) -> None:
        self._steps: list[tuple[str, Step, float]] = [
            ("purging erased projects", erase.continue_purges, 0.0),
            ("retention sweep", retention.sweep_all, retention_every_s),
            ("change feed pruning", stream.prune_feed, feed_prune_every_s),
        ]
        self._due = [0.0] * len(self._steps)

    async def run(self, deps: Deps) -> int:
        """One round: each step that is due, guarded; how many failed."""
        failed = 0
        for index, (what, step, every) in enumerate(self._steps):
            now = time.monotonic()
            if now < self._due[index]:
                continue
            self._due[index] = now + every
            try:
                await step(deps)
            except Exception as exc:  # the database may be down; tried again when next due
                failed += 1
                log.warning("%s failed: %s: %s", what, type(exc).__name__, exc)
        return failed


__all__ = ["FEED_PRUNE_EVERY_S", "RETENTION_EVERY_S", "Upkeep"]
