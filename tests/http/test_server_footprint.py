"""What a running server keeps in memory: the MCP SDK, taskiq (and pydantic) and the
provider SDKs are not imported until something needs them, and minted request ids are
UUIDv4s."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from claude_mem_http.server.middlewares import choose_request_id, new_request_id

SRC = Path(__file__).resolve().parents[2] / "src"

STARTED_SERVER = """
import asyncio, sys
from aiohttp import web
from claude_mem_core.adapters.taskiq_queue import TaskiqQueue
from claude_mem_core.facade import Memory
from claude_mem_core.adapters.memory import InMemoryStorage
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_http.server.app import create_app

async def main():
    queue = TaskiqQueue.from_url("redis://127.0.0.1:1/0", prefix="cmtest_footprint")
    memory = Memory(storage=InMemoryStorage(), queue=queue, provider=OfflineProvider())
    runner = web.AppRunner(create_app(memory, background_generation=False))
    await runner.setup()
    routes = {r.resource.canonical for r in runner.app.router.routes() if r.resource}
    loaded = sorted(
        {n.split(".")[0] for n in sys.modules}
        & {"mcp", "taskiq", "taskiq_redis", "pydantic", "anthropic", "openai"}
    )
    await runner.cleanup()
    await memory.close()
    print("/mcp" in routes, loaded)

asyncio.run(main())
"""


def test_a_started_server_has_not_imported_what_it_does_not_use() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STARTED_SERVER],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True []"


def test_minted_request_ids_are_uuid4() -> None:
    for _ in range(200):
        minted = new_request_id()
        parsed = uuid.UUID(minted)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == minted
    assert choose_request_id("op-7") == "op-7"
    assert choose_request_id("<bad>") != "<bad>"
    assert uuid.UUID(choose_request_id(None)).version == 4
