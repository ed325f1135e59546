"""ClaudeMemClient against the real HTTP app on a loopback port (and a small failing stub
for the retry rules)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from clientkit import ServerFactory, Tenant, base_url

from claude_mem_core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from claude_mem_core.facade import Memory
from claude_mem_http.client.http_client import (
    ClaudeMemClient,
    InvalidResponse,
    RequestRejected,
    RouteUnsupported,
    ServerUnavailable,
    event_body,
)
from claude_mem_http.wire.bodies import CompatSummarySkipped, EventResult, RecentMemories
from claude_mem_http.wire.converter import to_wire
from claude_mem_http.wire.models import Event


async def test_every_route_round_trips(server: TestServer, tenant: Tenant) -> None:
    async with ClaudeMemClient(base_url(server), tenant.key) as client:
        assert (await client.healthz()).status == "ok"
        assert (await client.info()).runtime == "server-beta"
        assert (await client.api_health()).status == "ok"

        started = await client.start_session(
            tenant.project, external_session_id="cc-1", platform_source="claude"
        )
        session = started.session
        again = await client.start_session(tenant.project, external_session_id="cc-1")
        assert again.session.id == session.id
        assert (await client.get_session(session.id)).session.external_session_id == "cc-1"

        recorded = await client.record_event(
            tenant.project,
            "tool_use",
            source_type="hook",
            server_session_id=session.id,
            source_event_id="toolu_1",
            payload={"tool_name": "Read"},
            metadata={"via": "test"},
        )
        event = recorded.event
        assert event.source_event_id == "toolu_1"
        assert event.metadata == {"via": "test"}
        job_id = recorded.generation_job.id  # type: ignore[union-attr]
        replay = await client.post_event(
            event_body(
                tenant.project,
                "tool_use",
                source_type="hook",
                server_session_id=session.id,
                source_event_id="toolu_1",
                payload={"tool_name": "Read"},
            )
        )
        assert replay.event.id == event.id
        no_job = await client.record_event(tenant.project, "note", generate=False)
        assert no_job.generation_job is None

        batch = await client.record_events(
            [
                event_body(tenant.project, "tool_use", source_event_id="b1", payload={"n": 1}),
                event_body(tenant.project, "tool_use", source_event_id="b2", payload={"n": 2}),
            ]
        )
        assert [e.event.source_event_id for e in batch.events] == ["b1", "b2"]
        assert (await client.get_event(event.id)).event.id == event.id
        assert (await client.event_observations(event.id)).event_id == event.id

        memory = (
            await client.add_memory(tenant.project, "The deploy uses blue-green.", title="Deploys")
        ).memory
        assert memory.kind == "manual"
        found = await client.search(tenant.project, "blue-green", limit=5)
        assert [o.id for o in found.observations] == [memory.id]
        assert "**blue-green**" in found.observations[0].excerpt
        context = await client.context(tenant.project, "deploy")
        assert "blue-green" in context.context
        budgeted = await client.context(tenant.project, "deploy", max_tokens=30)
        assert budgeted.context.startswith("## Deploys\n") and "**deploy**" in budgeted.context

        job = (await client.get_job(job_id)).generation_job
        assert job.id == job_id and job.status == "queued"
        page = await client.list_jobs(status="queued", limit=10)
        assert page.total >= 1
        assert (await client.team_jobs(tenant.team, limit=1)).limit == 1
        assert (await client.project_jobs(tenant.project)).total == page.total
        cancelled = await client.cancel_job(job_id)
        assert cancelled.generation_job.status == "cancelled"
        retried = await client.retry_job(job_id)
        assert retried.generation_job.status == "queued"
        assert (await client.list_projects()).projects[0].id == tenant.project

        ended = await client.end_session(session.id)
        re_ended = await client.end_session(session.id)
        assert ended.generation_job.id == re_ended.generation_job.id  # type: ignore[union-attr]

        compat = await client.compat_observation(
            "cc-2", "Bash", tool_input={"command": "ls"}, tool_use_id="toolu_c"
        )
        assert compat.status == "queued" and compat.observation_count == 1
        summarized = await client.compat_summarize("cc-2")
        assert summarized.status == "queued"
        skipped = await client.compat_summarize("cc-2", agent_id="sub-1")
        assert skipped == CompatSummarySkipped(status="skipped", reason="subagent_context")


async def test_hook_scoped_key_can_do_what_hooks_do(server: TestServer, tenant: Tenant) -> None:
    async with ClaudeMemClient(base_url(server), tenant.hook_key) as client:
        session = (await client.start_session(tenant.project, external_session_id="h")).session
        await client.record_event(
            tenant.project, "tool_use", source_type="hook", server_session_id=session.id
        )
        await client.context(tenant.project, "anything")
        await client.end_session(session.id)


async def test_errors_map_to_the_core_hierarchy(
    server: TestServer, tenant: Tenant, memory: Memory
) -> None:
    url = base_url(server)
    async with ClaudeMemClient(url, tenant.key) as client:
        with pytest.raises(NotFound):
            await client.get_job("no-such-job")
        with pytest.raises(InvalidInput) as invalid:
            await client.search(tenant.project, "x", limit=1000)
        assert [i.path for i in invalid.value.issues] == ["limit"]
        with pytest.raises(NotFound):  # no existence oracle (decision 3)
            await client.search("someone-elses-project", "x")
        job = (await client.record_event(tenant.project, "e")).generation_job
        assert job is not None
        assert await memory.drain() >= 1
        with pytest.raises(Conflict):
            await client.retry_job(job.id)  # completed: retrying would duplicate
    async with ClaudeMemClient(url, tenant.read_key) as reader:
        with pytest.raises(Forbidden):
            await reader.add_memory(tenant.project, "nope")
    async with ClaudeMemClient(url, "cmem_wrong") as wrong:
        with pytest.raises(Forbidden):
            await wrong.search(tenant.project, "x")
    async with ClaudeMemClient(url, None) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.search(tenant.project, "x")


async def test_recent_memories_and_get_memory(
    server: TestServer, tenant: Tenant, memory: Memory
) -> None:
    async with ClaudeMemClient(base_url(server), tenant.key) as client:
        assert await client.recent_memories(tenant.project) == RecentMemories(memories=[])
        ids = []
        for n in range(3):
            ids.append((await client.add_memory(tenant.project, f"fact {n}")).memory.id)
            await asyncio.sleep(0.002)
        recent = await client.recent_memories(tenant.project, limit=2)
        assert [m.id for m in recent.memories] == [ids[2], ids[1]]
        got = await client.get_memory(ids[0])
        assert got.memory.content == "fact 0"
        with pytest.raises(NotFound) as missing:
            await client.get_memory("no-such-memory")
        assert not isinstance(missing.value, RouteUnsupported)
        assert missing.value.message == "Memory not found"
        with pytest.raises(NotFound) as foreign:
            await client.recent_memories("someone-elses-project")
        assert not isinstance(foreign.value, RouteUnsupported)
        with pytest.raises(InvalidInput) as invalid:
            await client.recent_memories(tenant.project, limit=101)
        assert [i.path for i in invalid.value.issues] == ["limit"]
        with pytest.raises(InvalidInput):
            await client.recent_memories("  ")
    async with ClaudeMemClient(base_url(server), tenant.hook_key) as hook:
        assert len((await hook.recent_memories(tenant.project)).memories) == 3


async def test_recent_memories_on_a_server_without_the_route(
    start_server: ServerFactory, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from claude_mem_http.server import routes

    older = [r for r in routes.ROUTES if not r[1].startswith("/v1/memories/")]
    monkeypatch.setattr(routes, "ROUTES", older)
    srv = await start_server()
    async with ClaudeMemClient(base_url(srv), tenant.key) as client:
        with pytest.raises(RouteUnsupported, match="/v1/memories/recent"):
            await client.recent_memories(tenant.project)
        with pytest.raises(NotFound):
            await client.get_memory("m1")


STORED_EVENT = to_wire(
    EventResult(
        event=Event("e1", "p", "t", None, "hook", "s1", "tool_use", None, {}, 1, 1, 1),
        replayed=False,
    )
)


@pytest.fixture
async def flaky(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> tuple[TestServer, list[str]]:
    """Answers 503 twice per path, then 201/200; records every request path."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        if sum(1 for s in seen if s == seen[-1]) <= 2:
            return web.json_response({"error": "Unavailable", "message": "try later"}, status=503)
        if request.path == "/v1/events":
            return web.json_response(STORED_EVENT, status=201)
        return web.json_response({"observations": []})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return await aiohttp_server(app), seen


