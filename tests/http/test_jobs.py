"""Job reads, listings, retry and cancel (api.md §3.5-3.9, decision 8, weak spot 18)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
from httpkit import Api, World, audit_rows, event_body

from claude_mem_core.domain.models import JobStatus
from claude_mem_core.facade import Memory


async def _jobs(api: Api, world: World) -> list[str]:
    ids = []
    for project, key in ((world.project, world.key), (world.project, world.key)):
        reply = await api.post("/v1/events", event_body(project, eventType=f"t{len(ids)}"), key=key)
        ids.append(reply.body["generationJob"]["id"])
    reply = await api.post("/v1/events", event_body(world.sibling), key=world.team_key)
    ids.append(reply.body["generationJob"]["id"])
    return ids


async def _set_status(memory: Memory, team: str, job_id: str, status: JobStatus) -> None:
    async with memory.storage.unit_of_work() as uow:
        job = await uow.jobs.get(team, job_id)
        assert job is not None
        now = datetime.now(UTC)
        new = attrs.evolve(
            job,
            status=status,
            attempts=job.max_attempts if status is JobStatus.FAILED else job.attempts,
            failed_at=now if status is JobStatus.FAILED else None,
            completed_at=now if status is JobStatus.COMPLETED else None,
            updated_at=now,
        )
        assert await uow.jobs.compare_and_set(job, new)


async def test_team_and_project_listings(api: Api, world: World) -> None:
    await _jobs(api, world)
    team = await api.get(f"/v1/teams/{world.team}/jobs", key=world.team_key)
    assert team.status == 200 and team.body["total"] == 3
    assert {j["teamId"] for j in team.body["jobs"]} == {world.team}
    assert "payload" not in team.body["jobs"][0]
    scoped = await api.get(f"/v1/teams/{world.team}/jobs", key=world.key)
    assert scoped.body["total"] == 2
    paged = await api.get(
        f"/v1/teams/{world.team}/jobs",
        key=world.team_key,
        params={"status": "queued", "limit": "2", "offset": "0"},
    )
    assert paged.body["total"] == 3 and len(paged.body["jobs"]) == 2
    assert paged.body["limit"] == 2 and paged.body["offset"] == 0
    other = await api.get(f"/v1/teams/{world.other_team}/jobs", key=world.team_key)
    assert other.status == 404 and other.body["message"] == "Team not found"
    proj = await api.get(f"/v1/projects/{world.project}/jobs", key=world.key)
    assert proj.status == 200 and proj.body["total"] == 2
    assert (await api.get(f"/v1/projects/{world.sibling}/jobs", key=world.key)).status == 404
    assert (await api.get(f"/v1/projects/{world.sibling}/jobs", key=world.team_key)).status == 200
    foreign = await api.get(f"/v1/projects/{world.other_project}/jobs", key=world.team_key)
    assert foreign.status == 404 and foreign.body["message"] == "Project not found"
    assert (await api.get(f"/v1/teams/{world.team}/jobs")).status == 401


async def test_invalid_query_values_are_400(api: Api, world: World) -> None:
    for path in ("/v1/jobs", f"/v1/teams/{world.team}/jobs", f"/v1/projects/{world.project}/jobs"):
        for name, value in (
            ("status", "bogus"),
            ("limit", "abc"),
            ("limit", "999"),
            ("limit", "0"),
            ("offset", "-5"),
        ):
            reply = await api.get(path, key=world.key, params={name: value})
            assert reply.status == 400, (path, name, value)
            assert reply.body["issues"][0]["path"] == [name]
    for name, value in (("source_type", "x"), ("since", "yesterday"), ("include", "secrets")):
        reply = await api.get("/v1/jobs", key=world.key, params={name: value})
        assert reply.status == 400 and reply.body["issues"][0]["path"] == [name]


async def test_jobs_list_filters_payload_and_request_id(
    api: Api, world: World, memory: Memory
) -> None:
    await _jobs(api, world)
    reply = await api.get("/v1/jobs", key=world.key, headers={"X-Request-Id": "op-correlation-007"})
    assert reply.status == 200 and reply.body["requestId"] == "op-correlation-007"
    assert reply.body["total"] == 2 and all("payload" not in j for j in reply.body["jobs"])
    rows = await audit_rows(memory, world.team, "observation.read")
    assert any(r.details.get("requestId") == "op-correlation-007" for r in rows)
    assert (await api.get("/v1/jobs", key=world.key, params={"include": "payload"})).status == 403
    admin = await api.get("/v1/jobs", key=world.admin_key, params={"include": "payload"})
    assert admin.status == 200 and admin.body["jobs"][0]["payload"]["kind"] == "event"
    future = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    later = await api.get(
        "/v1/jobs", key=world.key, params={"source_type": "agent_event", "since": future}
    )
    assert later.body["total"] == 0
    epoch = await api.get("/v1/jobs", key=world.key, params={"since": "0"})
    assert epoch.body["total"] == 2


async def test_get_retry_cancel(api: Api, world: World, memory: Memory) -> None:
    job_ids = await _jobs(api, world)
    first, second, sibling = job_ids
    got = await api.get(f"/v1/jobs/{first}", key=world.key)
    assert got.status == 200 and got.body["generationJob"]["status"] == "queued"
    for key, job in ((world.other_key, first), (world.key, sibling)):
        reply = await api.get(f"/v1/jobs/{job}", key=key)
        assert reply.status == 404 and reply.body["message"] == "Generation job not found"
        assert (await api.post(f"/v1/jobs/{job}/retry", key=key)).status == 404
        assert (await api.post(f"/v1/jobs/{job}/cancel", key=key)).status == 404

    queued = await api.post(f"/v1/jobs/{first}/retry", key=world.key)
    assert queued.status == 200 and queued.body["alreadyQueued"] is True

    await _set_status(memory, world.team, first, JobStatus.FAILED)
    retried = await api.post(
        f"/v1/jobs/{first}/retry", key=world.key, headers={"X-Request-Id": "retry-1"}
    )
    assert retried.status == 200 and retried.body["alreadyQueued"] is False
    assert retried.body["retriedCount"] == 1 and retried.body["requestId"] == "retry-1"
    job = retried.body["generationJob"]
    assert job["status"] == "queued" and job["failedAtEpoch"] is None
    assert job["attempts"] == job["maxAttempts"] - 1
    assert (await api.post(f"/v1/jobs/{first}/retry", key=world.key)).body["alreadyQueued"]
    assert await audit_rows(memory, world.team, "generation_job.retried_by_operator")

    cancelled = await api.post(f"/v1/jobs/{second}/cancel", key=world.key)
    assert cancelled.status == 200 and cancelled.body["alreadyCancelled"] is False
    assert cancelled.body["generationJob"]["cancelledAtEpoch"] is not None
    again = await api.post(f"/v1/jobs/{second}/cancel", key=world.key)
    assert again.body["alreadyCancelled"] is True
    assert await audit_rows(memory, world.team, "generation_job.cancelled_by_operator")

    await _set_status(memory, world.team, first, JobStatus.COMPLETED)
    conflict = await api.post(f"/v1/jobs/{first}/retry", key=world.key)
    assert conflict.status == 409 and conflict.body["error"] == "Conflict"
    conflict = await api.post(f"/v1/jobs/{first}/cancel", key=world.key)
    assert conflict.status == 409
    assert conflict.body["message"] == "Generation job already completed; cannot cancel"
    assert (await api.post(f"/v1/jobs/{first}/retry", key=world.read_key)).status == 403
