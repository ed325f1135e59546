"""``PUT /v1/projects/{id}/retention``: set or remove how long a project keeps its sessions
and events; the project is answered with ``retainDays`` (also in ``GET /v1/projects``).
Bad input names the field; the erase scope is needed, as for the erase routes."""

from __future__ import annotations

from typing import Any

import pytest
from httpkit import Api, World

from claude_mem_core.facade import Memory


async def _key(memory: Memory, world: World, scopes: list[str]) -> str:
    issued = await memory.create_api_key(
        team_id=world.team, project_id=world.project, scopes=scopes
    )
    return issued.raw_key


async def _put(api: Api, world: World, body: Any, key: str) -> Any:
    return await api.call("PUT", f"/v1/projects/{world.project}/retention", json_body=body, key=key)


async def test_setting_and_removing_a_retention(api: Api, world: World, memory: Memory) -> None:
    key = await _key(memory, world, ["erase", "memories:read"])
    reply = await _put(api, world, {"retainDays": 30}, key)
    assert reply.status == 200, reply.body
    assert reply.body["project"]["id"] == world.project
    assert reply.body["project"]["retainDays"] == 30
    listed = await api.get("/v1/projects", key=key)
    assert [p["retainDays"] for p in listed.body["projects"]] == [30]

    cleared = await _put(api, world, {"retainDays": None}, key)
    assert cleared.status == 200 and cleared.body["project"]["retainDays"] is None


@pytest.mark.parametrize(
    "body", [{"retainDays": 0}, {"retainDays": "30"}, {"retainDays": 1.5}, {}, [30]]
)
async def test_bad_input_names_the_field(api: Api, world: World, memory: Memory, body: Any) -> None:
    key = await _key(memory, world, ["erase"])
    reply = await _put(api, world, body, key)
    assert reply.status == 400, reply.body
    assert "retainDays" in str(reply.body)
    assert key not in str(reply.body)


async def test_the_erase_scope_is_needed_and_other_projects_are_not_found(
    api: Api, world: World, memory: Memory
) -> None:
    reader = await _key(memory, world, ["memories:read"])
    assert (await _put(api, world, {"retainDays": 7}, reader)).status == 403
    team_key = (await memory.create_api_key(team_id=world.team, scopes=["erase"])).raw_key
    missing = await api.call(
        "PUT", "/v1/projects/no-such-project/retention", json_body={"retainDays": 7}, key=team_key
    )
    assert missing.status == 404, missing.body
