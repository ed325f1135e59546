"""``claude-mem import`` to a server: the answer is read as the server's wire class."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from clientkit import Tenant, base_url

from claude_mem_http.client.http_client import ClaudeMemClient
from claude_mem_http.client.project_transfer import _import_to_server


async def test_importing_an_export_back_reports_what_was_skipped(
    server: TestServer, tenant: Tenant, tmp_path: Path
) -> None:
    url = base_url(server)
    async with ClaudeMemClient(url, tenant.key) as client:
        await client.add_memory(tenant.project, "The deploy uses blue-green.")
    headers = {"Authorization": f"Bearer {tenant.key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/v1/projects/{tenant.project}/export", headers=headers) as resp,
    ):
        assert resp.status == 200
        exported = await resp.read()
    path = tmp_path / "export.jsonl"
    path.write_bytes(exported)
    result = await _import_to_server(
        (url, tenant.key), tenant.project, path, len(exported), generate=False
    )
    assert result["projectId"] == tenant.project
    assert result["observations"] == 0 and result["skipped"] >= 1
