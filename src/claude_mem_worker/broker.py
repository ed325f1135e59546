"""The worker's broker: taskiq-redis's stream broker, built from :class:`Settings`.

Producers (the HTTP server, the Python API) and the worker build it the same way, from
``CLAUDE_MEM_REDIS_URL`` and ``CLAUDE_MEM_QUEUE_REDIS_PREFIX``, so both sides always agree
on stream and group names (a mismatch silently strands every job; the worker logs the
prefix at startup). Building is cheap and connects to nothing.
"""

from __future__ import annotations

from taskiq_redis import RedisStreamBroker

from claude_mem_core.adapters.taskiq_queue import TaskiqQueue
from claude_mem_core.config import Settings
from claude_mem_core.errors import ConfigurationError


def build_queue(settings: Settings) -> TaskiqQueue:
    """The Redis queue (producer and consumer side) for ``settings``."""
    if not settings.redis_url:
        raise ConfigurationError(
            "the worker needs CLAUDE_MEM_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"
        )
    return TaskiqQueue.from_url(settings.redis_url, prefix=settings.redis_prefix)


def build_broker(settings: Settings) -> RedisStreamBroker:
    """The bare taskiq broker (for taskiq tooling); the worker uses :func:`build_queue`."""
    return build_queue(settings).broker
