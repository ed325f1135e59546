"""Sessions (api.md §3.10), memories, search and context (§3.11), projects."""

from __future__ import annotations

from httpkit import Api, World, audit_rows

from claude_mem_core.facade import Memory


async def test_start_get_end_session(api: Api, world: World, memory: Memory) -> None:
    body = {"projectId": world.project, "externalSessionId": "ext-1"}
    first = await api.post("/v1/sessions/start", body, key=world.key)
    assert first.status == 201
    session = first.body["session"]
    assert session["generationStatus"] == "idle" and session["endedAtEpoch"] is None
    again = await api.post("/v1/sessions/start", body, key=world.key)
    assert again.status == 200 and again.body["session"]["id"] == session["id"]
    assert len(await audit_rows(memory, world.team, "session.write")) == 1

    got = await api.get(f"/v1/sessions/{session['id']}", key=world.read_key)
    assert got.status == 200 and got.body["session"]["id"] == session["id"]

    ended = await api.post(f"/v1/sessions/{session['id']}/end", key=world.key)
    assert ended.status == 200
    assert ended.body["session"]["endedAtEpoch"] is not None
    job = ended.body["generationJob"]
    assert job["sourceType"] == "session_summary" and job["bullmqJobId"].startswith("sum_")
    again_end = await api.post(f"/v1/sessions/{session['id']}/end", key=world.key)
    assert again_end.body["generationJob"]["id"] == job["id"]
    assert again_end.body["session"]["endedAtEpoch"] == ended.body["session"]["endedAtEpoch"]


async def test_session_content_identity_and_nulls(api: Api, world: World) -> None:
    body = {
        "projectId": world.project,
        "contentSessionId": "claude-1",
        "agentId": "a",
        "platformSource": "claude",
        "externalSessionId": None,
    }
    first = await api.post("/v1/sessions/start", body, key=world.key)
    second = await api.post("/v1/sessions/start", body, key=world.key)
    assert first.status == 201 and second.status == 200
    assert first.body["session"]["id"] == second.body["session"]["id"]


async def test_session_errors(api: Api, world: World) -> None:
    reply = await api.post("/v1/sessions/start", {"externalSessionId": "x"}, key=world.key)
    assert reply.status == 400 and reply.body["issues"][0]["path"] == ["projectId"]
    reply = await api.post(
        "/v1/sessions/start", {"projectId": world.project, "metadata": "no"}, key=world.key
    )
    assert reply.status == 400 and reply.body["issues"][0]["path"] == ["metadata"]
    reply = await api.post(
        "/v1/sessions/start", {"projectId": world.other_project}, key=world.team_key
    )
    assert reply.status == 404
    made = await api.post("/v1/sessions/start", {"projectId": world.project}, key=world.key)
    sid = made.body["session"]["id"]
    for path in (f"/v1/sessions/{sid}",):
        reply = await api.get(path, key=world.other_key)
        assert reply.status == 404 and reply.body["message"] == "Session not found"
    assert (await api.post(f"/v1/sessions/{sid}/end", key=world.other_key)).status == 404
    assert (await api.get("/v1/sessions/nope", key=world.key)).status == 404


async def test_memories_search_context(api: Api, world: World, memory: Memory) -> None:
    content = "Refactored authentication middleware to validate tokens"
    made = await api.post(
        "/v1/memories",
        {"projectId": world.project, "content": content, "kind": "manual", "metadata": {"a": 1}},
        key=world.key,
    )
    assert made.status == 201 and made.body["memory"]["content"] == content
    plain = await api.post(
        "/v1/memories",
        {"projectId": world.project, "content": "authentication tokens rotate daily"},
        key=world.key,
    )
    assert plain.body["memory"]["kind"] == "manual"
    assert (await api.get("/v1/jobs", key=world.key)).body["total"] == 0

    found = await api.post(
        "/v1/search", {"projectId": world.project, "query": "authentication"}, key=world.key
    )
    assert found.status == 200 and "authentication" in found.body["observations"][0]["content"]
    none = await api.post(
        "/v1/search", {"projectId": world.project, "query": "nonexistent_xyz_term"}, key=world.key
    )
    assert none.body == {"observations": []}
    ctx = await api.post(
        "/v1/context", {"projectId": world.project, "query": "authentication"}, key=world.key
    )
    assert len(ctx.body["observations"]) >= 2 and "\n\n" in ctx.body["context"]
    # Evidence: the matching words marked, per passage, and a context within a budget.
    hit = found.body["observations"][0]
    assert "**authentication**" in hit["excerpt"] and hit["score"] > 0
    assert hit["evidence"][0]["excerpt"] in hit["excerpt"]
    budgeted = await api.post(
        "/v1/context",
        {"projectId": world.project, "query": "authentication", "maxTokens": 20},
        key=world.key,
    )
    assert budgeted.status == 200 and len(budgeted.body["context"]) <= 20 * 4
    assert "**authentication**" in budgeted.body["context"]
    refused = await api.post(
        "/v1/context",
        {"projectId": world.project, "query": "authentication", "maxTokens": 0},
        key=world.key,
    )
    assert refused.status == 400 and "maxTokens" in str(refused.body)
    rows = await audit_rows(memory, world.team, "observation.read")
    assert {r.details["mode"] for r in rows} >= {"search", "context"}
    assert all("query" not in r.details for r in rows)


