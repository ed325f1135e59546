"""Typed keys for application and request state (aiohttp warns on string keys).

The app's state is frozen once it starts, so whatever the cleanup context opens (the
:class:`Memory`, the local-dev caller, the generation task) lives on one mutable
:class:`Runtime` object stored before start.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from claude_mem_core.services.context import Caller

if TYPE_CHECKING:
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import Memory


class Runtime:
    """What the running app holds, filled in by the cleanup context."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._memory: Memory | None = None
        self.started_monotonic: float = 0.0
        self.local_caller: Caller | None = None
        self.generation_task: asyncio.Task[None] | None = None

    @property
    def memory(self) -> Memory:
        if self._memory is None:
            raise RuntimeError("the claude-mem app has not started")
        return self._memory

    @memory.setter
    def memory(self, value: Memory | None) -> None:
        self._memory = value

    @property
    def started(self) -> bool:
        return self._memory is not None

    @property
    def generation_active(self) -> bool:
        task = self.generation_task
        return task is not None and not task.done()


RUNTIME: web.AppKey[Runtime] = web.AppKey("claude_mem_runtime", Runtime)

REQUEST_ID: web.RequestKey[str] = web.RequestKey("claude_mem_request_id", str)
CALLER: web.RequestKey[Caller] = web.RequestKey("claude_mem_caller", Caller)

__all__ = ["CALLER", "REQUEST_ID", "RUNTIME", "Runtime"]
