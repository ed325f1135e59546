"""``/mcp``: the MCP server's read tools over streamable HTTP inside the aiohttp app.

:func:`mount_mcp` adds the route; each request is authenticated with its API key like the
``/v1`` read routes, and the tools act as that key's caller. The ``mcp`` SDK is imported,
and its session manager started, on the first authenticated request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from claude_mem_core.domain.scopes import Need
from claude_mem_core.errors import FieldIssue, Unauthorized
from claude_mem_http.client.backends import Backend, LocalBackend
from claude_mem_http.mcp.server import build_mcp_server
from claude_mem_http.wire.schemas import RequestInvalid

if TYPE_CHECKING:
    from aiohttp import web

CALLER_SCOPE_KEY = "claude_mem.caller"


MCP_METHODS = ("POST",)
# Answered 405 (``Allow: POST``) after authentication, as the transport permits: GET would
# open a stream for messages the server sends on its own, DELETE would end a session, and
# this server offers neither (it is stateless and only answers requests).
MCP_REFUSED_METHODS = ("GET", "DELETE")


def mount_mcp(app: web.Application, *, path: str = "/mcp") -> None:
    """Serve the read tools over streamable HTTP at ``path`` of the claude-mem aiohttp app.

    Call before the app starts (e.g. in ``create_app`` after ``routes.setup(app)``). Every
    request is authenticated like ``/v1`` read routes (a bearer key holding a scope one of
    the tools needs; local-dev bypass as configured), the tools act as that key's caller,
    and each tool is listed and allowed only if the key holds its route's scope.

    The ``mcp`` SDK (about 25 MiB of modules) is imported, and its session manager
    started, on the first authenticated ``/mcp`` request, so a server nobody asks for MCP
    never loads it. Raises ``ImportError`` now if the SDK is not installed."""
    import importlib.util

    from aiohttp import web as aio

    from claude_mem_http.server.auth import authenticate
    from claude_mem_http.server.state import RUNTIME

    if importlib.util.find_spec("mcp") is None:
        raise ImportError("the 'mcp' extra is not installed")
    manager = _LazyMcpManager()

    async def lifecycle(_: aio.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await manager.stop()

    async def handle(request: aio.Request) -> aio.StreamResponse:
        caller = await authenticate(request, Need.MCP)
        if request.content_type != "application/json":
            # A JSON 400 like every other of the server's (the SDK would answer plain text).
            raise RequestInvalid(
                FieldIssue(
                    "",
                    "an MCP message must be JSON (Content-Type: application/json)",
                    "content_type",
                )
            )
        deps = request.app[RUNTIME].memory.deps
        handle_request = await manager.handler()
        return await _asgi_bridge(
            request, handle_request, {CALLER_SCOPE_KEY: caller, "claude_mem.deps": deps}
        )

    async def no_stream(request: aio.Request) -> aio.StreamResponse:
        await authenticate(request, Need.MCP)  # refusals come first, as on every route
        # GET opens a stream for messages the server sends on its own; these tools only
        # answer requests, so there is none to offer (the transport allows a 405 here).
        # An open stream would be held until the client left, and never carry anything.
        # DELETE ends a session, and none is kept.
        raise aio.HTTPMethodNotAllowed(request.method, sorted(MCP_METHODS))

    app.cleanup_ctx.append(lifecycle)
    for method in MCP_METHODS:
        app.router.add_route(method, path, handle)
    for method in MCP_REFUSED_METHODS:
        app.router.add_route(method, path, no_stream)


class _LazyMcpManager:
    """The streamable-HTTP session manager of the mounted MCP server, built and run on
    first use and stopped with the app."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._handle: Callable[..., Awaitable[None]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._stopped = False

    async def handler(self) -> Callable[..., Awaitable[None]]:
        if self._handle is not None:
            return self._handle
        async with self._lock:
            if self._handle is None:
                self._handle = await self._start()
        return self._handle

    async def _start(self) -> Callable[..., Awaitable[None]]:
        if self._stopped:
            raise RuntimeError("the claude-mem app is shutting down")
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        async def backend_for(ctx: Any) -> Backend:
            request = getattr(ctx, "request", None)
            scope = getattr(request, "scope", None) or {}
            caller = scope.get(CALLER_SCOPE_KEY)
            if caller is None:
                raise Unauthorized("Missing bearer API key")
            return LocalBackend(scope["claude_mem.deps"], caller)

        def scopes_of(ctx: Any) -> frozenset[str]:
            scope = getattr(getattr(ctx, "request", None), "scope", None) or {}
            caller = scope.get(CALLER_SCOPE_KEY)
            return frozenset() if caller is None else caller.scopes

        server = build_mcp_server(backend_for, read_only=True, scopes_of=scopes_of)
        manager = StreamableHTTPSessionManager(app=server, stateless=True, json_response=True)
        # The manager's task group must live in one task for its whole life (not in the
        # request's task that happened to start it), so it gets its own.
        ready = asyncio.Event()

        async def run_manager() -> None:
            async with manager.run():
                ready.set()
                await self._stop.wait()

        task = asyncio.create_task(run_manager(), name="claude-mem-mcp-http")
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            waiter.cancel()
            task.result()  # re-raise a start-up failure
            raise RuntimeError("the MCP session manager stopped at start-up")
        self._task = task
        return manager.handle_request

    async def stop(self) -> None:
        self._stopped = True
        self._stop.set()
        async with self._lock:
            task, self._task = self._task, None
        if task is not None:
            await task


async def _asgi_bridge(
    request: web.Request, asgi: Callable[..., Awaitable[None]], extra: Mapping[str, Any]
) -> web.StreamResponse:
    """Run an ASGI HTTP app for one aiohttp request, streaming its response back."""
    from aiohttp import web as aio

    body = await request.read()
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.split("?", 1)[0].encode(),
        "root_path": "",
        "query_string": request.query_string.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in request.headers.items()],
        "client": (request.remote or "", 0),
        "server": (request.host.split(":")[0], 0),
        "state": {},
        **extra,
    }
    sent_body = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        # Nothing more arrives; the wait ends when aiohttp cancels the handler.
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}  # pragma: no cover

    response: aio.StreamResponse | None = None

    async def send(message: Mapping[str, Any]) -> None:
        nonlocal response
        if message["type"] == "http.response.start":
            response = aio.StreamResponse(status=int(message["status"]))
            for key, value in message.get("headers", []):
                name = key.decode("latin-1")
                if name.lower() not in ("content-length", "transfer-encoding"):
                    response.headers.add(name, value.decode("latin-1"))
            await response.prepare(request)
        elif message["type"] == "http.response.body" and response is not None:
            chunk = message.get("body", b"")
            if chunk:
                await response.write(chunk)
            if not message.get("more_body", False):
                await response.write_eof()

    await asgi(scope, receive, send)
    if response is None:
        return aio.Response(status=500)
    return response


__all__ = ["MCP_METHODS", "MCP_REFUSED_METHODS", "mount_mcp"]
