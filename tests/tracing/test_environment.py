"""Which tracer the standard ``OTEL_*`` environment gives, and the exporters it names."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpExporter,
)
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

from claude_mem_core.adapters.otel_tracing import exporters_from_env
from claude_mem_core.errors import ConfigurationError
from claude_mem_core.facade_wiring import tracer_from_env
from claude_mem_core.ports.tracing import NOOP_TRACER, tracing_requested


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "claude-mem"}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_what_asks_for_traces(
    env: dict[str, str], wanted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in a process where nothing loaded the SDK yet (this one has).
    monkeypatch.delitem(sys.modules, "opentelemetry.sdk.trace")
    assert tracing_requested(env) is wanted


def test_an_sdk_loaded_by_the_application_is_looked_at() -> None:
    assert tracing_requested({})  # this process loaded the SDK
    assert not tracing_requested({"OTEL_SDK_DISABLED": "true"})


def _built(env: dict[str, str]) -> list[SpanExporter]:
    exporters = exporters_from_env(env)
    for exporter in exporters:
        exporter.shutdown()
    return exporters


def test_exporters_named_by_the_environment() -> None:
    assert _built({}) == []
    assert _built({"OTEL_TRACES_EXPORTER": "none"}) == []
    [grpc] = _built({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert isinstance(grpc, GrpcExporter)
    [http] = _built(
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    )
    assert isinstance(http, HttpExporter)
    [http, console] = _built(
        {
            "OTEL_TRACES_EXPORTER": "otlp, console",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        }
    )
    assert isinstance(http, HttpExporter) and isinstance(console, ConsoleSpanExporter)


def test_unknown_exporters_and_protocols_are_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match="'zipkin'"):
        exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ConfigurationError, match=r"OTEL_EXPORTER_OTLP_PROTOCOL.*'http/json'"):
        exporters_from_env(
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
        )


def test_without_the_extra_the_noop_tracer_is_used_and_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # None in sys.modules makes the adapter (its SDK) look not installed.
    monkeypatch.setitem(sys.modules, "claude_mem_core.adapters.otel_tracing", None)
    with caplog.at_level(logging.WARNING, logger="claude_mem.tracing"):
        tracer = tracer_from_env({"OTEL_TRACES_EXPORTER": "otlp"})
    assert tracer is NOOP_TRACER
    assert "pip install 'claude-mem-py[otel]'" in caplog.text


SERVICE_SCRIPT = """
import sys
from opentelemetry import trace
from claude_mem_core.facade_wiring import tracer_from_env
if sys.argv[1] == "app":  # the application installed its own provider first
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": "host"})))
import os
tracer = tracer_from_env(os.environ, service_name="claude-mem-worker")
again = tracer_from_env(os.environ)
provider = trace.get_tracer_provider()
print(type(tracer).__name__, tracer is again, provider.resource.attributes["service.name"])
"""


@pytest.mark.parametrize(
    ("setup", "otel", "printed"),
    [
        ("env", {"OTEL_TRACES_EXPORTER": "console"}, "OtelTracer True claude-mem-worker"),
        (
            "env",
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "mem-eu-1"},
            "OtelTracer True mem-eu-1",
        ),
        (
            "env",
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_RESOURCE_ATTRIBUTES": "service.name=m2"},
            "OtelTracer True m2",
        ),
        ("app", {}, "OtelTracer True host"),
    ],
)
def test_the_process_tracer_is_built_once_on_the_global_provider(
    setup: str, otel: dict[str, str], printed: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", SERVICE_SCRIPT, setup],
        env={**env, **otel},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == printed
