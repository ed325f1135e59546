"""The one task: ``claude_mem.generate``.

Its keyword arguments are the :class:`QueueMessage` fields; it deserialises them and hands
the message to the generator (through the session batcher, which is the plain generator
unless the debounce policy is on). No logic lives here: job state is in the database.
"""

from __future__ import annotations

from typing import Any

from taskiq import AsyncBroker

from claude_mem_core.adapters.taskiq_queue import TASK_NAME, message_from_kwargs
from claude_mem_core.ports.queue import QueueMessage
from claude_mem_core.services.debounce import SessionBatcher
from claude_mem_core.services.generation import ProcessResult


async def generate(batcher: SessionBatcher, message: QueueMessage) -> list[ProcessResult]:
    """Run the job ``message`` names; one result per job touched (several when a debounced
    session's jobs are coalesced)."""
    return await batcher.process(message)


def register(broker: AsyncBroker, batcher: SessionBatcher) -> None:
    """Register ``claude_mem.generate`` on a taskiq broker, for running it under taskiq's
    own receiver (our worker reads the streams itself; see ``runner``)."""

    async def generate_task(**kwargs: Any) -> None:
        await batcher.process(message_from_kwargs(kwargs))

    broker.register_task(generate_task, task_name=TASK_NAME)
