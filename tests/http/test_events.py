"""POST /v1/events, /v1/events/batch, GET /v1/events/{id}[/observations] (api.md §3.1-3.4)."""

from __future__ import annotations

import re

from httpkit import Api, AppFactory, World, audit_rows, event_body

from claude_mem_core.facade import Memory


async def test_ingest_event_201_with_job(api: Api, world: World, memory: Memory) -> None:
    reply = await api.post("/v1/events", event_body(world.project), key=world.key)
    assert reply.status == 201
    event, job = reply.body["event"], reply.body["generationJob"]
    assert event["projectId"] == world.project and event["teamId"] == world.team
    assert event["occurredAtEpoch"] == 1_760_000_000_000
    assert job["sourceType"] == "agent_event" and job["sourceId"] == event["id"]
    assert job["status"] == "queued" and job["transport"] == "enqueued"
    assert re.fullmatch(r"evt_[0-9a-f]{64}", job["bullmqJobId"])
    rows = await audit_rows(memory, world.team, "event.received")
    assert rows[0].resource_id == event["id"]
    assert rows[0].details["generationJobId"] == job["id"]
    assert rows[0].details["requestId"] == reply.headers["X-Request-Id"]


async def test_generate_false_has_no_job(api: Api, world: World) -> None:
    reply = await api.post(
        "/v1/events", event_body(world.project), key=world.key, params={"generate": "false"}
    )
    assert reply.status == 201 and "generationJob" not in reply.body


async def test_bad_flags_are_400(api: Api, world: World) -> None:
    for params in ({"generate": "maybe"}, {"wait": "1"}, [("wait", "true"), ("wait", "true")]):
        reply = await api.post(
            "/v1/events", event_body(world.project), key=world.key, params=params
        )
        assert reply.status == 400, params
        assert reply.body["error"] == "ValidationError"
    reply = await api.post(
        "/v1/events", event_body(world.project), key=world.key, params={"waitTimeoutMs": "x"}
    )
    assert reply.status == 400 and reply.body["issues"][0]["path"] == ["waitTimeoutMs"]


async def test_invalid_bodies_name_wire_fields(api: Api, world: World) -> None:
    body = event_body(world.project)
    del body["occurredAtEpoch"]
    body["sourceType"] = "bogus"
    reply = await api.post("/v1/events", body, key=world.key)
    assert reply.status == 400
    paths = {tuple(i["path"]) for i in reply.body["issues"]}
    assert paths == {("occurredAtEpoch",), ("sourceType",)}
    for bad in (
        {"occurredAtEpoch": "1"},
        {"occurredAtEpoch": -1},
        {"projectId": 5},
        {"metadata": []},
        {"eventType": ""},
        {"eventType": "x" * 257},
        {"sourceEventId": "t" * 257},
        {"serverSessionId": "s" * 257},
        {"occurredAtEpoch": True},
    ):
        reply = await api.post("/v1/events", event_body(world.project, **bad), key=world.key)
        assert reply.status == 400, bad
        assert reply.body["issues"][0]["path"] == [next(iter(bad))]


async def test_foreign_projects_and_sessions_are_404(api: Api, world: World) -> None:
    for project in (world.sibling, world.other_project, "nope"):
        reply = await api.post("/v1/events", event_body(project), key=world.key)
        assert reply.status == 404, project
    reply = await api.post("/v1/events", event_body(world.other_project), key=world.team_key)
    assert reply.status == 404
    reply = await api.post(
        "/v1/events", event_body(world.project, serverSessionId="missing"), key=world.key
    )
    assert reply.status == 404


async def test_replay_same_event_and_job(api: Api, world: World) -> None:
    body = event_body(world.project, payload={"a": 1, "b": 2})
    first = await api.post("/v1/events", body, key=world.key)
    second = await api.post(
        "/v1/events", event_body(world.project, payload={"b": 2, "a": 1}), key=world.key
    )
    assert second.status == 201
    assert first.body["event"]["id"] == second.body["event"]["id"]
    assert first.body["generationJob"]["id"] == second.body["generationJob"]["id"]


