"""``GET /v1/projects/{id}/export`` and ``POST /v1/projects/{id}/import``: NDJSON streamed
both ways, the scopes that open them, and bad bodies answered 400 naming the line."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator

from httpkit import Api, World

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.memory import InMemoryStorage
from claude_mem_core.adapters.offline_provider import OfflineProvider

NDJSON = "application/x-ndjson"


async def _fill(memory: Memory, scope: Scope, word: str) -> None:
    started = await memory.start_session(scope, external_session_id=f"claude-{word}")
    for step in range(3):
        await memory.ingest(
            scope,
            event_type="tool_use",
            session_id=started.session.id,
            source_event_id=f"{word}-{step}",
            payload={"tool_name": "Bash", "tool_input": {"command": f"make {word}{step}"}},
            generate=False,
        )
    await memory.add_memory(scope, f"The {word} service deploys on Fridays.", title=word)


async def _export(api: Api, project: str, key: str) -> tuple[int, str, str, str]:
    async with api.client.get(
        f"/v1/projects/{project}/export", headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        text = await resp.text()
        return resp.status, resp.content_type, resp.headers.get("Transfer-Encoding", ""), text


async def _import(api: Api, project: str, key: str, body: str, **params: str) -> object:
    async def chunks() -> AsyncIterator[bytes]:
        data = body.encode()
        for start in range(0, len(data), 1000):  # sent chunked, as a stream
            yield data[start : start + 1000]

    return await api.call(
        "POST",
        f"/v1/projects/{project}/import",
        data=chunks(),
        key=key,
        content_type=NDJSON,
        params=params or None,
    )


async def _exported_elsewhere(word: str) -> str:
    """An export made by another database (ids are global keys)."""
    source = Memory(storage=InMemoryStorage(), queue=InProcessQueue(), provider=OfflineProvider())
    team, project = await source.ensure_project("elsewhere", "origin")
    scope = Scope(team_id=team.id, project_id=project.id)
    await _fill(source, scope, word)
    return "".join([line async for line in source.export_project(scope)])


async def test_export_streams_ndjson(api: Api, world: World, memory: Memory) -> None:
    await _fill(memory, Scope(team_id=world.team, project_id=world.project), "alpha")
    status, content_type, encoding, text = await _export(api, world.project, world.read_key)
    assert (status, content_type) == (200, NDJSON)
    assert encoding.lower() == "chunked"
    lines = text.splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "claude-mem-export" and header["version"] == 1
    assert header["counts"] == {"sessions": 1, "events": 3, "observations": 1}
    assert [json.loads(line)["type"] for line in lines[1:]] == [
        "session", "event", "event", "event", "observation",
    ]  # fmt: skip


async def test_an_import_round_trips_and_twice_adds_nothing(
    api: Api, world: World, memory: Memory
) -> None:
    body = await _exported_elsewhere("bravo")
    reply = await _import(api, world.project, world.key, body)
    assert reply.status == 200, reply.body
    imported = reply.body["imported"]
    assert (imported["sessions"], imported["events"], imported["observations"]) == (1, 3, 1)
    assert imported["jobs"] == 0 and imported["skipped"] == 0
    _, _, _, text = await _export(api, world.project, world.key)
    assert text.splitlines()[1:] == body.splitlines()[1:]
    found = await api.post(
        "/v1/search", {"projectId": world.project, "query": "Fridays"}, key=world.key
    )
    assert found.status == 200 and len(found.body["observations"]) == 1
    again = await _import(api, world.project, world.key, body, generate="true")
    assert again.status == 200 and again.body["imported"]["skipped"] == 5
    assert again.body["imported"]["events"] == 0 and again.body["imported"]["jobs"] == 0


async def test_scopes_and_tenants_are_enforced(api: Api, world: World, memory: Memory) -> None:
    body = await _exported_elsewhere("charlie")
    # A key of another team, or of a sibling project, does not see the project.
    for key, project in ((world.other_key, world.project), (world.key, world.sibling)):
        status, _, _, _ = await _export(api, project, key)
        assert status == 404
        assert (await _import(api, project, key, body)).status == 404
    # A read-only key cannot import; a hook key (observations:read) cannot export events.
    refused = await _import(api, world.project, world.read_key, body)
    assert refused.status == 403 and "memories:write" in refused.body["message"]
    status, _, _, text = await _export(api, world.project, world.hook_key)
    assert status == 403 and "memories:read" in text
    # Nothing was written by the refused imports.
    _, _, _, text = await _export(api, world.project, world.key)
    assert text.splitlines()[1:] == []


async def test_a_bad_body_is_a_400_naming_the_line(api: Api, world: World) -> None:
    body = await _exported_elsewhere("delta")
    lines = body.splitlines(keepends=True)
    event = json.loads(lines[3])
    event["payload"] = None
    del event["eventType"]
    broken = "".join([*lines[:3], json.dumps(event) + "\n", *lines[4:]])
    reply = await _import(api, world.project, world.key, broken)
    assert reply.status == 400, reply.body
    assert (reply.body["line"], reply.body["field"]) == (4, "eventType")
    assert reply.body["message"].startswith("line 4: eventType")
    header = json.loads(lines[0])
    header["version"] = 7
    future = await _import(api, world.project, world.key, json.dumps(header) + "\n")
    assert future.status == 400 and future.body["version"] == 7
    assert "version 7" in future.body["message"]
    garbage = await _import(api, world.project, world.key, "not json at all\n")
    assert garbage.status == 400 and garbage.body["line"] == 1
    _, _, _, text = await _export(api, world.project, world.key)
    assert text.splitlines()[1:] == []


async def test_ids_of_another_project_are_a_409(api: Api, world: World, memory: Memory) -> None:
    await _fill(memory, Scope(team_id=world.team, project_id=world.project), "echo")
    _, _, _, body = await _export(api, world.project, world.key)
    reply = await _import(api, world.sibling, world.team_key, body)
    assert reply.status == 409, reply.body
    assert reply.body["line"] == 2 and reply.body["field"] == "id"
    _, _, _, text = await _export(api, world.sibling, world.team_key)
    assert text.splitlines()[1:] == []


async def test_an_import_larger_than_a_json_body_is_read_with_its_content_length(
    api: Api, world: World
) -> None:
    # The body limit is for bodies read whole; an import is read line by line, so a large
    # one sent with a Content-Length (not chunked) is taken too, and a JSON route still
    # refuses the same size.
    from claude_mem_http.wire.schemas import MAX_BODY_BYTES

    body = await _exported_elsewhere("golf")
    header, *rest = body.splitlines(keepends=True)
    padding = " " * (MAX_BODY_BYTES + 1024)  # JSON allows whitespace after the header
    large = header.rstrip("\n") + padding + "\n" + "".join(rest)
    reply = await api.call(
        "POST",
        f"/v1/projects/{world.project}/import",
        data=io.BytesIO(large.encode()),  # a known size: sent with a Content-Length
        key=world.key,
        content_type=NDJSON,
    )
    assert reply.status == 200, reply.body
    assert reply.body["imported"]["events"] == 3
    refused = await api.call(
        "POST", "/v1/memories", data=io.BytesIO(b" " * (MAX_BODY_BYTES + 1024)), key=world.key
    )
    assert refused.status == 413
