"""The app never echoes nor logs a malformed request, however it is served (issue #13, 2).

aiohttp answers a request it cannot parse before any middleware runs, quoting the offending
header line (often ``Authorization: Bearer <key>``) in its 400 body and its log. The app
that ``create_app`` builds replaces that answer itself, so serving it with a plain
``web.AppRunner``, ``web.run_app`` or aiohttp's ``TestServer`` is as safe as
``claude-mem serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from httpkit import World
from test_hardening import raw_request

from claude_mem_core.facade import Memory
from claude_mem_http.server.app import create_app


@pytest.fixture
def backend() -> str:  # the HTTP layer is under test: one backend is enough
    return "sqlite"


def _bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def _app_runner(app: web.Application) -> AsyncIterator[int]:
    """``web.AppRunner`` as its documentation shows it, with aiohttp's default logging."""
    runner = web.AppRunner(app)
    await runner.setup()
    sock = _bound_socket()
    await web.SockSite(runner, sock).start()
    try:
        yield sock.getsockname()[1]
    finally:
        await runner.cleanup()


def _stop_run_app() -> None:
    raise web.GracefulExit  # what run_app's own signal handlers raise


@contextlib.asynccontextmanager
async def _run_app(app: web.Application) -> AsyncIterator[int]:
    """``web.run_app`` itself, on its own event loop in a thread (its default arguments,
    but for the signal handlers only a main thread can install)."""
    loop = asyncio.new_event_loop()
    sock = _bound_socket()
    sock.listen()  # connections wait in the backlog until run_app serves them
    thread = threading.Thread(
        target=web.run_app,
        args=(app,),
        kwargs={"sock": sock, "handle_signals": False, "print": None, "loop": loop},
        daemon=True,
    )
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        loop.call_soon_threadsafe(_stop_run_app)
        await asyncio.to_thread(thread.join, 30)
        assert not thread.is_alive()


@contextlib.asynccontextmanager
async def _test_server(app: web.Application) -> AsyncIterator[int]:
    """aiohttp's ``TestServer`` (what ``aiohttp_client`` serves an app with)."""
    server = TestServer(app)
    await server.start_server()
    try:
        assert server.port is not None
        yield server.port
    finally:
        await server.close()


SERVINGS: dict[str, Callable[[web.Application], contextlib.AbstractAsyncContextManager[int]]] = {
    "AppRunner": _app_runner,
    "run_app": _run_app,
    "TestServer": _test_server,
}


def _request(port: int, authorization: bytes, *, path: bytes = b"/v1/jobs") -> bytes:
    return (
        b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1:" + str(port).encode() + b"\r\n"
        b"Authorization: Bearer " + authorization + b"\r\nConnection: close\r\n\r\n"
    )


def _logged_text(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter()
    parts: list[str] = []
    for record in records:
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


@pytest.mark.parametrize("serving", sorted(SERVINGS))
@pytest.mark.parametrize(
    "suffix",
    [b"\x01", b"\x7f", b"k" * 9000],
    ids=["control-character", "delete", "line-too-long"],
)
async def test_malformed_header_is_answered_without_the_key_however_the_app_is_served(
    memory: Memory,
    world: World,
    serving: str,
    suffix: bytes,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    key = world.key
    app = create_app(memory, background_generation=False)
    with caplog.at_level(logging.DEBUG):
        async with SERVINGS[serving](app) as port:
            status, body = await raw_request(port, _request(port, key.encode() + suffix))
            # The server still answers well-formed requests afterwards.
            ok_status, _ = await raw_request(port, _request(port, b"", path=b"/healthz"))
    secret = key[len("cmem_") :][:16]  # any part of the key past its fixed prefix
    assert secret.encode() not in body, "the answer quotes the key"
    assert status == 400
    assert json.loads(body) == {"error": "BadRequest", "message": "Malformed HTTP request"}
    assert ok_status == 200
    logged = _logged_text(caplog.records)
    assert "malformed HTTP request" in logged  # the refusal is logged, as its kind
    assert secret not in logged, "a log record quotes the key"
    out, err = capfd.readouterr()
    assert secret not in out and secret not in err, "the output quotes the key"


async def test_a_well_formed_request_is_served_as_before(memory: Memory) -> None:
    """The replaced answer is only for requests aiohttp cannot parse."""
    app = create_app(memory, background_generation=False)
    async with _app_runner(app) as port:
        status, body = await raw_request(port, _request(port, b"cmem_not-a-key"))
    assert status == 403
    payload: dict[str, Any] = json.loads(body)
    assert payload["error"] == "Forbidden"
