"""Providers speaking the OpenAI Chat Completions API, over the official ``openai`` SDK.

One class serves OpenAI, OpenRouter, Gemini's OpenAI-compatible endpoint and local servers
(Ollama, vLLM, llama.cpp, LM Studio …): only ``base_url``, ``name`` and headers differ. Imported
lazily by :func:`claude_mem_core.adapters.providers.provider_from_spec`.

SDK retries are off: the job layer owns retries. Failures become
:class:`~claude_mem_core.errors.ProviderError` classified by
:func:`~claude_mem_core.adapters.providers.classify_failure`; an exhausted quota or credit
balance gets the non-retryable kind ``quota_exhausted``.

Compatibility fallbacks, learnt once per provider instance and applied to later calls: a 400
saying ``max_tokens`` is unsupported (newer OpenAI models) switches to
``max_completion_tokens``; a 400 rejecting ``temperature`` drops it. Each repeats the call once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from claude_mem_core.adapters.providers import (
    OPENAI_BASE_URL,
    aiohttp_http_client,
    classify_failure,
    int_or_none,
    openai_sdk_failure,
)
from claude_mem_core.errors import ConfigurationError, ProviderError
from claude_mem_core.ports.provider import GenerationRequest, GenerationResult, Usage

logger = logging.getLogger(__name__)

_LABELS = {
    "openai": "OpenAI",
    "openrouter": "OpenRouter",
    "gemini": "Gemini",
    "ollama": "Ollama",
    "openai-compatible": "OpenAI-compatible",
}


class OpenAICompatibleProvider:
    """:class:`~claude_mem_core.ports.provider.Provider` over ``/chat/completions``."""

    def __init__(
        self,
        api_key: str,
        model: str,
        *,
        base_url: str | None = None,
        name: str = "openai",
        default_headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.label = _LABELS.get(name, name)
        if not api_key or not api_key.strip():
            raise ConfigurationError(
                f"{self.label} API key not configured (use any placeholder for a local server)"
            )
        if timeout <= 0:
            raise ConfigurationError(f"{self.label} provider timeout must be positive")
        self.model: str | None = model
        self.timeout = timeout
        self.base_url = base_url or OPENAI_BASE_URL
        self._api_key = api_key
        self._send_temperature = True
        self._token_param = "max_tokens"
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            timeout=timeout,
            max_retries=0,
            default_headers=dict(default_headers) if default_headers else None,
            http_client=aiohttp_http_client(openai.DefaultAioHttpClient),
        )

    def __repr__(self) -> str:
        return (
            f"OpenAICompatibleProvider(name={self.name!r}, model={self.model!r}, "
            f"base_url={self.base_url!r})"
        )

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        try:
            async with asyncio.timeout(self.timeout):
                completion = await self._create(request)
        except TimeoutError:
            raise ProviderError(
                f"{self.label} call timed out after {self.timeout:g}s (transient)", kind="transient"
            ) from None
        return self._result(completion)

    async def close(self) -> None:
        await self._client.close()

    # -- internals -------------------------------------------------------------------------------

    async def _create(self, request: GenerationRequest) -> ChatCompletion:
        while True:
            limit = request.max_output_tokens
            by_completion = self._token_param == "max_completion_tokens"
            try:
                return await self._client.chat.completions.create(
                    model=self.model or "",
                    messages=[{"role": "user", "content": request.prompt}],
                    max_tokens=openai.omit if by_completion else limit,
                    max_completion_tokens=limit if by_completion else openai.omit,
                    temperature=request.temperature if self._send_temperature else openai.omit,
                )
            except openai.APIStatusError as exc:
                if exc.status_code == 400 and self._adapt(str(exc.body).lower()):
                    continue
                raise self._sdk_failure(exc) from None
            except (
                openai.APIConnectionError,  # timeouts too
                openai.APIResponseValidationError,
                json.JSONDecodeError,
            ) as exc:
                raise self._sdk_failure(exc) from None

    def _adapt(self, body: str) -> bool:
        """Learn from a 400 that names a parameter this model does not take."""
        if (
            self._token_param == "max_tokens"
            and "max_tokens" in body
            and "max_completion_tokens" in body
        ):
            logger.warning("%s wants max_completion_tokens; switching", self.label)
            self._token_param = "max_completion_tokens"
            return True
        if self._send_temperature and "temperature" in body:
            logger.warning("%s rejected temperature; sending requests without it", self.label)
            self._send_temperature = False
            return True
        return False

    def _sdk_failure(self, exc: BaseException) -> ProviderError:
        return openai_sdk_failure(exc, self.label, timeout=self.timeout, secrets=(self._api_key,))

    def _classify(
        self,
        *,
        status: int | None,
        body: object = None,
        headers: Mapping[str, str] | None = None,
        detail: str = "",
    ) -> ProviderError:
        return classify_failure(
            self.label,
            status=status,
            body=body,
            headers=headers,
            detail=detail,
            secrets=(self._api_key,),
        )

    def _result(self, completion: Any) -> GenerationResult:
        choices = getattr(completion, "choices", None)
        if not isinstance(choices, list) or not choices:
            extra = getattr(completion, "model_extra", None) or {}
            error = extra.get("error") if isinstance(extra, Mapping) else None
            if error is not None:
                # OpenRouter and some proxies report upstream failures inside a 200 body.
                code = error.get("code") if isinstance(error, Mapping) else None
                status = code if isinstance(code, int) and 100 <= code <= 599 else 502
                raise self._classify(status=status, body={"error": error})
            raise ProviderError(
                f"{self.label} response has no choices", kind="parse_error", status=200
            )
        message = getattr(choices[0], "message", None)
        content = getattr(message, "content", None)
        if content is not None and not isinstance(content, str):
            raise ProviderError(
                f"{self.label} response content is not text", kind="parse_error", status=200
            )
        text = (content or "").strip()
        finish_reason = getattr(choices[0], "finish_reason", None)
        if finish_reason == "length":
            logger.warning("%s output was cut off at the token limit", self.label)
        if not text:
            logger.warning("%s returned no text (finish_reason=%s)", self.label, finish_reason)
        usage = getattr(completion, "usage", None)
        model = getattr(completion, "model", None)
        return GenerationResult(
            text=text,
            provider=self.name,
            model=model if isinstance(model, str) and model else self.model,
            usage=Usage(
                input_tokens=int_or_none(getattr(usage, "prompt_tokens", None)),
                output_tokens=int_or_none(getattr(usage, "completion_tokens", None)),
            ),
        )


__all__ = ["OpenAICompatibleProvider"]
