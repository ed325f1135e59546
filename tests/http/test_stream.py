"""``GET /v1/stream`` (issue #15): Server-Sent Events of what commits, resumed with
``Last-Event-ID`` or ``?after=`` without gap or duplicate (also from another server after a
restart), scoped like the read routes, with heartbeats, slow clients dropped, and streams
ended when the server stops."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from httpkit import Api, AppFactory, World, event_body

from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.facade import Memory
from claude_mem_core.ports.change_feed import START, ChangeKind
from claude_mem_core.services import stream as stream_service
from claude_mem_core.testing.fakes import ScriptedProvider
from claude_mem_http.server.app import create_app
from claude_mem_http.server.stream import StreamHub, StreamSettings

FAST = StreamSettings(heartbeat_s=0.3, poll_s=0.05)


def auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


class Sse:
    """Reads an event stream block by block: a message (id, event, data) or comments."""

    def __init__(self, resp: ClientResponse) -> None:
        self.resp = resp
        self.ended = False

    async def block(self, wait_s: float = 20.0) -> dict[str, Any] | None:
        """The next block; None at the end of the stream."""
        fields: dict[str, Any] = {"comments": []}
        while True:
            line = await asyncio.wait_for(self.resp.content.readline(), wait_s)
            if not line:
                self.ended = True
                return None
            text = line.decode().rstrip("\n")
            if not text:
                if len(fields) > 1 or fields["comments"]:
                    return fields
                continue
            if text.startswith(":"):
                fields["comments"].append(text[1:].strip())
                continue
            name, _, value = text.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value

    async def messages(self, quiet: float = 0.6, limit: float = 10.0) -> list[dict[str, Any]]:
        """Every message until none came for ``quiet`` seconds (comments skipped)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + limit
        last = time.monotonic()
        while time.monotonic() < deadline:
            left = quiet - (time.monotonic() - last)
            if left <= 0:
                return out
            try:
                got = await self.block(wait_s=left)
            except TimeoutError:
                return out
            if got is None:
                return out
            if "id" in got:
                out.append(got)
                last = time.monotonic()
        raise AssertionError("the stream never went quiet")

    async def until(self, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while not done(out):
            got = await self.block()
            assert got is not None, f"the stream ended after {out}"
            if "id" in got:
                out.append(got)
        return out


@asynccontextmanager
async def open_stream(
    client: TestClient[Any, Any], key: str, *, params: Any = None, **headers: str
) -> AsyncIterator[Sse]:
    async with client.get("/v1/stream", headers=auth(key, **headers), params=params) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers.get("X-Request-Id")
        yield Sse(resp)


@pytest.fixture
async def api(make_api: AppFactory) -> Api:
    return await make_api(stream=FAST)


async def _ready(sse: Sse) -> str:
    first = await sse.block()
    assert first is not None and first["comments"][0].startswith("ready ")
    return str(first["comments"][0].removeprefix("ready "))


_SENT = iter(range(10**9))


async def _post(api: Api, world: World, n: int, *, generate: bool = False) -> list[str]:
    """``n`` new events (each payload unique: a repeated one would be a replay)."""
    ids = []
    for _ in range(n):
        reply = await api.post(
            "/v1/events",
            event_body(world.project, payload={"n": next(_SENT)}),
            key=world.key,
            params={"generate": "true" if generate else "false"},
        )
        assert reply.status == 201, reply.body
        ids.append(reply.body["event"]["id"])
    return ids


async def test_live_messages_carry_the_read_routes_json(
    api: Api, world: World, memory: Memory
) -> None:
    async with open_stream(api.client, world.key) as sse:
        await _ready(sse)
        [event_id] = await _post(api, world, 1, generate=True)
        await memory.drain()
        got = await sse.until(lambda ms: any(m["event"] == "observation" for m in ms))
        got += await sse.messages()

    kinds = [m["event"] for m in got]
    assert kinds[0] == "event" and "job" in kinds and "observation" in kinds
    for m in got:
        assert m["data"]["kind"] == m["event"] and m["data"]["projectId"] == world.project
    event = (await api.get(f"/v1/events/{event_id}", key=world.key)).body["event"]
    assert got[0]["data"]["item"] == event
    observation = next(m for m in got if m["event"] == "observation")["data"]["item"]
    stored = await api.get(f"/v1/memories/{observation['id']}", key=world.key)
    assert observation == stored.body["memory"]
    # The job's messages read the row as it was then; the last one is its final state.
    last_job = [m for m in got if m["event"] == "job"][-1]["data"]["item"]
    job = await api.get(f"/v1/jobs/{last_job['id']}", key=world.key)
    assert last_job == job.body["generationJob"] and last_job["status"] == "completed"
    ids = [m["id"] for m in got]
    assert len(set(ids)) == len(ids)


async def test_resume_with_last_event_id_or_after_has_no_gap_and_no_duplicate(
    api: Api, world: World
) -> None:
    async with open_stream(api.client, world.key) as sse:
        cursor = await _ready(sse)
        first = await _post(api, world, 3)
        got = await sse.until(lambda ms: len(ms) == 3)
        assert [m["data"]["item"]["id"] for m in got] == first
        # Cut after the second message: the third is what a client would have missed.
        last_seen = got[1]["id"]

    missed = await _post(api, world, 2)  # written while nobody listens
    for how in ("header", "query"):
        if how == "header":
            opened = open_stream(api.client, world.key, **{"Last-Event-ID": last_seen})
        else:
            opened = open_stream(api.client, world.key, params={"after": last_seen})
        async with opened as sse:
            replayed = await sse.messages()
        assert [m["data"]["item"]["id"] for m in replayed] == [first[2], *missed], how

    # The ready cursor replays everything since the first connection.
    async with open_stream(api.client, world.key, **{"Last-Event-ID": cursor}) as sse:
        everything = await sse.messages()
    assert [m["data"]["item"]["id"] for m in everything] == [*first, *missed]
    # The header wins over the query parameter.
    async with open_stream(
        api.client, world.key, params={"after": cursor}, **{"Last-Event-ID": got[2]["id"]}
    ) as sse:
        assert [m["data"]["item"]["id"] for m in await sse.messages()] == missed


async def test_resume_after_a_restart_and_writes_of_another_process(
    api: Api,
    world: World,
    db_url: str,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> None:
    async with open_stream(api.client, world.key) as sse:
        await _ready(sse)
        await _post(api, world, 1)
        [seen] = await sse.until(lambda ms: len(ms) == 1)
    missed = await _post(api, world, 2)
    await api.client.close()  # the first server is gone

    # A new server process: its own storage engine, its own hub, nothing in memory.
    restarted = Memory(
        storage=storage_from_url(db_url), queue=InProcessQueue(), provider=ScriptedProvider()
    )
    try:
        client = await aiohttp_client(
            create_app(restarted, background_generation=False, stream=FAST)
        )
        async with open_stream(client, world.key, **{"Last-Event-ID": seen["id"]}) as sse:
            got = await sse.until(lambda ms: len(ms) == 2)
            assert [m["data"]["item"]["id"] for m in got] == missed
            # Another process writes (this server's engine sees no commit of it): the
            # poller finds it.
            other_process = Memory(
                storage=storage_from_url(db_url),
                queue=InProcessQueue(),
                provider=ScriptedProvider(),
            )
            try:
                async with other_process.storage.unit_of_work() as uow:
                    before = await uow.events.get(world.team, missed[0])
                assert before is not None
                from claude_mem_core import Scope

                added = await other_process.add_memory(
                    Scope(team_id=world.team, project_id=world.project), "from a worker"
                )
            finally:
                await other_process.close()
            [live] = await sse.until(lambda ms: len(ms) == 1)
            assert live["event"] == "observation" and live["data"]["item"]["id"] == added.id
            assert live["data"]["item"]["content"] == "from a worker"
        await client.close()  # the server first: its poller must not outlive the storage
    finally:
        await restarted.close()


async def test_scoped_like_the_read_routes(api: Api, world: World, memory: Memory) -> None:
    client = api.client
    async with (
        open_stream(client, world.other_key) as foreign,
        open_stream(client, world.team_key, params={"projectId": world.sibling}) as sibling,
        open_stream(client, world.hook_key) as hook,
        open_stream(client, world.team_key) as team,
    ):
        for sse in (foreign, sibling, hook, team):
            await _ready(sse)
        [event_id] = await _post(api, world, 1, generate=True)
        await memory.drain()
        team_got = await team.until(lambda ms: any(m["event"] == "observation" for m in ms))
        assert team_got[0]["data"]["item"]["id"] == event_id
        hook_got = await hook.until(lambda ms: any(m["event"] == "observation" for m in ms))
        # A hook key reads observations and jobs, not events.
        assert {m["event"] for m in hook_got} <= {"observation", "summary", "job"}
        assert await foreign.messages(quiet=0.5) == []
        assert await sibling.messages(quiet=0.5) == []

    refusals = [
        ({"projectId": world.other_project}, world.team_key, 404),  # another team's project
        ({"projectId": world.sibling}, world.key, 404),  # a project key's sibling
        ({"kinds": "event"}, world.hook_key, 403),  # events need memories:read
        ({"kinds": "event,bogus"}, world.key, 400),
        ({"after": "not-a-cursor"}, world.key, 400),
    ]
    for params, key, status in refusals:
        reply = await api.get("/v1/stream", key=key, params=params)
        assert reply.status == status, (params, reply.body)
    bad = await api.get("/v1/stream", key=world.key, params={"after": "12"})
    assert bad.body["issues"][0]["path"] == ["after"]
    bad = await api.get("/v1/stream", key=world.key, headers={"Last-Event-ID": "x-1"})
    assert bad.status == 400 and bad.body["issues"][0]["path"] == ["Last-Event-ID"]
    bad = await api.get("/v1/stream", key=world.key, params={"kinds": "observations"})
    assert bad.body["issues"][0]["path"] == ["kinds"]
    assert (await api.get("/v1/stream")).status == 401


async def test_kinds_filter(api: Api, world: World, memory: Memory) -> None:
    async with open_stream(api.client, world.key, params={"kinds": "observation"}) as sse:
        await _ready(sse)
        await _post(api, world, 1, generate=True)
        await memory.drain()
        got = await sse.until(lambda ms: len(ms) == 1)
        got += await sse.messages(quiet=0.4)
    assert [m["event"] for m in got] == ["observation"]


async def test_heartbeats_and_a_revoked_key_ends_its_stream(
    api: Api, world: World, memory: Memory
) -> None:
    async with open_stream(api.client, world.key) as sse:
        await _ready(sse)
        ping = await sse.block(wait_s=3)
        assert ping is not None and ping["comments"] == ["ping"]
        await memory.revoke_api_key(world.key_id)
        comments: list[str] = []
        while (block := await sse.block(wait_s=3)) is not None:
            comments += block["comments"]
        assert comments[-1] == "key refused"


async def test_a_slow_client_is_dropped_and_resumes_from_the_database(
    make_api: AppFactory, world: World
) -> None:
    api = await make_api(stream=StreamSettings(heartbeat_s=5, poll_s=0.05, queue_size=3))
    async with open_stream(api.client, world.key) as sse:
        cursor = await _ready(sse)
        await asyncio.sleep(0.3)  # caught up: what comes now goes through its queue
        batch = [event_body(world.project, payload={"batch": i}) for i in range(10)]
        reply = await api.post(
            "/v1/events/batch", batch, key=world.key, params={"generate": "false"}
        )
        assert reply.status in (200, 201), reply.body
        # Ten messages at once for a queue of three: the server ends this stream.
        ended = await sse.messages(quiet=20)
        assert sse.ended  # the server ended it
    assert len(ended) < 10
    last = ended[-1]["id"] if ended else cursor
    async with open_stream(api.client, world.key, **{"Last-Event-ID": last}) as sse:
        rest = await sse.messages()
    ids = [m["data"]["item"]["id"] for m in [*ended, *rest]]
    assert len(ids) == 10 == len(set(ids))


async def test_the_poller_never_waits_for_a_slow_client(world: World, memory: Memory) -> None:
    hub = StreamHub(StreamSettings(poll_s=0.05, queue_size=100))
    where = stream_service.StreamFilter(
        team_id=world.team, project_id=world.project, kinds=frozenset({ChangeKind.EVENT})
    )
    slow = await hub.register(where, memory.deps)
    slow.queue_size = 3
    fast = await hub.register(where, memory.deps)
    try:
        from claude_mem_core import Scope

        scope = Scope(team_id=world.team, project_id=world.project)
        for n in range(10):
            await memory.ingest(scope, event_type="tool_use", payload={"n": n}, generate=False)
        for _ in range(100):
            if len(fast.messages) == 10:
                break
            await asyncio.sleep(0.05)
        assert len(fast.messages) == 10 and not fast.dropped
        assert slow.dropped and not slow.messages
    finally:
        await hub.shutdown()


async def test_streams_end_when_the_server_stops(api: Api, world: World) -> None:
    async with open_stream(api.client, world.key) as sse:
        await _ready(sse)
        started = time.monotonic()
        closing = asyncio.create_task(api.client.server.close())
        assert await sse.block(wait_s=5) is None
        await asyncio.wait_for(closing, 5)
        assert time.monotonic() - started < 3


async def test_info_reports_the_stream(api: Api, world: World) -> None:
    info = (await api.get("/v1/info")).body["boundaries"]["eventBroadcaster"]
    assert info["status"] == "active" and info["details"]["path"] == "/v1/stream"
    async with open_stream(api.client, world.key) as sse:
        await _ready(sse)
        info = (await api.get("/v1/info")).body["boundaries"]["eventBroadcaster"]
        assert info["details"]["clients"] == 1


async def test_a_cursor_older_than_the_pruned_feed_is_gone(
    api: Api, world: World, memory: Memory
) -> None:
    from datetime import UTC, datetime, timedelta

    await _post(api, world, 1)
    feed = memory.storage.change_feed()
    # Everything written so far is pruned (as if it were older than the retention). On
    # PostgreSQL only entries below every running transaction of the cluster can go: other
    # tests' transactions may hold them back a moment.
    for _ in range(200):
        while await feed.prune(before=datetime.now(UTC) + timedelta(days=1)):
            pass
        if await feed.horizon() != START:
            break
        await asyncio.sleep(0.1)
    for where in ({"params": {"after": "0-0"}}, {"headers": {"Last-Event-ID": "0-0"}}):
        reply = await api.get("/v1/stream", key=world.key, **where)  # type: ignore[arg-type]
        assert reply.status == 410, reply.body
        assert reply.body["error"] == "Gone"
        assert reply.body["field"] == ("after" if "params" in where else "Last-Event-ID")
        assert "reconnect without a cursor" in reply.body["message"]
    # From the horizon itself nothing pruned can be missed: the stream resumes.
    horizon = (await feed.horizon()).encode()
    async with open_stream(api.client, world.key, **{"Last-Event-ID": horizon}) as sse:
        await _post(api, world, 1)
        got = await sse.until(lambda ms: len(ms) >= 1)
    assert got[0]["event"] == "event"
