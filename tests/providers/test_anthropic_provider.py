"""AnthropicProvider: the real ``anthropic`` SDK against the local fake LLM server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate

import pytest

from claude_mem_core.adapters.anthropic_provider import AnthropicProvider
from claude_mem_core.errors import ConfigurationError, ProviderError
from claude_mem_core.ports.provider import GenerationRequest
from claude_mem_core.testing.fake_llm import FakeLLMServer, Status

SECRET_KEY = "sk-ant-test-SECRET-0123456789abcdef"
MODEL = "claude-test-model"

MakeProvider = Callable[..., AnthropicProvider]


@pytest.fixture
async def make_provider(fake: FakeLLMServer) -> AsyncIterator[MakeProvider]:
    made: list[AnthropicProvider] = []

    def make(**kwargs: object) -> AnthropicProvider:
        options: dict[str, object] = {"base_url": fake.anthropic_base_url, "timeout": 5.0}
        options.update(kwargs)
        provider = AnthropicProvider(SECRET_KEY, MODEL, **options)  # type: ignore[arg-type]
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@pytest.fixture
def provider(make_provider: MakeProvider) -> AnthropicProvider:
    return make_provider()


def request(prompt: str = "Summarise the session.", **kwargs: object) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, **kwargs)  # type: ignore[arg-type]


async def failure(provider: AnthropicProvider) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await provider.generate(request())
    assert SECRET_KEY not in str(info.value)
    return info.value


# ------------------------------------------------------------------------------------ success


async def test_success_returns_text_usage_and_model(
    fake: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake.anthropic.reply("  <observation>done</observation>\n", input_tokens=42, output_tokens=7)

    result = await provider.generate(request("What happened?", max_output_tokens=1234))

    assert result.text == "<observation>done</observation>"
    assert result.provider == "anthropic"
    assert result.model == MODEL
    assert (result.usage.input_tokens, result.usage.output_tokens) == (42, 7)


async def test_request_body_and_credentials(
    fake: FakeLLMServer, provider: AnthropicProvider
) -> None:
    await provider.generate(request("What happened?", max_output_tokens=1234, temperature=0.3))

    sent = fake.anthropic.last_request
    assert sent.path == "/v1/messages"
    assert sent.json == {
        "model": MODEL,
        "max_tokens": 1234,
        "temperature": 0.3,
        "messages": [{"role": "user", "content": "What happened?"}],
    }
    assert sent.api_key == SECRET_KEY
    assert "anthropic-version" in sent.headers


async def test_all_text_blocks_are_joined_and_other_blocks_ignored(
    fake: FakeLLMServer, provider: AnthropicProvider
) -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-served-model",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "  first"},
            {"type": "tool_use", "id": "toolu_1", "name": "x", "input": {}},
            {"type": "text", "text": "second  "},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    fake.anthropic.push(Status(status=200, body=body))

    result = await provider.generate(request())

    assert result.text == "first\nsecond"
    assert result.model == "claude-served-model"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (3, 4)


async def test_empty_content_gives_empty_text(
    fake: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake.anthropic.reply("   ")
    result = await provider.generate(request())
    assert result.text == ""


# ----------------------------------------------------------------------------- classification


async def test_429_with_retry_after_seconds_is_rate_limit(
    fake: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake.anthropic.rate_limited(retry_after="7")

    error = await failure(provider)

    assert error.kind == "rate_limit"
    assert error.status == 429
    assert error.retry_after == 7.0
    assert error.retryable


async def test_429_with_retry_after_http_date_is_rate_limit(
    fake: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake.anthropic.rate_limited(retry_after=formatdate(time.time() + 30, usegmt=True))

    error = await failure(provider)

    assert error.kind == "rate_limit"
    assert error.retry_after is not None
    assert 25.0 <= error.retry_after <= 31.0


async def test_429_without_retry_after_has_no_hint(
    fake: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake.anthropic.rate_limited()
    error = await failure(provider)
    assert (error.kind, error.retry_after) == ("rate_limit", None)


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (500, "Internal server error", "transient"),
        (503, "Service unavailable", "transient"),
        (529, "Overloaded", "transient"),
        (401, "invalid x-api-key", "auth"),
        (403, "Your API key does not have permission", "auth"),
        (400, "prompt is too long: 215000 tokens > 200000 maximum", "context_too_long"),
        (413, "Request exceeds the maximum allowed number of bytes", "context_too_long"),
        (400, "messages: roles must alternate", "bad_request"),
        (404, "model: claude-nope", "bad_request"),
        (422, "unprocessable", "bad_request"),
        (400, "Your credit balance is too low to access the Anthropic API", "quota_exhausted"),
    ],
)
async def test_error_statuses_are_classified(
    fake: FakeLLMServer, provider: AnthropicProvider, status: int, message: str, kind: str
) -> None:
    fake.anthropic.status(status, message)

    error = await failure(provider)

    assert error.kind == kind
    assert error.status == status
    assert error.retryable == (kind == "transient")
    assert message.split(":")[0] in error.message
    assert "Anthropic" in error.message


async def test_overloaded_body_is_transient_whatever_the_status(
    fake: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake.anthropic.status(400, "Overloaded", error_type="overloaded_error")
    assert (await failure(provider)).kind == "transient"


async def test_sdk_does_not_retry(fake: FakeLLMServer, provider: AnthropicProvider) -> None:
    fake.anthropic.status(500).overloaded()

    await failure(provider)

    assert len(fake.anthropic.requests) == 1


async def test_key_echoed_by_the_server_is_redacted(
    fake: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake.anthropic.status(401, f"invalid x-api-key: {SECRET_KEY}")

    error = await failure(provider)  # asserts the key is absent

    assert error.kind == "auth"
    assert "***" in error.message


async def test_wrong_key_rejected_by_server_is_auth(fake: FakeLLMServer) -> None:
    fake.require_api_key = "some-other-key"
    provider = AnthropicProvider(SECRET_KEY, MODEL, base_url=fake.anthropic_base_url)
    try:
        error = await failure(provider)
    finally:
        await provider.close()
    assert error.kind == "auth"
    assert error.status == 401


@pytest.mark.parametrize(
    "body",
    [
        '{"id": "msg_1", "content": [{"type": "te',  # truncated JSON
        "",  # empty body
        '{"id": "msg_1", "type": "message"}',  # valid JSON, no content blocks
    ],
)
async def test_malformed_success_body_is_parse_error(
    fake: FakeLLMServer, provider: AnthropicProvider, body: str
) -> None:
    fake.anthropic.malformed(body)

    error = await failure(provider)

    assert error.kind == "parse_error"
    assert not error.retryable


async def test_error_object_inside_200_is_classified(
    fake: FakeLLMServer, provider: AnthropicProvider
) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    fake.anthropic.push(Status(status=200, body=body))

    error = await failure(provider)

    assert error.kind == "transient"
    assert error.status == 529


async def test_slow_response_times_out_as_transient(
    fake: FakeLLMServer, make_provider: MakeProvider
) -> None:
    provider = make_provider(timeout=0.5)
    fake.anthropic.delay(10)

    started = time.monotonic()
    error = await failure(provider)

    assert error.kind == "transient"
    assert "timed out" in error.message
    assert time.monotonic() - started < 3.0


async def test_connection_refused_is_transient(closed_port: int) -> None:
    provider = AnthropicProvider(
        SECRET_KEY, MODEL, base_url=f"http://127.0.0.1:{closed_port}", timeout=2.0
    )
    try:
        error = await failure(provider)
    finally:
        await provider.close()
    assert error.kind == "transient"
    assert error.status is None
    assert "connection failed" in error.message


async def test_dropped_connection_is_transient(
    fake: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake.anthropic.disconnect()
    error = await failure(provider)
    assert (error.kind, error.status) == ("transient", None)


# -------------------------------------------------------------------------- temperature fallback


async def test_rejected_temperature_is_dropped_once_and_for_all(
    fake: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake.anthropic.status(400, "temperature: Extra inputs are not permitted")
    fake.anthropic.reply("ok")

    first = await provider.generate(request())
    second = await provider.generate(request())

    assert (first.text, second.text) == ("ok", fake.anthropic.default.text)  # type: ignore[union-attr]
    bodies = [r.json for r in fake.anthropic.requests]
    assert len(bodies) == 3
    assert "temperature" in bodies[0]
    assert "temperature" not in bodies[1]
    assert "temperature" not in bodies[2]


async def test_other_bad_requests_are_not_retried(
    fake: FakeLLMServer, provider: AnthropicProvider
) -> None:
    fake.anthropic.status(400, "max_tokens: must be positive")
    error = await failure(provider)
    assert error.kind == "bad_request"
    assert len(fake.anthropic.requests) == 1


# ---------------------------------------------------------------------------------- construction


def test_empty_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider("  ", MODEL, base_url="http://127.0.0.1:9")


async def test_repr_hides_the_key(provider: AnthropicProvider) -> None:
    assert SECRET_KEY not in repr(provider)
    assert provider.name == "anthropic"
    assert provider.model == MODEL


@pytest.mark.parametrize(
    ("base_url", "endpoint"),
    [
        ("http://127.0.0.1:9", "http://127.0.0.1:9/v1/messages"),
        ("http://127.0.0.1:9/", "http://127.0.0.1:9/v1/messages"),
        ("https://gateway.example/anthropic", "https://gateway.example/anthropic/v1/messages"),
    ],
)
async def test_the_messages_endpoint_is_joined_to_the_base_url_once(
    base_url: str, endpoint: str
) -> None:
    """Joined as the SDK joins a relative path to its base URL, a path prefix kept."""
    provider = AnthropicProvider(SECRET_KEY, MODEL, base_url=base_url)
    try:
        assert provider._messages_url == endpoint
    finally:
        await provider.close()
