"""How an operation of the OpenAPI document is written: its responses (the common errors
included), security, parameters, and the query parameters several routes share."""

from __future__ import annotations

from typing import Any

from claude_mem_http.wire import bodies
from claude_mem_http.wire.bodies import body_ref
from claude_mem_http.wire.json_schema import (
    JOB_STATUSES,
    STR,
    Schema,
    nstr_in,
    ref,
)


def _error(description: str, name: str = "Error") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(name)}}}


def _ok(schema: Schema, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


COMMON_ERRORS = {
    "400": _error("Invalid request (fields named in `issues`)", "ValidationError"),
    "401": _error("Missing bearer API key"),
    "403": _error("Invalid, revoked or expired key, or insufficient scope"),
    "404": _error("Not found, or outside the caller's team or project"),
    "413": _error("Request body over 5 MB"),
    "500": _error("Unexpected error (no internals)"),
    "503": _error("A storage or queue dependency is unavailable"),
}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    body: str | None = None,
    params: list[dict[str, Any]] | None = None,
    secured: bool = True,
    tags: list[str] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": dict(responses)}
    if secured:
        op["security"] = [{"bearer": []}]
        for code, response in COMMON_ERRORS.items():
            op["responses"].setdefault(code, response)
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
    if params:
        op["parameters"] = params
    if tags:
        op["tags"] = tags
    return op


def _refused(allow: str) -> dict[str, Any]:
    """405: the path is served, this method is not (``Allow`` names those that are)."""
    return {
        **_error("Method not allowed on this path"),
        "headers": {"Allow": {"required": True, "schema": {"type": "string", "const": allow}}},
    }


GONE = "EventGone"


def _erase_op(summary: str, tag: str) -> dict[str, Any]:
    return _op(
        summary,
        {"200": _ok(body_ref(bodies.ErasedBody), "Erased")},
        params=[_path_param("id")],
        tags=[tag],
    )


COMPAT_400 = {
    "description": "Invalid body, or a team key where a project key is required",
    "content": {"application/json": {"schema": {"anyOf": [ref("ValidationError"), ref("Error")]}}},
}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": STR}


def _query(name: str, schema: Schema, description: str = "") -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


_FLAG = {"type": "string", "enum": ["true", "false"]}
EVENT_PARAMS = [
    _query("generate", _FLAG, "create a generation job (default true)"),
    _query("wait", _FLAG, "wait for the job to finish (default false)"),
    _query(
        "waitTimeoutMs",
        {"type": "integer", "minimum": 0, "maximum": 30000},
        "wait at most this long (default and maximum 30000)",
    ),
]
# Query integers are read as at most 18 digits.
MAX_OFFSET = 10**18 - 1
OFFSET = {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}
PAGE_PARAMS = [
    _query("status", nstr_in(JOB_STATUSES)),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}),
    _query("offset", OFFSET),
]
SINCE = {
    "anyOf": [
        {"type": "string", "pattern": "^[0-9]{1,14}$"},
        {"type": "string", "format": "date-time"},
    ]
}
_JOB_ID = [_path_param("id")]


_STREAM_KIND = "(event|observation|summary|job)"
STREAM_KINDS_PATTERN = f"^{_STREAM_KIND}(,{_STREAM_KIND})*$"
