"""The provider contract (``claude_mem_core.testing.provider_contracts``) over every provider
adapter: the offline one, Anthropic's and the OpenAI-compatible ones through their real SDKs
against the local fake server, and the metrics/tracing wrapper around one of them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from claude_mem_core.adapters.anthropic_provider import AnthropicProvider
from claude_mem_core.adapters.observed_provider import ObservedProvider, ProviderCall
from claude_mem_core.adapters.openai_provider import OpenAICompatibleProvider
from claude_mem_core.ports.provider import Provider
from claude_mem_core.testing.fake_llm import FakeLLMServer
from claude_mem_core.testing.provider_contracts import (
    FakeServerHarness,
    OfflineHarness,
    ProviderContract,
    RemoteProviderContract,
)


class TestOffline(ProviderContract):
    @pytest.fixture
    def harness(self) -> OfflineHarness:
        return OfflineHarness()


def _anthropic(base_url: str, key: str, timeout: float) -> Provider:
    return AnthropicProvider(key, "claude-contract", base_url=base_url, timeout=timeout)


def _openai(base_url: str, key: str, timeout: float) -> Provider:
    return OpenAICompatibleProvider(key, "gpt-contract", base_url=base_url, timeout=timeout)


def _openrouter(base_url: str, key: str, timeout: float) -> Provider:
    return OpenAICompatibleProvider(
        key, "vendor/model-contract", base_url=base_url, name="openrouter", timeout=timeout
    )


CALLS: list[ProviderCall] = []


def _observed(base_url: str, key: str, timeout: float) -> Provider:
    return ObservedProvider(_anthropic(base_url, key, timeout), CALLS.append)


@pytest.fixture
async def harness(
    request: pytest.FixtureRequest,
) -> AsyncIterator[FakeServerHarness]:
    dialect, factory = request.param
    async with FakeLLMServer() as fake:
        made = FakeServerHarness(fake, dialect, factory)
        yield made
        await made.close()


@pytest.mark.parametrize(
    "harness",
    [
        pytest.param(("anthropic", _anthropic), id="anthropic"),
        pytest.param(("openai", _openai), id="openai"),
        pytest.param(("openai", _openrouter), id="openrouter"),
        pytest.param(("anthropic", _observed), id="observed-anthropic"),
    ],
    indirect=True,
)
class TestServerBacked(RemoteProviderContract):
    pass
