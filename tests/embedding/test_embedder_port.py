"""The Embedder port: the OpenAI-compatible adapter satisfies it (at runtime and for mypy),
and a small contract holds for it and for a minimal in-process embedder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from claude_mem_core.adapters.openai_embedder import OpenAICompatibleEmbedder, embedder_from_url
from claude_mem_core.domain.fusion import cosine
from claude_mem_core.ports.embedder import Embedder
from claude_mem_core.testing.fake_embeddings import FakeEmbeddingsServer, fake_embedding


class HashingEmbedder:
    """The smallest possible embedder: the fake server's vectors, computed in-process."""

    name = "hashing"

    def __init__(self, dimensions: int = 32) -> None:
        self.dimensions: int | None = dimensions
        self.closed = False

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        size = self.dimensions or 32
        return [fake_embedding(text, size) for text in texts]

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture(params=["openai-compatible", "hashing"])
async def any_embedder(
    request: pytest.FixtureRequest, fake: FakeEmbeddingsServer
) -> AsyncIterator[Embedder]:
    embedder: Embedder
    if request.param == "hashing":
        embedder = HashingEmbedder()
    else:
        embedder = embedder_from_url(fake.openai_base_url, api_key="sk-test", model="m")
    yield embedder
    await embedder.aclose()


async def test_adapter_satisfies_the_protocol(fake: FakeEmbeddingsServer) -> None:
    # Checked twice: by mypy (the annotated assignment) and at runtime (runtime_checkable).
    adapter: Embedder = OpenAICompatibleEmbedder("m", base_url=fake.openai_base_url)
    try:
        assert isinstance(adapter, Embedder)
        assert isinstance(HashingEmbedder(), Embedder)
        assert not isinstance(object(), Embedder)
    finally:
        await adapter.aclose()


async def test_contract_empty_input(any_embedder: Embedder) -> None:
    assert await any_embedder.embed([]) == []


async def test_contract_one_vector_per_text_in_order(any_embedder: Embedder) -> None:
    texts = ["fix login redirect", "login redirect fixed", "invoice table migration"]

    together = await any_embedder.embed(texts)
    alone = [(await any_embedder.embed([text]))[0] for text in texts]

    assert len(together) == len(texts)
    assert together == alone
    assert {len(vector) for vector in together} == {any_embedder.dimensions}
    assert all(isinstance(x, float) for vector in together for x in vector)


async def test_contract_related_texts_are_closer(any_embedder: Embedder) -> None:
    query, related, unrelated = await any_embedder.embed(
        ["login redirect", "the login redirect was broken", "invoice table migration"]
    )
    assert cosine(query, related) > cosine(query, unrelated)


async def test_contract_names_and_unknown_dimensions() -> None:
    assert isinstance(HashingEmbedder.name, str)
    embedder = OpenAICompatibleEmbedder("m", base_url="http://127.0.0.1:1/v1")
    try:
        assert isinstance(embedder.name, str)
        assert embedder.dimensions is None  # unknown until configured or first answer
    finally:
        await embedder.aclose()
