"""Fixtures for the provider tests: a fake LLM server and a port nobody listens on."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from claude_mem_core.testing.fake_llm import FakeLLMServer


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    """A loopback port that was free a moment ago: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
