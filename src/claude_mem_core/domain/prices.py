"""What a provider call costs: list prices in US dollars per million tokens, in one place.

The ledger (``services/usage.py``) stores each call's tokens and this estimate. Prices are
the providers' published list prices for standard (non-batch, non-cached) use as this
table was last updated (:data:`PRICES_AS_OF`); a model is matched by the longest known
prefix of its name (``claude-sonnet-4-5-20250929`` is ``claude-sonnet-4``), case-folded.
A model not in the table has no estimate (``None``: unknown, not free); the offline
provider and Ollama's local models cost nothing. Tokens are what the provider reported; a
call that reported none has no estimate.

Operators with other prices (a discount, a local model with a cost of its own) set
``CLAUDE_MEM_PRICES`` to a JSON object ``{"provider/model-prefix": [input, output]}``,
which is read over this table (``services/usage.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

PRICES_AS_OF = "2026-12"

# (provider, model prefix) -> (USD per million input tokens, per million output tokens)
PRICES: Mapping[tuple[str, str], tuple[float, float]] = {
    ("anthropic", "claude-opus-4-5"): (5.00, 25.00),
    ("anthropic", "claude-opus-4"): (15.00, 75.00),
    ("anthropic", "claude-sonnet-4"): (3.00, 15.00),
    ("anthropic", "claude-haiku-4"): (1.00, 5.00),
    ("anthropic", "claude-3-7-sonnet"): (3.00, 15.00),
    ("anthropic", "claude-3-5-sonnet"): (3.00, 15.00),
    ("anthropic", "claude-3-5-haiku"): (0.80, 4.00),
    ("anthropic", "claude-3-haiku"): (0.25, 1.25),
    ("anthropic", "claude-3-opus"): (15.00, 75.00),
    ("openai", "gpt-5-nano"): (0.05, 0.40),
    ("openai", "gpt-5-mini"): (0.25, 2.00),
    ("openai", "gpt-5"): (1.25, 10.00),
    ("openai", "gpt-4.1-nano"): (0.10, 0.40),
    ("openai", "gpt-4.1-mini"): (0.40, 1.60),
    ("openai", "gpt-4.1"): (2.00, 8.00),
    ("openai", "gpt-4o-mini"): (0.15, 0.60),
    ("openai", "gpt-4o"): (2.50, 10.00),
    ("gemini", "gemini-2.5-flash-lite"): (0.10, 0.40),
    ("gemini", "gemini-2.5-flash"): (0.30, 2.50),
    ("gemini", "gemini-2.5-pro"): (1.25, 10.00),
}

# No bill: the offline provider, and a model served on your own machine.
FREE_PROVIDERS = frozenset({"offline", "ollama"})


def parse_price_table(raw: Mapping[str, object]) -> dict[tuple[str, str], tuple[float, float]]:
    """``{"provider/model-prefix": [input, output]}`` as a price table; ValueError naming
    the entry that is not of that shape."""
    table: dict[tuple[str, str], tuple[float, float]] = {}
    for key, value in raw.items():
        provider, slash, prefix = key.partition("/")
        if not slash or not provider or not prefix:
            raise ValueError(f"price {key!r}: the key must be 'provider/model-prefix'")
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or min(value) < 0
        ):
            raise ValueError(f"price {key!r}: give [input, output] US dollars per million tokens")
        table[(provider.casefold(), prefix.casefold())] = (float(value[0]), float(value[1]))
    return table


def estimate_cost(
    provider: str,
    model: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
    *,
    prices: Mapping[tuple[str, str], tuple[float, float]] = PRICES,
) -> float | None:
    """The call's cost in US dollars; None when the model's price or the tokens are
    unknown. The offline provider and local models (:data:`FREE_PROVIDERS`) are free."""
    provider = provider.casefold()
    if provider in FREE_PROVIDERS:
        return 0.0
    if model is None or (input_tokens is None and output_tokens is None):
        return None
    name = model.casefold()
    best: tuple[float, float] | None = None
    longest = -1
    for (known_provider, prefix), price in prices.items():
        if known_provider == provider and name.startswith(prefix) and len(prefix) > longest:
            best, longest = price, len(prefix)
    if best is None:
        return None
    per_input, per_output = best
    return ((input_tokens or 0) * per_input + (output_tokens or 0) * per_output) / 1_000_000


__all__ = ["FREE_PROVIDERS", "PRICES", "PRICES_AS_OF", "estimate_cost", "parse_price_table"]
