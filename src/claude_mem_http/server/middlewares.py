"""Request ids and the one place where errors become HTTP responses.

``request_middleware`` is the app's one middleware and runs on every route (``/v1``,
compat, health, unknown paths): it accepts a well-formed inbound ``X-Request-Id`` or mints
a UUIDv4, maps the core's exceptions to status codes and JSON bodies (nothing else in this
package builds an error response), and sets the request id header on whatever response
goes out. (One middleware rather than two: aiohttp wraps each in two more frames per
request.) Log lines written while serving carry the request id; with tracing on
(``ports/tracing.py``), the request is a server span named after its route template,
child of the caller's ``traceparent`` if it sent one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from claude_mem_core.errors import (
    ClaudeMemError,
    Conflict,
    CursorExpired,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    QueueError,
    SchemaNotReady,
    StorageUnavailable,
    Unauthorized,
)
from claude_mem_core.logging_setup import request_logged
from claude_mem_core.ports.tracing import NOOP_TRACER, Tracer
from claude_mem_core.services.ingest import off_loop
from claude_mem_http.server.metrics import METRICS
from claude_mem_http.server.state import REQUEST_ID, RUNTIME
from claude_mem_http.wire import responses, schemas
from claude_mem_http.wire.bodies import CompatNotStored, CompatSummaryFailed
from claude_mem_http.wire.models import CursorGone

log = logging.getLogger("claude_mem.http")

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(ClaudeMemError):
    """A request the route cannot serve as sent (not a field problem): 400 BadRequest."""

    default_message = "Bad request"


def valid_request_id(value: str | None) -> bool:
    return value is not None and _REQUEST_ID.fullmatch(value) is not None


def new_request_id() -> str:
    """A random UUIDv4 in its canonical text form (as ``str(uuid.uuid4())``, cheaper)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def choose_request_id(inbound: str | None) -> str:
    if inbound is not None and _REQUEST_ID.fullmatch(inbound) is not None:
        return inbound
    return new_request_id()


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


async def large_json_response(body: Any, status: int = 200) -> web.Response:
    """A response that echoes a large request back (events from a body of megabytes):
    encoded in a worker thread, as its decoding was, so the event loop keeps serving."""
    text = await off_loop(lambda: json.dumps(body))
    return web.Response(text=text, status=status, content_type="application/json")


_COMPAT_500 = {
    "/api/sessions/observations": CompatNotStored(stored=False, reason="internal_error"),
    "/api/sessions/summarize": CompatSummaryFailed(status="error", reason="internal_error"),
}


def _http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    status = exc.status
    if status == 404:
        body = responses.error_body("NotFound", f"Cannot {request.method} {request.path}")
    elif status == 405:
        body = responses.error_body("MethodNotAllowed", f"Cannot {request.method} {request.path}")
    elif status == 413:
        body = responses.error_body(
            "PayloadTooLarge",
            f"request body exceeds {schemas.MAX_BODY_BYTES} bytes",
        )
    else:
        body = responses.error_body((exc.reason or "Error").replace(" ", ""), exc.reason or "")
    response = json_response(body, status)
    allow = exc.headers.get("Allow")
    if allow is not None:
        response.headers["Allow"] = allow
    return response


