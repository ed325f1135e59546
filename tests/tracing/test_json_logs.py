"""``CLAUDE_MEM_LOG_FORMAT=json``: one JSON object a line with the request id and, when
tracing, the trace id; the default text format is unchanged."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from opentelemetry.trace import SpanKind, StatusCode
from spankit import Recorder, span_id, trace_id

from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.errors import ConfigurationError
from claude_mem_core.facade import Memory
from claude_mem_core.logging_setup import JsonFormatter, log_format, request_logged
from claude_mem_core.testing.fakes import ScriptedProvider
from claude_mem_http.server.app import create_app

Client = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What loggers under ``claude_mem`` write, as JSON lines."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("claude_mem")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_format_is_text_unless_json_is_asked() -> None:
    assert log_format({}) == "text"
    assert log_format({"CLAUDE_MEM_LOG_FORMAT": " JSON "}) == "json"
    with pytest.raises(ConfigurationError, match=r"CLAUDE_MEM_LOG_FORMAT.*'yaml'"):
        log_format({"CLAUDE_MEM_LOG_FORMAT": "yaml"})


def test_a_line_carries_the_request_and_trace_ids_it_was_written_under(
    json_lines: io.StringIO, recorder: Recorder
) -> None:
    log = logging.getLogger("claude_mem.test")
    log.info("outside")
    with request_logged("req-1"), recorder.tracer.span("work"):
        log.warning("inside %s", "a span")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    outside, inside, failed = _lines(json_lines)
    assert outside["message"] == "outside" and outside["level"] == "INFO"
    assert outside["logger"] == "claude_mem.test"
    assert "request_id" not in outside and "trace_id" not in outside
    [work] = recorder.spans
    assert inside["message"] == "inside a span"
    assert inside["request_id"] == "req-1"
    assert inside["trace_id"] == f"{trace_id(work):032x}"
    assert inside["span_id"] == f"{span_id(work):016x}"
    assert inside["time"].endswith("Z")
    assert "ValueError: boom" in failed["exception"] and "request_id" not in failed


async def test_lines_written_while_serving_carry_the_request_and_its_trace(
    aiohttp_client: Client, json_lines: io.StringIO, recorder: Recorder
) -> None:
    memory = Memory(
        storage=storage_from_url("memory://"),
        queue=InProcessQueue(),
        provider=ScriptedProvider(),
        tracer=recorder.tracer,
    )
    try:
        app = create_app(memory, background_generation=False)

        async def probe(request: web.Request) -> web.Response:
            logging.getLogger("claude_mem.test").warning("serving the probe")
            return web.json_response({})

        async def boom(request: web.Request) -> web.Response:
            raise RuntimeError("a failure deep inside")

        app.router.add_get("/probe", probe)
        app.router.add_get("/boom", boom)
        client = await aiohttp_client(app)
        response = await client.get("/probe", headers={"X-Request-Id": "probe-1"})
        assert response.status == 200
        assert (await client.get("/boom", headers={"X-Request-Id": "boom-1"})).status == 500
        await client.close()
    finally:
        await memory.close()
    [line] = [x for x in _lines(json_lines) if x["message"] == "serving the probe"]
    server = recorder.one(SpanKind.SERVER, "GET /probe")
    assert line["request_id"] == "probe-1"
    assert line["trace_id"] == f"{trace_id(server):032x}"
    # A 500: the span failed with the status as its error type; the log line has the
    # traceback, the request id and the trace id.
    failed = recorder.one(SpanKind.SERVER, "GET /boom")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["error.type"] == "500"
    [logged] = [x for x in _lines(json_lines) if x.get("request_id") == "boom-1"]
    assert "RuntimeError: a failure deep inside" in logged["exception"]
    assert logged["trace_id"] == f"{trace_id(failed):032x}"


CONFIGURE = """
import logging, os
from claude_mem_core.logging_setup import configure_logging
from claude_mem_core.logging_setup import request_logged
configure_logging(os.environ)
with request_logged("r-9"):
    logging.getLogger("claude_mem.worker").info("worker %s starting", "w1")
"""


@pytest.mark.parametrize("fmt", ["", "json"])
def test_configured_logging_writes_the_chosen_format_to_stderr(fmt: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLAUDE_MEM_LOG"))}
    if fmt:
        env["CLAUDE_MEM_LOG_FORMAT"] = fmt
    done = subprocess.run(
        [sys.executable, "-c", CONFIGURE], env=env, capture_output=True, text=True, check=True
    )
    [line] = done.stderr.splitlines()
    if fmt == "json":
        parsed = json.loads(line)
        assert parsed["message"] == "worker w1 starting"
        assert parsed["request_id"] == "r-9" and parsed["level"] == "INFO"
    else:  # the format the worker always had
        assert line.endswith(" INFO claude_mem.worker: worker w1 starting")
        assert not line.startswith("{")


async def test_serve_refuses_an_unknown_log_format(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from claude_mem_http.server.cli import EXIT_FAILED, serve

    monkeypatch.setenv("CLAUDE_MEM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CLAUDE_MEM_LOG_FORMAT", "yaml")
    assert await serve(argparse.Namespace(host=None, port=None)) == EXIT_FAILED
    assert "CLAUDE_MEM_LOG_FORMAT must be one of text, json (got 'yaml')" in capsys.readouterr().err
