"""Choosing an LLM provider, and the error classification the provider adapters share.

:func:`provider_from_spec` turns a spec string (``anthropic:claude-sonnet-4-5``,
``openrouter``, ``openai-compatible:qwen2.5@http://127.0.0.1:8000/v1``, ``offline`` …) plus an
environment mapping into a :class:`~claude_mem_core.ports.provider.Provider`. Only the mapping
passed in is read, never ``os.environ`` directly, and the SDK clients always receive an explicit
``base_url`` and key, so the SDKs' own environment lookups cannot change the choice.

This module imports no SDK: the adapters are imported inside the factory, so importing it is
cheap and works without the ``anthropic`` / ``openai`` extras.

Spec grammar (case-insensitive name, model kept as written)::

    anthropic[:<model>]            alias claude[:<model>]
    openai[:<model>]
    openrouter[:<model>]
    gemini[:<model>]               Gemini's OpenAI-compatible endpoint
    openai-compatible[:<model>[@<base_url>]]
    ollama[:<model>]               base URL from OLLAMA_HOST
    offline                        no LLM; the deterministic offline provider

Model precedence: the model in the spec, then ``CLAUDE_MEM_SERVER_MODEL``, then the default.
Empty environment values count as absent (the original let an empty ``ANTHROPIC_API_KEY``
shadow ``CLAUDE_MEM_ANTHROPIC_API_KEY``).
"""

from __future__ import annotations

import importlib.util
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

from attrs import frozen

from claude_mem_core.errors import ConfigurationError, MissingExtra, ProviderError
from claude_mem_core.ports.provider import Provider

DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-4-5"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_OPENROUTER_MODEL = "anthropic/claude-3.5-sonnet"
DEFAULT_GEMINI_MODEL = "gemini-2.5-flash"
DEFAULT_OLLAMA_MODEL = "llama3.2"

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
OPENAI_BASE_URL = "https://api.openai.com/v1"
OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/v1beta/openai/"
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
OPENROUTER_REFERER = "https://github.com/thedotmack/claude-mem"
OPENROUTER_TITLE = "claude-mem"
LOCAL_API_KEY = "local"
"""Placeholder key for local servers that ignore credentials (the SDKs refuse an empty key)."""

VALID_SPECS = (
    "anthropic[:<model>]",
    "claude[:<model>]",
    "openai[:<model>]",
    "openrouter[:<model>]",
    "gemini[:<model>]",
    "openai-compatible[:<model>[@<base_url>]]",
    "ollama[:<model>]",
    "offline",
)

# Order of automatic selection when no provider is named: the first with a key wins.
_AUTO_ORDER = ("anthropic", "openai", "openrouter", "gemini")
_KEY_VARS: dict[str, tuple[str, ...]] = {
    "anthropic": ("ANTHROPIC_API_KEY", "CLAUDE_MEM_ANTHROPIC_API_KEY"),
    "openai": ("OPENAI_API_KEY", "CLAUDE_MEM_OPENAI_API_KEY"),
    "openrouter": ("OPENROUTER_API_KEY", "CLAUDE_MEM_OPENROUTER_API_KEY"),
    "gemini": ("GEMINI_API_KEY", "CLAUDE_MEM_GEMINI_API_KEY"),
    "ollama": ("OLLAMA_API_KEY",),
    "openai-compatible": (
        "CLAUDE_MEM_OPENAI_COMPATIBLE_API_KEY",
        "OPENAI_API_KEY",
        "CLAUDE_MEM_OPENAI_API_KEY",
    ),
}
_DEFAULT_MODELS = {
    "anthropic": DEFAULT_ANTHROPIC_MODEL,
    "openai": DEFAULT_OPENAI_MODEL,
    "openrouter": DEFAULT_OPENROUTER_MODEL,
    "gemini": DEFAULT_GEMINI_MODEL,
    "ollama": DEFAULT_OLLAMA_MODEL,
}
_ALIASES = {"claude": "anthropic"}
_NAMES = frozenset({*_DEFAULT_MODELS, "openai-compatible", "offline", *_ALIASES})
_MODEL_AT_URL = re.compile(r"^(?P<model>.*)@(?P<url>https?://\S+)$", re.IGNORECASE)


