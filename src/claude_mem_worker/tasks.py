"""The one task: ``claude_mem.generate``.

Producers kick it by name (:class:`~claude_mem_core.adapters.taskiq_queue.TaskiqQueue`);
its keyword arguments are the :class:`QueueMessage` fields. No logic lives here: the job's
state is in the database, and the worker runtime runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from claude_mem_core.adapters.taskiq_queue import TASK_NAME

if TYPE_CHECKING:
    from taskiq import AsyncBroker

    from claude_mem_worker.runtime import WorkerRuntime


def register(broker: AsyncBroker, runtime: WorkerRuntime) -> None:
    """Register ``claude_mem.generate`` on ``broker``, run by ``runtime``."""

    from taskiq import Context, TaskiqDepends

    # Keyword arguments only, unannotated: taskiq's receiver has nothing to re-validate
    # (the runtime checks the message itself). The context gives the message's labels
    # (the trace context travels there).
    @broker.task(task_name=TASK_NAME)
    async def generate(context: Any = TaskiqDepends(Context), **message: Any) -> None:
        await runtime.generate(message, labels=context.message.labels)
