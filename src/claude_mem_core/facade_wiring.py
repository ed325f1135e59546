"""The optional parts a deployment's configuration turns on for a :class:`Memory`: where
spans go (the standard ``OTEL_*`` environment) and the embedder of semantic recall
(``CLAUDE_MEM_EMBEDDINGS_*``). Each adapter, and the SDK behind it, is imported only when
it is asked for, so opening a memory stays cheap when neither is."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from claude_mem_core.errors import ConfigurationError, MissingExtra
from claude_mem_core.ports.embedder import Embedder
from claude_mem_core.ports.tracing import NOOP_TRACER, Tracer, tracing_requested


def tracer_from_env(env: Mapping[str, str], *, service_name: str = "claude-mem") -> Tracer:
    """OpenTelemetry's tracer when the standard ``OTEL_*`` environment asks for traces
    (``ports.tracing.tracing_requested``) and the ``otel`` extra is installed; else the
    no-op tracer (with a warning if only the extra is missing)."""
    if not tracing_requested(env):
        return NOOP_TRACER
    try:
        from claude_mem_core.adapters.otel_tracing import tracer_from_environment
    except ImportError:
        logging.getLogger("claude_mem.tracing").warning(
            "OTEL_* asks for traces, but %s; no traces", MissingExtra("tracing", "otel")
        )
        return NOOP_TRACER
    return tracer_from_environment(env, service_name=service_name)


def embedder_from_settings(settings: Any) -> Embedder | None:
    """The embedder the settings configure (``CLAUDE_MEM_EMBEDDINGS_*``), None when semantic
    recall is off. The adapter (and its SDK) is imported only when one is configured."""
    if not settings.embeddings_enabled:
        return None
    if not settings.embeddings_model:
        raise ConfigurationError(
            "CLAUDE_MEM_EMBEDDINGS_URL needs CLAUDE_MEM_EMBEDDINGS_MODEL "
            "(e.g. text-embedding-3-small, or nomic-embed-text on Ollama)"
        )
    from claude_mem_core.adapters.openai_embedder import embedder_from_url, embeddings_base_url

    url: str = settings.embeddings_url
    embeddings_base_url(url)  # a malformed URL is refused now, not at the first search
    return _DeferredEmbedder(
        lambda: embedder_from_url(
            url, api_key=settings.embeddings_api_key, model=settings.embeddings_model
        ),
        model=settings.embeddings_model,
    )


class _DeferredEmbedder:
    """An embedder built at its first use: opening a memory (a hook, a CLI command) does not
    import the HTTP SDK unless something is embedded. The SDK is imported on a thread (it
    takes seconds on a busy machine, which would stall every request of a server)."""

    name = "deferred"

    def __init__(self, build: Callable[[], Embedder], *, model: str) -> None:
        self._build = build
        self._inner: Embedder | None = None
        self.model = model
        self.dimensions: int | None = None

    async def prepare(self) -> None:
        if self._inner is None:
            with contextlib.suppress(ImportError):  # reported by the build, at first use
                await asyncio.to_thread(importlib.import_module, "openai")
            if self._inner is None:
                self._inner = self._build()
                self.name = self._inner.name

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        await self.prepare()
        assert self._inner is not None
        vectors = await self._inner.embed(texts)
        self.dimensions = self._inner.dimensions
        return vectors

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()