# -- environment helpers ----------------------------------------------------------------------


def _env(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of ``names`` set to a non-blank value, as (name, stripped value)."""
    for name in names:
        value = (env.get(name) or "").strip()
        if value:
            return name, value
    return None


def _env_value(env: Mapping[str, str], *names: str) -> str | None:
    found = _env(env, *names)
    return found[1] if found else None


def _ollama_base_url(env: Mapping[str, str]) -> str:
    """OLLAMA_HOST as Ollama itself reads it (``host``, ``host:port`` or a URL) plus ``/v1``."""
    host = _env_value(env, "OLLAMA_HOST") or DEFAULT_OLLAMA_HOST
    if "://" not in host:
        host = "http://" + host
    scheme, _, rest = host.partition("://")
    hostport, slash, path = rest.partition("/")
    if hostport.startswith("0.0.0.0"):  # a bind address, not somewhere to connect to
        hostport = "127.0.0.1" + hostport[len("0.0.0.0") :]
    if not re.search(r":\d+$", hostport) and not hostport.endswith("]"):
        hostport += ":11434"
    base = f"{scheme}://{hostport}{slash}{path}".rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


# -- spec parsing -------------------------------------------------------------------------------


@frozen
class ProviderChoice:
    """A resolved provider choice, before any SDK is imported."""

    kind: str
    model: str | None
    base_url: str | None
    key_var: str | None
    reason: str


def _parse_spec(spec: str) -> tuple[str, str | None, str | None]:
    text = spec.strip()
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in _NAMES:
        raise ConfigurationError(
            f"Unknown provider {spec!r}; valid providers: {', '.join(VALID_SPECS)}"
        )
    rest = rest.strip()
    base_url: str | None = None
    if name == "openai-compatible":
        match = _MODEL_AT_URL.match(rest)
        if match:
            rest, base_url = match["model"].strip(), match["url"].strip()
    elif name == "offline" and rest:
        raise ConfigurationError(f"The offline provider takes no model (got {spec!r})")
    return name, rest or None, base_url


def _resolve(spec: str | None, env: Mapping[str, str]) -> ProviderChoice:
    source = "argument"
    if spec is None or not spec.strip():
        spec = _env_value(env, "CLAUDE_MEM_SERVER_PROVIDER")
        source = "CLAUDE_MEM_SERVER_PROVIDER"
    if spec is None:
        for kind in _AUTO_ORDER:
            found = _env(env, *_KEY_VARS[kind])
            if found:
                return _choice(kind, None, None, env, f"auto: {found[0]} is set")
        wanted = ", ".join(_KEY_VARS[k][0] for k in _AUTO_ORDER)
        return ProviderChoice("offline", None, None, None, f"auto: no provider key set ({wanted})")
    kind, model, base_url = _parse_spec(spec)
    return _choice(kind, model, base_url, env, f"{source}: {spec.strip()}")


def _choice(
    kind: str, model: str | None, base_url: str | None, env: Mapping[str, str], reason: str
) -> ProviderChoice:
    if kind == "offline":
        return ProviderChoice("offline", None, None, None, reason)
    model = model or _env_value(env, "CLAUDE_MEM_SERVER_MODEL") or _DEFAULT_MODELS.get(kind)
    key = _env(env, *_KEY_VARS[kind]) if kind in _KEY_VARS else None
    key_var = key[0] if key else None
    if kind == "anthropic":
        base_url = _env_value(env, "ANTHROPIC_BASE_URL") or ANTHROPIC_BASE_URL
    elif kind == "openai":
        base_url = (
            _env_value(env, "OPENAI_BASE_URL", "CLAUDE_MEM_OPENAI_BASE_URL") or OPENAI_BASE_URL
        )
    elif kind == "openrouter":
        base_url = _env_value(env, "OPENROUTER_BASE_URL") or OPENROUTER_BASE_URL
    elif kind == "gemini":
        base_url = _env_value(env, "GEMINI_BASE_URL") or GEMINI_BASE_URL
    elif kind == "ollama":
        base_url = _ollama_base_url(env)
    elif kind == "openai-compatible":
        base_url = base_url or _env_value(env, "OPENAI_BASE_URL", "CLAUDE_MEM_OPENAI_BASE_URL")
        if base_url is None:
            raise ConfigurationError(
                "The openai-compatible provider needs a base URL: use "
                "'openai-compatible:<model>@<base_url>' or set OPENAI_BASE_URL "
                "(or CLAUDE_MEM_OPENAI_BASE_URL)"
            )
        if model is None:
            raise ConfigurationError(
                "The openai-compatible provider needs a model: use "
                "'openai-compatible:<model>@<base_url>' or set CLAUDE_MEM_SERVER_MODEL"
            )
    return ProviderChoice(kind, model, base_url, key_var, reason)


# -- public API ---------------------------------------------------------------------------------


def provider_from_spec(spec: str | None, env: Mapping[str, str]) -> Provider:
    """Build the provider named by ``spec`` (or by ``env`` when ``spec`` is None).

    Raises :class:`ConfigurationError` for an unknown spec or a named provider without its key,
    and :class:`MissingExtra` when the provider's SDK is not installed. With no spec, no
    ``CLAUDE_MEM_SERVER_PROVIDER`` and no key at all, returns the offline provider.
    """
    choice = _resolve(spec, env)
    kind = choice.kind
    if kind == "offline":
        from claude_mem_core.adapters.offline_provider import OfflineProvider

        return OfflineProvider()
    key = _env_value(env, *_KEY_VARS[kind]) if kind in _KEY_VARS else None
    if key is None:
        if kind in ("ollama", "openai-compatible"):
            key = LOCAL_API_KEY
        else:
            names = " or ".join(_KEY_VARS[kind])
            raise ConfigurationError(f"The {kind} provider needs an API key: set {names}")
    if choice.model is None or choice.base_url is None:  # pragma: no cover - _choice fills both
        raise ConfigurationError(f"The {kind} provider needs a model and a base URL")
    if kind == "anthropic":
        try:
            from claude_mem_core.adapters.anthropic_provider import AnthropicProvider
        except ImportError as exc:
            if _missing_module(exc, "anthropic"):
                raise MissingExtra("Anthropic provider", "anthropic") from None
            raise
        return AnthropicProvider(key, choice.model, base_url=choice.base_url)
    try:
        from claude_mem_core.adapters.openai_provider import OpenAICompatibleProvider
    except ImportError as exc:
        if _missing_module(exc, "openai"):
            raise MissingExtra(f"{_LABELS[kind]} provider", "openai") from None
        raise
    headers: dict[str, str] | None = None
    if kind == "openrouter":
        headers = {
            "HTTP-Referer": _env_value(env, "CLAUDE_MEM_OPENROUTER_SITE_URL") or OPENROUTER_REFERER,
            "X-Title": _env_value(env, "CLAUDE_MEM_OPENROUTER_APP_NAME") or OPENROUTER_TITLE,
        }
    return OpenAICompatibleProvider(
        key, choice.model, base_url=choice.base_url, name=kind, default_headers=headers
    )


def describe_provider_choice(env: Mapping[str, str]) -> str:
    """One line saying which provider ``env`` selects and why; never includes a key.

    Configuration errors are described rather than raised, so health checks and ``doctor``
    commands can show them.
    """
    try:
        choice = _resolve(None, env)
    except ConfigurationError as exc:
        return f"invalid provider configuration: {exc.message}"
    if choice.kind == "offline":
        return f"offline (no LLM calls; {choice.reason})"
    parts = [f"{choice.kind} model={choice.model}", f"base_url={choice.base_url}"]
    if choice.key_var:
        parts.append(f"key from {choice.key_var}")
    elif choice.kind in ("ollama", "openai-compatible"):
        parts.append("no key (local server)")
    else:
        names = " or ".join(_KEY_VARS[choice.kind])
        parts.append(f"MISSING KEY: set {names}")
    return f"{' '.join(parts)} ({choice.reason})"


_LABELS = {
    "anthropic": "Anthropic",
    "openai": "OpenAI",
    "openrouter": "OpenRouter",
    "gemini": "Gemini",
    "ollama": "Ollama",
    "openai-compatible": "OpenAI-compatible",
}


def _missing_module(exc: ImportError, module: str) -> bool:
    name = exc.name or ""
    return name == module or name.startswith(module + ".")


# -- shared error classification ----------------------------------------------------------------
#
# First match wins:
#   no HTTP status (connection refused/reset, timeout)          -> transient
#   status 529, or body mentions "overloaded"                    -> transient
#   status 402, or body mentions insufficient_quota /
#     insufficient credits / credit balance is too low           -> quota_exhausted (not retried)
#   status 401/403, or body mentions an invalid/incorrect key    -> auth
#   status 429 (incl. "quota exceeded" / RESOURCE_EXHAUSTED)     -> rate_limit (+ retry_after)
#   status 413, or a 4xx whose body says the prompt is too long  -> context_too_long
#   status 408/409/425, 5xx                                      -> transient
# retry_after comes from retry-after-ms / retry-after (or Gemini's retryDelay) on rate_limit,
# and from the headers on a transient HTTP error.
#   any other 4xx                                                -> bad_request
#   anything else                                                -> unknown

_QUOTA_MARKERS = (
    "insufficient_quota",
    "insufficient credits",
    "insufficient_credits",
    "credit balance is too low",
    "billing_error",
)
_AUTH_MARKERS = (
    "invalid api key",
    "invalid x-api-key",
    "invalid_api_key",
    "incorrect api key",
    "api key not valid",
)
_CONTEXT_MARKERS = (
    "prompt is too long",
    "context window",
    "context length",
    "context_length_exceeded",
    "maximum context",
    "context limit",
    "too many input tokens",
    "input is too long",
)
# Gemini puts the wait in the body: "retryDelay": "20s", or in prose: "Please retry in 20.5s".
_RETRY_DELAY_FIELD = re.compile(
    r"retry_?delay['\"]?\s*[:=]\s*['\"]?(\d+(?:\.\d+)?)s", re.IGNORECASE
)
_RETRY_DELAY_PROSE = re.compile(r"retry in (\d+(?:\.\d+)?)\s*s", re.IGNORECASE)


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date).

    A date in the past gives 0; anything unparsable, negative or non-finite gives None.
    """
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis.strip())
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value / 1000.0
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        return None
    return max(0.0, when.timestamp() - now())


