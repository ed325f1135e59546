"""A scriptable local LLM server for tests and benchmarks.

:class:`FakeLLMServer` speaks two wire formats on ``127.0.0.1`` with an ephemeral port:

* the Anthropic Messages API, ``POST /v1/messages``;
* the OpenAI Chat Completions API, ``POST <any prefix>/chat/completions`` (``/v1/...`` for
  OpenAI and local servers, ``/api/v1/...`` for OpenRouter, ``/v1beta/openai/...`` for Gemini).

The real SDKs run against it unchanged by pointing their ``base_url`` at
:attr:`FakeLLMServer.anthropic_base_url` or :attr:`FakeLLMServer.openai_base_url`. Both
``x-api-key`` and ``Authorization: Bearer`` credentials are accepted; a request with neither gets
a 401 in the provider's own error format.

Each endpoint has a queue of behaviours, consumed one per request; when the queue is empty the
endpoint's ``default`` behaviour answers (a fixed text unless changed)::

    async with FakeLLMServer() as fake:
        fake.anthropic.rate_limited(retry_after="3")
        fake.anthropic.reply("<observation>...</observation>")
        ...  # first call gets a 429, the second the text, later ones the default text
        assert fake.anthropic.requests[1].json["model"] == "claude-sonnet-4-5"

Behaviours: :class:`Reply` (text), :class:`Status` (any status with a JSON or text body and
headers), :class:`Malformed` (a 2xx response whose body is not valid JSON), :class:`Delay`
(sleep, then run another behaviour; for timeouts) and :class:`Disconnect` (drop the connection
without answering). ``Reply.text`` may also be a callable that computes the text from the request
body, for pipelines that need prompt-dependent answers.

With ``record=False`` and no queued behaviours the server does no per-request bookkeeping beyond
building the response: the zero-latency mode used by benchmarks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeAlias

from aiohttp import web
from attrs import define, field, frozen

from claude_mem_core.testing.local_server import LocalServer

Dialect = Literal["anthropic", "openai"]
TextSource: TypeAlias = "str | Callable[[Mapping[str, Any]], str]"

DEFAULT_TEXT = "This is a reply from the fake LLM server."


@frozen(kw_only=True)
class Reply:
    """A successful completion.

    ``text`` may be a callable receiving the request's JSON body. Token counts default to a
    rough estimate (one token per four characters). ``stop_reason`` is in the Anthropic
    vocabulary (``end_turn``, ``max_tokens``, ``stop_sequence``); the OpenAI dialect maps it
    to ``finish_reason`` (``stop``, ``length``).
    """

    text: TextSource = DEFAULT_TEXT
    input_tokens: int | None = None
    output_tokens: int | None = None
    stop_reason: str = "end_turn"
    model: str | None = None
    headers: Mapping[str, str] = field(factory=dict)


@frozen(kw_only=True)
class Status:
    """A response with any status code.

    ``body`` None builds the provider's usual error JSON from ``error_type`` and ``message``;
    a mapping is sent as JSON; a string is sent verbatim with ``content_type``.
    """

    status: int
    message: str | None = None
    error_type: str | None = None
    body: Mapping[str, Any] | str | None = None
    headers: Mapping[str, str] = field(factory=dict)
    content_type: str = "application/json"


@frozen(kw_only=True)
class Malformed:
    """A response whose body is not valid JSON although its content type says it is."""

    body: str = '{"id": "msg_truncated", "content": [{"type": "te'
    status: int = 200
    content_type: str = "application/json"


@frozen(kw_only=True)
class Delay:
    """Sleep ``seconds`` before running ``then`` (the default behaviour when None)."""

    seconds: float
    then: Behaviour | None = None


@frozen(kw_only=True)
class Disconnect:
    """Close the connection without sending a response."""


Behaviour: TypeAlias = "Reply | Status | Malformed | Delay | Disconnect"


@frozen(kw_only=True)
class RecordedRequest:
    """One request as the server received it."""

    dialect: Dialect
    method: str
    path: str
    headers: Mapping[str, str]
    json: Any
    received_at: float

    @property
    def api_key(self) -> str | None:
        """The credential presented in ``x-api-key`` or ``Authorization: Bearer``."""
        key = self.headers.get("x-api-key")
        if key:
            return key
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return None


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}
_DEFAULT_MESSAGES = {
    400: "Invalid request.",
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    404: "The requested resource could not be found.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of request tokens has exceeded your per-minute rate limit.",
    500: "Internal server error.",
    503: "Service unavailable.",
    529: "Overloaded",
}
_FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


def _estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _prompt_text(dialect: Dialect, body: Any) -> str:
    """All text of the request's messages, for token estimates."""
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                block["text"]
                for block in content
                if isinstance(block, dict) and isinstance(block.get("text"), str)
            )
    return "\n".join(parts)


