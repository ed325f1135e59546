"""``/viewer/`` without a browser: the page and its assets with a strict
Content-Security-Policy, and no catch-all (unknown paths keep the API's JSON 404)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from importlib import resources

import pytest
from aiohttp.test_utils import TestClient

from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.facade import Memory
from claude_mem_core.testing.fakes import ScriptedProvider
from claude_mem_http.server.app import create_app


@pytest.fixture
async def client(aiohttp_client: object) -> AsyncIterator[TestClient]:
    memory = Memory(
        storage=storage_from_url("memory://"), queue=InProcessQueue(), provider=ScriptedProvider()
    )
    try:
        yield await aiohttp_client(create_app(memory, background_generation=False))  # type: ignore[operator]
    finally:
        await memory.close()


def _policy(header: str) -> dict[str, str]:
    return {
        part.split(" ", 1)[0]: part.split(" ", 1)[1] if " " in part else ""
        for part in (p.strip() for p in header.split(";"))
        if part
    }


async def test_the_page_is_served_with_a_strict_policy(client: TestClient) -> None:
    resp = await client.get("/viewer/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert '<script type="module" src="js/main.js"></script>' in page
    policy = _policy(resp.headers["Content-Security-Policy"])
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no CDN
    assert policy["style-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["require-trusted-types-for"] == "'script'"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    # Nothing inline for the policy to refuse: no script body, no style attribute or element.
    assert re.search(r"<script[^>]*>\s*[^<\s]", page) is None
    assert " style=" not in page and "<style" not in page


async def test_every_asset_is_served_with_its_type_and_the_policy(client: TestClient) -> None:
    root = resources.files("claude_mem_http.server").joinpath("viewer_assets")
    expected = {
        "js/main.js": "text/javascript",
        "js/api.js": "text/javascript",
        "js/stream.js": "text/javascript",
        "js/views/live.js": "text/javascript",
        "viewer.css": "text/css",
        "favicon.svg": "image/svg+xml",
    }
    for path, content_type in expected.items():
        resp = await client.get(f"/viewer/{path}")
        assert resp.status == 200, path
        assert resp.content_type == content_type, path
        assert "Content-Security-Policy" in resp.headers, path
        assert await resp.read() == root.joinpath(path).read_bytes()


async def test_viewer_without_slash_redirects_to_the_page(client: TestClient) -> None:
    resp = await client.get("/viewer", allow_redirects=False)
    assert resp.status == 308
    assert resp.headers["Location"] == "/viewer/"


@pytest.mark.parametrize("path", ["/viewer/nope", "/viewer/js/nope.js", "/nope"])
async def test_unknown_paths_keep_the_json_404(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    body = await resp.json()
    assert body["error"] == "NotFound"
    assert "Content-Security-Policy" not in resp.headers


async def test_other_methods_are_refused_with_405(client: TestClient) -> None:
    resp = await client.post("/viewer/", data="key=secret")
    assert resp.status == 405
    assert (await resp.json())["error"] == "MethodNotAllowed"