def redact(text: str, secrets: Sequence[str | None]) -> str:
    """``text`` with every non-trivial secret replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def error_summary(body: object) -> str:
    """``<type/code>: <message>`` from an error body in the Anthropic or OpenAI shape."""
    if isinstance(body, list) and body and isinstance(body[0], Mapping):
        body = body[0]  # Google APIs wrap the error object in a list
    if isinstance(body, Mapping):
        inner: Any = body.get("error", body)
        if isinstance(inner, Mapping):
            message = inner.get("message") or inner.get("error") or ""
            label = inner.get("type") or inner.get("status") or inner.get("code") or ""
            text = f"{label}: {message}" if label and message else str(message or label)
            if text:
                return text
        elif isinstance(inner, str):
            return inner
    if body is None:
        return ""
    return str(body)


def classify_failure(
    provider: str,
    *,
    status: int | None,
    body: object = None,
    headers: Mapping[str, str] | None = None,
    detail: str = "",
    secrets: Sequence[str | None] = (),
) -> ProviderError:
    """A classified :class:`ProviderError` for a failed call (see the table above).

    ``body`` is the decoded error body (mapping or text); ``detail`` replaces the body summary
    in the message (used for network errors). The message is truncated and has ``secrets``
    redacted.
    """
    summary = detail or error_summary(body)
    raw = body if isinstance(body, str) else repr(body) if body is not None else ""
    haystack = f"{summary}\n{raw}".lower()
    retry_after: float | None = None

    if status is None or status == 529 or "overloaded" in haystack:
        kind = "transient"
    elif status == 402 or any(m in haystack for m in _QUOTA_MARKERS):
        kind = "quota_exhausted"
    elif status in (401, 403) or any(m in haystack for m in _AUTH_MARKERS):
        kind = "auth"
    elif status == 429:
        kind = "rate_limit"
        retry_after = parse_retry_after(headers)
        if retry_after is None:
            match = _RETRY_DELAY_FIELD.search(raw) or _RETRY_DELAY_PROSE.search(raw)
            retry_after = float(match[1]) if match else None
    elif status == 413 or (400 <= status < 500 and any(m in haystack for m in _CONTEXT_MARKERS)):
        kind = "context_too_long"
    elif status in (408, 409, 425) or 500 <= status < 600:
        kind = "transient"
    elif 400 <= status < 500:
        kind = "bad_request"
    else:
        kind = "unknown"

    if kind == "transient" and status is not None:
        retry_after = parse_retry_after(headers)  # 503 / 529 may say when to come back

    status_text = f"HTTP {status}" if status is not None else "network error"
    summary = " ".join(summary.split())
    if len(summary) > 300:
        summary = summary[:297] + "..."
    message = f"{provider} {status_text} ({kind})"
    if summary:
        message += f": {summary}"
    return ProviderError(
        redact(message, secrets), kind=kind, status=status, retry_after=retry_after
    )


def int_or_none(value: object) -> int | None:
    """Token counts as reported, or None when an SDK omits or mangles them."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def aiohttp_http_client(factory: Callable[[], Any]) -> Any:
    """The SDK's aiohttp-based HTTP client (``factory``: its ``DefaultAioHttpClient``),
    or None (the SDK's default httpx transport) when aiohttp is not installed.

    Same SDK, same errors (the transport maps aiohttp's to httpx's), about a third less
    CPU per call than httpx's own connection pool; the session opens on the first call."""
    if importlib.util.find_spec("aiohttp") is None:
        return None
    try:
        return factory()
    except RuntimeError:  # the SDK was installed without its aiohttp support
        return None