async def test_retries_only_idempotent_calls(flaky: tuple[TestServer, list[str]]) -> None:
    srv, seen = flaky
    async with ClaudeMemClient(base_url(srv), "k", retries=2, backoff=0.001) as client:
        assert (await client.search("p", "q")).observations == []
        assert seen.count("POST /v1/search") == 3
        with pytest.raises(ServerUnavailable) as failed:
            await client.record_event("p", "tool_use")  # no sourceEventId: one attempt
        assert failed.value.status == 503 and failed.value.kind == "http_error"
        assert seen.count("POST /v1/events") == 1
        await client.record_event("p", "tool_use", source_event_id="s1")
        assert seen.count("POST /v1/events") == 3  # 1 above + the 2nd 503 + success
        with pytest.raises(ServerUnavailable):
            await client.add_memory("p", "never retried")
        assert seen.count("POST /v1/memories") == 1


async def test_an_answer_that_is_not_its_wire_class_is_invalid_naming_the_member(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    async def wrong(request: web.Request) -> web.Response:
        return web.json_response({"observations": [{**STORED_EVENT["event"], "id": 7}]})

    app = web.Application()
    app.router.add_post("/v1/search", wrong)
    srv = await aiohttp_server(app)
    async with ClaudeMemClient(base_url(srv), "k", retries=0) as c:
        with pytest.raises(InvalidResponse) as invalid:
            await c.search("p", "q")
    assert "$.observations[0].id: expected str, got int" in invalid.value.message
    assert "$.observations[0].excerpt: required member missing" in invalid.value.message


async def test_connection_refused_and_timeouts_are_unavailable(
    unused_tcp_port: int,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    port = unused_tcp_port
    async with ClaudeMemClient(f"http://127.0.0.1:{port}", "k", retries=1, backoff=0.001) as c:
        with pytest.raises(ServerUnavailable) as refused:
            await c.healthz()
        assert refused.value.kind == "transport"

    async def slow(request: web.Request) -> web.Response:
        import asyncio

        await asyncio.sleep(5)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/healthz", slow)
    srv = await aiohttp_server(app)
    async with ClaudeMemClient(base_url(srv), "k", timeout=0.2, retries=0) as c:
        with pytest.raises(ServerUnavailable) as timed_out:
            await c.healthz()
        assert timed_out.value.kind == "timeout"


async def test_other_4xx_is_rejected_not_retried(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    calls: list[Any] = []

    async def too_big(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.json_response({"error": "PayloadTooLarge", "message": "too big"}, status=413)

    app = web.Application()
    app.router.add_post("/v1/events", too_big)
    srv = await aiohttp_server(app)
    async with ClaudeMemClient(base_url(srv), "k", retries=3) as c:
        with pytest.raises(RequestRejected) as rejected:
            await c.record_event("p", "e", source_event_id="x")
    assert rejected.value.status == 413 and len(calls) == 1
