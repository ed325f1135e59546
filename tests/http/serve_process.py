"""``claude-mem serve`` started as a real process for the serve tests: a free port, a clean
environment pointing at this checkout, and the spawn itself."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")}
    return {
        **keep,
        "HOME": str(tmp_path),
        "CLAUDE_MEM_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(SRC),
        **extra,
    }


async def spawn_serve(
    tmp_path: Path, *args: str, stdout: int = asyncio.subprocess.PIPE, **env: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "claude_mem_core.cli",
        "serve",
        *args,
        env=serve_env(tmp_path, **env),
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )
