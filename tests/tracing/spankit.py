"""Helpers for the tracing tests: an OpenTelemetry tracer whose spans land in the SDK's
in-memory exporter (no global provider is installed), and readers of the span tree."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from claude_mem_core.adapters.otel_tracing import OtelTracer

# A reply the generation parser accepts: one observation.
OBSERVATION = """<observation>
  <type>bugfix</type>
  <title>Fixed the authentication redirect loop</title>
  <facts><fact>auth/middleware.py compared the callback URL without its query</fact></facts>
  <narrative>The authentication redirect looped: the callback check ignored the query.</narrative>
  <files_modified><file>auth/middleware.py</file></files_modified>
</observation>"""

# Text that must never reach a span: it is in the event's payload (and so in the prompt).
PAYLOAD_MARKER = "zebra-quokka-payload-7731"


def reply(request: Any) -> str:
    return OBSERVATION


class Recorder:
    """A tracer and what it recorded."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.provider = provider
        self.tracer = OtelTracer(provider)

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def one(self, kind: SpanKind, name_prefix: str, spans: Iterable[ReadableSpan] = ()) -> Any:
        found = [
            s for s in (spans or self.spans) if s.kind is kind and s.name.startswith(name_prefix)
        ]
        assert len(found) == 1, [(s.name, s.kind) for s in self.spans]
        return found[0]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def descends_from(
    span: ReadableSpan, ancestor: ReadableSpan, spans: Sequence[ReadableSpan]
) -> bool:
    by_id = {span_id(s): s for s in spans}
    current: ReadableSpan | None = span
    while current is not None:
        parent = parent_id(current)
        if parent == span_id(ancestor):
            return True
        current = by_id.get(parent) if parent is not None else None
    return False


def every_recorded_text(spans: Iterable[ReadableSpan]) -> list[str]:
    """Every span name, attribute value and event attribute value, as text."""
    texts: list[str] = []
    for span in spans:
        texts.append(span.name)
        texts.extend(str(v) for v in (span.attributes or {}).values())
        for event in span.events:
            texts.append(event.name)
            texts.extend(str(v) for v in (event.attributes or {}).values())
    return texts