async def test_source_event_id_and_metadata_are_stored(api: Api, world: World) -> None:
    body = event_body(world.project, sourceEventId="tu-1", metadata={"k": "v"})
    reply = await api.post("/v1/events", body, key=world.key)
    event = reply.body["event"]
    assert event["sourceEventId"] == "tu-1" and event["metadata"] == {"k": "v"}
    replay = await api.post("/v1/events", body, key=world.key)
    assert replay.status == 201 and replay.body["event"]["id"] == event["id"]
    fetched = await api.get(f"/v1/events/{event['id']}", key=world.key)
    assert fetched.status == 200 and fetched.body["event"]["sourceEventId"] == "tu-1"


async def test_wait_generate_false_gives_null_job(api: Api, world: World) -> None:
    reply = await api.post(
        "/v1/events",
        event_body(world.project),
        key=world.key,
        params={"wait": "true", "generate": "false"},
    )
    assert reply.status == 201 and reply.body["generationJob"] is None


async def test_wait_times_out_without_consumer(api: Api, world: World) -> None:
    reply = await api.post(
        "/v1/events",
        event_body(world.project),
        key=world.key,
        params={"wait": "true", "waitTimeoutMs": "200"},
    )
    assert reply.status == 201
    assert reply.body["waitTimedOut"] is True
    assert reply.body["generationJob"]["status"] == "queued"
    assert reply.body["generationJob"]["attempts"] == 0


async def test_wait_returns_completed_with_embedded_generation(
    make_api: AppFactory, world: World
) -> None:
    api = await make_api(background_generation=True)
    reply = await api.post(
        "/v1/events",
        event_body(world.project),
        key=world.key,
        params={"wait": "true", "waitTimeoutMs": "10000"},
    )
    assert reply.status == 201
    assert "waitTimedOut" not in reply.body
    assert reply.body["generationJob"]["status"] == "completed"
    event_id = reply.body["event"]["id"]
    obs = await api.get(f"/v1/events/{event_id}/observations", key=world.read_key)
    assert obs.status == 200 and obs.body["eventId"] == event_id
    assert obs.body["observations"], obs.body
    first = obs.body["observations"][0]
    assert first["source"]["sourceType"] == "agent_event"
    assert first["source"]["sourceId"] == event_id
    found = await api.post(
        "/v1/search", {"projectId": world.project, "query": "authentication"}, key=world.key
    )
    assert found.status == 200 and "authentication" in found.body["observations"][0]["content"]


async def test_batch(api: Api, world: World, memory: Memory) -> None:
    events = [event_body(world.project, eventType=f"e{i}") for i in range(2)]
    reply = await api.post("/v1/events/batch", events, key=world.key)
    assert reply.status == 201
    assert [e["event"]["eventType"] for e in reply.body["events"]] == ["e0", "e1"]
    assert all(e["generationJob"]["status"] == "queued" for e in reply.body["events"])
    rows = await audit_rows(memory, world.team, "event.batch_received")
    assert rows[0].details["eventCount"] == 2
    waited = await api.post(
        "/v1/events/batch",
        events,
        key=world.key,
        params={"wait": "true", "waitTimeoutMs": "100"},
    )
    assert waited.status == 201 and waited.body["waitTimedOut"] is True


async def test_batch_rejections(api: Api, world: World, memory: Memory) -> None:
    for body in ([], {"not": "array"}, [event_body(world.project)] * 501):
        reply = await api.post("/v1/events/batch", body, key=world.key)
        assert reply.status == 400
    bad = [event_body(world.project), event_body(world.project, occurredAtEpoch="x")]
    reply = await api.post("/v1/events/batch", bad, key=world.key)
    assert reply.status == 400 and reply.body["issues"][0]["path"] == [1, "occurredAtEpoch"]
    mixed = [event_body(world.project), event_body(world.sibling)]
    reply = await api.post("/v1/events/batch", mixed, key=world.key)
    assert reply.status == 404
    assert not await audit_rows(memory, world.team, "event.received")
    assert not await audit_rows(memory, world.team, "event.batch_received")


