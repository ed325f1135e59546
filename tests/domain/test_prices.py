"""The price table: a model is priced by its longest known prefix, unknown models and
missing tokens have no estimate (never a silent zero), local and offline calls are free,
and CLAUDE_MEM_PRICES adds or overrides prices with a clear error when malformed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_mem_core.config import Settings
from claude_mem_core.domain.prices import PRICES, estimate_cost, parse_price_table
from claude_mem_core.errors import ConfigurationError


def test_the_longest_prefix_prices_a_dated_model_name() -> None:
    # claude-opus-4-5 is cheaper than claude-opus-4: the longer prefix wins.
    assert estimate_cost("anthropic", "claude-opus-4-5-20251101", 1_000_000, 0) == 5.0
    assert estimate_cost("anthropic", "claude-opus-4-1-20250805", 1_000_000, 0) == 15.0
    assert estimate_cost("openai", "gpt-4o-mini-2024-07-18", 0, 1_000_000) == 0.60
    assert estimate_cost("OpenAI", "GPT-4o", 1_000_000, 1_000_000) == 12.5


def test_unknown_is_none_and_free_is_zero() -> None:
    assert estimate_cost("anthropic", "claude-next", 10, 10) is None
    assert estimate_cost("openrouter", "anthropic/claude-sonnet-4", 10, 10) is None
    assert estimate_cost("anthropic", None, 10, 10) is None
    assert estimate_cost("anthropic", "claude-sonnet-4", None, None) is None
    assert estimate_cost("offline", None, None, None) == 0.0
    assert estimate_cost("ollama", "llama3.1", 10_000, 10_000) == 0.0


@given(
    st.sampled_from(sorted(PRICES)),
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=0, max_value=10**9),
)
def test_cost_is_linear_in_the_tokens(
    key: tuple[str, str], tokens_in: int, tokens_out: int
) -> None:
    provider, prefix = key
    cost = estimate_cost(provider, prefix + "-any-suffix", tokens_in, tokens_out)
    assert cost is not None and cost >= 0
    alone = estimate_cost(provider, prefix + "-any-suffix", tokens_in, 0)
    other = estimate_cost(provider, prefix + "-any-suffix", 0, tokens_out)
    assert alone is not None and other is not None
    assert cost == pytest.approx(alone + other)


def test_settings_read_prices_over_the_table() -> None:
    env = {"CLAUDE_MEM_PRICES": '{"openrouter/anthropic/claude": [3, 15], "openai/gpt-4o": [1, 1]}'}
    prices = Settings.from_env(env).prices
    assert prices[("openrouter", "anthropic/claude")] == (3.0, 15.0)
    assert prices[("openai", "gpt-4o")] == (1.0, 1.0)
    assert prices[("anthropic", "claude-sonnet-4")] == PRICES[("anthropic", "claude-sonnet-4")]
    cost = estimate_cost("openrouter", "anthropic/claude-sonnet-4", 1_000_000, 0, prices=prices)
    assert cost == 3.0


@pytest.mark.parametrize(
    "raw",
    ["not json", "[1, 2]", '{"gpt-4o": [1, 1]}', '{"openai/gpt-4o": [1]}', '{"openai/x": [-1, 1]}'],
)
def test_malformed_prices_are_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="CLAUDE_MEM_PRICES"):
        Settings.from_env({"CLAUDE_MEM_PRICES": raw})


def test_parse_price_table_names_the_entry() -> None:
    with pytest.raises(ValueError, match="'openai/gpt-4o'"):
        parse_price_table({"openai/gpt-4o": ["one", "two"]})
