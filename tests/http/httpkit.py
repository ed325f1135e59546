"""Helpers for the HTTP tests: a client whose every response is checked against
docs/openapi.json and must carry an X-Request-Id, the seeded world, small builders."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import jsonschema
from aiohttp.test_utils import TestClient

from claude_mem_core.facade import Memory
from claude_mem_core.ports.storage import Page
from claude_mem_http.wire.bodies import ROUTE_BODIES
from claude_mem_http.wire.converter import from_wire

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
OPENAPI: dict[str, Any] = json.loads(DOC_PATH.read_text(encoding="utf-8"))

OBSERVATION = """<observation>
  <type>bugfix</type>
  <title>Fixed the authentication redirect loop</title>
  <facts><fact>auth/middleware.py compared the callback URL without its query</fact></facts>
  <narrative>The authentication redirect looped: the callback check ignored the query.</narrative>
  <files_modified><file>auth/middleware.py</file></files_modified>
</observation>"""

SUMMARY = """<summary>
  <request>Fix the login redirect</request>
  <investigated>auth middleware</investigated>
  <learned>the callback check ignored the query string</learned>
  <completed>redirect fixed</completed>
  <next_steps>add a regression test</next_steps>
</summary>"""


def scripted_reply(request: Any) -> str:
    return SUMMARY if request.purpose == "summary" else OBSERVATION


# -- OpenAPI response checking ------------------------------------------------------------


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$")


_TEMPLATES = [(t, _template_regex(t)) for t in OPENAPI["paths"]]


def template_for(method: str, path: str) -> str | None:
    if method.lower() in OPENAPI["paths"].get(path, {}):
        return path
    for template, regex in _TEMPLATES:
        if method.lower() in OPENAPI["paths"][template] and regex.match(path):
            return template
    return None


def operation_for(method: str, path: str) -> dict[str, Any] | None:
    template = template_for(method, path)
    return None if template is None else dict(OPENAPI["paths"][template][method.lower()])


def check_against_openapi(method: str, path: str, status: int, body: Any) -> None:
    op = operation_for(method, path)
    if op is None:
        assert status in (404, 405), f"{method} {path} is not documented but answered {status}"
        assert isinstance(body, dict) and "error" in body
        return
    response = op["responses"].get(str(status))
    assert response is not None, f"{method} {path}: status {status} is not documented"
    schema = response["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({"components": OPENAPI["components"], **schema}).validate(body)
    # The route's wire class reads it back: the class the server and the client share.
    wire_class = ROUTE_BODIES.get((method.lower(), str(template_for(method, path)), str(status)))
    if wire_class is not None:
        from_wire(body, wire_class)  # raises WireMismatch naming the member


@attrs.define
class Reply:
    status: int
    body: Any
    headers: Any


class Api:
    """Calls the app; every answer is checked against the OpenAPI document."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Any = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | list[tuple[str, str]] | None = None,
        content_type: str | None = "application/json",
    ) -> Reply:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        if json_body is not None:
            data = json.dumps(json_body)
        if data is not None and content_type is not None:
            sent.setdefault("Content-Type", content_type)
        async with self.client.request(
            method, path, data=data, headers=sent, params=params
        ) as resp:
            raw = await resp.read()
            assert resp.headers.get("X-Request-Id"), f"{method} {path}: no X-Request-Id"
            assert resp.content_type == "application/json", (method, path, resp.content_type)
            body = json.loads(raw) if raw else None
            if method != "HEAD":
                check_against_openapi(method, path, resp.status, body)
            return Reply(resp.status, body, resp.headers)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("POST", path, json_body=body, **kw)


@attrs.define
class World:
    team: str
    project: str
    sibling: str
    other_team: str
    other_project: str
    key: str  # project key, memories:read + memories:write
    team_key: str
    read_key: str
    admin_key: str
    hook_key: str
    other_key: str  # project key of the other team
    key_id: str = ""


AppFactory = Callable[..., Awaitable[Api]]


async def audit_rows(memory: Memory, team_id: str, action: str) -> list[Any]:
    async with memory.storage.unit_of_work() as uow:
        rows, _ = await uow.audit.list(team_id, action=action, page=Page(limit=100))
    return list(rows)


def event_body(project_id: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "projectId": project_id,
        "sourceType": "hook",
        "eventType": "tool_use",
        "occurredAtEpoch": 1_760_000_000_000,
        "payload": {"tool_name": "Edit", "tool_input": {"file": "auth/middleware.py"}},
    }
    body.update(extra)
    return body
