"""Embeddings from any OpenAI-compatible ``POST {base_url}/embeddings`` endpoint.

One class serves OpenAI itself and the local servers that copy its wire format (Ollama's
``/v1``, the llama.cpp server, LM Studio, vLLM …): request ``{"model", "input": [texts],
"encoding_format": "float"}`` plus ``dimensions`` when configured, answer ``{"data": [{"index",
"embedding"}, …]}``.

HTTP client: the official ``openai`` SDK (the ``openai`` extra), the same one
:mod:`~claude_mem_core.adapters.openai_provider` uses. Its ``embeddings.create`` already takes a
``base_url``, so one dependency, one transport (its aiohttp client when aiohttp is installed)
and one error shape serve both chat and embeddings, and failures are classified by the shared
:func:`~claude_mem_core.adapters.providers.classify_failure` exactly as the LLM providers'
are. Raw aiohttp would duplicate URL joining, auth headers and error decoding for no gain.
``encoding_format`` is always ``float``: the SDK would otherwise ask for base64, which not every
local server implements (a base64 answer is still decoded, should a server send one anyway).
The SDK is imported when an embedder is built, so importing this module is cheap.

Retries: the SDK's own are off. Unlike generation jobs, embedding runs inline (a search waits
for its query vector), so this adapter retries ``transient`` and ``rate_limit`` failures itself
(429, 5xx, timeouts, refused connections), up to ``max_retries`` times with exponential backoff
and jitter, never waiting more than ``max_backoff`` seconds: a ``retry-after`` longer than that
is not waited for, the error is raised instead. Each attempt is bounded by ``timeout``.

Answers are checked: one vector per input, ``index`` values forming a permutation (results are
ordered by them; if every item lacks ``index``, list order is used), finite numbers, one length
throughout and across calls (the configured ``dimensions``, else the first length seen). A
violation is a ``ProviderError`` of kind ``parse_error``; an ``error`` object inside a 200 answer
(some proxies send those) is classified by its ``code`` like an HTTP failure. The API key is
redacted from every error message and never logged.

URLs for :func:`embedder_from_url`: the API base URL, to which ``/embeddings`` is appended,
optionally prefixed with ``openai+`` to name the wire format (leaving room for other dialects)::

    https://api.openai.com/v1
    openai+http://127.0.0.1:11434/v1        Ollama
    openai+http://127.0.0.1:8080/v1         llama.cpp server
    http://127.0.0.1:1234/v1                LM Studio

A trailing ``/embeddings`` is tolerated. Credentials, a query string or a fragment in the URL are
refused (the key goes in ``api_key``). Without a key a placeholder is sent, which local servers
ignore.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from claude_mem_core.adapters.providers import (
    LOCAL_API_KEY,
    OPENAI_BASE_URL,
    aiohttp_http_client,
    classify_failure,
    openai_sdk_failure,
)
from claude_mem_core.domain.fusion import unpack_vector
from claude_mem_core.errors import ConfigurationError, MissingExtra, ProviderError
from claude_mem_core.ports.embedder import Embedder

if TYPE_CHECKING:
    import openai

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 8.0
URL_FORMS = ("openai+http://<host>[:port]/<path>", "openai+https://…", "http://…", "https://…")
OPENAI_HOST = "api.openai.com"
_LABELS = {"openai": "OpenAI", "openai-compatible": "OpenAI-compatible"}


class OpenAICompatibleEmbedder:
    """:class:`~claude_mem_core.ports.embedder.Embedder` over ``POST {base_url}/embeddings``."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str = OPENAI_BASE_URL,
        name: str = "openai-compatible",
        dimensions: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.label = f"{_LABELS.get(name, name)} embeddings"
        if not model or not model.strip():
            raise ConfigurationError(f"{self.label}: a model is required")
        if dimensions is not None and dimensions < 1:
            raise ConfigurationError(f"{self.label}: dimensions must be at least 1")
        if batch_size < 1:
            raise ConfigurationError(f"{self.label}: batch size must be at least 1")
        if not timeout > 0:
            raise ConfigurationError(f"{self.label}: timeout must be positive")
        if max_retries < 0 or not backoff >= 0 or not max_backoff >= 0:
            raise ConfigurationError(f"{self.label}: retries and backoff must not be negative")
        try:
            import openai
        except ImportError as exc:
            if (exc.name or "").split(".")[0] == "openai":
                raise MissingExtra("Embeddings", "openai") from None
            raise
        self._openai = openai
        self.model = model.strip()
        self.base_url = base_url
        self.dimensions: int | None = dimensions
        self.batch_size = batch_size
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._requested_dimensions = dimensions
        key = (api_key or "").strip()
        self._secrets = (key,) if key else ()
        self._client: openai.AsyncOpenAI = openai.AsyncOpenAI(
            api_key=key or LOCAL_API_KEY,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            default_headers=dict(default_headers) if default_headers else None,
            http_client=aiohttp_http_client(openai.DefaultAioHttpClient),
        )

    def __repr__(self) -> str:
        return (
            f"OpenAICompatibleEmbedder(name={self.name!r}, model={self.model!r}, "
            f"base_url={self.base_url!r}, dimensions={self.dimensions!r})"
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        batch: list[str] = list(texts)
        for text in batch:
            if not isinstance(text, str):
                raise TypeError(f"embed() takes strings, not {type(text).__name__}")
        vectors: list[list[float]] = []
        for start in range(0, len(batch), self.batch_size):
            vectors.extend(await self._embed_batch(batch[start : start + self.batch_size]))
        return vectors

    async def aclose(self) -> None:
        await self._client.close()

    # -- internals -------------------------------------------------------------------------------

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        attempt = 0
        while True:
            try:
                return await self._request(texts)
            except ProviderError as exc:
                if not exc.retryable or attempt >= self.max_retries:
                    raise
                delay = self._delay(attempt)
                if exc.retry_after is not None:
                    if exc.retry_after > self.max_backoff:
                        raise  # the server wants a longer pause than we may take
                    delay = max(delay, exc.retry_after)
                attempt += 1
                logger.warning(
                    "%s; retry %d of %d in %.2fs", exc.message, attempt, self.max_retries, delay
                )
                await asyncio.sleep(delay)

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter (half to all of the step), capped at ``max_backoff``."""
        step = min(self.max_backoff, self.backoff * 2.0**attempt)
        return step * (0.5 + random.random() / 2)

    async def _request(self, texts: list[str]) -> list[list[float]]:
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._call(texts)
        except TimeoutError:
            raise ProviderError(
                f"{self.label} call timed out after {self.timeout:g}s (transient)",
                kind="transient",
            ) from None
        return self._vectors(response, len(texts))

    async def _call(self, texts: list[str]) -> Any:
        openai = self._openai
        requested = self._requested_dimensions
        try:
            return await self._client.embeddings.create(
                model=self.model,
                input=texts,
                encoding_format="float",
                dimensions=requested if requested is not None else openai.omit,
            )
        except (
            openai.APIStatusError,
            openai.APIConnectionError,  # timeouts too
            openai.APIResponseValidationError,
            json.JSONDecodeError,
        ) as exc:
            raise openai_sdk_failure(
                exc, self.label, timeout=self.timeout, secrets=self._secrets
            ) from None

    def _invalid(self, problem: str) -> ProviderError:
        return ProviderError(f"{self.label} {problem}", kind="parse_error", status=200)

    def _vectors(self, response: Any, expected: int) -> list[list[float]]:
        data = getattr(response, "data", None)
        if not isinstance(data, list):
            extra = getattr(response, "model_extra", None) or {}
            error = extra.get("error") if isinstance(extra, Mapping) else None
            if error is not None:
                # Some proxies (OpenRouter, LiteLLM) report upstream failures inside a 200 body.
                code = error.get("code") if isinstance(error, Mapping) else None
                status = code if isinstance(code, int) and 100 <= code <= 599 else 502
                raise classify_failure(
                    self.label, status=status, body={"error": error}, secrets=self._secrets
                )
            raise self._invalid("answer has no 'data' list")
        if len(data) != expected:
            raise self._invalid(
                f"returned {_count(len(data), 'vector')} for {_count(expected, 'text')}"
            )
        indices = [_field(item, "index") for item in data]
        if all(index is None for index in indices):
            indices = list(range(expected))
        elif sorted(i if _is_int(i) else -1 for i in indices) != list(range(expected)):
            raise self._invalid(
                f"returned indices {_preview(indices)}; expected each of 0..{expected - 1} once"
            )
        ordered: list[list[float]] = [[] for _ in range(expected)]
        for index, item in zip(indices, data, strict=True):
            ordered[index] = self._vector(_field(item, "embedding"), index)
        lengths = {len(vector) for vector in ordered}
        if len(lengths) > 1:
            raise self._invalid(f"returned vectors of inconsistent dimensions {sorted(lengths)}")
        length = lengths.pop()
        if self.dimensions is not None and length != self.dimensions:
            raise self._invalid(
                f"returned {length}-dimensional vectors; expected {self.dimensions} dimensions"
            )
        self.dimensions = length
        return ordered

    def _vector(self, raw: object, index: int) -> list[float]:
        if isinstance(raw, str):  # base64 float32, from a server that ignored encoding_format
            try:
                raw = unpack_vector(base64.b64decode(raw, validate=True))
            except (binascii.Error, ValueError):
                raise self._invalid(f"returned an undecodable vector at index {index}") from None
        if not isinstance(raw, list) or not raw:
            raise self._invalid(f"returned no vector at index {index}")
        vector: list[float] = []
        for value in raw:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self._invalid(f"returned a non-numeric vector at index {index}")
            number = float(value)
            if not math.isfinite(number):
                raise self._invalid(f"returned a non-finite value at index {index}")
            vector.append(number)
        return vector


def _field(item: object, name: str) -> Any:
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _preview(values: Sequence[object], limit: int = 8) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}{', …' if len(values) > limit else ''}]"


def embedder_from_url(
    url: str,
    *,
    api_key: str | None,
    model: str,
    dimensions: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timeout: float = DEFAULT_TIMEOUT,
) -> Embedder:
    """An embedder for ``url`` (forms in the module docstring).

    Raises :class:`ConfigurationError` for an unsupported or malformed URL or a missing model,
    and :class:`MissingExtra` when the ``openai`` SDK is not installed. Error messages never
    repeat the URL, which might hold a credential by mistake.
    """
    base_url = _base_url(url)
    host = (urlsplit(base_url).hostname or "").lower()
    return OpenAICompatibleEmbedder(
        model,
        api_key=api_key,
        base_url=base_url,
        name="openai" if host == OPENAI_HOST else "openai-compatible",
        dimensions=dimensions,
        batch_size=batch_size,
        timeout=timeout,
    )


def embeddings_base_url(url: str) -> str:
    """The API base URL :func:`embedder_from_url` would use for ``url``; raises
    :class:`ConfigurationError` as it would (without importing the SDK)."""
    return _base_url(url)


def _base_url(url: str) -> str:
    text = url.strip()
    scheme, sep, _ = text.partition("://")
    scheme = scheme.lower()
    if scheme.startswith("openai+"):
        scheme = scheme[len("openai+") :]
    if not sep or scheme not in ("http", "https"):
        raise ConfigurationError(
            "unsupported embeddings URL scheme; use one of " + ", ".join(URL_FORMS)
        )
    rest = text.split("://", 1)[1]
    try:
        parts = urlsplit(f"{scheme}://{rest}")
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigurationError("malformed embeddings URL (check the host and port)") from None
    if not parts.hostname:
        raise ConfigurationError("the embeddings URL needs a host")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            "the embeddings URL must not hold credentials; pass the API key separately "
            "(CLAUDE_MEM_EMBEDDINGS_API_KEY)"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError("the embeddings URL must not have a query string or fragment")
    path = parts.path.rstrip("/")
    if path.lower().endswith("/embeddings"):
        path = path[: -len("/embeddings")]
    return f"{scheme}://{parts.netloc}{path}"


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "URL_FORMS",
    "OpenAICompatibleEmbedder",
    "embedder_from_url",
    "embeddings_base_url",
]
