"""``GET /v1/usage``: the token ledger's sums for the caller's team or project, by day,
model or project; bad parameters name the field; a project key sees only its project."""

from __future__ import annotations

import pytest
from httpkit import Api, World, event_body

from claude_mem_core.facade import Memory


async def _spend(api: Api, world: World, memory: Memory, calls: int) -> None:
    for n in range(calls):
        sent = await api.post(
            "/v1/events", event_body(world.project, sourceEventId=f"tool-{n}"), key=world.key
        )
        assert sent.status == 201, sent.body
    await memory.drain()


async def test_usage_sums_the_calls_made_for_the_project(
    api: Api, world: World, memory: Memory
) -> None:
    await _spend(api, world, memory, 2)
    reply = await api.get("/v1/usage", key=world.key, params={"groupBy": "model"})
    assert reply.status == 200, reply.body
    body = reply.body["usage"]
    assert body["groupBy"] == "model" and body["projectId"] == world.project
    assert [r["group"] for r in body["rows"]] == ["scripted/scripted-1"]
    assert body["total"]["calls"] == 2
    assert body["total"]["inputTokens"] > 0 and body["total"]["outputTokens"] > 0
    # The scripted provider has no list price: counted, not priced.
    assert body["total"]["unpricedCalls"] == 2 and body["total"]["costUsd"] == 0
    assert body["pricesAsOf"]

    by_day = await api.get("/v1/usage", key=world.key)
    assert by_day.body["usage"]["groupBy"] == "day"
    assert len(by_day.body["usage"]["rows"]) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [({"days": "0"}, "days"), ({"days": "x"}, "days"), ({"groupBy": "week"}, "groupBy")],
)
async def test_bad_parameters_name_the_field(
    api: Api, world: World, params: dict[str, str], field: str
) -> None:
    reply = await api.get("/v1/usage", key=world.key, params=params)
    assert reply.status == 400, reply.body
    assert field in str(reply.body)
    assert world.key not in str(reply.body)


async def test_a_project_key_cannot_read_another_projects_usage(
    api: Api, world: World, memory: Memory
) -> None:
    _, other = await memory.ensure_project("acme-other", "elsewhere")
    reply = await api.get("/v1/usage", key=world.key, params={"projectId": other.id})
    assert reply.status == 404, reply.body
    assert (await api.get("/v1/usage")).status == 401
