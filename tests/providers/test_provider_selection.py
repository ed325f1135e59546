"""provider_from_spec / describe_provider_choice, and the shared error helpers.

Providers are only constructed here, never called: no request leaves the process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from email.utils import formatdate

import pytest

from claude_mem_core.adapters import providers
from claude_mem_core.adapters.providers import (
    DEFAULT_ANTHROPIC_MODEL,
    DEFAULT_GEMINI_MODEL,
    DEFAULT_OPENAI_MODEL,
    DEFAULT_OPENROUTER_MODEL,
    classify_failure,
    describe_provider_choice,
    parse_retry_after,
    provider_from_spec,
)
from claude_mem_core.errors import ConfigurationError, MissingExtra
from claude_mem_core.ports.provider import Provider

KEY = "sk-selection-SECRET-key-000"

Build = Callable[[str | None, Mapping[str, str]], Provider]


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    """provider_from_spec, closing every provider it made at teardown."""
    made: list[Provider] = []

    def _build(spec: str | None, env: Mapping[str, str]) -> Provider:
        provider = provider_from_spec(spec, env)
        made.append(provider)
        return provider

    yield _build
    for provider in made:
        await provider.close()


def base_url(provider: Provider) -> str:
    return str(provider.base_url)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------ automatic selection


async def test_no_key_at_all_selects_the_offline_provider(build: Build) -> None:
    from claude_mem_core.adapters.offline_provider import OfflineProvider

    provider = build(None, {})

    assert isinstance(provider, OfflineProvider)
    assert provider.name == "offline"


async def test_blank_keys_count_as_absent(build: Build) -> None:
    provider = build(None, {"ANTHROPIC_API_KEY": "", "OPENAI_API_KEY": "   "})
    assert provider.name == "offline"


@pytest.mark.parametrize(
    ("env", "name", "model"),
    [
        (
            {"ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": KEY, "GEMINI_API_KEY": KEY},
            "anthropic",
            DEFAULT_ANTHROPIC_MODEL,
        ),
        (
            {"CLAUDE_MEM_ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": KEY},
            "anthropic",
            DEFAULT_ANTHROPIC_MODEL,
        ),
        ({"OPENAI_API_KEY": KEY, "OPENROUTER_API_KEY": KEY}, "openai", DEFAULT_OPENAI_MODEL),
        ({"CLAUDE_MEM_OPENAI_API_KEY": KEY, "GEMINI_API_KEY": KEY}, "openai", DEFAULT_OPENAI_MODEL),
        (
            {"OPENROUTER_API_KEY": KEY, "GEMINI_API_KEY": KEY},
            "openrouter",
            DEFAULT_OPENROUTER_MODEL,
        ),
        ({"CLAUDE_MEM_GEMINI_API_KEY": KEY}, "gemini", DEFAULT_GEMINI_MODEL),
        # the original let an empty ANTHROPIC_API_KEY shadow CLAUDE_MEM_ANTHROPIC_API_KEY
        (
            {"ANTHROPIC_API_KEY": "", "CLAUDE_MEM_ANTHROPIC_API_KEY": KEY},
            "anthropic",
            DEFAULT_ANTHROPIC_MODEL,
        ),
    ],
)
async def test_key_order(build: Build, env: dict[str, str], name: str, model: str) -> None:
    provider = build(None, env)
    assert (provider.name, provider.model) == (name, model)


async def test_default_base_urls(build: Build) -> None:
    assert base_url(build("anthropic", {"ANTHROPIC_API_KEY": KEY})) == "https://api.anthropic.com"
    assert base_url(build("openai", {"OPENAI_API_KEY": KEY})) == "https://api.openai.com/v1"
    assert (
        base_url(build("openrouter", {"OPENROUTER_API_KEY": KEY})) == "https://openrouter.ai/api/v1"
    )
    assert (
        base_url(build("gemini", {"GEMINI_API_KEY": KEY}))
        == "https://generativelanguage.googleapis.com/v1beta/openai/"
    )


async def test_base_url_overrides(build: Build) -> None:
    anthropic = build(None, {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": "http://127.0.0.1:1"})
    openai = build(
        None, {"OPENAI_API_KEY": KEY, "CLAUDE_MEM_OPENAI_BASE_URL": "http://127.0.0.1:2/v1"}
    )
    assert base_url(anthropic) == "http://127.0.0.1:1"
    assert base_url(openai) == "http://127.0.0.1:2/v1"


# ---------------------------------------------------------------------------- named providers


async def test_server_provider_env_overrides_key_order(build: Build) -> None:
    env = {"ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": KEY, "CLAUDE_MEM_SERVER_PROVIDER": "openai"}
    provider = build(None, env)
    assert (provider.name, provider.model) == ("openai", DEFAULT_OPENAI_MODEL)


async def test_server_provider_env_may_be_a_full_spec(build: Build) -> None:
    env = {"OPENROUTER_API_KEY": KEY, "CLAUDE_MEM_SERVER_PROVIDER": " OpenRouter:google/gemma-3 "}
    provider = build(None, env)
    assert (provider.name, provider.model) == ("openrouter", "google/gemma-3")


async def test_server_provider_offline_wins_over_keys(build: Build) -> None:
    env = {"ANTHROPIC_API_KEY": KEY, "CLAUDE_MEM_SERVER_PROVIDER": "offline"}
    assert build(None, env).name == "offline"


async def test_explicit_spec_wins_over_env_provider(build: Build) -> None:
    env = {
        "ANTHROPIC_API_KEY": KEY,
        "GEMINI_API_KEY": KEY,
        "CLAUDE_MEM_SERVER_PROVIDER": "anthropic",
    }
    assert build("gemini", env).name == "gemini"


@pytest.mark.parametrize("spec", ["claude", "CLAUDE", "anthropic", "Anthropic:"])
async def test_claude_is_an_alias_of_anthropic(build: Build, spec: str) -> None:
    provider = build(spec, {"ANTHROPIC_API_KEY": KEY})
    assert (provider.name, provider.model) == ("anthropic", DEFAULT_ANTHROPIC_MODEL)


async def test_model_precedence(build: Build) -> None:
    env = {"ANTHROPIC_API_KEY": KEY, "CLAUDE_MEM_SERVER_MODEL": "claude-from-env"}
    assert build("anthropic", env).model == "claude-from-env"
    assert build("claude:claude-from-spec", env).model == "claude-from-spec"


async def test_openrouter_sends_attribution_headers(build: Build) -> None:
    provider = build(
        "openrouter", {"OPENROUTER_API_KEY": KEY, "CLAUDE_MEM_OPENROUTER_APP_NAME": "mine"}
    )
    headers = provider._client.default_headers  # type: ignore[attr-defined]
    assert headers["HTTP-Referer"] == providers.OPENROUTER_REFERER
    assert headers["X-Title"] == "mine"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (None, "http://127.0.0.1:11434/v1"),
        ("127.0.0.1:9999", "http://127.0.0.1:9999/v1"),
        ("0.0.0.0", "http://127.0.0.1:11434/v1"),
        ("https://ollama.internal", "https://ollama.internal:11434/v1"),
        ("http://gpu-box:8080/", "http://gpu-box:8080/v1"),
    ],
)
async def test_ollama_base_url_from_ollama_host(
    build: Build, host: str | None, expected: str
) -> None:
    env = {"OLLAMA_HOST": host} if host else {}
    provider = build("ollama:qwen2.5-coder:7b", env)
    assert (provider.name, provider.model, base_url(provider)) == (
        "ollama",
        "qwen2.5-coder:7b",
        expected,
    )


async def test_openai_compatible_base_url_from_env(build: Build) -> None:
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"}
    provider = build("openai-compatible:mistral-7b", env)
    assert (provider.name, provider.model, base_url(provider)) == (
        "openai-compatible",
        "mistral-7b",
        "http://127.0.0.1:8000/v1",
    )


def test_openai_compatible_needs_a_base_url() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_BASE_URL"):
        provider_from_spec("openai-compatible:mistral-7b", {})


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("spec", "env_var"),
    [
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("claude:claude-x", "CLAUDE_MEM_ANTHROPIC_API_KEY"),
        ("openai", "OPENAI_API_KEY"),
        ("openrouter", "OPENROUTER_API_KEY"),
        ("gemini:gemini-2.5-pro", "GEMINI_API_KEY"),
    ],
)
def test_named_provider_without_key_names_the_env_var(spec: str, env_var: str) -> None:
    with pytest.raises(ConfigurationError, match=env_var):
        provider_from_spec(spec, {"SOME_OTHER_KEY": KEY})


def test_missing_key_via_env_provider() -> None:
    with pytest.raises(ConfigurationError, match="GEMINI_API_KEY"):
        provider_from_spec(None, {"CLAUDE_MEM_SERVER_PROVIDER": "gemini", "ANTHROPIC_API_KEY": KEY})


@pytest.mark.parametrize("spec", ["bedrock", "gpt4", "offline:model", "fake"])
def test_unknown_spec_lists_the_valid_ones(spec: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        provider_from_spec(spec, {"ANTHROPIC_API_KEY": KEY})
    if spec != "offline:model":
        for valid in (
            "anthropic",
            "openrouter",
            "gemini",
            "openai-compatible",
            "ollama",
            "offline",
        ):
            assert valid in info.value.message


def test_missing_sdk_is_a_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)
    monkeypatch.delitem(sys.modules, "claude_mem_core.adapters.anthropic_provider", raising=False)
    with pytest.raises(MissingExtra) as info:
        provider_from_spec("anthropic", {"ANTHROPIC_API_KEY": KEY})
    assert info.value.extra == "anthropic"
    assert "Anthropic provider" in info.value.message


def test_missing_openai_sdk_is_a_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    monkeypatch.delitem(sys.modules, "claude_mem_core.adapters.openai_provider", raising=False)
    with pytest.raises(MissingExtra) as info:
        provider_from_spec("gemini", {"GEMINI_API_KEY": KEY})
    assert info.value.extra == "openai"


def test_selection_module_does_not_import_the_sdks() -> None:
    code = (
        "import sys, claude_mem_core.adapters.providers, claude_mem_core.testing.fake_llm\n"
        "print(sorted(m for m in ('anthropic', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -------------------------------------------------------------------------------- description


def test_describe_offline() -> None:
    text = describe_provider_choice({})
    assert text.startswith("offline")
    assert "ANTHROPIC_API_KEY" in text


def test_describe_keyed_choice_names_the_variable_not_the_key() -> None:
    text = describe_provider_choice({"CLAUDE_MEM_ANTHROPIC_API_KEY": KEY})
    assert "anthropic" in text
    assert DEFAULT_ANTHROPIC_MODEL in text
    assert "CLAUDE_MEM_ANTHROPIC_API_KEY" in text
    assert KEY not in text


def test_describe_reports_problems_instead_of_raising() -> None:
    assert "MISSING KEY" in describe_provider_choice({"CLAUDE_MEM_SERVER_PROVIDER": "openrouter"})
    assert "OPENROUTER_API_KEY" in describe_provider_choice(
        {"CLAUDE_MEM_SERVER_PROVIDER": "openrouter"}
    )
    assert "invalid" in describe_provider_choice({"CLAUDE_MEM_SERVER_PROVIDER": "bogus"})


# -------------------------------------------------------------------------- shared helpers


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "5"}, 5.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "bogus", "retry-after": "4"}, 4.0),
        ({"retry-after": formatdate(1_000_000 - 100, usegmt=True)}, 0.0),  # in the past
        ({"retry-after": formatdate(1_000_000 + 90, usegmt=True)}, 90.0),
        ({}, None),
        (None, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str] | None, expected: float | None) -> None:
    assert parse_retry_after(headers, now=lambda: 1_000_000.0) == expected


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (None, None, "transient"),
        (529, None, "transient"),
        (400, {"error": {"type": "overloaded_error", "message": "Overloaded"}}, "transient"),
        (429, {"error": {"message": "slow down"}}, "rate_limit"),
        (429, {"error": {"code": "insufficient_quota", "message": "x"}}, "quota_exhausted"),
        (402, "Payment required", "quota_exhausted"),
        (401, None, "auth"),
        (400, {"error": {"message": "Invalid API key"}}, "auth"),
        (400, {"error": {"code": "context_length_exceeded", "message": "x"}}, "context_too_long"),
        (413, None, "context_too_long"),
        (408, None, "transient"),
        (504, "<html>gateway timeout</html>", "transient"),
        (400, None, "bad_request"),
        (418, None, "bad_request"),
        (302, None, "unknown"),
    ],
)
def test_classification_table(status: int | None, body: object, kind: str) -> None:
    error = classify_failure("Test", status=status, body=body)
    assert error.kind == kind
    assert error.status == status
    assert error.retryable == (kind in ("transient", "rate_limit"))


def test_transient_http_errors_keep_the_retry_hint() -> None:
    error = classify_failure("Test", status=503, headers={"Retry-After": "9"})
    assert (error.kind, error.retry_after) == ("transient", 9.0)


def test_classification_redacts_secrets() -> None:
    error = classify_failure("Test", status=401, body=f"bad key {KEY}", secrets=(KEY,))
    assert KEY not in error.message
    assert "bad key ***" in error.message


def test_classification_truncates_long_bodies() -> None:
    error = classify_failure("Test", status=500, body="x" * 5000)
    assert len(error.message) < 400
