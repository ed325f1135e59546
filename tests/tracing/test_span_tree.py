"""One event, one trace: ``POST /v1/events`` through the real app, then its job processed,
gives the linked spans HTTP → publish → job → provider call → observation insert, with the
database statements inside them, and no span holds the API key or the payload.

The in-process queue (the embedded server's own generation loop) runs on SQLite and
PostgreSQL; the Redis queue runs with a real taskiq receiver and the worker runtime in this
process, producer and worker sharing a PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from opentelemetry.trace import SpanKind, StatusCode
from spankit import (
    PAYLOAD_MARKER,
    Recorder,
    descends_from,
    every_recorded_text,
    parent_id,
    reply,
    span_id,
    trace_id,
)

from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.taskiq_queue import TaskiqQueue
from claude_mem_core.facade import Memory
from claude_mem_core.services.debounce import SessionBatcher
from claude_mem_core.testing.fakes import ScriptedProvider
from claude_mem_http.server.app import create_app

Client = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    from claude_mem_core.testing import databases

    if request.param == "sqlite":
        yield await databases.migrated_sqlite_url(tmp_path)
        return
    url = await databases.create_postgres_database(request.getfixturevalue("postgres_base_url"))
    try:
        yield url
    finally:
        await databases.drop_postgres_database(url)


async def _project_and_key(memory: Memory) -> tuple[str, str]:
    team = await memory.create_team("acme")
    project = await memory.create_project(team.id, "webapp")
    issued = await memory.create_api_key(
        team_id=team.id, project_id=project.id, scopes=["memories:read", "memories:write"]
    )
    return project.id, issued.raw_key


async def _post_event(
    client: TestClient[Any, Any], project_id: str, key: str, *, n: int = 0
) -> str:
    body = {
        "projectId": project_id,
        "sourceType": "hook",
        "eventType": "tool_use",
        "occurredAtEpoch": 1_760_000_000_000,
        "payload": {
            "tool_name": "Edit",
            "tool_input": {"file": "auth/middleware.py", "note": PAYLOAD_MARKER, "n": n},
        },
    }
    response = await client.post(
        "/v1/events", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status == 201, await response.text()
    return response.headers["X-Request-Id"]


async def _until_processed(recorder: Recorder, *, within: float = 20.0) -> None:
    """Until a job's span has ended (it ends after its observation insert)."""
    deadline = time.monotonic() + within
    while not any(s.kind is SpanKind.CONSUMER for s in recorder.spans):
        assert time.monotonic() < deadline, [s.name for s in recorder.spans]
        await asyncio.sleep(0.05)


