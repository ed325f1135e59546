"""``PUT /v1/projects/{id}/budget``: an admin sets a project's budget; ``GET /v1/usage``
shows it with what the period spent and has left; a job it holds stays ``queued`` and
says so in ``heldReason``; bad limits name the field."""

from __future__ import annotations

import pytest
from httpkit import Api, AppFactory, World, event_body

from claude_mem_core.facade import Memory
from claude_mem_core.testing.fakes import ScriptedProvider


async def _send(api: Api, world: World, n: int) -> list[str]:
    ids = []
    for i in range(n):
        sent = await api.post(
            "/v1/events", event_body(world.project, sourceEventId=f"b-{i}"), key=world.key
        )
        assert sent.status == 201, sent.body
        ids.append(sent.body["generationJob"]["id"])
    return ids


async def test_a_spent_budget_holds_jobs_and_usage_shows_it(
    api: Api, world: World, memory: Memory, provider: ScriptedProvider
) -> None:
    path = f"/v1/projects/{world.project}/budget"
    reply = await api.call(
        "PUT", path, json_body={"period": "day", "tokenLimit": 1}, key=world.admin_key
    )
    assert reply.status == 200, reply.body
    budget = reply.body["budget"]
    assert (budget["period"], budget["tokenLimit"], budget["usdLimit"]) == ("day", 1, None)
    assert budget["remainingTokens"] == 1 and budget["exhausted"] is False

    job_ids = await _send(api, world, 2)
    await memory.drain()
    assert provider.requests == []  # even the first prompt is larger than one token

    job = (await api.get(f"/v1/jobs/{job_ids[0]}", key=world.key)).body["generationJob"]
    assert (job["status"], job["attempts"], job["heldReason"]) == ("queued", 0, "budget")
    assert job["nextAttemptAtEpoch"] > job["createdAtEpoch"]
    listed = (await api.get("/v1/jobs", key=world.key)).body["jobs"]
    assert {j["heldReason"] for j in listed} == {"budget"}

    usage = (await api.get("/v1/usage", key=world.key)).body["usage"]
    assert usage["budget"]["period"] == "day" and usage["budget"]["spentTokens"] == 0

    # Cleared: the held jobs run at once.
    cleared = await api.call(
        "PUT", path, json_body={"tokenLimit": None, "usdLimit": None}, key=world.admin_key
    )
    assert cleared.status == 200 and cleared.body["budget"] is None, cleared.body
    await memory.drain()
    assert len(provider.requests) == 2
    job = (await api.get(f"/v1/jobs/{job_ids[0]}", key=world.key)).body["generationJob"]
    assert (job["status"], job["heldReason"]) == ("completed", None)
    assert (await api.get("/v1/usage", key=world.key)).body["usage"]["budget"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tokenLimit": -5}, "tokenLimit"),
        ({"tokenLimit": "1000"}, "tokenLimit"),
        ({"usdLimit": -1.5}, "usdLimit"),
        ({"period": "week", "tokenLimit": 10}, "period"),
        ([1, 2], "tokenLimit"),
    ],
)
async def test_bad_budgets_are_400_naming_the_field(
    api: Api, world: World, body: object, field: str
) -> None:
    reply = await api.call(
        "PUT", f"/v1/projects/{world.project}/budget", json_body=body, key=world.admin_key
    )
    assert reply.status == 400, reply.body
    assert field in str(reply.body)
    assert world.admin_key not in str(reply.body)


async def test_only_an_admin_of_the_team_sets_a_budget(api: Api, world: World) -> None:
    path = f"/v1/projects/{world.project}/budget"
    body = {"tokenLimit": 100}
    assert (await api.call("PUT", path, json_body=body, key=world.key)).status == 403
    assert (await api.call("PUT", path, json_body=body)).status == 401
    other = f"/v1/projects/{world.other_project}/budget"
    assert (await api.call("PUT", other, json_body=body, key=world.admin_key)).status == 404


async def test_metrics_show_held_jobs_and_what_remains(
    make_api: AppFactory, world: World, memory: Memory
) -> None:
    from test_metrics import sample, scrape

    api = await make_api()
    reply = await api.call(
        "PUT",
        f"/v1/projects/{world.project}/budget",
        json_body={"period": "month", "tokenLimit": 7},
        key=world.admin_key,
    )
    assert reply.status == 200, reply.body
    await _send(api, world, 3)
    await memory.drain()
    text = await scrape(api)
    assert sample(text, "claude_mem_jobs_held", reason="budget") == 3
    assert sample(text, "claude_mem_jobs_held", reason="rate_limit") == 0
    assert sample(text, "claude_mem_budget_remaining", project=world.project, unit="tokens") == 7
