"""The MCP server: in-process client over the embedded backend, a stdio round trip, and
the read-only streamable-HTTP mount inside the aiohttp app."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from clientkit import embedded_env

from claude_mem_core.config import Settings
from claude_mem_core.facade import open_memory_from_settings
from claude_mem_http.client.backends import LocalBackend
from claude_mem_http.mcp.server import READ_TOOLS, TOOLS, build_mcp_server


@pytest.fixture
async def backend(embedded_data_dir: Path) -> AsyncIterator[LocalBackend]:
    settings = Settings.from_env(embedded_env(embedded_data_dir))
    async with open_memory_from_settings(settings, queue=False) as memory:
        yield await LocalBackend.embedded(memory, default_project="webapp")


def text_of(result: Any) -> str:
    return str(result.content[0].text)


async def test_in_process_session_lists_and_calls_every_tool(backend: LocalBackend) -> None:
    from mcp import Client

    async with Client(build_mcp_server(backend)) as client:
        listed = await client.list_tools()
        assert sorted(t.name for t in listed.tools) == sorted(TOOLS)
        schema = next(t for t in listed.tools if t.name == "observation_search").input_schema
        assert schema["required"] == ["query"] and schema["additionalProperties"] is False

        added = await client.call_tool(
            "observation_add", {"content": "Deploys are blue-green via Argo.", "kind": "manual"}
        )
        assert not added.is_error
        memory = added.structured_content["memory"]
        assert memory["content"] == "Deploys are blue-green via Argo."
        await asyncio.sleep(0.002)  # created_at has millisecond precision

        aliased = await client.call_tool(
            "memory_add",
            {"projectId": "webapp", "narrative": "Staging lives on k8s.", "title": "Infra", "x": 1},
        )
        assert aliased.structured_content["memory"]["metadata"] == {"title": "Infra"}

        recorded = await client.call_tool(
            "observation_record_event",
            {
                "eventType": "tool_use",
                "sourceType": "hook",
                "sourceEventId": "t1",
                "payload": {"tool_name": "Read"},
            },
        )
        job_id = recorded.structured_content["generationJob"]["id"]
        assert '"generationJob"' in text_of(recorded)

        for tool, args in (
            ("observation_search", {"query": "blue-green"}),
            ("memory_search", {"projectId": "webapp", "query": "blue-green", "limit": 5}),
        ):
            found = await client.call_tool(tool, args)
            assert [o["id"] for o in found.structured_content["observations"]] == [memory["id"]]
            assert "**blue-green**" in found.structured_content["observations"][0]["excerpt"]
        for tool, args in (
            ("observation_context", {"query": "staging"}),
            ("memory_context", {"projectId": "webapp", "query": "staging"}),
        ):
            context = await client.call_tool(tool, args)
            assert context.structured_content["context"] == "Staging lives on k8s."
            budgeted = await client.call_tool(tool, {**args, "maxTokens": 50})
            assert "**Staging**" in budgeted.structured_content["context"]

        for key in ("jobId", "job_id"):
            status = await client.call_tool("observation_generation_status", {key: job_id})
            assert status.structured_content["generationJob"]["status"] == "queued"

        recent = await client.call_tool("memory_list_recent", {"projectId": "webapp"})
        assert not recent.is_error, recent.content
        newest = [m["content"] for m in recent.structured_content["memories"]]
        assert newest == ["Staging lives on k8s.", "Deploys are blue-green via Argo."]
        one = await client.call_tool("memory_list_recent", {"projectId": "webapp", "limit": 1})
        assert [m["id"] for m in one.structured_content["memories"]] == [
            aliased.structured_content["memory"]["id"]
        ]
        assert '"memories"' in text_of(one)


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("observation_add", {}, "content"),
        ("observation_add", {"content": "   "}, "content"),
        ("observation_add", {"content": "x", "color": "red"}, "color"),
        ("observation_search", {"query": "x", "limit": 500}, "limit"),
        ("observation_context", {"query": "x", "limit": 1.5}, "limit"),
        ("observation_record_event", {"eventType": "e", "sourceType": "nope"}, "sourceType"),
        ("observation_record_event", {"eventType": "e", "generate": "yes"}, "generate"),
        ("observation_generation_status", {}, "jobId"),
        ("memory_search", {"query": "x"}, "projectId"),
        ("memory_add", {"projectId": "webapp"}, "content"),
        ("memory_list_recent", {}, "projectId"),
        ("memory_list_recent", {"projectId": "  "}, "projectId"),
        ("memory_list_recent", {"projectId": "webapp", "limit": 0}, "limit"),
        ("memory_list_recent", {"projectId": "webapp", "limit": 101}, "limit"),
        ("memory_list_recent", {"projectId": "webapp", "limit": "5"}, "limit"),
        ("memory_list_recent", {"projectId": "webapp", "query": "x"}, "query"),
    ],
)
async def test_bad_input_is_a_tool_error_naming_the_field(
    backend: LocalBackend, tool: str, args: dict[str, Any], field: str
) -> None:
    from mcp import Client

    async with Client(build_mcp_server(backend)) as client:
        result = await client.call_tool(tool, args)
    assert result.is_error
    assert f"{field}:" in text_of(result) and "invalid input" in text_of(result)


async def test_unknown_job_and_unknown_tool(backend: LocalBackend) -> None:
    from mcp import Client
    from mcp.shared.exceptions import MCPError

    async with Client(build_mcp_server(backend, read_only=True)) as client:
        assert {t.name for t in (await client.list_tools()).tools} == READ_TOOLS
        missing = await client.call_tool("observation_generation_status", {"jobId": "nope"})
        assert missing.is_error and "not_found" in text_of(missing)
        with pytest.raises(MCPError, match="Unknown tool: observation_add"):
            await client.call_tool("observation_add", {"content": "read-only server"})


async def test_stdio_round_trip(embedded_data_dir: Path, tmp_path: Path) -> None:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "claude_mem_http.mcp.stdio"],
        env={**os.environ, **embedded_env(embedded_data_dir, CLAUDE_MEM_PROJECT="webapp")},
        cwd=str(tmp_path),
    )
    async with Client(params) as client:
        assert len((await client.list_tools()).tools) == len(TOOLS)
        added = await client.call_tool("observation_add", {"content": "stdio works"})
        assert not added.is_error
        found = await client.call_tool("observation_search", {"query": "stdio"})
        assert found.structured_content["observations"][0]["content"] == "stdio works"


async def test_http_mount_serves_read_tools_to_key_holders(
    memory: Any, tenant: Any, aiohttp_server: Any
) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from claude_mem_core.domain.models import Scope
    from claude_mem_http.mcp.streamable_http import mount_mcp
    from claude_mem_http.server.app import create_app

    scope = Scope(team_id=tenant.team, project_id=tenant.project)
    await memory.add_memory(scope, "The queue is taskiq on Redis streams.")
    app = create_app(memory, background_generation=False)
    mount_mcp(app)
    srv = await aiohttp_server(app)
    url = str(srv.make_url("/mcp"))

    headers = {"Authorization": f"Bearer {tenant.read_key}"}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        assert {t.name for t in (await client.list_tools()).tools} == READ_TOOLS
        found = await client.call_tool(
            "observation_search", {"projectId": tenant.project, "query": "taskiq"}
        )
        assert not found.is_error, found.content
        assert found.structured_content["observations"][0]["projectId"] == tenant.project
        foreign = await client.call_tool("memory_search", {"projectId": "other", "query": "x"})
        assert foreign.is_error and "not_found" in text_of(foreign)
        recent = await client.call_tool(
            "memory_list_recent", {"projectId": tenant.project, "limit": 5}
        )
        assert not recent.is_error, recent.content
        assert [m["content"] for m in recent.structured_content["memories"]] == [
            "The queue is taskiq on Redis streams."
        ]
        hidden = await client.call_tool("memory_list_recent", {"projectId": "other"})
        assert hidden.is_error and "not_found" in text_of(hidden)
        assert "Project not found" in text_of(hidden)

    async with httpx2.AsyncClient() as anonymous:
        refused = await anonymous.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert refused.status_code == 401


async def test_http_mount_applies_each_tools_scope(
    memory: Any, tenant: Any, aiohttp_server: Any
) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from claude_mem_http.server.app import create_app

    srv = await aiohttp_server(create_app(memory, background_generation=False))
    url = str(srv.make_url("/mcp"))

    async def key(*scopes: str) -> str:
        issued = await memory.create_api_key(
            team_id=tenant.team, project_id=tenant.project, scopes=list(scopes)
        )
        return str(issued.raw_key)

    observation_tools = READ_TOOLS - {"observation_generation_status"}
    expected = {
        await key("jobs:read"): {"observation_generation_status"},
        await key("observations:read"): observation_tools,
        tenant.hook_key: READ_TOOLS,
    }
    for raw, tools in expected.items():
        headers = {"Authorization": f"Bearer {raw}"}
        async with (
            httpx2.AsyncClient(headers=headers) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            assert {t.name for t in (await client.list_tools()).tools} == tools
            search = await client.call_tool(
                "observation_search", {"projectId": tenant.project, "query": "x"}
            )
            status = await client.call_tool("observation_generation_status", {"jobId": "j"})
        if "observation_search" in tools:
            assert not search.is_error, search.content
        else:
            assert search.is_error and "forbidden" in text_of(search)
            assert "memories:read or observations:read" in text_of(search)
        if "observation_generation_status" in tools:
            assert "not_found" in text_of(status)
        else:
            assert status.is_error and "memories:read or jobs:read" in text_of(status)

    async with httpx2.AsyncClient() as http:
        for scopes in (("events:write",), ("sessions:write",), ("memories:write",)):
            refused = await http.post(
                url,
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                headers={"Authorization": f"Bearer {await key(*scopes)}"},
            )
            assert refused.status_code == 403, scopes
