"""Helpers of the browser tests: ``claude-mem serve`` as a real process on a temporary
SQLite file, keys made with the admin services the ``claude-mem`` CLI runs, plain HTTP
calls, signing in, and screenshots (``CLAUDE_MEM_VIEWER_SCREENSHOTS=<dir>``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from attrs import define, field

T = TypeVar("T")

SRC = Path(__file__).resolve().parents[2] / "src"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = os.environ.get("CLAUDE_MEM_VIEWER_SCREENSHOTS")
START_TIMEOUT_S = 60


def chromium_path() -> str:
    """Debian's chromium, or ``CLAUDE_MEM_TEST_CHROMIUM``."""
    return os.environ.get("CLAUDE_MEM_TEST_CHROMIUM") or DEFAULT_CHROMIUM


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@define
class Reply:
    status: int
    body: Any


@define
class Server:
    """A running ``claude-mem serve`` and the tenants made for it."""

    process: subprocess.Popen[str]
    base_url: str
    project_id: str
    project_name: str
    keys: dict[str, str] = field(factory=dict)
    stderr: list[str] = field(factory=list)
    readers: list[threading.Thread] = field(factory=list)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def call(self, method: str, path: str, body: Any = None, *, key: str = "full") -> Reply:
        """A plain HTTP call, as any client of the API makes it."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url(path), data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.keys[key]}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Reply(response.status, json.loads(response.read() or b"null"))
        except urllib.error.HTTPError as error:
            return Reply(error.code, json.loads(error.read() or b"null"))


def _env(home: Path, extra: Mapping[str, str]) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
    return {
        **keep,
        "HOME": str(home),
        "CLAUDE_MEM_DATA_DIR": str(home / "data"),
        "PYTHONPATH": str(SRC),
        # Deterministic and quick: no ambient provider key may select a real provider.
        "CLAUDE_MEM_RECONCILE_INTERVAL_SECONDS": "1",
        **extra,
    }


async def _seed(env: Mapping[str, str], scopes: Mapping[str, list[str]]) -> dict[str, Any]:
    """Team, project and keys, through the services ``claude-mem teams|projects|api-key``
    call (one process instead of one per command)."""
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import open_memory_from_settings

    settings = Settings.from_env(env)
    async with open_memory_from_settings(settings, queue=False) as memory:
        team = await memory.create_team("acme")
        project = await memory.create_project(team.id, "webapp")
        keys = {}
        for name, held in scopes.items():
            issued = await memory.create_api_key(
                team_id=team.id, scopes=held, name=f"viewer-{name}", actor_id="system:cli"
            )
            keys[name] = issued.raw_key
    return {"project_id": project.id, "project_name": project.name, "keys": keys}


def in_own_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to the end on a thread of its own (the test runner may already have
    a loop running on this one)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def start_server(home: Path, **extra: str) -> Server:
    env = _env(home, extra)
    scopes = {"full": ["memories:read", "memories:write"], "reader": ["memories:read"]}
    seeded = in_own_loop(lambda: _seed(env, scopes))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "claude_mem_core.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if f"127.0.0.1:{port}" in line:
                ready.set()

    errors: list[str] = []

    def drain() -> None:  # a full pipe would stall the server
        assert process.stderr is not None
        errors.extend(process.stderr)

    readers = [threading.Thread(target=f, daemon=True) for f in (watch, drain)]
    for reader in readers:
        reader.start()
    if not ready.wait(START_TIMEOUT_S):
        process.kill()
        process.wait(10)
        raise RuntimeError(f"claude-mem serve did not start: {''.join(lines + errors)}")
    return Server(
        process=process,
        base_url=f"http://127.0.0.1:{port}",
        project_id=seeded["project_id"],
        project_name=seeded["project_name"],
        keys=seeded["keys"],
        stderr=errors,
        readers=readers,
    )


def stop_server(server: Server) -> str:
    """Stop it as an operator would (SIGTERM); returns what it wrote to stderr."""
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    for reader in server.readers:  # they end at the pipes' end of file
        reader.join(10)
    for pipe in (server.process.stdout, server.process.stderr):
        if pipe is not None:
            pipe.close()
    return "".join(server.stderr)


@define
class PageProblems:
    """What the page said went wrong: script errors, console errors, dialogs."""

    errors: list[str] = field(factory=list)
    dialogs: list[str] = field(factory=list)


def screenshot(page: Any, view: str) -> None:
    """Save ``viewer-<view>.png`` when ``CLAUDE_MEM_VIEWER_SCREENSHOTS`` names a folder."""
    if not SCREENSHOTS:
        return
    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"viewer-{view}.png"), full_page=False)


def sign_in(page: Any, server: Server, key: str = "full") -> None:
    page.goto(server.url("/viewer/"))
    page.get_by_label("API key").fill(server.keys[key])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("tab", name="Live").wait_for()
