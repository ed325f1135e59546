"""Log lines: the default text format, or one JSON object a line
(``CLAUDE_MEM_LOG_FORMAT=json``) carrying the request id and, when tracing, the trace id.

The request id is the one of the HTTP request being served, or of the request that queued
the job being processed (:func:`request_logged` sets it for a block). The trace and span
ids come from OpenTelemetry's current span, read only if OpenTelemetry is already loaded:
formatting a line never imports it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from claude_mem_core.errors import ConfigurationError

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_REQUEST_ID: ContextVar[str | None] = ContextVar("claude_mem_log_request_id", default=None)


def current_request_id() -> str | None:
    return _REQUEST_ID.get()


@contextmanager
def request_logged(request_id: str | None) -> Iterator[None]:
    """Log lines inside the block carry ``request_id`` (unchanged when None)."""
    if request_id is None:
        yield
        return
    token = _REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)


def trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of OpenTelemetry's current span, if there is one."""
    otel_trace = sys.modules.get("opentelemetry.trace")
    if otel_trace is None:
        return None
    context = otel_trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, and
    ``request_id``, ``trace_id``, ``span_id`` when known; ``exception`` with a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "time": f"{created}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id is not None:
            line["request_id"] = request_id
        ids = trace_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_format(env: Mapping[str, str]) -> str:
    """``CLAUDE_MEM_LOG_FORMAT``: ``text`` (default) or ``json``."""
    chosen = (env.get("CLAUDE_MEM_LOG_FORMAT") or "text").strip().lower()
    if chosen not in LOG_FORMATS:
        raise ConfigurationError(
            f"CLAUDE_MEM_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)} (got {chosen!r})"
        )
    return chosen


def configure_logging(env: Mapping[str, str], *, level: int | None = None) -> bool:
    """Log to stderr in the format ``env`` asks for, at ``level`` (default
    ``CLAUDE_MEM_LOG_LEVEL``, else INFO), unless the root logger has handlers already (an
    application configured it). Returns whether it configured anything."""
    if level is None:
        name = (env.get("CLAUDE_MEM_LOG_LEVEL") or "INFO").strip().upper()
        level = getattr(logging, name, logging.INFO)
        if not isinstance(level, int):
            level = logging.INFO
    root = logging.getLogger()
    if root.handlers:
        return False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format(env) == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root.addHandler(handler)
    root.setLevel(level)
    return True


__all__ = [
    "JsonFormatter",
    "configure_logging",
    "current_request_id",
    "log_format",
    "request_logged",
    "trace_ids",
]
