"""How the client reports a failed call: a non-2xx answer becomes the core error it
means (400 → :class:`InvalidInput` with the server's ``issues``, 401, 403, 404, 409), and a
call that may succeed later (connection refused, timeout, 429, 5xx) :class:`ServerUnavailable`
— the one exception the hooks spool on."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from claude_mem_core.errors import (
    ClaudeMemError,
    Conflict,
    FieldIssue,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from claude_mem_http.wire.converter import WireMismatch, from_wire
from claude_mem_http.wire.models import Error, ValidationError

FailureKind = Literal["transport", "timeout", "http_error"]


class ServerUnavailable(ClaudeMemError):
    """The server could not be reached or answered 429/5xx: trying again later may work.

    ``kind`` is ``transport`` (connection failed), ``timeout`` or ``http_error`` (with
    ``status``); ``retry_after`` is the server's hint in seconds, when it gave one."""

    default_message = "claude-mem server unavailable"

    def __init__(
        self,
        message: str | None = None,
        *,
        kind: FailureKind = "transport",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


class RequestRejected(ClaudeMemError):
    """A 4xx answer with no more specific meaning (e.g. 413, 405); not worth retrying."""

    default_message = "request rejected by the claude-mem server"

    def __init__(self, message: str | None = None, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class RouteUnsupported(NotFound):
    """A 404 because the server does not serve the route at all (an older server), not
    because the thing asked for is missing."""

    default_message = "route not served by this claude-mem server"


class InvalidResponse(ClaudeMemError):
    """A 2xx answer whose body is not the JSON the route promises."""

    default_message = "invalid response from the claude-mem server"


def _issues(body: Any) -> list[FieldIssue]:
    """The named fields of a 400, when its body is the wire's ValidationError."""
    try:
        invalid = from_wire(body, ValidationError)
    except WireMismatch:
        return []
    return [
        FieldIssue(".".join(str(p) for p in issue.path), issue.message, issue.code)
        for issue in invalid.issues
    ]


def _message(body: Any) -> str | None:
    """The message of an error body (any proxy in between may answer with something else)."""
    try:
        return from_wire(body, Error).message or None
    except WireMismatch:
        return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_for(
    method: str, path: str, status: int, body: Any, headers: Mapping[str, str]
) -> Exception:
    """The exception a non-2xx answer means (see the module docstring)."""
    message = _message(body)
    if message is None:
        text = body if isinstance(body, str) else json.dumps(body)[:200]
        message = f"{method} {path} returned {status}: {text[:200]}"
    if status == 400:
        issues = _issues(body)
        return InvalidInput(issues or message, message if issues else None)
    if status == 401:
        return Unauthorized(message)
    if status == 403:
        return Forbidden(message)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status == 429 or status >= 500:
        return ServerUnavailable(
            f"{method} {path} returned {status}: {message}",
            kind="http_error",
            status=status,
            retry_after=_retry_after(headers),
        )
    return RequestRejected(message, status=status)
