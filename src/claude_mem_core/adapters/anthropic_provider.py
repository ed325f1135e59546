"""The Anthropic Messages API provider, over the official ``anthropic`` SDK.

Imported only by :func:`claude_mem_core.adapters.providers.provider_from_spec` (or by callers
who want it explicitly), so the SDK's import cost is paid only when this provider is used.

SDK retries are off by default: the job layer owns retries and honours ``retry_after``.
Every failure surfaces as :class:`~claude_mem_core.errors.ProviderError` with a ``kind`` from
:func:`~claude_mem_core.adapters.providers.classify_failure`.

anthropic 2.x no longer has a ``temperature`` argument; the provider sends it in the request
body (the Messages API field). If the API rejects it (a 400 naming ``temperature``), the
provider drops it for the rest of its life and repeats the call once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping

import anthropic

from claude_mem_core.adapters.providers import (
    ANTHROPIC_BASE_URL,
    aiohttp_http_client,
    classify_failure,
    connection_detail,
    int_or_none,
    timeout_detail,
)
from claude_mem_core.errors import ConfigurationError, ProviderError
from claude_mem_core.ports.provider import GenerationRequest, GenerationResult, Usage

logger = logging.getLogger(__name__)

LABEL = "Anthropic"

# HTTP status for each Anthropic error type, for error objects inside a 2xx body.
_ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicProvider:
    """:class:`~claude_mem_core.ports.provider.Provider` for Claude models."""

    name: str = "anthropic"

    def __init__(
        self,
        api_key: str,
        model: str,
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 0,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ConfigurationError("Anthropic API key not configured: set ANTHROPIC_API_KEY")
        if timeout <= 0:
            raise ConfigurationError("Anthropic provider timeout must be positive")
        self.model: str | None = model
        self.timeout = timeout
        self.base_url = base_url or ANTHROPIC_BASE_URL
        self._api_key = api_key
        self._send_temperature = True
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=self.base_url,
            timeout=timeout,
            max_retries=max_retries,
            http_client=aiohttp_http_client(anthropic.DefaultAioHttpClient),
        )
        # The Messages endpoint as the client would join it to its base URL (which ends in
        # "/"), joined once: the client parses an absolute URL, but joins a relative one
        # again on every call (about a fifth of the SDK's CPU per call).
        base = self._client.base_url
        self._messages_url = str(base.copy_with(raw_path=base.raw_path + b"v1/messages"))

    def __repr__(self) -> str:
        return f"AnthropicProvider(model={self.model!r}, base_url={self.base_url!r})"

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        try:
            async with asyncio.timeout(self.timeout):
                message = await self._create(request)
        except TimeoutError:
            raise ProviderError(
                f"{LABEL} call timed out after {self.timeout:g}s (transient)", kind="transient"
            ) from None
        return self._result(message)

    async def close(self) -> None:
        await self._client.close()

    # -- internals -------------------------------------------------------------------------------

    async def _create(self, request: GenerationRequest) -> object:
        while True:
            body: dict[str, object] = {
                "model": self._model_name,
                "max_tokens": request.max_output_tokens,
                "messages": [{"role": "user", "content": request.prompt}],
            }
            if self._send_temperature:
                body["temperature"] = request.temperature
            try:
                # The Messages endpoint through the client's own ``post`` (same request,
                # headers, errors), answered as plain JSON: building the SDK's pydantic
                # ``Message`` cost about a third of the call's CPU, for four fields.
                return await self._client.post(self._messages_url, cast_to=object, body=body)
            except anthropic.APIStatusError as exc:
                if (
                    exc.status_code == 400
                    and self._send_temperature
                    and "temperature" in str(exc.body).lower()
                ):
                    logger.warning("%s rejected temperature; sending requests without it", LABEL)
                    self._send_temperature = False
                    continue
                raise self._classify(
                    status=exc.status_code, body=exc.body, headers=exc.response.headers
                ) from None
            except anthropic.APITimeoutError as exc:
                raise self._classify(
                    status=None, detail=timeout_detail(exc, self.timeout)
                ) from None
            except anthropic.APIConnectionError as exc:
                raise self._classify(status=None, detail=connection_detail(exc)) from None
            except (anthropic.APIResponseValidationError, json.JSONDecodeError):
                raise ProviderError(
                    f"{LABEL} returned invalid JSON", kind="parse_error", status=200
                ) from None

    @property
    def _model_name(self) -> str:
        return self.model or ""

    def _classify(
        self,
        *,
        status: int | None,
        body: object = None,
        headers: Mapping[str, str] | None = None,
        detail: str = "",
    ) -> ProviderError:
        return classify_failure(
            LABEL,
            status=status,
            body=body,
            headers=headers,
            detail=detail,
            secrets=(self._api_key,),
        )

    def _result(self, message: object) -> GenerationResult:
        """The result of a Messages API response body (parsed JSON)."""
        if not isinstance(message, Mapping):
            raise ProviderError(f"{LABEL} returned invalid JSON", kind="parse_error", status=200)
        if message.get("type") == "error":
            error = message.get("error")
            error_type = error.get("type") if isinstance(error, Mapping) else None
            status = _ERROR_TYPE_STATUS.get(str(error_type), 500)
            raise self._classify(status=status, body={"error": error})
        content = message.get("content")
        if not isinstance(content, list):
            raise ProviderError(
                f"{LABEL} response has no content blocks", kind="parse_error", status=200
            )
        texts = [
            block["text"]
            for block in content
            if isinstance(block, Mapping)
            and block.get("type") == "text"
            and isinstance(block.get("text"), str)
        ]
        text = "\n".join(texts).strip()
        stop_reason = message.get("stop_reason")
        if stop_reason == "max_tokens":
            logger.warning("%s output was cut off at max_tokens", LABEL)
        if not text:
            logger.warning("%s returned no text (stop_reason=%s)", LABEL, stop_reason)
        usage = message.get("usage")
        usage = usage if isinstance(usage, Mapping) else {}
        model = message.get("model")
        return GenerationResult(
            text=text,
            provider=self.name,
            model=model if isinstance(model, str) and model else self.model,
            usage=Usage(
                input_tokens=int_or_none(usage.get("input_tokens")),
                output_tokens=int_or_none(usage.get("output_tokens")),
            ),
        )


__all__ = ["AnthropicProvider"]
