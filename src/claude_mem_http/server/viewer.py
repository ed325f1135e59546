"""The web viewer: static pages under ``/viewer/`` that call the API from the browser.

Every file of ``viewer_assets/`` gets its own exact route, read once at setup; there is no
catch-all, so an unknown path (``/viewer/nope``) falls through to the API's JSON 404. The
pages hold no data and need no key: the browser signs in by sending the key it was given
as a bearer header on each API call (see ``docs/viewer.md``). Each response carries a
strict Content-Security-Policy: scripts only from this origin, no inline script or style,
no plugins, no framing, and Trusted Types required so that no script can write HTML
through ``innerHTML`` and the like, even by mistake.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Final

from aiohttp import web

ASSETS_PACKAGE: Final = "claude_mem_http.server"
ASSETS_DIR: Final = "viewer_assets"
PREFIX: Final = "/viewer/"

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Revalidate each time: a pip upgrade must not leave an old script cached.
    "Cache-Control": "no-cache",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONTENT_TYPES: Final = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def _read_assets() -> dict[str, tuple[bytes, str]]:
    """Relative path -> (bytes, content type) of every servable file of the assets."""
    root = resources.files(ASSETS_PACKAGE).joinpath(ASSETS_DIR)
    found: dict[str, tuple[bytes, str]] = {}
    pending = [("", root)]
    while pending:
        prefix, folder = pending.pop()
        for entry in folder.iterdir():
            relative = f"{prefix}{entry.name}"
            if entry.is_dir():
                pending.append((f"{relative}/", entry))
                continue
            suffix = entry.name[entry.name.rfind(".") :] if "." in entry.name else ""
            content_type = CONTENT_TYPES.get(suffix)
            if content_type is not None:  # anything else (a stray editor file) is not served
                found[relative] = (entry.read_bytes(), content_type)
    return found


def _responder(body: bytes, content_type: str) -> Handler:
    async def serve_asset(request: web.Request) -> web.StreamResponse:
        response = web.Response(body=body, content_type=content_type)
        if content_type.startswith("text/"):
            response.charset = "utf-8"
        response.headers.update(SECURITY_HEADERS)
        return response

    return serve_asset


async def _to_index(request: web.Request) -> web.StreamResponse:
    # Returned, not raised: the app's middleware turns raised HTTP errors into JSON bodies.
    return web.Response(status=308, headers={"Location": PREFIX})


def setup(app: web.Application) -> None:
    """Add ``GET /viewer/`` (the page), ``GET /viewer`` (a redirect to it) and one exact
    ``GET`` route per asset."""
    assets = _read_assets()
    index = assets.get("index.html")
    if index is None:  # pragma: no cover - a broken install; the API still serves
        return
    app.router.add_get(PREFIX.rstrip("/"), _to_index)
    app.router.add_get(PREFIX, _responder(*index))
    for relative, (body, content_type) in sorted(assets.items()):
        if relative != "index.html":
            app.router.add_get(f"{PREFIX}{relative}", _responder(body, content_type))


__all__ = ["CONTENT_SECURITY_POLICY", "PREFIX", "setup"]
