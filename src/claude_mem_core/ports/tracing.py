"""The tracing port: spans around what one request sets going, across the queue.

Core code opens spans through a :class:`Tracer` and never imports OpenTelemetry itself. The
default is :data:`NOOP_TRACER`, which does nothing and costs next to nothing; the one adapter
(``adapters/otel_tracing.py``, the ``otel`` extra) is chosen when the standard ``OTEL_*``
environment asks for traces (:func:`tracing_requested`). Callers that would build
attributes only for a span check :attr:`Tracer.enabled` first.

Attributes are ids, counts and names: never an API key, a payload, a prompt or generated
text. The context crosses the queue as a ``dict[str, str]`` carrier (W3C ``traceparent``
and friends) that travels beside a message, never inside the stored job.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Literal, Protocol

AttributeValue = str | bool | int | float
Attributes = Mapping[str, AttributeValue | None]  # None values are left out
SpanKind = Literal["internal", "server", "client", "producer", "consumer"]


class Span(Protocol):
    def set_attribute(self, key: str, value: AttributeValue | None) -> None:
        """Set one attribute (None: leave it out)."""

    def record_exception(self, exc: BaseException) -> None:
        """Mark the span failed by ``exc``: its type is recorded, never its message (a
        message may quote what the failing call was given)."""

    def set_error(self, error_type: str) -> None:
        """Mark the span failed, ``error_type`` saying how (``500``, ``timeout`` …)."""


class Tracer(Protocol):
    enabled: bool

    def span(
        self,
        name: str,
        attributes: Attributes | None = None,
        *,
        kind: SpanKind = "internal",
        request_id: str | None = None,
    ) -> AbstractContextManager[Span]:
        """A span, current inside the ``with`` block, child of the current one; or of the
        span of the request ``request_id`` while that request is open in this process (a
        group of requests is published from one task: each job still follows its own
        request). An exception leaving the block is recorded and re-raised."""

    def span_from(
        self,
        carrier: Mapping[str, str],
        name: str,
        attributes: Attributes | None = None,
        *,
        kind: SpanKind = "consumer",
        request_id: str | None = None,
    ) -> AbstractContextManager[Span]:
        """A span whose parent is the context ``carrier`` holds (from :meth:`inject` on the
        other side of a queue, or an HTTP request's headers); a root span when it holds
        none. With ``request_id``, the span is that request's (see :meth:`span`)."""

    def inject(self) -> dict[str, str]:
        """The current context as a carrier (empty when there is no current span)."""

    def instrument_storage(self, storage: object) -> None:
        """Add a span per database statement to ``storage``, if it runs SQL."""


class _NoopSpan:
    def set_attribute(self, key: str, value: AttributeValue | None) -> None:
        return None

    def record_exception(self, exc: BaseException) -> None:
        return None

    def set_error(self, error_type: str) -> None:
        return None


_NOOP_SPAN = _NoopSpan()


@contextmanager
def _noop_block() -> Iterator[Span]:
    yield _NOOP_SPAN


class NoopTracer:
    """The default: no spans, an empty carrier."""

    enabled = False

    def span(
        self,
        name: str,
        attributes: Attributes | None = None,
        *,
        kind: SpanKind = "internal",
        request_id: str | None = None,
    ) -> AbstractContextManager[Span]:
        return _noop_block()

    def span_from(
        self,
        carrier: Mapping[str, str],
        name: str,
        attributes: Attributes | None = None,
        *,
        kind: SpanKind = "consumer",
        request_id: str | None = None,
    ) -> AbstractContextManager[Span]:
        return _noop_block()

    def inject(self) -> dict[str, str]:
        return {}

    def instrument_storage(self, storage: object) -> None:
        return None


NOOP_TRACER: Tracer = NoopTracer()

# Exporter settings of the OpenTelemetry specification; any of them asks for traces.
_EXPORTER_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


def tracing_requested(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces: ``OTEL_SDK_DISABLED`` is not ``true``, and
    ``OTEL_TRACES_EXPORTER`` names an exporter (not ``none``), or an OTLP endpoint is set,
    or the process already loaded the SDK (an application or ``opentelemetry-instrument``
    set it up; the adapter then checks that it installed a tracer provider). Imports
    nothing."""
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return False
    if "opentelemetry.sdk.trace" in sys.modules:
        return True
    exporters = (env.get("OTEL_TRACES_EXPORTER") or "").strip().lower()
    if exporters == "none":
        return False
    return bool(exporters) or any((env.get(name) or "").strip() for name in _EXPORTER_VARIABLES)
