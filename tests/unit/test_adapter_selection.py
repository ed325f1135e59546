"""Adapters are chosen from URLs; a missing optional dependency names the extra."""

from __future__ import annotations

import sys

import pytest

from claude_mem_core.adapters import normalize_database_url, queue_from_url, storage_from_url
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.memory import InMemoryStorage
from claude_mem_core.errors import ConfigurationError, MissingExtra


def test_memory_urls() -> None:
    assert isinstance(storage_from_url("memory://"), InMemoryStorage)
    assert isinstance(queue_from_url("memory://"), InProcessQueue)


def test_common_database_spellings_are_normalised() -> None:
    assert normalize_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"


@pytest.mark.parametrize("url", ["mysql://root@localhost/x", "mongodb://x", "nonsense"])
def test_unknown_storage_url_lists_the_supported_ones(url: str) -> None:
    with pytest.raises(ConfigurationError, match="postgresql\\+psycopg://"):
        storage_from_url(url)


def test_unknown_queue_url_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="redis://"):
        queue_from_url("amqp://guest@localhost")


@pytest.mark.parametrize(
    ("url", "extra"),
    [("sqlite+aiosqlite:///x.db", "sqlite"), ("postgresql+psycopg://u@h/db", "postgres")],
)
def test_missing_sql_extra_names_it(url: str, extra: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "claude_mem_core.adapters.sqlalchemy", None)
    with pytest.raises(MissingExtra, match=rf"pip install 'claude-mem-py\[{extra}\]'"):
        storage_from_url(url)


def test_missing_redis_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "claude_mem_core.adapters.taskiq_queue", None)
    with pytest.raises(MissingExtra, match=r"claude-mem-py\[redis\]"):
        queue_from_url("redis://127.0.0.1:6379/0")
