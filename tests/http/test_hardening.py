"""Hostile requests of issue #13: none may stall the server, echo a key, or get a 5xx."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from httpkit import Api, World, event_body
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from claude_mem_core import errors
from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.facade import Memory
from claude_mem_http.server.app import create_app
from claude_mem_http.server.serving import AppRunner
from claude_mem_http.wire import schemas


@pytest.fixture
def backend() -> str:  # the HTTP layer is under test: one backend is enough
    return "sqlite"


@pytest.fixture
async def served(memory: Memory) -> AsyncIterator[int]:
    """The app served with the runner of ``claude-mem serve``; yields the port."""
    runner = AppRunner(create_app(memory, background_generation=False))
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    from aiohttp import web

    await web.SockSite(runner, sock).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert raw.startswith(b"HTTP/1."), raw[:200]
    return int(raw[9:12]), raw.partition(b"\r\n\r\n")[2]


def _head(port: int, auth: bytes, *, path: bytes = b"/v1/jobs", extra: bytes = b"") -> bytes:
    return (
        b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1:" + str(port).encode() + b"\r\n"
        b"Authorization: Bearer " + auth + b"\r\n" + extra + b"Connection: close\r\n\r\n"
    )


# -- 2. a malformed header never echoes the key ----------------------------------------------


@pytest.mark.parametrize(
    "suffix",
    [b"\x01", b"\x7f", b"k" * 9000],
    ids=["control-character", "delete", "line-too-long"],
)
async def test_malformed_authorization_header_is_not_echoed_nor_logged(
    served: int,
    world: World,
    suffix: bytes,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    key = world.key.encode()
    with caplog.at_level(logging.DEBUG):
        status, body = await raw_request(served, _head(served, key + suffix))
    assert status == 400
    assert json.loads(body) == {"error": "BadRequest", "message": "Malformed HTTP request"}
    secret = world.key[:24]
    assert secret.encode() not in body
    assert secret not in caplog.text
    for record in caplog.records:
        assert secret not in record.getMessage()
        if record.exc_info:
            assert secret not in logging.Formatter().formatException(record.exc_info)
    out, err = capfd.readouterr()
    assert secret not in out and secret not in err


# -- 3. no 5xx on odd query values or keys ---------------------------------------------------


async def test_non_utf8_token_is_an_unknown_key(served: int, world: World) -> None:
    status, body = await raw_request(served, _head(served, b"cm_\xff\xfe\xfa"))
    assert status == 403
    assert json.loads(body)["error"] == "Forbidden"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("limit", "--5"),
        ("offset", "\u00b2"),  # "%C2%B2": a digit to str.isdigit(), not to int()
        ("limit", "\u0663"),  # an Arabic-Indic three
        ("limit", "99999999999999999999999"),
        ("limit", "+-1"),
    ],
)
async def test_bad_integers_in_the_query_name_the_field(
    api: Api, world: World, name: str, value: str
) -> None:
    reply = await api.get("/v1/jobs", key=world.key, params=[(name, value)])
    assert reply.status == 400, reply.body
    assert reply.body["error"] == "ValidationError"
    assert reply.body["issues"][0]["path"] == [name]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(raw=st.text(max_size=30))
def test_query_parsers_answer_a_value_or_a_validation_error(raw: str) -> None:
    query = MultiDict([("limit", raw), ("since", raw), ("flag", raw)])
    with contextlib.suppress(schemas.RequestInvalid):
        value = schemas.query_int(query, "limit", 5, minimum=1, maximum=500)
        assert 1 <= value <= 500
    with contextlib.suppress(schemas.RequestInvalid):
        schemas.query_since(query)
    with contextlib.suppress(schemas.RequestInvalid):
        schemas.query_flag(query, "flag", True)


# -- 4. long ids are the caller's mistake, not an outage -------------------------------------


@pytest.mark.parametrize("field", ["externalSessionId", "contentSessionId", "agentId"])
async def test_long_session_ids_are_refused_up_front(api: Api, world: World, field: str) -> None:
    body = {"projectId": world.project, field: "s" * 5000}
    reply = await api.post("/v1/sessions/start", body, key=world.key)
    assert reply.status == 400, reply.body
    assert reply.body["error"] == "ValidationError"
    assert [issue["path"] for issue in reply.body["issues"]] == [[field]]


async def test_long_legacy_ids_are_refused_up_front(api: Api, world: World) -> None:
    reply = await api.post(
        "/api/sessions/summarize", {"contentSessionId": "c" * 5000}, key=world.hook_key
    )
    assert reply.status == 400, reply.body
    assert reply.body["issues"][0]["path"] == ["contentSessionId"]


class _DriverError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("index row size 9000 exceeds btree version 4 maximum 2704")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("54000", errors.InvalidInput),  # program limit exceeded: an index row too large
        ("42601", errors.StorageError),  # a bad statement: a bug, not an outage
        ("08006", errors.StorageUnavailable),  # connection failure
        ("57P01", errors.StorageUnavailable),  # admin shutdown
        ("53300", errors.StorageUnavailable),  # too many connections
        (None, errors.StorageUnavailable),  # the driver lost its connection
    ],
)
def test_only_a_lost_database_is_reported_unavailable(
    sqlstate: str | None, expected: type[errors.ClaudeMemError]
) -> None:
    error = sa.exc.OperationalError("INSERT ...", {}, _DriverError(sqlstate))
    translated = dialects.translate_error(error)
    assert type(translated) is expected


# -- 9. GET /mcp and charsets ----------------------------------------------------------------


async def test_get_mcp_is_not_held_open(served: int, world: World) -> None:
    started = time.monotonic()
    status, body = await raw_request(
        served,
        _head(served, world.key.encode(), path=b"/mcp", extra=b"Accept: text/event-stream\r\n"),
    )
    assert status == 405
    assert json.loads(body)["error"] == "MethodNotAllowed"
    assert time.monotonic() - started < 5


async def test_utf16_body_is_decoded_as_declared(api: Api, world: World) -> None:
    body = event_body(world.project, payload={"note": "caf\u00e9 \u65e5\u672c"})
    reply = await api.call(
        "POST",
        "/v1/events",
        data=json.dumps(body, ensure_ascii=False).encode("utf-16"),
        key=world.key,
        content_type="application/json; charset=utf-16",
    )
    assert reply.status == 201, reply.body
    assert reply.body["event"]["payload"]["note"] == "caf\u00e9 \u65e5\u672c"


async def test_unknown_charset_is_refused(api: Api, world: World) -> None:
    reply = await api.call(
        "POST",
        "/v1/events",
        data=json.dumps(event_body(world.project)).encode(),
        key=world.key,
        content_type="application/json; charset=x-klingon",
    )
    assert reply.status == 400
    assert "charset" in reply.body["message"]


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        (r'{"note": "a\u0000b"}', ["payload", "note"]),
        (r'{"a\u0000": 1}', ["payload"]),  # a key: named by the object holding it
        (r'{"note": "\uD800"}', ["payload", "note"]),
        (r'{"notes": ["x", "\udfff"]}', ["payload", "notes", 1]),
    ],
    ids=["nul", "nul-in-key", "lone-high-surrogate", "lone-low-surrogate"],
)
async def test_text_no_database_can_store_is_refused_naming_the_field(
    api: Api, world: World, payload: str, path: list[Any]
) -> None:
    """NUL and lone surrogates reach a decoded string only through a JSON escape; the
    decoder looks for those before it walks the strings, and must not miss one."""
    data = json.dumps(event_body(world.project, payload="@")).replace('"@"', payload)
    reply = await api.call("POST", "/v1/events", data=data.encode(), key=world.key)
    assert reply.status == 400, reply.body
    assert [issue["path"] for issue in reply.body["issues"]] == [path]


@pytest.mark.parametrize(
    ("escaped", "stored"),
    [(r"\ud83d\ude00", "\U0001f600"), (r"\\u0000", "\\u0000"), (r"\u00e9", "\u00e9")],
    ids=["surrogate-pair", "escaped-backslash", "latin"],
)
async def test_escapes_of_storable_text_are_stored(
    api: Api, world: World, escaped: str, stored: str
) -> None:
    body = json.dumps(event_body(world.project, payload={"note": "@"}))
    data = body.replace('"@"', '"' + escaped + '"')
    reply = await api.call("POST", "/v1/events", data=data.encode(), key=world.key)
    assert reply.status == 201, reply.body
    assert reply.body["event"]["payload"]["note"] == stored


# -- 1. one request cannot freeze the server -------------------------------------------------


async def test_server_answers_while_a_worst_case_body_is_processed(
    served: int, world: World
) -> None:
    k = 120_000 // 19
    note = "<pri" * k + "<private></private>" + "vate></private>" * k
    payload: dict[str, Any] = {"notes": [note] * 30}  # ~3.6 MB of it
    data = json.dumps(event_body(world.project, payload=payload)).encode()
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{served}\r\n"
        f"Authorization: Bearer {world.key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode()
    post = asyncio.create_task(raw_request(served, head, data))
    await asyncio.sleep(0.05)
    slowest = 0.0
    while not post.done():
        started = time.monotonic()
        status, _ = await raw_request(
            served, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status == 200
        slowest = max(slowest, time.monotonic() - started)
        await asyncio.sleep(0.01)
    status, body = await post
    assert status == 201, body[:300]
    assert json.loads(body)["event"]["payload"] == {"notes": [""] * 30}
    assert slowest < 1.0, slowest


@pytest.mark.parametrize("route", ["/v1/events", "/v1/events/batch"])
async def test_a_body_near_the_size_limit_never_holds_the_loop(
    served: int, world: World, route: str
) -> None:
    """A costly body under the size limit (as many short strings as fit, private blocks
    to cut out and keys to redact), as one event or as a batch: decoding it, preparing
    its events and encoding the answer run off the event loop, and a full garbage
    collection its allocations set off is short, so /healthz keeps answering within a
    fraction of a second."""
    from claude_mem_http.wire.schemas import MAX_BODY_BYTES

    # Many short strings: the walk over them, not their length, is what costs.
    notes = ["<private>x</private>", "AKIAIOSFODNN7EXAMPLE"] * ((MAX_BODY_BYTES - 4096) // 48)
    event = event_body(world.project, payload={"notes": notes})
    data = json.dumps([event] if route.endswith("batch") else event).encode()
    assert MAX_BODY_BYTES * 0.9 < len(data) <= MAX_BODY_BYTES
    head = (
        f"POST {route} HTTP/1.1\r\nHost: 127.0.0.1:{served}\r\n"
        f"Authorization: Bearer {world.key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode()
    post = asyncio.create_task(raw_request(served, head, data))
    await asyncio.sleep(0.05)
    # A full collection may start in any allocation of the body's processing (its walks
    # run hundreds of young collections): one runs here, so its cost is always measured.
    collection = asyncio.create_task(asyncio.to_thread(_full_collection_cpu_seconds))
    answers: list[float] = []
    while not post.done():
        started = time.monotonic()
        status, _ = await raw_request(
            served, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status == 200
        answers.append(time.monotonic() - started)
        await asyncio.sleep(0.01)
    collection_cpu_s = await collection
    status, body = await post
    assert status == 201, body[:300]
    assert b"AKIAIOSFODNN7EXAMPLE" not in body and b"<private>" not in body
    assert len(answers) >= 3  # the body took long enough to be watched
    assert max(answers) < 0.3, answers
    # CPU time, not wall time, so a loaded machine does not count: the heap there when
    # serving started (~150k objects, ~100 ms to walk) is frozen out of collections.
    assert collection_cpu_s < 0.05, collection_cpu_s


def _full_collection_cpu_seconds() -> float:
    """A full garbage collection, which holds the GIL (and so the event loop) throughout;
    returns the CPU time it took."""
    started = time.thread_time()
    gc.collect()
    return time.thread_time() - started
