"""Authentication, scopes, request ids and the error mapping (api.md §2, §3.0, §5.4)."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import attrs
import pytest
from httpkit import Api, AppFactory, World, audit_rows, event_body

from claude_mem_core.facade import Memory
from claude_mem_http.server.auth import parse_bearer
from claude_mem_http.server.middlewares import valid_request_id

WRITE_ROUTES = [
    ("/v1/sessions/start", {"projectId": "p"}),
    ("/v1/events", {}),
    ("/v1/events/batch", []),
    ("/v1/memories", {}),
    ("/api/sessions/observations", {}),
    ("/api/sessions/summarize", {}),
]


async def test_missing_key_is_401_with_request_id(api: Api) -> None:
    for path, body in [*WRITE_ROUTES, ("/v1/search", {}), ("/v1/context", {})]:
        reply = await api.post(path, body)
        assert reply.status == 401, path
        assert reply.body["error"] == "Unauthorized"
        assert reply.headers["X-Request-Id"]
    for path in ("/v1/jobs", "/v1/projects", "/v1/events/x", "/v1/sessions/x"):
        assert (await api.get(path)).status == 401
    reply = await api.post("/v1/events", {}, headers={"Authorization": "Basic abc"})
    assert reply.status == 401


async def test_invalid_and_read_only_keys_are_403(api: Api, world: World) -> None:
    reply = await api.post("/v1/sessions/start", {}, key="cmem_invalid_key_for_e2e")
    assert reply.status == 403 and reply.body["error"] == "Forbidden"
    for path, body in WRITE_ROUTES:
        reply = await api.post(path, body, key=world.read_key)
        assert reply.status == 403, path
    for path in ("/v1/jobs/x/retry", "/v1/jobs/x/cancel", "/v1/sessions/x/end"):
        assert (await api.post(path, key=world.read_key)).status == 403


async def test_bearer_parsing_and_star_and_hook_scopes(api: Api, world: World) -> None:
    reply = await api.get("/v1/projects", headers={"Authorization": f"bearer   {world.key}  "})
    assert reply.status == 200
    assert parse_bearer("Bearer") is None and parse_bearer("Token x") is None
    created = await api.post("/v1/events", event_body(world.project), key=world.admin_key)
    assert created.status == 201
    hook = await api.post("/v1/events", event_body(world.project), key=world.hook_key)
    assert hook.status == 201
    started = await api.post("/v1/sessions/start", {"projectId": world.project}, key=world.hook_key)
    assert started.status == 201
    assert (await api.get("/v1/jobs", key=world.hook_key)).status == 200


async def test_revocation_is_effective_on_next_request(
    api: Api, world: World, memory: Memory
) -> None:
    assert (await api.get("/v1/projects", key=world.key)).status == 200
    await memory.revoke_api_key(world.key_id)
    reply = await api.get("/v1/projects", key=world.key)
    assert reply.status == 403
    assert (await api.post("/v1/events", event_body(world.project), key=world.key)).status == 403


async def test_revocation_stops_events_from_a_key_the_server_has_seen(
    api: Api, world: World, memory: Memory
) -> None:
    # POST /v1/events takes a key it has seen from memory; the write itself checks it.
    assert (await api.post("/v1/events", event_body(world.project), key=world.key)).status == 201
    await memory.revoke_api_key(world.key_id)
    later = event_body(world.project, occurredAtEpoch=1_760_000_000_001)
    assert (await api.post("/v1/events", later, key=world.key)).status == 403
    assert (await api.post("/v1/events", event_body(world.project), key=world.key)).status == 403
    assert len(await audit_rows(memory, world.team, "event.received")) == 1


async def test_revocation_stops_searches_from_a_key_the_server_has_seen(
    api: Api, world: World, memory: Memory
) -> None:
    # /v1/search and /v1/context take a seen key from memory; the read's audit row checks it.
    question = {"projectId": world.project, "query": "login redirect"}
    for path in ("/v1/search", "/v1/context"):
        assert (await api.post(path, question, key=world.key)).status == 200
    await memory.revoke_api_key(world.key_id)
    for path in ("/v1/search", "/v1/context", "/v1/search"):
        reply = await api.post(path, question, key=world.key)
        assert reply.status == 403, path
        assert "memories" not in reply.body
    assert len(await audit_rows(memory, world.team, "observation.read")) == 2


async def test_expired_key_is_403(api: Api, world: World, memory: Memory) -> None:
    async with memory.storage.unit_of_work() as uow:
        key = await uow.api_keys.get_unscoped(world.key_id)
        assert key is not None
        await uow.api_keys.save(
            attrs.evolve(key, expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert (await api.get("/v1/projects", key=world.key)).status == 403


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("abc-123", True),
        ("A1_B2-C3", True),
        ("a" * 64, True),
        ("", False),
        ("a" * 65, False),
        ("foo bar", False),
        ("-leading-dash", False),
        ('with"quote', False),
    ],
)
def test_request_id_validator(value: str, ok: bool) -> None:
    assert valid_request_id(value) is ok


async def test_request_id_echo_mint_and_payload(api: Api, world: World, memory: Memory) -> None:
    reply = await api.post(
        "/v1/events",
        event_body(world.project),
        key=world.key,
        headers={"X-Request-Id": "op-correlation-007"},
    )
    assert reply.headers["X-Request-Id"] == "op-correlation-007"
    rows = await audit_rows(memory, world.team, "event.received")
    assert rows[0].details["requestId"] == "op-correlation-007"
    async with memory.storage.unit_of_work() as uow:
        job = await uow.jobs.get(world.team, reply.body["generationJob"]["id"])
    assert job is not None and job.payload["request_id"] == "op-correlation-007"

    evil = await api.get(
        "/v1/projects", key=world.key, headers={"X-Request-Id": "<script>alert(1)</script>"}
    )
    minted = evil.headers["X-Request-Id"]
    assert minted != "<script>alert(1)</script>" and uuid.UUID(minted)
    for path in ("/healthz", "/v1/info", "/api/health", "/nope"):
        reply = await api.get(path, headers={"X-Request-Id": "abc-123"})
        assert reply.headers["X-Request-Id"] == "abc-123", path
    plain = await api.get("/healthz")
    assert uuid.UUID(plain.headers["X-Request-Id"])


async def test_malformed_json_and_content_type(api: Api, world: World) -> None:
    for data, ctype in (
        ("{not json", "application/json"),
        ("", "application/json"),
        ("projectId=x", "application/x-www-form-urlencoded"),
        ('{"a": 1}', "text/plain"),
    ):
        reply = await api.call("POST", "/v1/events", data=data, key=world.key, content_type=ctype)
        assert reply.status == 400, (data, ctype)
        assert reply.body["error"] == "ValidationError"
    no_type = await api.call(
        "POST", "/v1/memories", data=b'{"x": 1}', key=world.key, content_type=None
    )
    assert no_type.status == 400


async def test_nan_and_infinity_are_not_json(api: Api, world: World, memory: Memory) -> None:
    # Python's json reads them; JSON does not, and an event key could not be derived (500).
    for constant in ("NaN", "Infinity", "-Infinity"):
        body = json.dumps(event_body(world.project)).replace('"Edit"', constant)
        reply = await api.call("POST", "/v1/events", data=body, key=world.key)
        assert reply.status == 400, constant
        assert constant.lstrip("-") in reply.body["message"] or constant in str(reply.body)
    assert await audit_rows(memory, world.team, "event.received") == []


async def test_oversized_body_is_413(api: Api, world: World) -> None:
    big = ('{"projectId": "' + "x" * (6 * 1024 * 1024) + '"}').encode()
    reply = await api.call("POST", "/v1/events", data=io.BytesIO(big), key=world.key)
    assert reply.status == 413 and reply.body["error"] == "PayloadTooLarge"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: limit while reading
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]

    reply = await api.call("POST", "/v1/memories", data=chunks(), key=world.key)
    assert reply.status == 413 and reply.body["error"] == "PayloadTooLarge"


async def test_unknown_route_and_method(api: Api) -> None:
    reply = await api.get("/nope")
    assert reply.status == 404
    assert reply.body == {"error": "NotFound", "message": "Cannot GET /nope"}
    reply = await api.call("DELETE", "/v1/events")
    assert reply.status == 405 and reply.body["error"] == "MethodNotAllowed"


async def test_unexpected_error_is_500_without_internals(
    api: Api, world: World, memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from claude_mem_core.services import memories

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail at /srv/db")

    monkeypatch.setattr(memories, "fresh_memory", boom)  # what POST /v1/memories calls first
    reply = await api.post(
        "/v1/memories", {"projectId": world.project, "content": "x"}, key=world.key
    )
    assert reply.status == 500
    assert reply.body == {"error": "InternalError", "message": "Internal server error"}


async def test_storage_down_is_503(
    make_api: AppFactory, world: World, memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from claude_mem_core.errors import StorageUnavailable
    from claude_mem_core.services.key_lookup import CoalescedKeyLookup

    api = await make_api()

    async def down(*args: object, **kwargs: object) -> None:
        raise StorageUnavailable("connection refused to db.internal:5432")

    monkeypatch.setattr(CoalescedKeyLookup, "verify", down)
    reply = await api.get("/v1/projects", key=world.key)
    assert reply.status == 503 and "db.internal" not in reply.body["message"]


async def test_local_dev_mode(make_api: AppFactory, memory: Memory) -> None:
    from claude_mem_http.server.app import settings_for_memory

    settings = attrs.evolve(
        settings_for_memory(memory), auth_mode="local-dev", allow_local_dev_bypass=True
    )
    api = await make_api(settings=settings)
    made = await api.post("/v1/memories", {"projectId": "x", "content": "hello"})
    assert made.status == 404  # bound to the local project, not any other
    projects = await api.get("/v1/projects")
    assert projects.status == 200 and projects.body["projects"][0]["name"] == "default"
    local = projects.body["projects"][0]["id"]
    made = await api.post("/v1/memories", {"projectId": local, "content": "hello world"})
    assert made.status == 201
    compat = await api.post("/api/sessions/summarize", {"contentSessionId": "c1"})
    assert compat.status == 200
    forwarded = await api.get("/v1/projects", headers={"X-Forwarded-For": "10.0.0.1"})
    assert forwarded.status == 401
    remote_host = await api.get("/v1/projects", headers={"Host": "example.com"})
    assert remote_host.status == 401
