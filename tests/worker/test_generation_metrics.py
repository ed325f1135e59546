"""What the worker's generation metrics record of each provider call."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from claude_mem_core.adapters.generation_metrics import GenerationMetrics
from claude_mem_core.adapters.observed_provider import UNEXPECTED, ObservedProvider, ProviderCall
from claude_mem_core.errors import ProviderError
from claude_mem_core.ports.provider import GenerationRequest, GenerationResult, Usage


class Scripted:
    name = "anthropic"
    model: str | None = "claude-test"

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome == "hang":
            await asyncio.sleep(60)
        return GenerationResult(
            text="<observation/>",
            provider="anthropic",
            model="claude-test",
            usage=Usage(input_tokens=120, output_tokens=30),
        )

    async def close(self) -> None:
        pass


async def test_calls_tokens_and_failures_are_recorded_by_provider_and_model() -> None:
    registry = CollectorRegistry()
    metrics = GenerationMetrics(registry)
    calls: list[ProviderCall] = []

    def report(call: ProviderCall) -> None:
        calls.append(call)
        metrics.record(call)

    provider = ObservedProvider(
        Scripted("ok", ProviderError("slow down", kind="rate_limit"), ValueError("bug"), "hang"),
        report,
    )
    assert (await provider.generate(GenerationRequest(prompt="p"))).text == "<observation/>"
    with pytest.raises(ProviderError):
        await provider.generate(GenerationRequest(prompt="p", purpose="summary"))
    with pytest.raises(ValueError):
        await provider.generate(GenerationRequest(prompt="p"))
    hung = asyncio.create_task(provider.generate(GenerationRequest(prompt="p")))
    await asyncio.sleep(0.01)
    hung.cancel()  # a lost lease: neither a success nor a failure
    with pytest.raises(asyncio.CancelledError):
        await hung

    assert [c.error_kind for c in calls] == [None, "rate_limit", UNEXPECTED]
    labels = {"provider": "anthropic", "model": "claude-test"}
    sample = registry.get_sample_value
    assert sample("claude_mem_generation_tokens_total", {**labels, "direction": "input"}) == 120
    assert sample("claude_mem_generation_tokens_total", {**labels, "direction": "output"}) == 30
    assert sample("claude_mem_generation_failures_total", {**labels, "kind": "rate_limit"}) == 1
    assert sample("claude_mem_generation_failures_total", {**labels, "kind": UNEXPECTED}) == 1
    observed = {**labels, "purpose": "observations"}
    assert sample("claude_mem_generation_duration_seconds_count", observed) == 2
    summary = {**labels, "purpose": "summary"}
    assert sample("claude_mem_generation_duration_seconds_count", summary) == 1
    assert provider.name == "anthropic" and provider.model == "claude-test"


async def test_cost_is_counted_at_the_price_of_the_model() -> None:
    registry = CollectorRegistry()
    metrics = GenerationMetrics(registry, prices={("anthropic", "claude-test"): (2.0, 10.0)})
    provider = ObservedProvider(Scripted("ok", "ok"), metrics.record)
    await provider.generate(GenerationRequest(prompt="p"))
    await provider.generate(GenerationRequest(prompt="p"))
    labels = {"provider": "anthropic", "model": "claude-test"}
    spent = registry.get_sample_value("claude_mem_generation_cost_usd_total", labels)
    assert spent == pytest.approx(2 * (120 * 2.0 + 30 * 10.0) / 1e6)

    unpriced = CollectorRegistry()
    GenerationMetrics(unpriced, prices={}).record(
        ProviderCall(
            provider="anthropic",
            model="claude-test",
            purpose="observations",
            seconds=0.1,
            input_tokens=10,
            output_tokens=5,
        )
    )
    assert unpriced.get_sample_value("claude_mem_generation_cost_usd_total", labels) is None
