"""CLAUDE_MEM_PROVIDER_RPM: calls per minute per paid provider, read strictly (a bad
value stops the start with a message naming the variable), off when unset."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_mem_core.adapters import providers
from claude_mem_core.config import Settings
from claude_mem_core.domain.prices import FREE_PROVIDERS
from claude_mem_core.domain.rate_limits import (
    MAX_RPM,
    PAID_PROVIDERS,
    RateLimits,
    next_window,
    parse_rpm,
    window_start,
)
from claude_mem_core.errors import ConfigurationError


def _settings(tmp_path: Path, value: str | None) -> Settings:
    env = {"CLAUDE_MEM_DATA_DIR": str(tmp_path), "CLAUDE_MEM_DOCKER": "0"}
    if value is not None:
        env["CLAUDE_MEM_PROVIDER_RPM"] = value
    return Settings.from_env(env, dockerenv=tmp_path / "absent")


def test_unset_or_blank_means_no_limit(tmp_path: Path) -> None:
    for value in (None, "", "  "):
        limits = _settings(tmp_path, value).pipeline_options().provider_rpm
        assert not limits.enabled
        assert limits.limit_for("anthropic") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", {"anthropic": 120, "openai": 120, "gemini": 120}),
        ("anthropic=50,openai=500", {"anthropic": 50, "openai": 500, "gemini": None}),
        (" Claude = 50 , 200 ", {"anthropic": 50, "openai": 200, "openrouter": 200}),
        ("openai-compatible=7", {"openai-compatible": 7, "anthropic": None}),
    ],
)
def test_good_values(tmp_path: Path, value: str, expected: dict[str, int | None]) -> None:
    limits = _settings(tmp_path, value).pipeline_options().provider_rpm
    assert limits.enabled
    assert {name: limits.limit_for(name) for name in expected} == expected
    assert limits.limit_for("offline") is None and limits.limit_for("ollama") is None


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0", "between 1 and"),
        ("-5", "whole number"),
        ("1.5", "whole number"),
        ("lots", "whole number"),
        (f"{MAX_RPM + 1}", "between 1 and"),
        ("anthropic=", "whole number"),
        ("anthropic=50,", "empty"),
        ("anthropic=50,anthropic=60", "more than one limit"),
        ("claude=5,anthropic=6", "more than one limit"),
        ("100,200", "more than one limit"),
        ("antropic=50", "not a paid provider"),
        ("ollama=10", "free provider"),
        ("=10", "not a paid provider"),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, value: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        _settings(tmp_path, value)
    message = str(raised.value)
    assert message.startswith("CLAUDE_MEM_PROVIDER_RPM: ")
    assert says in message


def test_the_paid_providers_are_those_that_can_be_configured() -> None:
    configurable = providers._NAMES - set(providers._ALIASES) - FREE_PROVIDERS
    assert set(PAID_PROVIDERS) == configurable


@given(
    st.dictionaries(st.sampled_from(PAID_PROVIDERS), st.integers(1, MAX_RPM), max_size=5),
    st.none() | st.integers(1, MAX_RPM),
)
def test_what_is_described_reads_back_the_same(
    per_provider: dict[str, int], default: int | None
) -> None:
    limits = RateLimits(per_provider=per_provider, default=default)
    assert parse_rpm(limits.describe()) == limits


@given(st.datetimes(timezones=st.just(UTC)))
def test_a_moment_falls_in_the_minute_window_that_starts_before_it(at: datetime) -> None:
    start, end = window_start(at), next_window(at)
    assert start <= at < end
    assert (end - start).total_seconds() == 60
    assert start.second == 0 and start.microsecond == 0
