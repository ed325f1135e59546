"""The SDK providers' HTTP transport: aiohttp when it is installed, httpx otherwise."""

from __future__ import annotations

import itertools

import pytest

from claude_mem_core.adapters import providers
from claude_mem_core.adapters.anthropic_provider import AnthropicProvider
from claude_mem_core.adapters.providers import aiohttp_http_client, timeout_detail


async def test_anthropic_provider_uses_the_aiohttp_transport() -> None:
    provider = AnthropicProvider("key", "model", base_url="http://127.0.0.1:9")
    try:
        transport = provider._client._client._transport
        assert type(transport).__name__ == "AiohttpTransport"
    finally:
        await provider.close()


def test_without_aiohttp_support_the_sdk_default_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported() -> None:
        raise RuntimeError("no aiohttp extra")

    assert aiohttp_http_client(unsupported) is None
    monkeypatch.setattr(providers.importlib.util, "find_spec", lambda name: None)
    assert aiohttp_http_client(lambda: "client") is None


def test_timeout_detail_tells_a_refused_connection_from_a_timeout() -> None:
    def chained(*causes: BaseException) -> BaseException:
        for outer, inner in itertools.pairwise(causes):
            outer.__cause__ = inner
        return causes[0]

    refused = chained(
        RuntimeError("Request timed out."),
        ValueError("Cannot connect"),
        ConnectionRefusedError(111, "Connect call failed"),
    )
    assert timeout_detail(refused, 2).startswith("connection failed (ConnectionRefusedError")
    plain = chained(RuntimeError("Request timed out."), TimeoutError())
    assert timeout_detail(plain, 2.5) == "timed out after 2.5s"
    assert timeout_detail(RuntimeError("x"), 60) == "timed out after 60s"
