"""The claude-mem MCP server (pipeline.md §6.1) on the ``mcp`` SDK's low-level server: its
tools and :func:`build_mcp_server`.

Tools: ``observation_add``, ``observation_record_event``, ``observation_search``,
``observation_context``, ``observation_generation_status``, the aliases ``memory_add``,
``memory_search``, ``memory_context``, and ``memory_list_recent`` (pipeline.md §6.2: the
project's newest memories, ``{"memories": [...]}`` like GET /v1/memories/recent). Input
schemas are explicit JSON Schemas (the ``observation_*`` tools refuse unknown keys); every
argument is also checked here, and a bad one gives an ``is_error`` result naming the field.
A success is the HTTP API's JSON body, as pretty-printed text and as
``structured_content``.

Backends (:mod:`backends`): remote (a claude-mem server over HTTP) or local (the core
services in-process: the embedded SQLite memory, or an API key's caller inside the HTTP
server).

Transports:

* stdio — ``claude-mem mcp`` (:mod:`claude_mem_http.mcp.stdio`); remote when
  ``CLAUDE_MEM_SERVER_BETA_URL`` is set, else embedded. Nothing but the protocol goes to
  stdout.
* streamable HTTP inside the aiohttp server — :func:`~claude_mem_http.mcp.streamable_http.mount_mcp`
  adds ``/mcp`` with the read tools only; each request is authenticated with the API key
  (scope read) and the tools act as that key.

The ``mcp`` SDK is imported lazily (it costs about a second), so registering the CLI
command is free.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from claude_mem_core.domain.scopes import Need, allows
from claude_mem_core.errors import (
    ClaudeMemError,
    Conflict,
    FieldIssue,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from claude_mem_http.client.backends import Backend
from claude_mem_http.client.http_client import ServerUnavailable, now_epoch_ms
from claude_mem_http.wire.schemas import MAX_CONTEXT_TOKENS

if TYPE_CHECKING:
    from mcp.server.lowlevel import Server

log = logging.getLogger("claude_mem.mcp")

SERVER_NAME = "claude-mem"
SERVER_VERSION = "0.1.0"
SOURCE_TYPES = ("hook", "worker", "provider", "server", "api")
MAX_SEARCH_LIMIT = 100
MAX_CONTEXT_LIMIT = 50
MAX_RECENT_LIMIT = 100
DEFAULT_RECENT_LIMIT = 20
READ_TOOLS = frozenset(
    {
        "observation_search",
        "observation_context",
        "observation_generation_status",
        "memory_search",
        "memory_context",
        "memory_list_recent",
    }
)

BackendFactory = Callable[[Any], Awaitable[Backend]]
# Keyed HTTP: the same scope rules as the routes each tool stands for (docs/security.md).
TOOL_NEEDS: dict[str, Need] = {
    "observation_add": Need.WRITE_MEMORIES,
    "memory_add": Need.WRITE_MEMORIES,
    "observation_record_event": Need.WRITE_EVENTS,
    "observation_search": Need.READ,
    "observation_context": Need.READ,
    "memory_search": Need.READ,
    "memory_context": Need.READ,
    "memory_list_recent": Need.READ,
    "observation_generation_status": Need.READ_JOBS,
}

# -- schemas ---------------------------------------------------------------------------------

_STR = {"type": "string"}
_PROJECT = {"type": "string", "description": "project id (default: the configured project)"}
_MAX_TOKENS = {
    "type": "number",
    "minimum": 1,
    "maximum": MAX_CONTEXT_TOKENS,
    "description": "budget of the context text, about 4 characters a token",
}


def _schema(
    properties: dict[str, Any], required: list[str], *, extra: bool = False, **more: Any
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": extra,
    }
    schema.update(more)
    return schema


TOOLS: dict[str, tuple[str, dict[str, Any]]] = {
    "observation_add": (
        "Store a memory (observation) you wrote yourself. Never triggers generation.",
        _schema(
            {
                "content": {"type": "string", "minLength": 1},
                "projectId": _PROJECT,
                "serverSessionId": _STR,
                "kind": {"type": "string", "description": "default manual"},
                "metadata": {"type": "object"},
            },
            ["content"],
        ),
    ),
    "observation_record_event": (
        "Record an agent event; by default it queues observation generation.",
        _schema(
            {
                "eventType": {"type": "string", "minLength": 1},
                "projectId": _PROJECT,
                "sourceType": {"type": "string", "enum": list(SOURCE_TYPES), "default": "api"},
                "serverSessionId": _STR,
                "contentSessionId": _STR,
                "memorySessionId": _STR,
                "sourceEventId": {
                    "type": "string",
                    "description": "makes the call idempotent: a repeat is stored once",
                },
                "payload": {},
                "occurredAtEpoch": {"type": "number", "description": "ms; default now"},
                "generate": {"type": "boolean", "default": True},
            },
            ["eventType"],
        ),
    ),
    "observation_search": (
        "Full-text search of the project's observations, best match first, each with the "
        "excerpt that matched (matches marked **like this**).",
        _schema(
            {
                "query": {"type": "string", "minLength": 1},
                "projectId": _PROJECT,
                "limit": {"type": "number", "minimum": 1, "maximum": MAX_SEARCH_LIMIT},
            },
            ["query"],
        ),
    ),
    "observation_context": (
        "Observations matching a query, plus their contents joined as ready-to-use context; "
        "with maxTokens, their titles and matching excerpts within that budget.",
        _schema(
            {
                "query": {"type": "string", "minLength": 1},
                "projectId": _PROJECT,
                "limit": {"type": "number", "minimum": 1, "maximum": MAX_CONTEXT_LIMIT},
                "maxTokens": _MAX_TOKENS,
            },
            ["query"],
        ),
    ),
    "observation_generation_status": (
        "The status of a generation job (queued, processing, completed, failed, cancelled).",
        _schema(
            {"jobId": {"type": "string", "minLength": 1}, "job_id": {"type": "string"}},
            [],
            anyOf=[{"required": ["jobId"]}, {"required": ["job_id"]}],
        ),
    ),
    "memory_add": (
        "Alias of observation_add: content (or narrative), optional title and kind.",
        _schema(
            {
                "projectId": _STR,
                "kind": _STR,
                "content": _STR,
                "narrative": _STR,
                "title": _STR,
                "metadata": {"type": "object"},
            },
            ["projectId"],
            extra=True,
        ),
    ),
    "memory_search": (
        "Alias of observation_search.",
        _schema(
            {
                "projectId": _STR,
                "query": _STR,
                "limit": {"type": "number", "minimum": 1, "maximum": MAX_SEARCH_LIMIT},
            },
            ["projectId", "query"],
        ),
    ),
    "memory_context": (
        "Alias of observation_context.",
        _schema(
            {
                "projectId": _STR,
                "query": _STR,
                "limit": {"type": "number", "minimum": 1, "maximum": MAX_CONTEXT_LIMIT},
                "maxTokens": _MAX_TOKENS,
            },
            ["projectId", "query"],
        ),
    ),
    "memory_list_recent": (
        "The project's newest memories (observations), newest first; no query needed.",
        _schema(
            {
                "projectId": _STR,
                "limit": {
                    "type": "number",
                    "minimum": 1,
                    "maximum": MAX_RECENT_LIMIT,
                    "description": f"default {DEFAULT_RECENT_LIMIT}",
                },
            },
            ["projectId"],
        ),
    ),
}


# -- argument checking -------------------------------------------------------------------------


class Args:
    """Reads tool arguments, collecting every problem as a :class:`FieldIssue`."""

    def __init__(self, raw: Mapping[str, Any] | None, allowed: set[str] | None) -> None:
        self.raw = dict(raw or {})
        self.issues: list[FieldIssue] = []
        if allowed is not None:
            for name in sorted(set(self.raw) - allowed):
                self.issues.append(FieldIssue(name, "is not a known argument", "unrecognized_keys"))

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.raw.get(name)
        if value is None:
            if required:
                self.issues.append(FieldIssue(name, "is required", "required"))
            return None
        if not isinstance(value, str):
            self.issues.append(FieldIssue(name, "must be a string", "invalid_type"))
            return None
        if required and not value.strip():
            self.issues.append(FieldIssue(name, "must not be blank", "too_small"))
            return None
        return value if value.strip() else None

    def integer(self, name: str, *, minimum: int, maximum: int | None = None) -> int | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value != int(value)
        ):
            self.issues.append(FieldIssue(name, "must be a whole number", "invalid_type"))
            return None
        number = int(value)
        if number < minimum or (maximum is not None and number > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            self.issues.append(FieldIssue(name, f"must be {bound}", "out_of_range"))
            return None
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.issues.append(FieldIssue(name, "must be true or false", "invalid_type"))
            return default
        return value

    def obj(self, name: str) -> dict[str, Any] | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.issues.append(FieldIssue(name, "must be an object", "invalid_type"))
            return None
        return value

    def choice(self, name: str, values: tuple[str, ...], default: str) -> str:
        value = self.raw.get(name)
        if value is None:
            return default
        if value not in values:
            self.issues.append(FieldIssue(name, f"must be one of {', '.join(values)}", "invalid"))
            return default
        return str(value)

    def check(self) -> None:
        if self.issues:
            raise InvalidInput(self.issues)


def _allowed(tool: str) -> set[str] | None:
    schema = TOOLS[tool][1]
    return None if schema.get("additionalProperties") else set(schema["properties"])


# -- tool implementations ----------------------------------------------------------------------


async def _add(backend: Backend, args: Args, *, content: str | None, metadata: Any) -> Any:
    project = args.text("projectId")
    session = args.text("serverSessionId")
    kind = args.text("kind")
    if content is None or not content.strip():
        args.issues.append(FieldIssue("content", "must be non-empty text", "too_small"))
    args.check()
    return await backend.add_memory(
        project,
        content or "",
        server_session_id=session,
        kind=kind,
        metadata=metadata,
    )


async def call(backend: Backend, tool: str, arguments: Mapping[str, Any] | None) -> Any:
    """Run one tool; raises :class:`InvalidInput` (naming the field) or a backend error."""
    args = Args(arguments, _allowed(tool))
    if tool == "observation_add":
        content = args.text("content", required=True)
        return await _add(backend, args, content=content, metadata=args.obj("metadata"))
    if tool == "memory_add":
        content = args.text("content") or args.text("narrative")
        metadata = dict(args.obj("metadata") or {})
        title = args.text("title")
        if title is not None:
            metadata["title"] = title
        return await _add(backend, args, content=content, metadata=metadata)
    if tool == "observation_record_event":
        event_type = args.text("eventType", required=True)
        project = args.text("projectId")
        occurred = args.integer("occurredAtEpoch", minimum=0)
        event: dict[str, Any] = {
            "eventType": event_type,
            "sourceType": args.choice("sourceType", SOURCE_TYPES, "api"),
            "occurredAtEpoch": now_epoch_ms() if occurred is None else occurred,
            "serverSessionId": args.text("serverSessionId"),
            "contentSessionId": args.text("contentSessionId"),
            "memorySessionId": args.text("memorySessionId"),
            "sourceEventId": args.text("sourceEventId"),
            "payload": args.raw.get("payload"),
        }
        generate = args.boolean("generate", True)
        args.check()
        wire = {k: v for k, v in event.items() if v is not None}
        return await backend.record_event(project, wire, generate=generate)
    if tool in ("observation_search", "memory_search", "observation_context", "memory_context"):
        search = tool.endswith("search")
        required = tool.startswith("memory_")
        project = args.text("projectId", required=required)
        query = args.text("query", required=True)
        limit = args.integer(
            "limit", minimum=1, maximum=MAX_SEARCH_LIMIT if search else MAX_CONTEXT_LIMIT
        )
        max_tokens = (
            None if search else args.integer("maxTokens", minimum=1, maximum=MAX_CONTEXT_TOKENS)
        )
        args.check()
        if search:
            return await backend.search(project, query or "", limit)
        return await backend.context(project, query or "", limit, max_tokens)
    if tool == "memory_list_recent":
        project = args.text("projectId", required=True)
        limit = args.integer("limit", minimum=1, maximum=MAX_RECENT_LIMIT)
        args.check()
        found = await backend.recent(project, DEFAULT_RECENT_LIMIT if limit is None else limit)
        return {"memories": found}
    if tool == "observation_generation_status":
        job_id = args.text("jobId") or args.text("job_id")
        if job_id is None and not args.issues:
            args.issues.append(FieldIssue("jobId", "is required", "required"))
        args.check()
        return await backend.get_job(job_id or "")
    raise KeyError(tool)


def error_text(tool: str, exc: BaseException) -> str:
    """A tool error message the model can act on."""
    if isinstance(exc, InvalidInput):
        details = "; ".join(f"{i.path or 'arguments'}: {i.message}" for i in exc.issues)
        return f"{tool}: invalid input: {details or exc.message}"
    kinds: list[tuple[type[BaseException], str]] = [
        (NotFound, "not_found"),
        (Forbidden, "forbidden"),
        (Unauthorized, "unauthorized"),
        (Conflict, "conflict"),
    ]
    for cls, kind in kinds:
        if isinstance(exc, cls):
            return f"{tool}: claude-mem error ({kind}): {exc}"
    if isinstance(exc, ServerUnavailable):
        status = f" {exc.status}" if exc.status else ""
        return f"{tool}: claude-mem server error ({exc.kind}{status}): {exc}"
    if isinstance(exc, ClaudeMemError):
        return f"{tool}: claude-mem error: {exc}"
    return f"Tool execution failed: {type(exc).__name__}: {exc}"


# -- the server --------------------------------------------------------------------------------


def build_mcp_server(
    backend: Backend | BackendFactory,
    *,
    read_only: bool = False,
    scopes_of: Callable[[Any], frozenset[str]] | None = None,
) -> Server[Any]:
    """The MCP server over ``backend`` (or over a per-request backend made by an async
    factory that receives the request context). ``read_only`` serves only the read tools.
    ``scopes_of``: the caller's scopes from the request context; tools the caller may not
    use are then not listed (calling one is refused by the service, naming the scope)."""
    import mcp_types as types
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import MCPError

    names = [n for n in TOOLS if not read_only or n in READ_TOOLS]
    listed = [types.Tool(name=n, description=TOOLS[n][0], input_schema=TOOLS[n][1]) for n in names]

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        if scopes_of is None:
            return types.ListToolsResult(tools=listed)
        held = scopes_of(ctx)
        return types.ListToolsResult(tools=[t for t in listed if allows(held, TOOL_NEEDS[t.name])])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        name = params.name
        if name not in names:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {name}")
        try:
            chosen = await backend(ctx) if callable(backend) else backend
            result = await call(chosen, name, params.arguments)
        except Exception as exc:
            if not isinstance(exc, ClaudeMemError):
                log.exception("MCP tool %s failed", name)
            return types.CallToolResult(
                content=[types.TextContent(text=error_text(name, exc))], is_error=True
            )
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(result, indent=2, default=str))],
            structured_content=result,
        )

    def input_schema(name: str) -> Mapping[str, Any] | None:
        return TOOLS[name][1] if name in names else None

    return Server(
        SERVER_NAME,
        version=SERVER_VERSION,
        instructions="Search and record coding-agent memories of claude-mem.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=input_schema,
    )


__all__ = ["READ_TOOLS", "TOOLS", "TOOL_NEEDS", "build_mcp_server", "call", "error_text"]
