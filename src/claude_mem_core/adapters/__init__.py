"""Adapters, chosen at the edge from URLs and imported lazily.

``storage_from_url`` and ``queue_from_url`` map a URL scheme to a factory; the modules
behind them (and their third-party dependencies) load only when that scheme is used, and a
missing dependency names the extra to install.
"""

from __future__ import annotations

from claude_mem_core.errors import ConfigurationError, MissingExtra
from claude_mem_core.ports.clock import Clock
from claude_mem_core.ports.queue import JobQueue
from claude_mem_core.ports.storage import Storage

STORAGE_SCHEMES = ("memory://", "sqlite+aiosqlite://", "postgresql+psycopg://")
QUEUE_SCHEMES = ("memory://", "redis://", "rediss://")


def normalize_database_url(url: str) -> str:
    """Accept the common spellings (``postgres://``, ``postgresql://``, ``sqlite://``)."""
    for plain, driver in (
        ("postgres://", "postgresql+psycopg://"),
        ("postgresql://", "postgresql+psycopg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def storage_from_url(
    url: str, *, clock: Clock | None = None, search_snapshot_postings: int | None = None
) -> Storage:
    """The storage adapter for ``url``; ``clock`` (the one services use) decides in the
    adapter whether a key has expired; ``search_snapshot_postings``: PostgreSQL's search
    snapshots' budget (``SqlAlchemyStorage``)."""
    url = normalize_database_url(url.strip())
    if url.startswith("memory://"):
        from claude_mem_core.adapters.memory import InMemoryStorage

        return InMemoryStorage(clock=clock)
    if url.startswith(("sqlite+aiosqlite://", "postgresql+psycopg://")):
        extra = "sqlite" if url.startswith("sqlite") else "postgres"
        try:
            from claude_mem_core.adapters.sqlalchemy import SqlAlchemyStorage
        except ImportError as exc:
            raise MissingExtra("SQL storage", extra) from exc
        try:
            return SqlAlchemyStorage.from_url(
                url, clock=clock, search_snapshot_postings=search_snapshot_postings
            )
        except ImportError as exc:
            raise MissingExtra("SQL storage", extra) from exc
    raise ConfigurationError(
        f"unsupported storage URL {url.split('://', 1)[0]!r}://...; use one of "
        + ", ".join(STORAGE_SCHEMES)
    )


def queue_from_url(url: str, *, prefix: str | None = None) -> JobQueue:
    """``prefix`` namespaces the Redis keys; producers and workers must use the same one."""
    url = url.strip()
    if url.startswith("memory://"):
        from claude_mem_core.adapters.inprocess_queue import InProcessQueue

        return InProcessQueue()
    if url.startswith(("redis://", "rediss://")):
        try:
            from claude_mem_core.adapters.taskiq_queue import TaskiqQueue
        except ImportError as exc:
            raise MissingExtra("Redis queue", "redis") from exc
        return (
            TaskiqQueue.from_url(url)
            if prefix is None
            else TaskiqQueue.from_url(url, prefix=prefix)
        )
    raise ConfigurationError(
        f"unsupported queue URL {url.split('://', 1)[0]!r}://...; use one of "
        + ", ".join(QUEUE_SCHEMES)
    )
