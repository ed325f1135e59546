"""Settings from the environment: the embedded default, overrides, unsafe combinations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from claude_mem_core.config import Settings
from claude_mem_core.errors import ConfigurationError


def test_nothing_configured_is_the_embedded_default(tmp_path: Path) -> None:
    s = Settings.from_env({"CLAUDE_MEM_DATA_DIR": str(tmp_path), "CLAUDE_MEM_DOCKER": "0"})
    assert s.embedded
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path / 'claude-mem.db'}"
    assert s.queue_url == "memory://"
    assert (s.host, s.port, s.auth_mode, s.provider) == ("127.0.0.1", 37877, "api-key", None)
    assert s.problems() == []


def test_reference_variable_names(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "CLAUDE_MEM_DATA_DIR": str(tmp_path),
            "CLAUDE_MEM_SERVER_DATABASE_URL": "postgresql+psycopg://u@db/x",
            "CLAUDE_MEM_QUEUE_ENGINE": "bullmq",
            "CLAUDE_MEM_REDIS_URL": "redis://:secret@redis:6379/0",
            "CLAUDE_MEM_SERVER_SESSION_POLICY": "debounce",
            "CLAUDE_MEM_SERVER_SESSION_DEBOUNCE_MS": "750",
            "CLAUDE_MEM_QUEUE_REDIS_PREFIX": "team a/b",
        }
    )
    assert not s.embedded and s.queue_engine == "redis"
    assert s.pipeline_options().debounce_seconds == 0.75
    assert s.redis_prefix == "team_a_b"
    assert "secret" not in repr(s)


def test_settings_file_is_read_and_env_wins(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text(
        json.dumps({"CLAUDE_MEM_SERVER_PORT": 4000, "CLAUDE_MEM_SERVER_PROVIDER": "offline"})
    )
    s = Settings.from_env({"CLAUDE_MEM_DATA_DIR": str(tmp_path), "CLAUDE_MEM_SERVER_PORT": "5000"})
    assert (s.port, s.provider) == (5000, "offline")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLAUDE_MEM_QUEUE_ENGINE": "kafka"}, "CLAUDE_MEM_QUEUE_ENGINE"),
        ({"CLAUDE_MEM_SERVER_PORT": "http"}, "CLAUDE_MEM_SERVER_PORT must be an integer"),
        ({"CLAUDE_MEM_SERVER_SESSION_POLICY": "sometimes"}, "per-event"),
        ({"CLAUDE_MEM_AUTH_MODE": "none"}, "api-key"),
    ],
)
def test_bad_values_say_what_to_set(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({"CLAUDE_MEM_DATA_DIR": str(tmp_path), **env})


def test_unsafe_combinations_are_refused(tmp_path: Path) -> None:
    base = {"CLAUDE_MEM_DATA_DIR": str(tmp_path)}
    redis_without_url = Settings.from_env({**base, "CLAUDE_MEM_QUEUE_ENGINE": "redis"})
    with pytest.raises(ConfigurationError, match=r"CLAUDE_MEM_REDIS_URL"):
        redis_without_url.validate()
    public_dev = Settings.from_env(
        {**base, "CLAUDE_MEM_AUTH_MODE": "local-dev", "CLAUDE_MEM_SERVER_HOST": "0.0.0.0"}
    )
    with pytest.raises(ConfigurationError, match=r"local-dev is refused when binding 0\.0\.0\.0"):
        public_dev.validate()
    in_container = Settings.from_env(
        {**base, "CLAUDE_MEM_AUTH_MODE": "local-dev", "CLAUDE_MEM_DOCKER": "1"},
        dockerenv=tmp_path / "absent",
    )
    [problem] = in_container.problems()
    assert "local-dev is not allowed in Docker" in problem


@pytest.mark.parametrize(
    ("flag", "marker", "container"),
    [
        (None, False, False),
        ("0", False, False),
        ("1", False, True),
        ("true", False, True),
        (None, True, True),
        # A container is a container: the variable cannot switch the marker file off.
        ("0", True, True),
        ("false", True, True),
    ],
)
def test_local_dev_is_not_allowed_in_docker(
    tmp_path: Path, flag: str | None, marker: bool, container: bool
) -> None:
    dockerenv = tmp_path / ".dockerenv"
    if marker:
        dockerenv.touch()
    env = {"CLAUDE_MEM_DATA_DIR": str(tmp_path), "CLAUDE_MEM_AUTH_MODE": "local-dev"}
    if flag is not None:
        env["CLAUDE_MEM_DOCKER"] = flag
    settings = Settings.from_env(env, dockerenv=dockerenv)
    assert settings.in_container is container
    if not container:
        assert settings.validate() is settings  # loopback local-dev outside a container
        return
    with pytest.raises(ConfigurationError, match="local-dev is not allowed in Docker"):
        settings.validate()


def test_broken_settings_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match=r"settings\.json is not valid JSON"):
        Settings.from_env({"CLAUDE_MEM_DATA_DIR": str(tmp_path)})


def test_short_lease_and_heartbeat_by_default(tmp_path: Path) -> None:
    s = Settings.from_env({"CLAUDE_MEM_DATA_DIR": str(tmp_path), "CLAUDE_MEM_DOCKER": "0"})
    options = s.pipeline_options()
    assert (options.lease_seconds, options.heartbeat_interval) == (30.0, 10.0)
    assert options.reconcile_batch == 100
    assert s.lease_problem() is None


def test_lease_heartbeat_and_reconcile_batch_are_configurable(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "CLAUDE_MEM_DATA_DIR": str(tmp_path),
            "CLAUDE_MEM_JOB_LEASE_SECONDS": "2",
            "CLAUDE_MEM_JOB_HEARTBEAT_SECONDS": "0.5",
            "CLAUDE_MEM_RECONCILE_BATCH_SIZE": "25",
        }
    )
    options = s.pipeline_options()
    assert (options.lease_seconds, options.heartbeat_interval) == (2.0, 0.5)
    assert options.reconcile_batch == 25
    slow = Settings.from_env(
        {
            "CLAUDE_MEM_DATA_DIR": str(tmp_path),
            "CLAUDE_MEM_JOB_LEASE_SECONDS": "30",
            "CLAUDE_MEM_JOB_HEARTBEAT_SECONDS": "20",
        }
    )
    problem = slow.lease_problem()
    assert problem is not None and "CLAUDE_MEM_JOB_HEARTBEAT_SECONDS=20" in problem
    assert problem in slow.problems()
    with pytest.raises(ConfigurationError):
        Settings.from_env(
            {"CLAUDE_MEM_DATA_DIR": str(tmp_path), "CLAUDE_MEM_JOB_HEARTBEAT_SECONDS": "0"}
        )


def test_the_search_snapshot_budget_is_read_and_checked() -> None:
    from claude_mem_core.config import SEARCH_SNAPSHOT_POSTINGS_ENV, search_snapshot_postings

    assert search_snapshot_postings({}) is None
    assert search_snapshot_postings({SEARCH_SNAPSHOT_POSTINGS_ENV: " "}) is None
    assert search_snapshot_postings({SEARCH_SNAPSHOT_POSTINGS_ENV: "0"}) == 0
    assert search_snapshot_postings({SEARCH_SNAPSHOT_POSTINGS_ENV: "1000"}) == 1000
    for bad in ("-1", "many"):
        with pytest.raises(ConfigurationError, match=SEARCH_SNAPSHOT_POSTINGS_ENV):
            search_snapshot_postings({SEARCH_SNAPSHOT_POSTINGS_ENV: bad})
