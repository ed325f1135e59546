"""``follow(client, ...)``: the live stream read from Python against the real app, in
commit order, resumable after its last id with no gap and no duplicate; refusals raise
the client's errors; the SSE parser keeps multi-line data and skips comments."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestServer
from clientkit import Tenant, base_url

from claude_mem_core.errors import Forbidden, InvalidInput, Unauthorized
from claude_mem_core.facade import Memory
from claude_mem_http.client.http_client import ClaudeMemClient, RequestRejected
from claude_mem_http.client.live_stream import StreamMessage, follow, parse_events


async def _take(stream: object, count: int) -> list[StreamMessage]:
    got: list[StreamMessage] = []
    async for message in stream:  # type: ignore[attr-defined]
        got.append(message)
        if len(got) == count:
            break
    return got


async def _post(client: ClaudeMemClient, tenant: Tenant, n: int) -> str:
    stored = await client.record_event(
        project_id=tenant.project,
        event_type="tool_use",
        payload={"tool_name": "Bash", "tool_input": {"command": f"make step{n}"}},
        source_event_id=f"step-{n}",
        generate=False,
    )
    return stored.event.id


async def test_follows_new_events_and_resumes_after_the_last_id(
    server: TestServer, tenant: Tenant
) -> None:
    async with ClaudeMemClient(base_url(server), tenant.key) as client:
        first = await _post(client, tenant, 0)  # before the stream: replayed with after=
        stream = follow(client, project_id=tenant.project, kinds=["event"])
        reader = asyncio.create_task(_take(stream, 2))
        await asyncio.sleep(0.3)  # connected: it starts at "now"
        ids = [await _post(client, tenant, 1), await _post(client, tenant, 2)]
        got = await asyncio.wait_for(reader, 10)
        assert [m.item["id"] for m in got] == ids
        assert {(m.kind, m.project_id) for m in got} == {("event", tenant.project)}

        # Resuming after the first message gives the second again, and what came since.
        later = await _post(client, tenant, 3)
        resumed = await asyncio.wait_for(
            _take(follow(client, project_id=tenant.project, kinds=["event"], after=got[0].id), 2),
            10,
        )
        assert [m.item["id"] for m in resumed] == [ids[1], later]
        assert first not in {m.item["id"] for m in got + resumed}


async def test_refusals_raise_the_clients_errors(server: TestServer, tenant: Tenant) -> None:
    async with ClaudeMemClient(base_url(server), "cmem_not_a_real_key") as client:
        with pytest.raises((Unauthorized, Forbidden)):
            await _take(follow(client), 1)
    async with ClaudeMemClient(base_url(server), tenant.key) as client:
        with pytest.raises(InvalidInput):
            await _take(follow(client, after="not-a-cursor"), 1)
        with pytest.raises(InvalidInput):
            await _take(follow(client, kinds=["events"]), 1)
    async with ClaudeMemClient(base_url(server), tenant.hook_key) as client:
        with pytest.raises(Forbidden):  # a hook key reads no raw events
            await _take(follow(client, kinds=["event"]), 1)


async def test_a_pruned_cursor_is_rejected_with_410(
    server: TestServer, tenant: Tenant, memory: Memory
) -> None:
    async with ClaudeMemClient(base_url(server), tenant.key) as client:
        await _post(client, tenant, 0)
        feed = memory.storage.change_feed()
        while await feed.prune(before=datetime.now(UTC) + timedelta(days=1)):
            pass
        with pytest.raises(RequestRejected) as gone:
            await _take(follow(client, project_id=tenant.project, after="0-0"), 1)
        assert gone.value.status == 410


def test_the_parser_keeps_multi_line_data_and_skips_comments() -> None:
    item = {"id": "e1", "text": "two\nlines"}
    data = json.dumps({"kind": "event", "projectId": "p", "item": item}, indent=1)
    lines = [": ready 0-3", ""]
    lines += ["id: 0-4", "event: event", *(f"data: {part}" for part in data.split("\n")), ""]
    lines += [": ping", "", "id: 0-5", "event: job"]  # incomplete: not yet a message
    assert parse_events(lines) == [StreamMessage(id="0-4", kind="event", project_id="p", item=item)]