def _check_the_tree(recorder: Recorder, *, request_id: str, key: str, db: str) -> None:
    spans = recorder.spans
    http = recorder.one(SpanKind.SERVER, "POST /v1/events")
    publish = recorder.one(SpanKind.PRODUCER, "publish ")
    job = recorder.one(SpanKind.CONSUMER, "process ")
    chat = recorder.one(SpanKind.CLIENT, "chat ")
    store = recorder.one(SpanKind.INTERNAL, "claude_mem.observations.store")

    # One trace, linked parent to child.
    assert {trace_id(s) for s in (http, publish, job, chat, store)} == {trace_id(http)}
    assert http.parent is None
    assert parent_id(publish) == span_id(http)
    assert parent_id(job) == span_id(publish)
    assert parent_id(chat) == span_id(job)
    assert parent_id(store) == span_id(job)

    # What the spans say: routes, ids, counts and names.
    assert http.attributes is not None and publish.attributes is not None
    assert http.attributes["http.route"] == "/v1/events"
    assert http.attributes["http.response.status_code"] == 201
    assert http.attributes["claude_mem.request_id"] == request_id
    job_id = publish.attributes["claude_mem.job.id"]
    assert job.attributes is not None and job.attributes["claude_mem.job.id"] == job_id
    assert publish.attributes["claude_mem.request_id"] == request_id
    assert chat.attributes is not None
    assert chat.attributes["gen_ai.provider.name"] == "scripted"
    assert chat.attributes["gen_ai.request.model"] == "scripted-1"
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert store.attributes is not None
    assert store.attributes["claude_mem.observations"] == 1
    assert store.attributes["claude_mem.outcome"] == "completed"
    assert all(s.status.status_code is not StatusCode.ERROR for s in spans)

    # Database statements: the ingest's under the request, the observation's under the
    # insert span; none outside a trace.
    statements = [s for s in spans if s.kind is SpanKind.CLIENT and s is not chat]
    assert statements and all(
        s.attributes and s.attributes["db.system.name"] == db for s in statements
    )
    assert all(trace_id(s) == trace_id(http) for s in statements)
    assert any(
        descends_from(s, http, spans)
        and not descends_from(s, job, spans)
        and "agent_events" in str(s.attributes["db.query.text"])
        for s in statements
    ), [s.name for s in statements]
    # The observation insert: one statement on PostgreSQL (a CTE that completes the job
    # and inserts), an INSERT per table on SQLite.
    writes = [s for s in statements if descends_from(s, store, spans)]
    assert writes, [s.name for s in statements]
    assert any(s.name in ("WITH", "INSERT observations") for s in writes), [s.name for s in writes]

    # Nothing recorded holds the key, the payload or the prompt.
    texts = every_recorded_text(spans)
    assert not [t for t in texts if key in t or PAYLOAD_MARKER in t]
    assert not [t for t in texts if "auth/middleware.py" in t]


async def test_in_process_one_event_is_one_linked_trace(
    aiohttp_client: Client, db_url: str, recorder: Recorder
) -> None:
    memory = Memory(
        storage=storage_from_url(db_url),
        queue=InProcessQueue(),
        provider=ScriptedProvider(default=reply),
        tracer=recorder.tracer,
    )
    try:
        project_id, key = await _project_and_key(memory)
        recorder.exporter.clear()
        # The embedded server's generation loop consumes the in-process queue.
        client = await aiohttp_client(create_app(memory, background_generation=True))
        request_id = await _post_event(client, project_id, key)
        await _until_processed(recorder)
        await client.close()
        _check_the_tree(
            recorder,
            request_id=request_id,
            key=key,
            db="sqlite" if db_url.startswith("sqlite") else "postgresql",
        )
    finally:
        await memory.close()


async def test_a_callers_traceparent_is_the_requests_parent(
    aiohttp_client: Client, tmp_path: Path, recorder: Recorder
) -> None:
    memory = Memory(
        storage=storage_from_url("memory://"),
        queue=InProcessQueue(),
        provider=ScriptedProvider(default=reply),
        tracer=recorder.tracer,
    )
    try:
        client = await aiohttp_client(create_app(memory, background_generation=False))
        caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        response = await client.get(
            "/v1/events/evt_missing",
            headers={"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"},
        )
        assert response.status == 401
        http = recorder.one(SpanKind.SERVER, "GET /v1/events/{id}")
        assert f"{trace_id(http):032x}" == caller_trace
        assert parent_id(http) == 0x00F067AA0BA902B7
        assert http.attributes is not None
        assert http.attributes["http.route"] == "/v1/events/{id}"  # the template, no id
        assert http.attributes["http.response.status_code"] == 401

        # An unknown path has no route: the span is named after the method alone.
        assert (await client.get("/v1/no/such/path")).status == 404
        unknown = recorder.one(SpanKind.SERVER, "GET", [s for s in recorder.spans if s is not http])
        assert unknown.name == "GET" and unknown.attributes is not None
        assert "http.route" not in unknown.attributes
        assert unknown.attributes["http.response.status_code"] == 404
        await client.close()
    finally:
        await memory.close()


