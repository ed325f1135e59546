"""CLI fixtures: every command runs on its own embedded data directory, with none of the
machine's server, queue, embeddings or provider settings."""

from __future__ import annotations

from pathlib import Path

import pytest

CLEARED = (
    "CLAUDE_MEM_SERVER_DATABASE_URL",
    "CLAUDE_MEM_QUEUE_ENGINE",
    "CLAUDE_MEM_REDIS_URL",
    "CLAUDE_MEM_EMBEDDINGS_URL",
    "CLAUDE_MEM_EMBEDDINGS_MODEL",
    "CLAUDE_MEM_EMBEDDINGS_API_KEY",
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
)


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLAUDE_MEM_DATA_DIR", str(tmp_path))
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    return tmp_path
