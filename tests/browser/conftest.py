"""Browser test plumbing: ``claude-mem serve`` as a real process on a temporary SQLite
file, keys made with the admin services the ``claude-mem`` CLI runs, and headless
Chromium (Debian's ``/usr/bin/chromium``) driven by Playwright.

Without Chromium or Playwright the tests skip; under ``CI=true`` that skip is a failure
(``tests/conftest.py``), so CI cannot go green without having driven a browser.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from viewerkit import PageProblems, Server, chromium_path, start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module: the embedded default (SQLite file, in-process queue,
    the offline provider)."""
    running = start_server(tmp_path_factory.mktemp("viewer"))
    try:
        yield running
    finally:
        errors = stop_server(running)
        for raw in running.keys.values():
            assert raw not in errors, "a raw API key reached the server's log"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Headless Chromium for one module: Playwright's sync API keeps an event loop running
    on this thread while it is open, which the asyncio tests of other modules cannot share."""
    executable = chromium_path()
    if not (Path(executable).is_file() and os.access(executable, os.X_OK)):
        pytest.skip(
            f"Chromium not found at {executable}: apt-get install -y chromium "
            "(or set CLAUDE_MEM_TEST_CHROMIUM)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]'); needed with chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1200, "height": 860})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    problems = PageProblems()
    opened.on("pageerror", lambda exc: problems.errors.append(str(exc)))
    opened.on(
        "console",
        lambda msg: problems.errors.append(msg.text) if msg.type == "error" else None,
    )

    def on_dialog(dialog: Any) -> None:
        problems.dialogs.append(dialog.message)
        dialog.dismiss()

    opened.on("dialog", on_dialog)
    opened.problems = problems
    try:
        yield opened
    finally:
        context.close()
