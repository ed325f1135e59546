"""The erase routes: ``DELETE /v1/events/{id}``, ``/v1/sessions/{id}``, ``/v1/projects/{id}``
(ids and counts, never content), 404 as for reads, and 410 for a replayed ``sourceEventId``
of an erased event (409's place; the legacy route answers 200 ``skipped``)."""

from __future__ import annotations

from typing import Any

from httpkit import Api, World, event_body

from claude_mem_core.facade import Memory


async def _erase_key(memory: Memory, world: World, project: str | None = None) -> str:
    issued = await memory.create_api_key(
        team_id=world.team, project_id=project or world.project, scopes=["erase"]
    )
    return issued.raw_key


async def _delete(api: Api, path: str, key: str) -> Any:
    return await api.call("DELETE", path, key=key)


async def test_erasing_an_event_answers_what_went_and_a_replay_is_gone(
    api: Api, world: World, memory: Memory
) -> None:
    stored = await api.post(
        "/v1/events", event_body(world.project, sourceEventId="tool-1"), key=world.key
    )
    assert stored.status == 201, stored.body
    event_id = stored.body["event"]["id"]
    key = await _erase_key(memory, world)

    reply = await _delete(api, f"/v1/events/{event_id}", key)

    assert reply.status == 200, reply.body
    erased = reply.body["erased"]
    assert (erased["kind"], erased["id"], erased["projectId"]) == ("event", event_id, world.project)
    assert erased["teamId"] == world.team and erased["complete"] is True
    assert erased["removed"]["events"] == 1 and "jobEvents" in erased["removed"]
    assert erased["erasedAt"].endswith("Z") and isinstance(erased["erasedAtEpoch"], int)
    assert "payload" not in str(reply.body)  # ids and counts only
    assert (await api.get(f"/v1/events/{event_id}", key=world.key)).status == 404
    assert (await _delete(api, f"/v1/events/{event_id}", key)).status == 404

    replay = await api.post(
        "/v1/events", event_body(world.project, sourceEventId="tool-1"), key=world.key
    )
    assert replay.status == 410, replay.body
    assert replay.body["error"] == "Gone" and replay.body["sourceEventId"] == "tool-1"
    assert "index" not in replay.body

    batch = await api.post(
        "/v1/events/batch",
        [
            event_body(world.project, sourceEventId="tool-2"),
            event_body(world.project, sourceEventId="tool-1"),
        ],
        key=world.key,
    )
    assert batch.status == 410, batch.body
    assert (batch.body["sourceEventId"], batch.body["index"]) == ("tool-1", 1)


async def test_the_legacy_route_answers_200_skipped_for_an_erased_tool_use(
    api: Api, world: World, memory: Memory
) -> None:
    body = {
        "contentSessionId": "claude-session-1",
        "tool_name": "Edit",
        "tool_input": {"file": "a.py"},
        "tool_response": "ok",
        "toolUseId": "tu_erased",
    }
    first = await api.post("/api/sessions/observations", body, key=world.key)
    assert first.status == 200, first.body
    key = await _erase_key(memory, world)
    assert (await _delete(api, f"/v1/events/{first.body['eventId']}", key)).status == 200

    again = await api.post("/api/sessions/observations", body, key=world.key)

    assert again.status == 200, again.body
    assert again.body["status"] == "skipped" and again.body["erased"] is True
    assert again.body["eventId"] is None and again.body["observationCount"] == 0


async def test_erasing_a_session_takes_its_events(api: Api, world: World, memory: Memory) -> None:
    started = await api.post(
        "/v1/sessions/start",
        {"projectId": world.project, "contentSessionId": "cs-erase"},
        key=world.key,
    )
    assert started.status in (200, 201), started.body
    session_id = started.body["session"]["id"]
    for n in range(2):
        sent = await api.post(
            "/v1/events",
            event_body(world.project, serverSessionId=session_id, sourceEventId=f"s-{n}"),
            key=world.key,
        )
        assert sent.status == 201, (n, sent.body)

    reply = await _delete(api, f"/v1/sessions/{session_id}", world.admin_key)

    assert reply.status == 200, reply.body
    erased = reply.body["erased"]
    assert (erased["kind"], erased["id"]) == ("session", session_id)
    assert erased["removed"]["sessions"] == 1 and erased["removed"]["events"] == 2
    assert (await api.get(f"/v1/sessions/{session_id}", key=world.key)).status == 404


async def test_erasing_a_project_revokes_its_keys_and_purges_it(
    api: Api, world: World, memory: Memory
) -> None:
    sent = await api.post("/v1/events", event_body(world.project), key=world.key)
    assert sent.status == 201

    reply = await _delete(api, f"/v1/projects/{world.project}", world.admin_key)

    assert reply.status == 200, reply.body
    erased = reply.body["erased"]
    assert (erased["kind"], erased["id"], erased["complete"]) == (
        "project",
        world.project,
        True,
    )
    assert erased["removed"]["events"] == 1 and erased["revokedKeys"] >= 1
    assert (
        await api.get(f"/v1/events/{sent.body['event']['id']}", key=world.admin_key)
    ).status == 404
    listed = await api.get("/v1/projects", key=world.admin_key)
    assert world.project not in {p["id"] for p in listed.body["projects"]}
    assert (await _delete(api, f"/v1/projects/{world.project}", world.admin_key)).status in (
        200,
        404,
    )


async def test_unknown_other_team_and_sibling_ids_are_404_as_for_reads(
    api: Api, world: World, memory: Memory
) -> None:
    theirs = await api.post("/v1/events", event_body(world.other_project), key=world.other_key)
    assert theirs.status == 201
    their_event = theirs.body["event"]["id"]
    key = await _erase_key(memory, world)
    for path in (
        "/v1/events/no-such-id",
        "/v1/sessions/no-such-id",
        "/v1/projects/no-such-id",
        f"/v1/events/{their_event}",
        f"/v1/projects/{world.other_project}",
        f"/v1/projects/{world.sibling}",  # a project key sees its own project only
    ):
        reply = await _delete(api, path, key)
        assert (reply.status, reply.body["error"]) == (404, "NotFound"), path
    assert (await api.get(f"/v1/events/{their_event}", key=world.other_key)).status == 200


async def test_erasing_needs_the_erase_scope(api: Api, world: World) -> None:
    stored = await api.post("/v1/events", event_body(world.project), key=world.key)
    reply = await _delete(api, f"/v1/events/{stored.body['event']['id']}", world.key)
    assert reply.status == 403 and "erase" in reply.body["message"]