def error_response(request: web.Request, exc: BaseException) -> web.Response:
    """The response for an exception raised while handling ``request``."""
    if isinstance(exc, InvalidInput):
        return json_response(responses.validation_body(exc), 400)
    if isinstance(exc, BadRequest):
        return json_response(responses.error_body("BadRequest", exc.message), 400)
    if isinstance(exc, Unauthorized):
        return json_response(responses.error_body("Unauthorized", exc.message), 401)
    if isinstance(exc, Forbidden):
        return json_response(responses.error_body("Forbidden", exc.message), 403)
    if isinstance(exc, NotFound):
        return json_response(responses.error_body("NotFound", exc.message), 404)
    if isinstance(exc, CursorExpired):
        gone = CursorGone(error="Gone", message=exc.message, field=exc.field)
        return json_response(responses.json_of(gone), 410)
    if isinstance(exc, Gone):  # a Conflict: before it
        return json_response(responses.event_gone(exc), 410)
    if isinstance(exc, Conflict):
        return json_response(responses.error_body("Conflict", exc.message), 409)
    if isinstance(exc, StorageUnavailable | SchemaNotReady | QueueError):
        log.warning("%s %s: dependency unavailable: %s", request.method, request.path, exc)
        return json_response(
            responses.error_body(
                "ServiceUnavailable", "A storage or queue dependency is unavailable"
            ),
            503,
        )
    if isinstance(exc, web.HTTPException):
        return _http_exception(request, exc)
    log.error("%s %s failed", request.method, request.path, exc_info=exc)
    compat = _COMPAT_500.get(request.path)
    if compat is not None:
        return json_response(responses.json_of(compat), 500)
    return json_response(responses.error_body("InternalError", "Internal server error"), 500)


def refuse_other_methods(app: web.Application) -> None:
    """Give every path a last route answering 405 with exactly its own methods in ``Allow``.

    Without it the router goes on to the next path that matches: a concrete path that a
    template also matches (``/v1/sessions/start`` and ``/v1/sessions/{id}``,
    ``/v1/events/batch`` and ``/v1/events/{id}``) answered another operation's GET, and a
    405 there advertised the template's methods. OpenAPI matches a concrete path before a
    template, and so does the server. Call after every route is added."""
    for resource in list(app.router.resources()):
        if not isinstance(resource, web.Resource):
            continue
        served = {route.method for route in resource}
        if not served or "*" in served:
            continue  # nothing served here, or a catch-all route already
        methods = sorted(served)

        async def refuse(request: web.Request, allow: list[str] = methods) -> web.StreamResponse:
            raise web.HTTPMethodNotAllowed(request.method, allow)

        resource.add_route("*", refuse)


def _tracer(app: web.Application) -> Tracer:
    runtime = app.get(RUNTIME)
    if runtime is None or not runtime.started:
        return NOOP_TRACER
    return runtime.memory.deps.tracer


def _route(request: web.Request) -> str | None:
    """The route's template (``/v1/events/{id}``): a path may hold ids, a query text."""
    resource = request.match_info.route.resource
    return None if resource is None else resource.canonical


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = choose_request_id(request.headers.get(REQUEST_ID_HEADER))
    request[REQUEST_ID] = request_id
    tracer = _tracer(request.app)
    with request_logged(request_id):
        if not tracer.enabled:
            return await _respond(request, handler, request_id)
        route = _route(request)
        with tracer.span_from(
            request.headers,
            f"{request.method} {route}" if route else request.method,
            {
                "http.request.method": request.method,
                "http.route": route,
                "url.scheme": request.scheme,
                "claude_mem.request_id": request_id,
            },
            kind="server",
            request_id=request_id,
        ) as span:
            response = await _respond(request, handler, request_id)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_error(str(response.status))
            return response


# Routes that read their body as a stream, line by line in bounded memory (a project's
# import can be far larger than any JSON body): the size limit is for bodies read whole.
STREAMED_BODY_ROUTES = frozenset({("POST", "/v1/projects/{id}/import")})


def _streams_its_body(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and (request.method, resource.canonical) in STREAMED_BODY_ROUTES


async def _respond(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    metrics = request.app.get(METRICS)
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        length = request.content_length
        if (
            length is not None
            and length > schemas.MAX_BODY_BYTES
            and not _streams_its_body(request)
        ):
            raise web.HTTPRequestEntityTooLarge(max_size=schemas.MAX_BODY_BYTES, actual_size=length)
        response = await handler(request)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        response = error_response(request, exc)
    response.headers[REQUEST_ID_HEADER] = request_id
    if metrics is not None:
        metrics.observe(request, response.status, time.perf_counter() - started)
    return response


__all__ = [
    "REQUEST_ID_HEADER",
    "BadRequest",
    "choose_request_id",
    "error_response",
    "json_response",
    "new_request_id",
    "refuse_other_methods",
    "request_middleware",
    "valid_request_id",
]
