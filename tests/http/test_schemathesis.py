"""The served OpenAPI document and the server agree (issue #13, schema drift).

Schemathesis reads ``/v1/openapi.json`` from a real server (a real app on a SQLite file,
served over TCP in a thread of its own) and sends every documented operation generated
requests: valid ones, invalid ones (wrong types, missing fields, out-of-range numbers,
wrong content types), and methods the document does not list for a path. Every answer must
be a documented status code with a documented content type and a body matching its schema,
and nothing may answer 5xx. The run is derandomized (fixed seed, no example database), so
it sends the same requests every time.

The same document is checked three ways: with a working key (read and write scopes,
created through the core), without any key, and with a key the server never issued.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from aiohttp import web
from httpkit import scripted_reply
from hypothesis import HealthCheck

from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.facade import Memory
from claude_mem_core.services.context import PipelineOptions
from claude_mem_core.testing import databases
from claude_mem_core.testing.fakes import ScriptedProvider
from claude_mem_http.server.app import create_app
from claude_mem_http.wire import openapi

pytestmark = pytest.mark.sqlite

# Examples per operation and phase; with 28 operations the whole module stays well under
# a minute and a half on two cores.
MAX_EXAMPLES = 12
SEED = 13

SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
)


class LiveServer:
    """The app on 127.0.0.1 (an ephemeral port), run by an event loop in a thread of its
    own so the synchronous requests of the checks reach a real socket."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.memory: Memory | None = None
        self.runner: web.AppRunner | None = None
        self.base_url = ""
        self.key = ""
        self.project_id = ""

    def run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=60)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        url = await databases.migrated_sqlite_url(self.tmp)
        memory = Memory(
            storage=storage_from_url(url),
            queue=InProcessQueue(),
            provider=ScriptedProvider(default=scripted_reply),
            options=PipelineOptions(max_attempts=3),
        )
        self.memory = memory
        team = await memory.create_team("acme")
        project = await memory.create_project(team.id, "webapp")
        issued = await memory.create_api_key(
            team_id=team.id, project_id=project.id, scopes=["memories:read", "memories:write"]
        )
        self.key = issued.raw_key
        self.project_id = project.id
        self.runner = web.AppRunner(create_app(memory, background_generation=False))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.memory is not None:
            await self.memory.close()

    def stop(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("schemathesis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """An import body (``POST /v1/projects/{id}/import``): documented as a string of NDJSON;
    whatever was generated is sent as its text, one JSON value per line."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return value
    return (json.dumps(value) + "\n").encode()


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            # The key is the test's to send (a working one, none, or an unknown one).
            "with-security-parameters": False,
        },
        "phases": {"stateful": {"enabled": False}},
        "operations": [
            {
                # Documented as refused: every well-formed request gets a 405 (or a
                # refusal of its key).
                "include-name-regex": "^(GET|DELETE) /mcp$",
                "checks": {"positive_data_acceptance": {"expected-statuses": [401, 403, 405]}},
            },
            {
                # The MCP SDK reads JSON-RPC leniently (it coerces booleans to integers and
                # takes a message it cannot answer for a notification), so a message the
                # document calls malformed may still be accepted; everything else holds.
                "include-name": "POST /mcp",
                "checks": {"negative_data_rejection": {"enabled": False}},
            },
        ],
    }
)
# The document the server serves (``test_the_checked_document_is_the_served_one``).
schema = schemathesis.openapi.from_dict(openapi.DOCUMENT, config=CONFIG)


def test_the_checked_document_is_the_served_one(live_server: LiveServer) -> None:
    with urllib.request.urlopen(f"{live_server.base_url}/v1/openapi.json", timeout=10) as reply:
        assert reply.status == 200
        assert json.loads(reply.read()) == openapi.DOCUMENT


def _secured_and_routed(case: schemathesis.Case) -> bool:
    """A request to a key-protected operation with its own method (another method on the
    path is refused by the router, 405, before any key is read)."""
    operation = case.operation
    return (
        bool(operation.definition.raw.get("security"))
        and case.method.upper() == operation.method.upper()
    )


@schema.parametrize()
@SETTINGS
def test_with_a_working_key_every_answer_is_documented(
    case: schemathesis.Case, live_server: LiveServer
) -> None:
    case.call_and_validate(
        base_url=live_server.base_url, headers={"Authorization": f"Bearer {live_server.key}"}
    )


@schema.parametrize()
@SETTINGS
def test_without_a_key_every_answer_is_documented(
    case: schemathesis.Case, live_server: LiveServer
) -> None:
    response = case.call_and_validate(base_url=live_server.base_url)
    if _secured_and_routed(case):
        assert response.status_code == 401, (case.method, case.path, response.status_code)


@schema.parametrize()
@SETTINGS
def test_with_an_unknown_key_every_answer_is_documented(
    case: schemathesis.Case, live_server: LiveServer
) -> None:
    response = case.call_and_validate(
        base_url=live_server.base_url,
        headers={"Authorization": "Bearer cmem_never_issued_by_this_server"},
    )
    if _secured_and_routed(case):
        assert response.status_code == 403, (case.method, case.path, response.status_code)


def _raw(server: LiveServer, method: str, path: str, **headers: str) -> tuple[int, Any, Any]:
    request = urllib.request.Request(
        f"{server.base_url}{path}", method=method, headers=headers, data=b"hi"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers, json.loads(reply.read())
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, refused.headers, json.loads(refused.read())


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/sessions/start", "POST"),  # not read as the session "start"
        ("GET", "/v1/events/batch", "POST"),  # not read as the event "batch"
        ("PUT", "/v1/jobs/abc", "GET"),
        ("DELETE", "/v1/memories/recent", "GET"),
    ],
)
def test_a_concrete_path_refuses_other_methods_with_its_own_allow(
    live_server: LiveServer, method: str, path: str, allow: str
) -> None:
    key = f"Bearer {live_server.key}"
    status, headers, body = _raw(live_server, method, path, Authorization=key)
    assert status == 405 and headers["Allow"] == allow
    assert body == {"error": "MethodNotAllowed", "message": f"Cannot {method} {path}"}


def test_mcp_answers_json_to_a_body_that_is_not_json(live_server: LiveServer) -> None:
    key = f"Bearer {live_server.key}"
    status, _, body = _raw(
        live_server, "POST", "/mcp", Authorization=key, **{"Content-Type": "text/plain"}
    )
    assert status == 400 and body["error"] == "ValidationError"
    assert body["issues"][0]["code"] == "content_type"
    for method in ("GET", "DELETE"):
        status, headers, body = _raw(live_server, method, "/mcp", Authorization=key)
        assert status == 405 and headers["Allow"] == "POST", method
        assert body["error"] == "MethodNotAllowed"
