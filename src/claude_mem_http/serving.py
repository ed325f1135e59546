"""Serving the app: an :class:`AppRunner` whose connections never echo a malformed request.

aiohttp answers a request it cannot parse (a header holding a control character, a header
line longer than 8190 bytes, ...) itself, before any middleware runs: its 400 body quotes
the offending line, and it logs the parser's exception, whose message quotes it too. That
line is often ``Authorization: Bearer <key>``: the raw API key would be sent back and
written to the log. Connections served by :class:`AppRunner` answer such a request with the
app's JSON error body instead and log only the kind of error, never the request's text.
"""

from __future__ import annotations

import logging

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest

from claude_mem_http import schemas
from claude_mem_http.middlewares import REQUEST_ID_HEADER, new_request_id

log = logging.getLogger("claude_mem.http")

MALFORMED_MESSAGE = "Malformed HTTP request"


class _RequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler, with its answer to unparsable requests replaced."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # The exception's text quotes the request: only its kind is logged.
        log.info(
            "refused a malformed HTTP request from %s (%s, %d)",
            request.remote,
            type(exc).__name__,
            status,
        )
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent on this connection")
        response = web.json_response(
            schemas.error_body("BadRequest", MALFORMED_MESSAGE), status=status
        )
        response.headers[REQUEST_ID_HEADER] = new_request_id()
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        handler = super().__call__()
        # Same object layout (the subclass adds no slots): only handle_error differs.
        handler.__class__ = _RequestHandler
        return handler


class AppRunner(web.AppRunner):
    """``aiohttp.web.AppRunner`` whose connections use :class:`_RequestHandler`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # a subclass adding no state: only __call__ differs
        return server


__all__ = ["MALFORMED_MESSAGE", "AppRunner"]
