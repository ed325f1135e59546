"""``claude-mem mcp``: the MCP server on stdio (also ``python -m claude_mem_http.mcp.stdio``).

Remote (a claude-mem server over HTTP) when ``CLAUDE_MEM_SERVER_BETA_URL`` is set, else the
embedded memory of the data directory. Nothing but the protocol goes to stdout. The ``mcp``
SDK is imported when the server starts, so registering the command is free.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping

from claude_mem_core.cli.commands import Commands
from claude_mem_http.client.backends import Backend, LocalBackend, RemoteBackend
from claude_mem_http.client.http_client import ClaudeMemClient
from claude_mem_http.mcp.server import build_mcp_server


@contextlib.asynccontextmanager
async def backend_from_settings(env: Mapping[str, str] | None = None) -> AsyncIterator[Backend]:
    """Remote when a server URL is configured, else the embedded memory (default project:
    ``CLAUDE_MEM_PROJECT`` or the working directory's name)."""
    from claude_mem_http.client.hook_config import HookConfig
    from claude_mem_http.client.hook_mapping import project_name

    config = HookConfig.load(env)
    if config.mode == "remote":
        remote = RemoteBackend(
            ClaudeMemClient(config.server_url or "", config.api_key), config.project_id
        )
        try:
            yield remote
        finally:
            await remote.close()
        return
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import open_memory_from_settings

    async with open_memory_from_settings(Settings.from_env(config.env), queue=False) as memory:
        yield await LocalBackend.embedded(
            memory, default_project=project_name(os.getcwd(), config.project_override)
        )


async def run_stdio() -> None:
    from mcp.server.stdio import stdio_server

    logging.getLogger("claude_mem").propagate = False
    async with backend_from_settings() as backend:
        server = build_mcp_server(backend)
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())


async def cmd_mcp(args: argparse.Namespace) -> int:
    await run_stdio()
    return 0


def register(commands: Commands) -> None:
    """Add ``claude-mem mcp`` (entry point ``mcp`` of the ``claude_mem.cli`` group)."""
    parser = commands.add("mcp", help="run the MCP server on stdio", after="uninstall")
    parser.set_defaults(handler=cmd_mcp)


__all__ = ["backend_from_settings", "register", "run_stdio"]


def main() -> int:
    """``python -m claude_mem_http.mcp.stdio``: the stdio server (same as ``claude-mem mcp``)."""
    asyncio.run(run_stdio())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
