"""Ports: the Protocols the core needs from the outside world."""

from claude_mem_core.ports.clock import Clock, IdSource, SystemClock, UuidSource
from claude_mem_core.ports.provider import GenerationRequest, GenerationResult, Provider, Usage
from claude_mem_core.ports.queue import ConsumableQueue, JobQueue, QueueMessage
from claude_mem_core.ports.storage import Storage, UnitOfWork

__all__ = [
    "Clock",
    "ConsumableQueue",
    "GenerationRequest",
    "GenerationResult",
    "IdSource",
    "JobQueue",
    "Provider",
    "QueueMessage",
    "Storage",
    "SystemClock",
    "UnitOfWork",
    "Usage",
    "UuidSource",
]