async def test_memory_and_search_validation(api: Api, world: World) -> None:
    cases = [
        ("/v1/memories", {"projectId": world.project, "content": ""}, ["content"]),
        ("/v1/memories", {"projectId": world.project, "content": "x", "kind": "a b"}, ["kind"]),
        ("/v1/memories", {"projectId": world.project, "content": "x", "kind": "k" * 65}, ["kind"]),
        ("/v1/memories", {"projectId": world.project, "content": "x", "kind": "  "}, ["kind"]),
        ("/v1/memories", {"projectId": world.project, "content": "x", "kind": 3}, ["kind"]),
        ("/v1/search", {"projectId": world.project, "query": "a", "limit": 101}, ["limit"]),
        ("/v1/search", {"projectId": world.project, "query": "a", "limit": 0}, ["limit"]),
        ("/v1/search", {"projectId": world.project, "query": "a", "limit": "5"}, ["limit"]),
        ("/v1/search", {"projectId": world.project}, ["query"]),
        ("/v1/context", {"projectId": world.project, "query": "a", "limit": 51}, ["limit"]),
    ]
    for path, body, field in cases:
        reply = await api.post(path, body, key=world.key)
        assert reply.status == 400, (path, body)
        assert reply.body["issues"][0]["path"] == field, (path, body, reply.body)


async def test_memories_of_any_kind(api: Api, world: World) -> None:
    kinds = ["decision", "note", " discovery ", "team:infra/bug-fix.v2", "summary"]
    made = []
    for n, kind in enumerate(kinds):
        reply = await api.post(
            "/v1/memories",
            {"projectId": world.project, "content": f"kinded memory {n} zebra", "kind": kind},
            key=world.key,
        )
        assert reply.status == 201, reply.body
        assert reply.body["memory"]["kind"] == kind.strip()
        made.append(reply.body["memory"]["id"])
    found = await api.post(
        "/v1/search", {"projectId": world.project, "query": "zebra"}, key=world.key
    )
    assert {o["kind"] for o in found.body["observations"]} == {k.strip() for k in kinds}
    listed = await api.get(
        "/v1/memories/recent", key=world.key, params={"projectId": world.project, "kind": "note"}
    )
    assert listed.status == 200 and [m["id"] for m in listed.body["memories"]] == [made[1]]
    bad = await api.get(
        "/v1/memories/recent", key=world.key, params={"projectId": world.project, "kind": "a b"}
    )
    assert bad.status == 400 and bad.body["issues"][0]["path"] == ["kind"]
    assert "letters, digits" in bad.body["issues"][0]["message"]
    decisions = await api.post(
        "/v1/search",
        {"projectId": world.project, "query": "zebra", "kind": "decision"},
        key=world.key,
    )
    assert [o["id"] for o in decisions.body["observations"]] == [made[0]]
    refused = await api.post(
        "/v1/search", {"projectId": world.project, "query": "zebra", "kind": "a b"}, key=world.key
    )
    assert refused.status == 400 and refused.body["issues"][0]["path"] == ["kind"]


async def test_search_outside_scope_is_404(api: Api, world: World) -> None:
    for key, project in (
        (world.key, world.sibling),
        (world.team_key, world.other_project),
        (world.key, world.other_project),
    ):
        for path in ("/v1/search", "/v1/context"):
            reply = await api.post(path, {"projectId": project, "query": "x"}, key=key)
            assert reply.status == 404, (path, project)
    reply = await api.post(
        "/v1/memories",
        {"projectId": world.project, "content": "x", "serverSessionId": "nope"},
        key=world.key,
    )
    assert reply.status == 404


async def test_projects_listing(api: Api, world: World) -> None:
    team = await api.get("/v1/projects", key=world.team_key)
    assert team.status == 200 and team.body["total"] == 2
    assert {p["id"] for p in team.body["projects"]} == {world.project, world.sibling}
    own = await api.get("/v1/projects", key=world.key)
    assert [p["id"] for p in own.body["projects"]] == [world.project]
    assert (await api.get("/v1/projects", key=world.key, params={"limit": "0"})).status == 400