@define
class EndpointScript:
    """The behaviour queue and request log of one endpoint."""

    dialect: Dialect
    default: Behaviour = field(factory=Reply)
    queue: deque[Behaviour] = field(factory=deque)
    requests: list[RecordedRequest] = field(factory=list)

    def push(self, *behaviours: Behaviour) -> EndpointScript:
        """Queue behaviours; each answers one request, in order."""
        self.queue.extend(behaviours)
        return self

    def reply(self, text: TextSource = DEFAULT_TEXT, **kwargs: Any) -> EndpointScript:
        return self.push(Reply(text=text, **kwargs))

    def status(
        self,
        status: int,
        message: str | None = None,
        *,
        error_type: str | None = None,
        body: Mapping[str, Any] | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> EndpointScript:
        return self.push(
            Status(
                status=status,
                message=message,
                error_type=error_type,
                body=body,
                headers=dict(headers or {}),
            )
        )

    def rate_limited(
        self, retry_after: str | None = None, message: str | None = None
    ) -> EndpointScript:
        """A 429, with a ``retry-after`` header when given (seconds or an HTTP date)."""
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        return self.status(429, message, headers=headers)

    def overloaded(self) -> EndpointScript:
        """Anthropic's 529 ``overloaded_error``."""
        return self.status(529, "Overloaded", error_type="overloaded_error")

    def malformed(self, body: str | None = None, *, status: int = 200) -> EndpointScript:
        return self.push(
            Malformed(status=status) if body is None else Malformed(body=body, status=status)
        )

    def delay(self, seconds: float, then: Behaviour | None = None) -> EndpointScript:
        return self.push(Delay(seconds=seconds, then=then))

    def disconnect(self) -> EndpointScript:
        return self.push(Disconnect())

    @property
    def last_request(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError(f"the fake {self.dialect} endpoint has received no request")
        return self.requests[-1]

    def next_behaviour(self) -> Behaviour:
        return self.queue.popleft() if self.queue else self.default


class FakeLLMServer(LocalServer):
    """A local HTTP server imitating the Anthropic and OpenAI-compatible APIs.

    Use as an async context manager, or call :meth:`start` and :meth:`close`.
    ``require_api_key`` makes any other presented key a 401 (by default any non-empty key
    is accepted). ``record=False`` skips the request log.
    """

    def __init__(
        self,
        *,
        default_text: TextSource = DEFAULT_TEXT,
        require_api_key: str | None = None,
        record: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.anthropic = EndpointScript("anthropic", default=Reply(text=default_text))
        self.openai = EndpointScript("openai", default=Reply(text=default_text))
        self.require_api_key = require_api_key
        self.record = record
        super().__init__(host=host, port=port)
        self._ids = itertools.count(1)

    # -- routes and addresses -----------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._handle_anthropic)
        app.router.add_post("/chat/completions", self._handle_openai)
        app.router.add_post("/{prefix:.+}/chat/completions", self._handle_openai)

    @property
    def anthropic_base_url(self) -> str:
        """For ``AsyncAnthropic(base_url=...)``: the SDK appends ``/v1/messages``."""
        return self.base_url

    @property
    def openai_base_url(self) -> str:
        """For ``AsyncOpenAI(base_url=...)``: ends in ``/v1``."""
        return f"{self.base_url}/v1"

    def url(self, path: str) -> str:
        """Any base URL on this server, e.g. ``fake.url("/api/v1")`` for an OpenRouter stand-in."""
        return self.base_url + "/" + path.lstrip("/")

    @property
    def requests(self) -> list[RecordedRequest]:
        """Requests to both endpoints, in arrival order."""
        return sorted(self.anthropic.requests + self.openai.requests, key=lambda r: r.received_at)

    def reset(self) -> None:
        """Forget queued behaviours and recorded requests."""
        for script in (self.anthropic, self.openai):
            script.queue.clear()
            script.requests.clear()

    # -- handlers ----------------------------------------------------------------------------

    async def _handle_anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, self.anthropic)

    async def _handle_openai(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, self.openai)

    async def _handle(self, request: web.Request, script: EndpointScript) -> web.StreamResponse:
        dialect = script.dialect
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if self.record:
            script.requests.append(
                RecordedRequest(
                    dialect=dialect,
                    method=request.method,
                    path=request.path,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    json=body,
                    received_at=time.monotonic(),
                )
            )
        key = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization", "")
        if not key and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        if not key or (self.require_api_key is not None and key != self.require_api_key):
            message = (
                "invalid x-api-key" if dialect == "anthropic" else "Incorrect API key provided."
            )
            return self._error(dialect, Status(status=401, message=message, error_type=None))
        if not isinstance(body, dict):
            return self._error(
                dialect, Status(status=400, message="Request body is not a JSON object.")
            )
        if body.get("stream"):
            return self._error(
                dialect, Status(status=400, message="The fake server does not stream.")
            )
        behaviour = script.next_behaviour()
        while isinstance(behaviour, Delay):
            if behaviour.seconds > 0:
                try:
                    await asyncio.wait_for(self.closing.wait(), timeout=behaviour.seconds)
                except TimeoutError:
                    pass
                else:  # the server is shutting down
                    return web.Response(status=503)
            behaviour = behaviour.then if behaviour.then is not None else script.default
        if isinstance(behaviour, Reply):
            return self._reply(dialect, body, behaviour)
        if isinstance(behaviour, Status):
            return self._error(dialect, behaviour)
        if isinstance(behaviour, Malformed):
            return web.Response(
                status=behaviour.status,
                body=behaviour.body.encode(),
                content_type=behaviour.content_type,
            )
        # Disconnect
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # aiohttp treats this as a dropped request

    def _reply(self, dialect: Dialect, body: Mapping[str, Any], reply: Reply) -> web.Response:
        text = reply.text(body) if callable(reply.text) else reply.text
        model = reply.model or str(body.get("model") or "fake-model")
        input_tokens = (
            reply.input_tokens
            if reply.input_tokens is not None
            else _estimate_tokens(_prompt_text(dialect, body))
        )
        output_tokens = (
            reply.output_tokens if reply.output_tokens is not None else _estimate_tokens(text)
        )
        serial = next(self._ids)
        payload: dict[str, Any]
        if dialect == "anthropic":
            payload = {
                "id": f"msg_fake{serial:020d}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": reply.stop_reason,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "service_tier": "standard",
                },
            }
            headers = {"request-id": f"req_fake{serial:020d}", **reply.headers}
        else:
            payload = {
                "id": f"chatcmpl-fake{serial:020d}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": _FINISH_REASONS.get(reply.stop_reason, reply.stop_reason),
                    }
                ],
                "usage": {
                    "prompt_tokens": input_tokens,
                    "completion_tokens": output_tokens,
                    "total_tokens": input_tokens + output_tokens,
                },
                "system_fingerprint": "fp_fake",
            }
            headers = {"x-request-id": f"req_fake{serial:020d}", **reply.headers}
        return web.json_response(payload, headers=headers)

    def _error(self, dialect: Dialect, status: Status) -> web.Response:
        headers = dict(status.headers)
        if isinstance(status.body, str):
            return web.Response(
                status=status.status,
                text=status.body,
                content_type=status.content_type,
                headers=headers,
            )
        if status.body is not None:
            return web.json_response(dict(status.body), status=status.status, headers=headers)
        message = status.message or _DEFAULT_MESSAGES.get(status.status, f"HTTP {status.status}")
        serial = next(self._ids)
        payload: dict[str, Any]
        if dialect == "anthropic":
            error_type = status.error_type or _ANTHROPIC_ERROR_TYPES.get(
                status.status, "api_error" if status.status >= 500 else "invalid_request_error"
            )
            payload = {
                "type": "error",
                "error": {"type": error_type, "message": message},
                "request_id": f"req_fake{serial:020d}",
            }
            headers.setdefault("request-id", f"req_fake{serial:020d}")
        else:
            error_type = status.error_type or _OPENAI_ERROR_TYPES.get(
                status.status, "server_error" if status.status >= 500 else "invalid_request_error"
            )
            code: str | None = None
            if status.status == 401:
                code = "invalid_api_key"
            elif status.status == 429:
                code = "rate_limit_exceeded"
            payload = {
                "error": {"message": message, "type": error_type, "param": None, "code": code}
            }
            headers.setdefault("x-request-id", f"req_fake{serial:020d}")
        return web.json_response(payload, status=status.status, headers=headers)


__all__ = [
    "DEFAULT_TEXT",
    "Behaviour",
    "Delay",
    "Disconnect",
    "EndpointScript",
    "FakeLLMServer",
    "Malformed",
    "RecordedRequest",
    "Reply",
    "Status",
]
