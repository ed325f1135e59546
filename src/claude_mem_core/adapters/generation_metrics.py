"""Prometheus families of provider calls: latency, tokens in and out, failures by kind, by
provider and model. Fed by :class:`~claude_mem_core.adapters.observed_provider.ObservedProvider`
reports; prometheus-client is imported when they are built.

The worker builds them after taskiq's Prometheus middleware has set up prometheus-client's
multiprocess directory, so that middleware's ``/metrics`` serves them beside taskiq's own
(``CLAUDE_MEM_WORKER_METRICS_PORT``); the HTTP server builds them in its own registry for
``GET /metrics`` when it generates in process (the embedded default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from claude_mem_core.adapters.observed_provider import ProviderCall
from claude_mem_core.domain.prices import PRICES, estimate_cost

# Seconds: from a local model's quick answer to a long summary by a slow remote one.
CALL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)


class GenerationMetrics:
    """Provider calls, tokens and failures, recorded from :class:`ProviderCall` reports."""

    def __init__(
        self,
        registry: Any | None = None,
        *,
        prices: Mapping[tuple[str, str], tuple[float, float]] = PRICES,
    ) -> None:
        """``registry``: where the families register; prometheus-client's default one when
        None, none at all when ``False`` (multiprocess mode collects them from files).
        ``prices``: what calls cost (``domain/prices.py``, the settings' table)."""
        from prometheus_client import REGISTRY, Counter, Histogram

        self.prices = prices
        owner = REGISTRY if registry is None else (None if registry is False else registry)
        self.calls = Histogram(
            "claude_mem_generation_duration_seconds",
            "Provider calls made for generation jobs: time to answer, by provider, model "
            "and purpose (observations, summary); failed calls included.",
            ["provider", "model", "purpose"],
            buckets=CALL_BUCKETS,
            registry=owner,
        )
        self.tokens = Counter(
            "claude_mem_generation_tokens",
            "Tokens the provider reported, by provider, model and direction (input, output).",
            ["provider", "model", "direction"],
            registry=owner,
        )
        self.failures = Counter(
            "claude_mem_generation_failures",
            "Provider calls that failed, by provider, model and kind (transient, rate_limit, "
            "auth, bad_request, context_too_long, unexpected …).",
            ["provider", "model", "kind"],
            registry=owner,
        )
        self.cost = Counter(
            "claude_mem_generation_cost_usd",
            "Estimated US dollars of provider calls at list prices (domain/prices.py), by "
            "provider and model; calls of models without a known price add nothing.",
            ["provider", "model"],
            registry=owner,
        )

    def record(self, call: ProviderCall) -> None:
        model = call.model or ""
        self.calls.labels(call.provider, model, call.purpose).observe(call.seconds)
        if call.error_kind is not None:
            self.failures.labels(call.provider, model, call.error_kind).inc()
            return
        if call.input_tokens:
            self.tokens.labels(call.provider, model, "input").inc(call.input_tokens)
        if call.output_tokens:
            self.tokens.labels(call.provider, model, "output").inc(call.output_tokens)
        cost = estimate_cost(
            call.provider, call.model, call.input_tokens, call.output_tokens, prices=self.prices
        )
        if cost:
            self.cost.labels(call.provider, model).inc(cost)