async def test_get_event_scoping(api: Api, world: World) -> None:
    made = await api.post("/v1/events", event_body(world.project), key=world.key)
    event_id = made.body["event"]["id"]
    assert (await api.get(f"/v1/events/{event_id}", key=world.read_key)).status == 200
    assert (await api.get(f"/v1/events/{event_id}", key=world.team_key)).status == 200
    for key in (world.other_key,):
        reply = await api.get(f"/v1/events/{event_id}", key=key)
        assert reply.status == 404 and reply.body == {
            "error": "NotFound",
            "message": "Event not found",
        }
    sib = await api.post("/v1/events", event_body(world.sibling), key=world.team_key)
    sib_id = sib.body["event"]["id"]
    assert (await api.get(f"/v1/events/{sib_id}", key=world.key)).status == 404
    assert (await api.get(f"/v1/events/{sib_id}/observations", key=world.key)).status == 404
    assert (await api.get("/v1/events/unknown", key=world.key)).status == 404


async def test_a_replay_with_another_payload_is_409(api: Api, world: World, memory: Memory) -> None:
    body = event_body(world.project, sourceEventId="tu-9")
    first = await api.post("/v1/events", body, key=world.key)
    assert first.status == 201
    assert "receivedPayloadSha256" not in first.body["event"]["metadata"]
    clash = await api.post(
        "/v1/events",
        event_body(world.project, sourceEventId="tu-9", payload={"x": 2}),
        key=world.key,
    )
    assert clash.status == 409
    assert clash.body["error"] == "Conflict"
    assert clash.body["eventId"] == first.body["event"]["id"]
    assert clash.body["sourceEventId"] == "tu-9"
    batch = await api.post(
        "/v1/events/batch",
        [
            event_body(world.project),
            event_body(world.project, sourceEventId="tu-9", payload={"y": 1}),
        ],
        key=world.key,
    )
    assert batch.status == 409 and batch.body["index"] == 1
    assert batch.body["eventId"] == first.body["event"]["id"]
    rows = await audit_rows(memory, world.team, "event.conflict")
    assert len(rows) == 2 and {r.resource_id for r in rows} == {first.body["event"]["id"]}
    same = await api.post("/v1/events", body, key=world.key)
    assert same.status == 201 and same.body["event"]["id"] == first.body["event"]["id"]


async def test_secrets_are_redacted_and_an_identical_replay_is_not_a_conflict(
    api: Api, world: World
) -> None:
    payload = {
        "tool_name": "Bash",
        "tool_response": "export GITHUB_TOKEN=ghp_" + "A1b2C3d4E5" * 4 + "\n<private>x</private>",
        "sha": "3f786850e387550fdab836ed7e6dc881de23001b",
    }
    body = event_body(world.project, sourceEventId="tu-s", payload=payload)
    first = await api.post("/v1/events", body, key=world.key)
    event = first.body["event"]
    assert "A1b2C3d4E5" not in str(event["payload"])
    assert event["payload"]["sha"] == payload["sha"]
    assert event["metadata"]["redactions"] == {"env-secret": 1}
    again = await api.post("/v1/events", body, key=world.key)
    assert again.status == 201 and again.body["event"]["id"] == event["id"]
    batch = await api.post(
        "/v1/events/batch",
        [event_body(world.project, sourceEventId="tu-t", payload=payload)],
        key=world.key,
    )
    assert "A1b2C3d4E5" not in str(batch.body)


async def test_a_replay_says_so_beside_its_transport(api: Api, world: World) -> None:
    """The wire's transport values stay; ``replayed`` tells a replay from a new event (a
    replayed event whose job is no longer queued answers ``queued_only``, which alone
    would read like a failure)."""
    body = event_body(world.project, sourceEventId="tu-replayed")
    first = await api.post("/v1/events", body, key=world.key)
    assert first.status == 201 and first.body["replayed"] is False
    assert first.body["generationJob"]["transport"] == "enqueued"
    second = await api.post("/v1/events", body, key=world.key)
    assert second.status == 201 and second.body["replayed"] is True
    assert second.body["event"]["id"] == first.body["event"]["id"]
    assert second.body["generationJob"]["transport"] in ("enqueued", "queued_only", "skipped")
    fresh = event_body(world.project, sourceEventId="tu-new")
    batch = await api.post("/v1/events/batch", [body, fresh], key=world.key)
    assert batch.status == 201
    assert [e["replayed"] for e in batch.body["events"]] == [True, False]
    waited = await api.post(
        "/v1/events", body, key=world.key, params={"wait": "true", "waitTimeoutMs": "50"}
    )
    assert waited.body["replayed"] is True
