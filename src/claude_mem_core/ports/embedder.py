"""The embedder port: texts in, one vector per text out (optional semantic recall).

Semantic recall is off by default; nothing in the core needs an embedder to work. When one is
configured, search can embed passages and queries and fuse the cosine ranking with the keyword
ranking (see :mod:`claude_mem_core.domain.fusion` for the pure pieces).

Contract:

* :meth:`Embedder.embed` returns exactly one vector per input text, in input order, all of the
  same length. Splitting a long input list into requests the server accepts is the adapter's
  job, so callers pass as many texts as they have. An empty input gives an empty list without
  any request.
* ``dimensions`` is the vector length when known: the length that was configured, or the one
  the adapter learnt from its first answer; ``None`` before that. Vectors from different
  embedders (or models, or dimensions) are not comparable, so a store should record which one
  produced them.
* Failures raise :class:`claude_mem_core.errors.ProviderError`, classified like the LLM
  providers' (``retryable`` is true for ``transient`` and ``rate_limit``); an answer that
  cannot be used (a wrong number of vectors, inconsistent lengths, non-numbers) is
  ``kind="parse_error"``. Messages never contain the API key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Embedder(Protocol):
    """Adapters: any OpenAI-compatible ``/embeddings`` endpoint (OpenAI, Ollama, llama.cpp,
    LM Studio, vLLM …)."""

    name: str
    dimensions: int | None

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in the order of ``texts``; raise ``ProviderError`` on failure."""
        ...

    async def aclose(self) -> None:
        """Release connections; the embedder is not used afterwards."""
        ...


__all__ = ["Embedder"]
