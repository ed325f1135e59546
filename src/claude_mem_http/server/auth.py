"""Bearer authentication and per-route scope checks (api.md §2, decisions 1 and 12).

The key is looked up by its hash on every request, so a revoked key is refused on the very
next request. ``POST /v1/events``, ``/v1/memories``, ``/v1/search`` and ``/v1/context`` are
the exceptions: a key they have seen is taken from memory (``CoalescedKeyLookup.verify_known``),
because the statement that writes the event or memory, or the read's audit row, checks the
key again and writes
nothing under a revoked or expired key; the request is then refused (and the key
forgotten), so revocation still takes effect on the next request. The team and project
come from the key only.

Refusals keep the reference's statuses (401 without a key, 403 otherwise) and say why:
unknown, revoked or expired key, or the scope that is missing. They never repeat the key.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable

import attrs
from aiohttp import web

from claude_mem_core.config import Settings
from claude_mem_core.domain.scopes import Need, allows, missing_scope_message
from claude_mem_core.errors import Forbidden, Unauthorized
from claude_mem_core.services.context import Caller
from claude_mem_http.server.state import CALLER, REQUEST_ID, RUNTIME

_BEARER = re.compile(r"bearer\s+(.*)", re.IGNORECASE | re.DOTALL)
LOOPBACK_CLIENTS = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1", "localhost"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")
LOCAL_DEV_SCOPES = frozenset({"*"})
LOCAL_DEV_ACTOR = "system:local-dev"

AuthedHandler = Callable[[web.Request, Caller], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_bearer(header: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (any case, any spacing), or None."""
    if header is None:
        return None
    match = _BEARER.fullmatch(header.strip())
    if match is None:
        return None
    token = match.group(1).strip()
    return token or None


def _host_part(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def is_local_request(request: web.Request) -> bool:
    """Loopback peer, loopback Host header, and no proxy forwarding headers."""
    if any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    if request.remote not in LOOPBACK_CLIENTS:
        return False
    return _host_part(request.host or "") in LOOPBACK_HOSTS


def local_dev_bypass(settings: Settings) -> bool:
    """Whether key-less requests may be let in at all (api.md §2): local-dev mode, the
    explicit opt-in ``CLAUDE_MEM_ALLOW_LOCAL_DEV_BYPASS``, and not inside a container.
    Each request must also be local (:func:`is_local_request`)."""
    return (
        settings.auth_mode == "local-dev"
        and settings.allow_local_dev_bypass
        and not settings.in_container
    )


async def authenticate(
    request: web.Request, need: Need, *, checked_at_write: bool = False
) -> Caller:
    runtime = request.app[RUNTIME]
    request_id = request[REQUEST_ID]
    token = parse_bearer(request.headers.get("Authorization"))
    if token is None:
        local = runtime.local_caller
        if local is not None and local_dev_bypass(runtime.settings) and is_local_request(request):
            return attrs.evolve(local, request_id=request_id)
        raise Unauthorized("Missing bearer API key")
    lookup = runtime.memory.key_lookup
    verify = lookup.verify_known if checked_at_write else lookup.verify
    caller = await verify(token, request_id=request_id)
    if not allows(caller.scopes, need):
        raise Forbidden(missing_scope_message(need))
    return caller


# What a write's own statement says when it finds the key no longer works (it does not
# say why; the key is then read afresh to tell the caller).
_REFUSED_AT_WRITE = "Invalid API key or insufficient scope"


async def _why_refused(request: web.Request, refused: Forbidden) -> Forbidden:
    if refused.message != _REFUSED_AT_WRITE:
        return refused
    token = parse_bearer(request.headers.get("Authorization"))
    if token is None:
        return refused
    try:
        await request.app[RUNTIME].memory.key_lookup.verify(token)
    except Forbidden as fresh:
        return fresh
    return refused


def requires(need: Need, *, checked_at_write: bool = False) -> Callable[[AuthedHandler], Handler]:
    """Route decorator: authenticate, check ``need``, then call ``handler(request, caller)``.
    Runs before the body or query is looked at. ``checked_at_write``: the handler's write
    checks the key again in its own statement (see the module docstring)."""

    def decorate(handler: AuthedHandler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            caller = await authenticate(request, need, checked_at_write=checked_at_write)
            request[CALLER] = caller
            if not checked_at_write:
                return await handler(request, caller)
            try:
                return await handler(request, caller)
            except Forbidden as refused:
                if caller.api_key_id is None:
                    raise
                # Maybe revoked: read it afresh next time, and say why now.
                request.app[RUNTIME].memory.key_lookup.forget(caller.api_key_id)
                raise await _why_refused(request, refused) from None

        return wrapped

    return decorate


__all__ = ["authenticate", "is_local_request", "local_dev_bypass", "parse_bearer", "requires"]
