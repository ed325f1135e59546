"""Serving the app: connections that never echo a malformed request, and the server
process's runner.

aiohttp answers a request it cannot parse (a header holding a control character, a header
line longer than 8190 bytes, ...) itself, before any middleware runs: its 400 body quotes
the offending line, and it logs the parser's exception, whose message quotes it too. That
line is often ``Authorization: Bearer <key>``: the raw API key would be sent back and
written to the log. :class:`KeySafeApplication` (what :func:`~claude_mem_http.server.app.create_app`
builds) answers such a request with the app's JSON error body instead and logs only the
kind of error, never the request's text. It does so in ``Application._make_handler``, the
one step every way of serving an application goes through (``AppRunner``, and so
``web.run_app``, ``python -m aiohttp.web``, gunicorn's aiohttp worker and aiohttp's
``TestServer``), so it holds however the app is served.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest

from claude_mem_http.server.middlewares import REQUEST_ID_HEADER, new_request_id
from claude_mem_http.wire import responses

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
            responses.error_body("BadRequest", MALFORMED_MESSAGE), status=status
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


# aiohttp discourages subclassing Application (it warns once, here): this subclass adds no
# state and overrides only the step that builds the server, which has no public hook.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)

    class KeySafeApplication(web.Application):
        """A ``web.Application`` whose connections answer malformed requests without
        quoting them, however it is served."""

        def _make_handler(
            self,
            *,
            loop: asyncio.AbstractEventLoop | None = None,
            access_log_class: type[AbstractAccessLogger] = AccessLogger,
            **kwargs: Any,
        ) -> web.Server:
            server = super()._make_handler(loop=loop, access_log_class=access_log_class, **kwargs)
            server.__class__ = _Server  # a subclass adding no state: only __call__ differs
            return server


class AppRunner(web.AppRunner):
    """The runner of a server process (``claude-mem serve``, Docker).

    Once the app is set up, everything alive (modules, the app, its pools) is frozen out of
    the cyclic garbage collector: a full collection otherwise walks all of it, holding the
    GIL, and so the event loop, for ~100 ms, whichever request's allocations set it off.
    Cleanup thaws it again."""

    async def setup(self) -> None:
        await super().setup()
        gc.collect()  # what is garbage now is collected, not frozen for the process's life
        gc.freeze()

    async def cleanup(self) -> None:
        try:
            await super().cleanup()
        finally:
            gc.unfreeze()


__all__ = ["MALFORMED_MESSAGE", "AppRunner", "KeySafeApplication"]
