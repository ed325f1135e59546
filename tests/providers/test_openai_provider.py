"""OpenAICompatibleProvider: the real ``openai`` SDK against the local fake LLM server.

Covers OpenAI itself and the OpenAI-compatible endpoints of OpenRouter, Gemini and local
servers, each reached through a ``base_url`` on the fake (never the internet).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate

import pytest

from claude_mem_core.adapters.openai_provider import OpenAICompatibleProvider
from claude_mem_core.adapters.providers import provider_from_spec
from claude_mem_core.errors import ConfigurationError, ProviderError
from claude_mem_core.ports.provider import GenerationRequest
from claude_mem_core.testing.fake_llm import DEFAULT_TEXT, FakeLLMServer, Status

SECRET_KEY = "sk-proj-test-SECRET-0123456789abcdef"
MODEL = "gpt-test-model"

MakeProvider = Callable[..., OpenAICompatibleProvider]


@pytest.fixture
async def make_provider(fake: FakeLLMServer) -> AsyncIterator[MakeProvider]:
    made: list[OpenAICompatibleProvider] = []

    def make(
        api_key: str = SECRET_KEY, model: str = MODEL, **kwargs: object
    ) -> OpenAICompatibleProvider:
        options: dict[str, object] = {"base_url": fake.openai_base_url, "timeout": 5.0}
        options.update(kwargs)
        provider = OpenAICompatibleProvider(api_key, model, **options)  # type: ignore[arg-type]
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@pytest.fixture
def provider(make_provider: MakeProvider) -> OpenAICompatibleProvider:
    return make_provider()


def request(prompt: str = "Summarise the session.", **kwargs: object) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, **kwargs)  # type: ignore[arg-type]


async def failure(provider: OpenAICompatibleProvider) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await provider.generate(request())
    assert SECRET_KEY not in str(info.value)
    return info.value


# ------------------------------------------------------------------------------------ success


async def test_success_returns_text_usage_and_model(
    fake: FakeLLMServer, provider: OpenAICompatibleProvider
) -> None:
    fake.openai.reply("\n <observation>x</observation> ", input_tokens=11, output_tokens=5)

    result = await provider.generate(
        request("What happened?", max_output_tokens=999, temperature=0.3)
    )

    assert result.text == "<observation>x</observation>"
    assert result.provider == "openai"
    assert result.model == MODEL
    assert (result.usage.input_tokens, result.usage.output_tokens) == (11, 5)
    sent = fake.openai.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.json == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What happened?"}],
        "max_tokens": 999,
        "temperature": 0.3,
    }
    assert sent.headers["authorization"] == f"Bearer {SECRET_KEY}"


async def test_null_content_gives_empty_text(
    fake: FakeLLMServer, provider: OpenAICompatibleProvider
) -> None:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": "no"},
                "finish_reason": "stop",
            }
        ],
    }
    fake.openai.push(Status(status=200, body=body))

    result = await provider.generate(request())

    assert result.text == ""
    assert result.usage.input_tokens is None


async def test_openrouter_through_base_url_sends_attribution_headers(
    fake: FakeLLMServer, make_provider: MakeProvider
) -> None:
    provider = make_provider(
        model="anthropic/claude-3.5-sonnet",
        name="openrouter",
        base_url=fake.url("/api/v1"),
        default_headers={"HTTP-Referer": "https://example.test/app", "X-Title": "claude-mem"},
    )

    result = await provider.generate(request())

    assert result.provider == "openrouter"
    assert result.model == "anthropic/claude-3.5-sonnet"
    sent = fake.openai.last_request
    assert sent.path == "/api/v1/chat/completions"
    assert sent.headers["http-referer"] == "https://example.test/app"
    assert sent.headers["x-title"] == "claude-mem"


async def test_gemini_openai_compatible_path(
    fake: FakeLLMServer, make_provider: MakeProvider
) -> None:
    provider = make_provider(
        model="gemini-2.5-flash", name="gemini", base_url=fake.url("/v1beta/openai/")
    )

    result = await provider.generate(request())

    assert result.provider == "gemini"
    assert result.text == DEFAULT_TEXT
    assert fake.openai.last_request.path == "/v1beta/openai/chat/completions"
    assert fake.openai.last_request.json["model"] == "gemini-2.5-flash"


async def test_local_server_with_placeholder_key(
    fake: FakeLLMServer, make_provider: MakeProvider
) -> None:
    provider = make_provider(api_key="local", model="qwen2.5-coder:7b", name="ollama")

    result = await provider.generate(request())

    assert (result.provider, result.model) == ("ollama", "qwen2.5-coder:7b")
    assert fake.openai.last_request.api_key == "local"


@pytest.mark.parametrize(
    ("spec", "key_env", "base_env", "path"),
    [
        ("openrouter:meta/llama-3", "OPENROUTER_API_KEY", "OPENROUTER_BASE_URL", "/api/v1"),
        ("gemini", "GEMINI_API_KEY", "GEMINI_BASE_URL", "/v1beta/openai/"),
        ("openai:gpt-4.1-mini", "OPENAI_API_KEY", "OPENAI_BASE_URL", "/v1"),
    ],
)
async def test_specs_end_to_end_through_env_base_urls(
    fake: FakeLLMServer, spec: str, key_env: str, base_env: str, path: str
) -> None:
    env = {key_env: SECRET_KEY, base_env: fake.url(path)}
    provider = provider_from_spec(spec, env)
    try:
        result = await provider.generate(request())
    finally:
        await provider.close()

    assert result.text == DEFAULT_TEXT
    sent = fake.openai.last_request
    assert sent.path == path.rstrip("/") + "/chat/completions"
    assert sent.api_key == SECRET_KEY
    assert result.provider == spec.split(":")[0]


async def test_ollama_spec_uses_ollama_host(fake: FakeLLMServer) -> None:
    provider = provider_from_spec("ollama:llama3.2", {"OLLAMA_HOST": f"127.0.0.1:{fake.port}"})
    try:
        result = await provider.generate(request())
    finally:
        await provider.close()
    assert (result.provider, result.model) == ("ollama", "llama3.2")
    assert fake.openai.last_request.path == "/v1/chat/completions"


async def test_openai_compatible_spec_with_model_at_url(fake: FakeLLMServer) -> None:
    spec = f"openai-compatible:Qwen/Qwen2.5-7B@v2@{fake.openai_base_url}"
    provider = provider_from_spec(spec, {})
    try:
        result = await provider.generate(request())
    finally:
        await provider.close()
    assert result.model == "Qwen/Qwen2.5-7B@v2"
    assert fake.openai.last_request.json["model"] == "Qwen/Qwen2.5-7B@v2"


# ----------------------------------------------------------------------------- classification


async def test_429_with_retry_after_seconds(
    fake: FakeLLMServer, provider: OpenAICompatibleProvider
) -> None:
    fake.openai.rate_limited(retry_after="12")
    error = await failure(provider)
    assert (error.kind, error.status, error.retry_after) == ("rate_limit", 429, 12.0)
    assert error.retryable


async def test_429_with_retry_after_http_date(
    fake: FakeLLMServer, provider: OpenAICompatibleProvider
) -> None:
    fake.openai.rate_limited(retry_after=formatdate(time.time() + 60, usegmt=True))
    error = await failure(provider)
    assert error.kind == "rate_limit"
    assert error.retry_after is not None
    assert 55.0 <= error.retry_after <= 61.0


async def test_429_retry_after_ms_wins(
    fake: FakeLLMServer, provider: OpenAICompatibleProvider
) -> None:
    fake.openai.status(429, headers={"retry-after-ms": "1500", "retry-after": "2"})
    error = await failure(provider)
    assert error.retry_after == 1.5


async def test_gemini_resource_exhausted_with_retry_delay_in_body(
    fake: FakeLLMServer, provider: OpenAICompatibleProvider
) -> None:
    body = [
        {
            "error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota). Please retry in 20.5s.",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "20s"}
                ],
            }
        }
    ]
    fake.openai.push(Status(status=429, body=json.dumps(body)))

    error = await failure(provider)

    assert error.kind == "rate_limit"
    assert error.retry_after == 20.0


@pytest.mark.parametrize(
    ("status", "message", "error_type", "kind"),
    [
        (500, "The server had an error", None, "transient"),
        (502, "Bad gateway", None, "transient"),
        (503, "The engine is currently overloaded", None, "transient"),
        (401, "Incorrect API key provided", None, "auth"),
        (403, "Project does not have access", None, "auth"),
        (
            400,
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 130000 tokens.",
            "invalid_request_error",
            "context_too_long",
        ),
        (400, "Invalid value for 'messages'", None, "bad_request"),
        (404, "The model `gpt-nope` does not exist", None, "bad_request"),
        (
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "quota_exhausted",
        ),
        (
            402,
            "Insufficient credits. Add more using https://openrouter.ai/credits",
            None,
            "quota_exhausted",
        ),
    ],
)
async def test_error_statuses_are_classified(
    fake: FakeLLMServer,
    provider: OpenAICompatibleProvider,
    status: int,
    message: str,
    error_type: str | None,
    kind: str,
) -> None:
    fake.openai.status(status, message, error_type=error_type)

    error = await failure(provider)

    assert error.kind == kind
    assert error.status == status
    assert error.retryable == (kind in ("transient", "rate_limit"))
    assert "OpenAI" in error.message
    assert len(fake.openai.requests) == 1  # the SDK never retries on its own


async def test_key_echoed_by_the_server_is_redacted(
    fake: FakeLLMServer, provider: OpenAICompatibleProvider
) -> None:
    fake.openai.status(401, f"Incorrect API key provided: {SECRET_KEY}.")
    error = await failure(provider)
    assert error.kind == "auth"
    assert "***" in error.message


@pytest.mark.parametrize(
    "body",
    [
        '{"id": "chatcmpl-1", "choices": [{"mess',
        "",
        "{}",
        '{"id": "chatcmpl-1", "object": "chat.completion", "choices": []}',
    ],
)
async def test_malformed_success_body_is_parse_error(
    fake: FakeLLMServer, provider: OpenAICompatibleProvider, body: str
) -> None:
    fake.openai.malformed(body)
    error = await failure(provider)
    assert error.kind == "parse_error"
    assert not error.retryable


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        ({"code": 502, "message": "Provider returned error"}, "transient", 502),
        ({"code": 401, "message": "No auth credentials found"}, "auth", 401),
        ({"message": "upstream failed"}, "transient", 502),
    ],
)
async def test_error_object_inside_200_is_classified(
    fake: FakeLLMServer,
    provider: OpenAICompatibleProvider,
    error: dict[str, object],
    kind: str,
    status: int,
) -> None:
    fake.openai.push(Status(status=200, body={"error": error}))
    failed = await failure(provider)
    assert (failed.kind, failed.status) == (kind, status)


async def test_slow_response_times_out_as_transient(
    fake: FakeLLMServer, make_provider: MakeProvider
) -> None:
    provider = make_provider(timeout=0.5)
    fake.openai.delay(10)

    started = time.monotonic()
    error = await failure(provider)

    assert error.kind == "transient"
    assert "timed out" in error.message
    assert time.monotonic() - started < 3.0


async def test_connection_refused_is_transient(closed_port: int) -> None:
    provider = OpenAICompatibleProvider(
        SECRET_KEY, MODEL, base_url=f"http://127.0.0.1:{closed_port}/v1", timeout=2.0
    )
    try:
        error = await failure(provider)
    finally:
        await provider.close()
    assert (error.kind, error.status) == ("transient", None)
    assert "connection failed" in error.message


async def test_dropped_connection_is_transient(
    fake: FakeLLMServer, provider: OpenAICompatibleProvider
) -> None:
    fake.openai.disconnect()
    error = await failure(provider)
    assert (error.kind, error.status) == ("transient", None)


# ---------------------------------------------------------------------- compatibility fallbacks


async def test_max_completion_tokens_fallback_is_learnt(
    fake: FakeLLMServer, provider: OpenAICompatibleProvider
) -> None:
    fake.openai.status(
        400,
        "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead.",
    )

    await provider.generate(request(max_output_tokens=321))
    await provider.generate(request(max_output_tokens=321))

    bodies = [r.json for r in fake.openai.requests]
    assert len(bodies) == 3
    assert bodies[0]["max_tokens"] == 321
    for body in bodies[1:]:
        assert "max_tokens" not in body
        assert body["max_completion_tokens"] == 321


async def test_temperature_fallback_is_learnt(
    fake: FakeLLMServer, provider: OpenAICompatibleProvider
) -> None:
    fake.openai.status(
        400,
        "Unsupported value: 'temperature' does not support 0.3 with this model. "
        "Only the default (1) value is supported.",
    )

    result = await provider.generate(request())

    assert result.text == DEFAULT_TEXT
    bodies = [r.json for r in fake.openai.requests]
    assert [("temperature" in b) for b in bodies] == [True, False]


# ---------------------------------------------------------------------------------- construction


def test_empty_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="OpenRouter API key"):
        OpenAICompatibleProvider("", MODEL, name="openrouter", base_url="http://127.0.0.1:9/v1")


async def test_repr_hides_the_key(provider: OpenAICompatibleProvider) -> None:
    assert SECRET_KEY not in repr(provider)
