"""Settings: the CLAUDE_MEM_EMBEDDINGS_* variables (semantic recall is off unless set)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from claude_mem_core.config import Settings
from claude_mem_core.errors import ConfigurationError

SECRET_KEY = "sk-embed-settings-SECRET-0123456789"


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        {"CLAUDE_MEM_DATA_DIR": str(tmp_path), "CLAUDE_MEM_DOCKER": "0", **env}
    )


def test_off_by_default(tmp_path: Path) -> None:
    s = settings(tmp_path)

    assert (s.embeddings_url, s.embeddings_model, s.embeddings_api_key) == (None, None, None)
    assert not s.embeddings_enabled
    assert s.problems() == []


def test_variables_are_read_and_blank_means_unset(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        CLAUDE_MEM_EMBEDDINGS_URL=" openai+http://127.0.0.1:11434/v1 ",
        CLAUDE_MEM_EMBEDDINGS_MODEL="nomic-embed-text",
        CLAUDE_MEM_EMBEDDINGS_API_KEY="  ",
    )

    assert s.embeddings_enabled
    assert s.embeddings_url == "openai+http://127.0.0.1:11434/v1"
    assert s.embeddings_model == "nomic-embed-text"
    assert s.embeddings_api_key is None
    assert settings(tmp_path, CLAUDE_MEM_EMBEDDINGS_URL="").embeddings_enabled is False


def test_the_key_stays_out_of_repr(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        CLAUDE_MEM_EMBEDDINGS_URL="https://api.openai.com/v1",
        CLAUDE_MEM_EMBEDDINGS_MODEL="text-embedding-3-small",
        CLAUDE_MEM_EMBEDDINGS_API_KEY=SECRET_KEY,
    )

    assert s.embeddings_api_key == SECRET_KEY
    assert SECRET_KEY not in repr(s)


def test_settings_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text(
        json.dumps(
            {
                "CLAUDE_MEM_EMBEDDINGS_URL": "http://127.0.0.1:8080/v1",
                "CLAUDE_MEM_EMBEDDINGS_MODEL": "bge-small",
            }
        )
    )

    s = settings(tmp_path)

    assert (s.embeddings_url, s.embeddings_model) == ("http://127.0.0.1:8080/v1", "bge-small")


def test_a_url_without_a_model_is_a_problem(tmp_path: Path) -> None:
    s = settings(tmp_path, CLAUDE_MEM_EMBEDDINGS_URL="https://api.openai.com/v1")

    with pytest.raises(ConfigurationError, match="CLAUDE_MEM_EMBEDDINGS_MODEL"):
        s.validate()
