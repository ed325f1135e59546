"""OpenTelemetry behind the tracing port (the ``otel`` extra).

:func:`tracer_from_environment` gives the process's :class:`OtelTracer`: on the tracer
provider an application (or ``opentelemetry-instrument``) already installed, or on one built
here from the standard environment (``OTEL_TRACES_EXPORTER``, default ``otlp``, whose
protocol ``OTEL_EXPORTER_OTLP_PROTOCOL`` picks; ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` … read by the SDK itself) and
installed as the global one. Contexts cross processes with the global propagator
(``OTEL_PROPAGATORS``, W3C trace context by default).

Database statements get a span each (:meth:`OtelTracer.instrument_storage`, SQLAlchemy's
cursor events), only inside a trace: the background loops' polling statements start none.
Their text is the statement with its placeholders, never the parameters' values.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind as OtelSpanKind
from opentelemetry.trace import Status, StatusCode

from claude_mem_core.distribution import install_hint
from claude_mem_core.errors import ConfigurationError
from claude_mem_core.ports.tracing import (
    NOOP_TRACER,
    Attributes,
    AttributeValue,
    Span,
    SpanKind,
    Tracer,
)

INSTRUMENTATION_NAME = "claude_mem"
QUERY_TEXT_LIMIT = 1000  # characters of a statement kept in ``db.query.text``

_KINDS = {
    "internal": OtelSpanKind.INTERNAL,
    "server": OtelSpanKind.SERVER,
    "client": OtelSpanKind.CLIENT,
    "producer": OtelSpanKind.PRODUCER,
    "consumer": OtelSpanKind.CONSUMER,
}
# OTEL_EXPORTER_OTLP_PROTOCOL → the exporter's entry point (the SDK's own names).
_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}


def _clean(attributes: Attributes | None) -> dict[str, AttributeValue]:
    if not attributes:
        return {}
    return {key: value for key, value in attributes.items() if value is not None}


class _OtelSpan:
    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def set_attribute(self, key: str, value: AttributeValue | None) -> None:
        if value is not None:
            self._span.set_attribute(key, value)

    def record_exception(self, exc: BaseException) -> None:
        kind = type(exc).__qualname__
        self._span.add_event("exception", {"exception.type": kind})
        self.set_error(kind)

    def set_error(self, error_type: str) -> None:
        self._span.set_attribute("error.type", error_type)
        self._span.set_status(Status(StatusCode.ERROR, error_type))


class OtelTracer:
    """The tracing port on an OpenTelemetry tracer provider (default: the global one)."""

    enabled = True

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        provider = provider if provider is not None else trace.get_tracer_provider()
        self._tracer = provider.get_tracer(INSTRUMENTATION_NAME)
        # The contexts of the requests open in this process, by request id.
        self._requests: dict[str, Context] = {}
        self._instrumented: set[int] = set()

    def span(
        self,
        name: str,
        attributes: Attributes | None = None,
        *,
        kind: SpanKind = "internal",
        request_id: str | None = None,
    ) -> AbstractContextManager[Span]:
        parent = self._requests.get(request_id) if request_id is not None else None
        if parent is not None:
            # Inside that request's own trace already: the current span is the closer parent.
            current = trace.get_current_span().get_span_context()
            wanted = trace.get_current_span(parent).get_span_context()
            if current.is_valid and current.trace_id == wanted.trace_id:
                parent = None
        return self._start(name, attributes, kind, parent, None)

    def span_from(
        self,
        carrier: Mapping[str, str],
        name: str,
        attributes: Attributes | None = None,
        *,
        kind: SpanKind = "consumer",
        request_id: str | None = None,
    ) -> AbstractContextManager[Span]:
        # An empty Context as the base: what the carrier lacks is not taken from the
        # current context (a job's span is no child of whatever loop consumes it).
        parent = propagate.extract(carrier, context=Context())
        return self._start(name, attributes, kind, parent, request_id)

    def inject(self) -> dict[str, str]:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier

    @contextmanager
    def _start(
        self,
        name: str,
        attributes: Attributes | None,
        kind: SpanKind,
        parent: Context | None,
        request_id: str | None,
    ) -> Iterator[Span]:
        with self._tracer.start_as_current_span(
            name,
            context=parent,
            kind=_KINDS[kind],
            attributes=_clean(attributes),
            record_exception=False,  # the exception's message may quote its input
            set_status_on_exception=False,
        ) as span:
            wrapped = _OtelSpan(span)
            context = trace.set_span_in_context(span)
            if request_id is not None:
                self._requests[request_id] = context
            try:
                yield wrapped
            except asyncio.CancelledError:
                span.set_attribute("claude_mem.cancelled", True)
                raise
            except Exception as exc:
                wrapped.record_exception(exc)
                raise
            finally:
                if request_id is not None and self._requests.get(request_id) is context:
                    del self._requests[request_id]

    # -- database statements ------------------------------------------------------------

    def instrument_storage(self, storage: object) -> None:
        engine = getattr(storage, "engine", None)
        sync_engine = getattr(engine, "sync_engine", engine)
        if sync_engine is None or not hasattr(sync_engine, "dialect"):
            return  # no SQL behind this storage (the in-memory adapter)
        if id(sync_engine) in self._instrumented:
            return
        self._instrumented.add(id(sync_engine))
        _StatementSpans(self._tracer, sync_engine).listen()


_OPERATION = re.compile(r"\s*(\w+)")
_TARGET = re.compile(r"\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.IGNORECASE)
_SPAN_KEY = "_claude_mem_span"


class _StatementSpans:
    """A client span per statement an engine runs inside a trace."""

    def __init__(self, tracer: trace.Tracer, engine: Any) -> None:
        self._tracer = tracer
        self._engine = engine
        self._system = str(engine.dialect.name)

    def listen(self) -> None:
        from sqlalchemy import event

        event.listen(self._engine, "before_cursor_execute", self._before)
        event.listen(self._engine, "after_cursor_execute", self._after)
        event.listen(self._engine, "handle_error", self._failed)

    def _before(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if context is None or not trace.get_current_span().get_span_context().is_valid:
            return
        found = _OPERATION.match(statement)
        operation = found.group(1).upper() if found else "SQL"
        target = _TARGET.match(statement)
        table = target.group(1) if target else None
        span = self._tracer.start_span(
            f"{operation} {table}" if table else operation,
            kind=OtelSpanKind.CLIENT,
            attributes=_clean(
                {
                    "db.system.name": self._system,
                    "db.operation.name": operation,
                    "db.collection.name": table,
                    "db.query.text": statement[:QUERY_TEXT_LIMIT],
                    "db.operation.batch.size": len(parameters)
                    if executemany and isinstance(parameters, list | tuple)
                    else None,
                }
            ),
        )
        setattr(context, _SPAN_KEY, span)

    def _after(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        span = getattr(context, _SPAN_KEY, None)
        if span is not None:
            setattr(context, _SPAN_KEY, None)
            rows = getattr(cursor, "rowcount", -1)
            if isinstance(rows, int) and rows >= 0:
                span.set_attribute("db.response.returned_rows", rows)
            span.end()

    def _failed(self, exception_context: Any) -> None:
        context = exception_context.execution_context
        span = getattr(context, _SPAN_KEY, None) if context is not None else None
        if span is not None:
            setattr(context, _SPAN_KEY, None)
            _OtelSpan(span).record_exception(exception_context.original_exception)
            span.end()


# -- the process's tracer -----------------------------------------------------------------

_shared: OtelTracer | None = None


def tracer_from_environment(env: Mapping[str, str], *, service_name: str = "claude-mem") -> Tracer:
    """The process's tracer: on the SDK tracer provider already installed, else on one built
    from ``env`` and installed globally (once per process). The no-op tracer when the SDK
    was loaded by someone who installed no provider and ``env`` asks for no exporter."""
    global _shared
    if _shared is not None:
        return _shared
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        exporters = exporters_from_env(env)
        if not exporters:
            return NOOP_TRACER
        provider = TracerProvider(resource=_resource(env, service_name))
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    _shared = OtelTracer(provider)
    return _shared


def _resource(env: Mapping[str, str], service_name: str) -> Resource:
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over our default name.
    named = (env.get("OTEL_SERVICE_NAME") or "").strip() or "service.name=" in (
        env.get("OTEL_RESOURCE_ATTRIBUTES") or ""
    )
    return Resource.create({} if named else {SERVICE_NAME: service_name})


def exporters_from_env(env: Mapping[str, str]) -> list[SpanExporter]:
    """The span exporters ``OTEL_TRACES_EXPORTER`` names (comma-separated; ``otlp`` when
    unset and an OTLP endpoint is set; ``none`` for none), built as their packages'
    ``opentelemetry_traces_exporter`` entry points say (each reads its own ``OTEL_*``)."""
    names = [n.strip().lower() for n in (env.get("OTEL_TRACES_EXPORTER") or "").split(",")]
    names = [n for n in names if n]
    if not names:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        names = ["otlp"] if (endpoint or "").strip() else []
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "none":
            continue
        if name == "otlp":
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "grpc"
            ).strip()
            if protocol not in _OTLP_BY_PROTOCOL:
                raise ConfigurationError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL must be one of "
                    f"{', '.join(_OTLP_BY_PROTOCOL)} (got {protocol!r})"
                )
            name = _OTLP_BY_PROTOCOL[protocol]
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER names {name!r}, which no installed package provides "
                "(" + install_hint("otel") + " brings otlp and console)"
            )
        exporter_class = next(iter(found)).load()
        exporters.append(exporter_class())
    return exporters