def connection_detail(exc: BaseException) -> str:
    """A short reason for a failed connection, from the SDK error's cause."""
    cause = exc.__cause__ or exc.__context__
    if cause is None:
        return f"connection failed ({type(exc).__name__})"
    reason = str(cause).strip() or type(cause).__name__
    return f"connection failed ({type(cause).__name__}: {reason})"


def timeout_detail(exc: BaseException, timeout: float) -> str:
    """The reason of an SDK timeout error: the aiohttp transport reports a refused
    connection as a connect timeout, so an OS-level connection error among its causes
    (not itself a timeout) makes it a failed connection, as the httpx transport says."""
    seen: set[int] = set()
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            reason = str(cause).strip() or type(cause).__name__
            return f"connection failed ({type(cause).__name__}: {reason})"
        cause = cause.__cause__ or cause.__context__
    return f"timed out after {timeout:g}s"


__all__ = [
    "DEFAULT_ANTHROPIC_MODEL",
    "DEFAULT_GEMINI_MODEL",
    "DEFAULT_OLLAMA_MODEL",
    "DEFAULT_OPENAI_MODEL",
    "DEFAULT_OPENROUTER_MODEL",
    "VALID_SPECS",
    "ProviderChoice",
    "classify_failure",
    "connection_detail",
    "describe_provider_choice",
    "error_summary",
    "int_or_none",
    "parse_retry_after",
    "provider_from_spec",
    "redact",
    "timeout_detail",
]


def openai_sdk_failure(
    exc: BaseException, label: str, *, timeout: float, secrets: Sequence[str | None]
) -> ProviderError:
    """The :class:`ProviderError` for a failed call of the ``openai`` SDK (chat or
    embeddings): an HTTP status, a timeout, a connection failure, or an answer that is not
    the JSON the SDK expected. Imports the SDK: call it only from an adapter that has."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        headers = exc.response.headers
        return classify_failure(
            label, status=exc.status_code, body=exc.body, headers=headers, secrets=secrets
        )
    if isinstance(exc, openai.APITimeoutError):  # before its base, APIConnectionError
        detail = timeout_detail(exc, timeout)
        return classify_failure(label, status=None, detail=detail, secrets=secrets)
    if isinstance(exc, openai.APIConnectionError):
        detail = connection_detail(exc)
        return classify_failure(label, status=None, detail=detail, secrets=secrets)
    return ProviderError(f"{label} returned invalid JSON", kind="parse_error", status=200)