async def test_concurrent_requests_each_keep_their_own_trace(
    aiohttp_client: Client, tmp_path: Path, recorder: Recorder
) -> None:
    """Group commit writes and publishes concurrent events from one task: each job's
    publish is still the child of its own request."""
    from claude_mem_core.testing import databases

    memory = Memory(
        storage=storage_from_url(await databases.migrated_sqlite_url(tmp_path)),
        queue=InProcessQueue(),
        provider=ScriptedProvider(default=reply),
        tracer=recorder.tracer,
    )
    try:
        project_id, key = await _project_and_key(memory)
        recorder.exporter.clear()
        client = await aiohttp_client(create_app(memory, background_generation=False))
        request_ids = await asyncio.gather(
            *(_post_event(client, project_id, key, n=n) for n in range(8))
        )
        await client.close()
        spans = recorder.spans
        servers = {
            s.attributes["claude_mem.request_id"]: s
            for s in spans
            if s.kind is SpanKind.SERVER and s.attributes is not None
        }
        publishes = [s for s in spans if s.kind is SpanKind.PRODUCER]
        assert sorted(servers) == sorted(request_ids) and len(publishes) == 8
        for publish in publishes:
            assert publish.attributes is not None
            own = servers[publish.attributes["claude_mem.request_id"]]
            assert parent_id(publish) == span_id(own)
            assert trace_id(publish) == trace_id(own)
    finally:
        await memory.close()


@pytest.mark.postgres
@pytest.mark.redis
async def test_redis_queue_carries_the_trace_to_the_worker(
    aiohttp_client: Client,
    tmp_path: Path,
    recorder: Recorder,
    postgres_base_url: str,
    redis_url: str,
) -> None:
    from taskiq.receiver import Receiver

    from claude_mem_core.config import Settings
    from claude_mem_core.testing import databases
    from claude_mem_worker.app import build_worker

    db_url = await databases.create_postgres_database(postgres_base_url)
    prefix = f"cm_trace_{secrets.token_hex(4)}"
    producer = Memory(
        storage=storage_from_url(db_url),
        queue=TaskiqQueue.from_url(redis_url, prefix=prefix),
        provider=ScriptedProvider(default=reply),
        tracer=recorder.tracer,
    )
    env = {
        "CLAUDE_MEM_DATA_DIR": str(tmp_path),
        "CLAUDE_MEM_SERVER_DATABASE_URL": db_url,
        "CLAUDE_MEM_QUEUE_ENGINE": "redis",
        "CLAUDE_MEM_REDIS_URL": redis_url,
        "CLAUDE_MEM_QUEUE_REDIS_PREFIX": prefix,
        "CLAUDE_MEM_DOCKER": "0",
    }
    runtime = build_worker(Settings.from_env(env), env=env)
    # The worker's memory as runtime.open() builds it, with the test's tracer.
    runtime.memory = Memory(
        storage=storage_from_url(db_url),
        queue=runtime.queue,
        provider=ScriptedProvider(default=reply),
        worker_id=runtime.worker_id,
        tracer=recorder.tracer,
    )
    runtime.batcher = SessionBatcher(runtime.memory.generator)
    broker = runtime.broker
    broker.is_worker_process = True
    finished = asyncio.Event()
    listening = asyncio.create_task(
        Receiver(broker, validate_params=False, max_async_tasks=2, max_prefetch=0).listen(finished)
    )
    try:
        project_id, key = await _project_and_key(producer)
        recorder.exporter.clear()
        client = await aiohttp_client(create_app(producer, background_generation=False))
        request_id = await _post_event(client, project_id, key)
        await _until_processed(recorder)
        await client.close()
        _check_the_tree(recorder, request_id=request_id, key=key, db="postgresql")
        publish = recorder.one(SpanKind.PRODUCER, "publish ")
        assert publish.name == f"publish {prefix}:server_beta_generate_event"
        assert publish.attributes is not None
        assert publish.attributes["messaging.destination.name"] == publish.name.split(" ")[1]
    finally:
        finished.set()
        await asyncio.wait_for(listening, timeout=15)
        await broker.shutdown()  # runs the worker's shutdown: closes its memory
        assert isinstance(producer.deps.queue, TaskiqQueue)
        await producer.deps.queue.delete_all_keys()
        await producer.close()
        await databases.drop_postgres_database(db_url)
