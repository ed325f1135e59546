"""The OpenAPI 3.1 document of every route, served at ``/v1/openapi.json`` by the server.

``docs/openapi.json`` is this document written out (``python -m claude_mem_http.wire.openapi
docs/openapi.json``); a test keeps the two identical and checks real responses against it.

Its parts: the JSON Schema building blocks (:mod:`.json_schema`), the named request and
response shapes (:mod:`.openapi_components`), how an operation is written
(:mod:`.openapi_operations`), and the paths (:mod:`.openapi_paths_memory` for what agents
send and ask, :mod:`.openapi_paths_admin` for operating the memory).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from claude_mem_http.wire.json_schema import (
    ANY,
    INT,
    OBJ,
    STR,
    obj,
    ref,
)
from claude_mem_http.wire.openapi_components import SCHEMAS
from claude_mem_http.wire.openapi_paths_admin import admin_paths
from claude_mem_http.wire.openapi_paths_memory import memory_paths


def build() -> dict[str, Any]:
    paths: dict[str, Any] = {**memory_paths(), **admin_paths()}
    schemas = dict(SCHEMAS)
    schemas["EventBatchInput"] = {
        "type": "array",
        "minItems": 1,
        "maxItems": 500,
        "items": ref("EventInput"),
    }
    # The MCP SDK reads these (any extra member is ignored, and any text accepted).
    rpc_id = {"type": ["string", "integer"]}
    rpc_params = {"type": ["object", "null"]}
    schemas["JsonRpcMessage"] = {
        "anyOf": [
            obj(
                {"jsonrpc": {"const": "2.0"}, "id": rpc_id, "method": STR, "params": rpc_params},
                required=["jsonrpc", "id", "method"],
                closed=False,
            ),
            obj(
                {"jsonrpc": {"const": "2.0"}, "method": STR, "params": rpc_params},
                required=["jsonrpc", "method"],
                closed=False,
            ),
            obj(
                {"jsonrpc": {"const": "2.0"}, "id": rpc_id, "result": OBJ},
                required=["jsonrpc", "id", "result"],
                closed=False,
            ),
            obj(
                {
                    "jsonrpc": {"const": "2.0"},
                    "id": {"type": ["string", "integer", "null"]},
                    "error": obj({"code": INT, "message": STR}, closed=False),
                },
                required=["jsonrpc", "id", "error"],
                closed=False,
            ),
        ],
        "description": "A JSON-RPC 2.0 request (answered with 200), or a notification or "
        "response (accepted with 202)",
    }
    schemas["JsonRpcAnswer"] = obj(
        {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["string", "integer", "null"]},
            "result": OBJ,
            "error": obj({"code": INT, "message": STR, "data": ANY}, ["code", "message"]),
        },
        required=["jsonrpc"],
        closed=False,
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "claude-mem server",
            "version": "1",
            "description": "Wire-compatible with claude-mem server-beta (see docs/ and api.md). "
            "Every *Epoch field is integer milliseconds since the Unix epoch. Every response "
            "carries an X-Request-Id header (an accepted inbound one, else a new UUID).",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


DOCUMENT = build()


def render() -> str:
    return json.dumps(DOCUMENT, indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if args:
        Path(args[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
