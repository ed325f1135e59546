"""Malformed, oversized and hostile requests never produce a 5xx and never change a row.

The app runs in-process (aiohttp test server) on SQLite and on the private PostgreSQL
cluster. Requests are written as raw bytes over a socket so that nothing in a client library
normalises them away: ``..`` segments, ``%00``, broken UTF-8, lying Content-Length, ...

Three kinds of request:

* ``refused``: must be answered 4xx, and no row of any table may change (audit included);
* ``read``: hostile input to a read (SQL / FTS syntax as search text, odd ids): 2xx or 4xx,
  and no row may change except the read's own audit rows;
* ``write``: unusual but legal content (unicode, control characters): 201 or 4xx; when it
  is stored, it reads back unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer
from attrs import frozen
from faultkit import PrivatePostgres

from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.sqlalchemy import SqlAlchemyStorage
from claude_mem_core.adapters.sqlalchemy.tables import metadata
from claude_mem_core.facade import Memory
from claude_mem_core.testing import databases
from claude_mem_core.testing.fakes import ScriptedProvider
from claude_mem_http.server.app import create_app

AUDIT_TABLE = "audit_log"


@frozen
class Hostile:
    kind: str  # refused | read | write
    method: str
    target: str  # raw request-target, sent byte for byte
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    auth: bool = True
    content_type: str | None = "application/json"


@frozen
class Answer:
    status: int
    body: Any


# -- the catalogue ---------------------------------------------------------------------------


def _event(project: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "projectId": project,
        "sourceType": "hook",
        "eventType": "tool_use",
        "occurredAtEpoch": 1_760_000_000_000,
        "payload": {"tool_name": "Edit"},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()
SEARCH_TEXTS = [
    "'; DROP TABLE observations; --",
    '" OR 1=1 --',
    "login' UNION SELECT key_hash FROM api_keys --",
    "redirect) OR (1=1",
    "NEAR(login redirect, 2)",
    "login AND NOT redirect OR *",
    '"unbalanced quote',
    "login:* & !redirect | (cache <-> token)",
    "title:secret content:*",
    "^login",
    "{login}",
    "a" * 10_000,
    "%",
    "_",
    "\\",
    "$$; SELECT pg_sleep(10); $$",
    "; SELECT pg_sleep(10)",
    "\u202e\u0644\u0648\u063a\u064a\u0646 \U0001f600 \u65e5\u672c\u8a9e",
    "\x00",
    "login\x00redirect",
    "\ud800",
    "   ",
    "",
    "-",
    "*",
    "OR",
    "NOT",
    "AND OR NOT NEAR",
    "login" * 5000,
    "\t\n\r",
]
ID_TRICKS = [
    "..",
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2f",
    "%00",
    "evt%00.json",
    "%ff%fe",
    "%C0%AE%C0%AE",
    "'%20OR%20'1'='1",
    "1;DROP%20TABLE%20agent_events",
    "x" * 8000,
    "%E2%80%AE",
    "%F0%9F%98%80",
    "..;",
    "%5c..%5c",
    "*",
    "null",
]


def catalogue(project: str, other_project: str) -> list[Hostile]:
    """The 200 requests."""
    out: list[Hostile] = []
    good_event = json.dumps(_event(project)).encode()

    # 1. broken JSON on every write route
    broken_json = [
        b"{",
        b'{"projectId": ',
        b'{"projectId": "p",}',
        b"{'projectId': 'p'}",
        b'{"a": NaN}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b"\xef\xbb\xbf" + good_event,
        b"\xff\xfe\x00{",
        good_event + b" trailing",
    ]
    for route in ("/v1/events", "/v1/events/batch", "/v1/memories", "/v1/sessions/start"):
        out += [Hostile("refused", "POST", route, body) for body in broken_json]

    # 2. wrong types, values out of range, missing fields
    wrong: list[Any] = [
        None,
        1,
        "event",
        [],
        {},
        _event(project, projectId=123),
        _event(project, projectId=None),
        _event(project, projectId=_DROP),
        _event(project, occurredAtEpoch="yesterday"),
        _event(project, occurredAtEpoch=-1),
        _event(project, occurredAtEpoch=2**80),
        _event(project, occurredAtEpoch=1.5e300),
        _event(project, occurredAtEpoch=True),
        _event(project, sourceType="bogus"),
        _event(project, sourceType=["hook"]),
        _event(project, eventType=7),
        _event(project, eventType=""),
        _event(project, serverSessionId=12),
        _event(project, serverSessionId="ses_does_not_exist"),
        _event(project, metadata="x"),
        _event(project, projectId=other_project),
        _event(project, projectId="../" + project),
        _event(project, projectId=project + "\x00"),
        _event(project, projectId="p" * 100_000),
        _event(project, sourceEventId=["a"]),
    ]
    out += [Hostile("refused", "POST", "/v1/events", json.dumps(b).encode()) for b in wrong]
    batches: list[Any] = [
        [],
        {"events": []},
        [_event(project)] * 501,
        [_event(project), _event(project, occurredAtEpoch="x")],
        [_event(project), _event(other_project)],
        [_event(project), None],
        [_event(project), [_event(project)]],
        [_event(project, projectId=other_project)] * 3,
    ]
    out += [Hostile("refused", "POST", "/v1/events/batch", json.dumps(b).encode()) for b in batches]
    searches: list[Any] = [
        {"projectId": project},
        {"projectId": project, "query": 5},
        {"projectId": project, "query": ["login"]},
        {"projectId": project, "query": "login", "limit": -1},
        {"projectId": project, "query": "login", "limit": 10**12},
        {"projectId": project, "query": "login", "limit": "20"},
        {"projectId": other_project, "query": "login"},
        {"projectId": {"$ne": None}, "query": "login"},
    ]
    out += [Hostile("refused", "POST", "/v1/search", json.dumps(b).encode()) for b in searches]
    memories: list[Any] = [
        {"projectId": project},
        {"projectId": project, "content": 1},
        {"projectId": project, "content": ""},
        {"projectId": project, "content": "x", "kind": "no spaces allowed"},
        {"projectId": project, "content": "x", "kind": "k" * 65},
        {"projectId": other_project, "content": "x"},
    ]
    out += [Hostile("refused", "POST", "/v1/memories", json.dumps(b).encode()) for b in memories]

    # 3. oversized bodies and lying headers
    big = b'{"projectId": "' + project.encode() + b'", "pad": "' + b"x" * (6 * 1024 * 1024) + b'"}'
    out += [
        Hostile("refused", "POST", "/v1/events", big),
        Hostile("refused", "POST", "/v1/events/batch", b"[" + b"{}," * 2_000_000 + b"{}]"),
        Hostile("refused", "POST", "/v1/events", good_event, content_type="text/plain"),
        Hostile("refused", "POST", "/v1/events", good_event, content_type=None),
        Hostile(
            "refused",
            "POST",
            "/v1/events",
            good_event,
            content_type="application/x-www-form-urlencoded",
        ),
        Hostile("refused", "POST", "/v1/events", good_event, auth=False),
        Hostile(
            "refused",
            "POST",
            "/v1/events",
            good_event,
            auth=False,
            headers=(("Authorization", "Bearer cm_' OR '1'='1"),),
        ),
        Hostile(
            "refused",
            "POST",
            "/v1/events",
            good_event,
            auth=False,
            headers=(("Authorization", "Bearer " + "k" * 6000),),
        ),
        Hostile(
            "refused",
            "POST",
            "/v1/events",
            good_event,
            auth=False,
            headers=(("Authorization", "Basic Zm9vOmJhcg=="),),
        ),
        Hostile("refused", "POST", "/v1/events", b""),
        Hostile("refused", "POST", "/v1/events?waitTimeoutMs=-5", good_event),
        Hostile("refused", "POST", "/v1/events?waitTimeoutMs=1e9", good_event),
        Hostile("refused", "POST", "/v1/events?generate=maybe", good_event),
        Hostile("refused", "POST", "/v1/events?wait=%00", good_event),
        Hostile("refused", "PUT", "/v1/events", good_event),
        Hostile("refused", "DELETE", "/v1/events/evt_1", b""),
        Hostile("refused", "POST", "/v1/events/" + "%2e%2e/batch", good_event),
    ]

    # 4. path tricks in ids, on every id route
    for trick in ID_TRICKS:
        out += [
            Hostile("read", "GET", f"/v1/events/{trick}"),
            Hostile("read", "GET", f"/v1/sessions/{trick}"),
            Hostile("read", "GET", f"/v1/jobs/{trick}"),
        ]
        out.append(Hostile("refused", "POST", f"/v1/jobs/{trick}/cancel", b"{}"))
    out += [
        Hostile("read", "GET", f"/v1/projects/{quote(other_project)}/jobs"),
        Hostile("read", "GET", "/v1/projects/..%2F..%2F/jobs"),
        Hostile("read", "GET", "/v1/teams/%00/jobs"),
        Hostile("read", "GET", "/v1/jobs?status=%27%20OR%201%3D1&limit=abc"),
        Hostile("read", "GET", "/v1/jobs?limit=-1&offset=-1"),
        Hostile("read", "GET", "/v1/jobs?limit=99999999999999999999999"),
        Hostile("read", "GET", "/../../../etc/passwd"),
        Hostile("read", "GET", "/v1/%2e%2e/%2e%2e/etc/passwd"),
        Hostile("read", "GET", "/v1/openapi.json/..%2f..%2f"),
    ]

    # 5. hostile search text (a read: SQL and FTS syntax is never query syntax)
    out += [
        Hostile(
            "read",
            "POST",
            "/v1/search",
            json.dumps({"projectId": project, "query": text, "limit": 5}).encode(),
        )
        for text in SEARCH_TEXTS
    ]
    out += [
        Hostile(
            "read",
            "POST",
            "/v1/context",
            json.dumps({"projectId": project, "query": text}).encode(),
        )
        for text in SEARCH_TEXTS[:6]
    ]

    # 6. legal but unusual content: stored as sent (or refused), never a 5xx
    unusual = [
        "\U0001f600 \u65e5\u672c\u8a9e \u202e\u0644\u0648\u063a\u064a\u0646",
        "nul \x00 inside",
        "lone surrogate \ud800 here",
        "bell \x07 and escape \x1b[31m",
        "'; DROP TABLE agent_events; --",
        "<private>secret</private> visible",
    ]
    # payload is any JSON value (schemas.Reader.any); eventType has no length limit
    out += [
        Hostile("write", "POST", "/v1/events", json.dumps(_event(project, **changes)).encode())
        for changes in (
            {"payload": "not an object"},
            {"payload": [1, 2]},
            {"eventType": "t" * 100_000},
        )
    ]
    for n, text in enumerate(unusual):
        out.append(
            Hostile(
                "write",
                "POST",
                "/v1/events",
                json.dumps(
                    _event(project, payload={"tool_name": "Edit", "note": text, "n": n}),
                    ensure_ascii=True,
                ).encode(),
            )
        )
        out.append(
            Hostile(
                "write",
                "POST",
                "/v1/memories",
                json.dumps({"projectId": project, "content": f"memory {text}"}).encode(),
            )
        )
    return out


# -- the raw client --------------------------------------------------------------------------


async def send(port: int, request: Hostile, key: str) -> Answer:
    lines = [f"{request.method} {request.target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if request.auth:
        lines.append(f"Authorization: Bearer {key}")
    lines += [f"{name}: {value}" for name, value in request.headers]
    if request.content_type is not None and request.body:
        lines.append(f"Content-Type: {request.content_type}")
    lines += [f"Content-Length: {len(request.body)}", "Connection: close", "", ""]
    head = "\r\n".join(lines).encode("utf-8", "surrogateescape")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        try:
            writer.write(request.body)
            await writer.drain()
        except ConnectionError:
            pass  # the server may answer (413) and close before reading all of it
        raw = await asyncio.wait_for(reader.read(), timeout=60)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert raw.startswith(b"HTTP/1.1 "), f"{request.method} {request.target[:80]}: {raw[:200]!r}"
    status = int(raw[9:12])
    _, _, payload = raw.partition(b"\r\n\r\n")
    try:
        body = json.loads(payload) if payload else None
    except ValueError:
        body = payload[:200]
    return Answer(status, body)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield "sqlite", await databases.migrated_sqlite_url(tmp_path)
        return
    pg: PrivatePostgres = request.getfixturevalue("pg")
    url = await databases.create_postgres_database(pg.url)
    try:
        yield "postgres", url
    finally:
        await databases.drop_postgres_database(url)


async def row_counts(storage: SqlAlchemyStorage) -> dict[str, int]:
    async with storage.engine.connect() as conn:
        counts = {}
        for table in metadata.sorted_tables:
            counts[table.name] = int(
                (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
            )
        return counts


# Requests that still get a 500: product bugs, reported, kept as strict xfails below so
# that the fix turns them into failures-to-fail (remove the entry then).
async def check_requests(backend: str, url: str) -> tuple[int, list[str]]:
    """Send the whole catalogue; returns (requests sent, failures)."""
    storage = storage_from_url(url)
    assert isinstance(storage, SqlAlchemyStorage)
    memory = Memory(storage=storage, queue=InProcessQueue(), provider=ScriptedProvider())
    team = await memory.create_team("acme")
    project = await memory.create_project(team.id, "webapp")
    other_team = await memory.create_team("globex")
    other = await memory.create_project(other_team.id, "secret")
    issued = await memory.create_api_key(
        team_id=team.id, project_id=project.id, scopes=["memories:read", "memories:write"]
    )
    requests = [r for r in catalogue(project.id, other.id)]
    server = TestServer(create_app(memory, background_generation=False), host="127.0.0.1")
    await server.start_server()
    failures: list[str] = []
    try:
        for request in requests:
            label = f"[{backend}] {request.method} {request.target[:60]!r} {request.body[:60]!r}"
            before = await row_counts(storage)
            answer = await send(server.port, request, issued.raw_key)
            after = await row_counts(storage)
            changed = {t: (before[t], after[t]) for t in before if before[t] != after[t]}
            if answer.status >= 500:
                failures.append(f"{label}: {answer.status} {answer.body!r:.200}")
                continue
            if request.kind == "refused":
                if not 400 <= answer.status < 500:
                    failures.append(f"{label}: expected a 4xx, got {answer.status}")
                if changed:
                    failures.append(f"{label}: refused ({answer.status}) but changed {changed}")
            elif request.kind == "read":
                changed.pop(AUDIT_TABLE, None)
                if changed:
                    failures.append(f"{label}: a read changed {changed}")
            elif answer.status == 201:
                failures += await _stored_as_sent(memory, team.id, request, answer, label)
    finally:
        await server.close()
        await memory.close()
    return len(requests), failures


async def test_hostile_requests_get_no_5xx_and_change_nothing(
    database_url: tuple[str, str],
) -> None:
    backend, url = database_url
    sent, failures = await check_requests(backend, url)
    assert sent >= 200
    assert not failures, f"{len(failures)} of {sent} requests misbehaved:\n" + "\n".join(failures)


async def _stored_as_sent(
    memory: Memory, team_id: str, request: Hostile, answer: Answer, label: str
) -> list[str]:
    sent = json.loads(request.body)
    if request.target == "/v1/events":
        event_id = answer.body["event"]["id"]
        async with memory.storage.unit_of_work() as uow:
            stored = await uow.events.get(team_id, event_id)
        if stored is None:
            return [f"{label}: 201 but event {event_id} is not stored"]
        if not isinstance(sent["payload"], dict) or "note" not in sent["payload"]:
            return []
        note = sent["payload"]["note"]
        if stored.payload.get("note") != note and "<private>" not in note:
            return [f"{label}: stored {stored.payload.get('note')!r}, sent {note!r}"]
    return []
