"""Fixtures for the embedding tests: a fake embeddings server and a port nobody listens on."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from claude_mem_core.testing.fake_embeddings import FakeEmbeddingsServer

DIMENSIONS = 16


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmbeddingsServer]:
    async with FakeEmbeddingsServer(dimensions=DIMENSIONS) as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    """A loopback port that was free a moment ago: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
