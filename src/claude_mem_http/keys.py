"""Typed keys for application and request state (aiohttp warns on string keys)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from claude_mem_core.services.context import Caller

if TYPE_CHECKING:
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import Memory


class Runtime:
    """What the running app knows about itself, filled in by the cleanup context."""

    def __init__(self) -> None:
        self.started_monotonic: float = 0.0
        self.local_caller: Caller | None = None
        self.generation_task: asyncio.Task[None] | None = None
        self.generation_active: bool = False


SETTINGS: web.AppKey[Settings] = web.AppKey("claude_mem_settings")
MEMORY: web.AppKey[Memory] = web.AppKey("claude_mem_memory")
RUNTIME: web.AppKey[Runtime] = web.AppKey("claude_mem_runtime", Runtime)

REQUEST_ID: web.RequestKey[str] = web.RequestKey("claude_mem_request_id", str)
CALLER: web.RequestKey[Caller] = web.RequestKey("claude_mem_caller", Caller)

__all__ = ["CALLER", "MEMORY", "REQUEST_ID", "RUNTIME", "SETTINGS", "Runtime"]
