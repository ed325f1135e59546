"""GET /v1/memories/recent and GET /v1/memories/{id}: the newest memories of a project and
one memory by id, scoped by team and project, audited as ``observation.read``."""

from __future__ import annotations

import asyncio

from httpkit import Api, World, audit_rows

from claude_mem_core.facade import Memory


async def _write(api: Api, world: World, content: str, *, key: str | None = None) -> str:
    made = await api.post(
        "/v1/memories", {"projectId": world.project, "content": content}, key=key or world.key
    )
    assert made.status == 201, made.body
    await asyncio.sleep(0.002)  # distinct created_at, even at millisecond precision
    return str(made.body["memory"]["id"])


async def test_recent_is_newest_first_and_limited(api: Api, world: World, memory: Memory) -> None:
    ids = [await _write(api, world, f"note number {n}") for n in range(5)]
    sibling = await api.post(
        "/v1/memories", {"projectId": world.sibling, "content": "elsewhere"}, key=world.team_key
    )
    assert sibling.status == 201

    everything = await api.get(
        "/v1/memories/recent", key=world.read_key, params={"projectId": world.project}
    )
    assert everything.status == 200
    assert [m["id"] for m in everything.body["memories"]] == ids[::-1]
    first = everything.body["memories"][0]
    assert first["content"] == "note number 4" and first["projectId"] == world.project
    assert first["kind"] == "manual" and first["teamId"] == world.team

    two = await api.get(
        "/v1/memories/recent", key=world.team_key, params={"projectId": world.project, "limit": "2"}
    )
    assert two.status == 200 and [m["id"] for m in two.body["memories"]] == ids[:2:-1]
    # Same item shape as a search answer (which adds its evidence).
    found = await api.post(
        "/v1/search", {"projectId": world.project, "query": "number"}, key=world.key
    )
    assert set(found.body["observations"][0]) == set(first) | {
        "score",
        "similarity",
        "excerpt",
        "evidence",
    }

    empty = await api.get(
        "/v1/memories/recent", key=world.team_key, params={"projectId": world.sibling, "limit": "1"}
    )
    assert [m["content"] for m in empty.body["memories"]] == ["elsewhere"]

    rows = [r for r in await audit_rows(memory, world.team, "observation.read")]
    recent = [r for r in rows if r.details.get("mode") == "recent"]
    assert len(recent) == 3
    assert {r.project_id for r in recent} == {world.project, world.sibling}
    two_row = next(r for r in recent if r.details["limit"] == 2)
    assert two_row.details["observationIds"] == ids[:2:-1]
    assert two_row.details["resultCount"] == 2 and two_row.resource_type == "observation"


async def test_recent_of_an_empty_project(api: Api, world: World) -> None:
    reply = await api.get("/v1/memories/recent", key=world.key, params={"projectId": world.project})
    assert reply.status == 200 and reply.body == {"memories": []}


async def test_recent_validation(api: Api, world: World) -> None:
    project = world.project
    cases: list[tuple[object, str]] = [
        ({"projectId": project, "limit": "0"}, "limit"),
        ({"projectId": project, "limit": "101"}, "limit"),
        ({"projectId": project, "limit": "ten"}, "limit"),
        ({"projectId": project, "limit": "1.5"}, "limit"),
        ([("projectId", project), ("limit", "1"), ("limit", "2")], "limit"),
        ({"limit": "5"}, "projectId"),
        ({}, "projectId"),
        ({"projectId": ""}, "projectId"),
        ({"projectId": "   "}, "projectId"),
        ([("projectId", project), ("projectId", project)], "projectId"),
    ]
    for params, field in cases:
        reply = await api.get("/v1/memories/recent", key=world.key, params=params)  # type: ignore[arg-type]
        assert reply.status == 400, (params, reply.body)
        assert reply.body["error"] == "ValidationError"
        assert reply.body["issues"][0]["path"] == [field], (params, reply.body)
        assert field in reply.body["message"]
    at_most = await api.get(
        "/v1/memories/recent", key=world.key, params={"projectId": project, "limit": "100"}
    )
    assert at_most.status == 200


async def _write_only_key(memory: Memory, world: World) -> str:
    issued = await memory.create_api_key(
        team_id=world.team, project_id=world.project, scopes=["memories:write"]
    )
    return issued.raw_key


async def test_recent_outside_scope(api: Api, world: World, memory: Memory) -> None:
    await _write(api, world, "team secret")
    for key, project in (
        (world.key, world.sibling),  # project key, other project of its team
        (world.team_key, world.other_project),  # another team's project
        (world.key, world.other_project),
        (world.other_key, world.project),
        (world.key, "no-such-project"),
    ):
        reply = await api.get("/v1/memories/recent", key=key, params={"projectId": project})
        assert reply.status == 404, (project, reply.body)
        assert reply.body == {"error": "NotFound", "message": "Project not found"}
    missing = await api.get("/v1/memories/recent", params={"projectId": world.project})
    assert missing.status == 401
    # A key that cannot read is refused before any lookup.
    no_scope = await api.get(
        "/v1/memories/recent",
        key=await _write_only_key(memory, world),
        params={"projectId": world.project},
    )
    assert no_scope.status == 403, no_scope.body


async def test_get_memory_by_id(api: Api, world: World, memory: Memory) -> None:
    memory_id = await _write(api, world, "The deploy runs blue-green on Argo.")
    for key in (world.key, world.read_key, world.team_key, world.admin_key):
        got = await api.get(f"/v1/memories/{memory_id}", key=key)
        assert got.status == 200, got.body
        assert got.body["memory"]["id"] == memory_id
        assert got.body["memory"]["content"] == "The deploy runs blue-green on Argo."
    rows = [
        r
        for r in await audit_rows(memory, world.team, "observation.read")
        if r.details.get("mode") == "get"
    ]
    assert len(rows) == 4 and {r.resource_id for r in rows} == {memory_id}
    assert {r.project_id for r in rows} == {world.project}

    theirs = await api.post(
        "/v1/memories",
        {"projectId": world.other_project, "content": "globex only"},
        key=world.other_key,
    )
    other_id = theirs.body["memory"]["id"]
    sibling = await api.post(
        "/v1/memories", {"projectId": world.sibling, "content": "api only"}, key=world.team_key
    )
    sibling_id = sibling.body["memory"]["id"]
    for key, wanted in (
        (world.key, other_id),  # another team's memory
        (world.team_key, other_id),
        (world.admin_key, other_id),
        (world.other_key, memory_id),
        (world.key, sibling_id),  # same team, another project: hidden from a project key
        (world.key, "no-such-memory"),
    ):
        reply = await api.get(f"/v1/memories/{wanted}", key=key)
        assert reply.status == 404, (wanted, reply.body)
        assert reply.body == {"error": "NotFound", "message": "Memory not found"}
    assert (await api.get(f"/v1/memories/{sibling_id}", key=world.team_key)).status == 200
    assert (await api.get(f"/v1/memories/{memory_id}")).status == 401
    write_only = await _write_only_key(memory, world)
    assert (await api.get(f"/v1/memories/{memory_id}", key=write_only)).status == 403
    # A hook key reads (observations:read), so SessionStart can fetch recent memories.
    assert (await api.get(f"/v1/memories/{memory_id}", key=world.hook_key)).status == 200
    # No audit row for refusals.
    rows = [
        r
        for r in await audit_rows(memory, world.team, "observation.read")
        if r.details.get("mode") == "get"
    ]
    assert len(rows) == 6
