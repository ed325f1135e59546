"""Arbitrary JSON bodies and query strings never produce a 5xx (decision 2); every answer
still matches the OpenAPI document (checked by the client)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from httpkit import Api, World
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture
def backend() -> str:  # fuzzing exercises the HTTP layer: one backend is enough
    return "sqlite"


POST_ROUTES = [
    "/v1/sessions/start",
    "/v1/events",
    "/v1/events/batch",
    "/v1/memories",
    "/v1/search",
    "/v1/context",
    "/api/sessions/observations",
    "/api/sessions/summarize",
]
FIELDS = [
    "projectId",
    "sourceType",
    "eventType",
    "occurredAtEpoch",
    "serverSessionId",
    "payload",
    "metadata",
    "sourceEventId",
    "externalSessionId",
    "contentSessionId",
    "agentId",
    "agentType",
    "platformSource",
    "content",
    "kind",
    "query",
    "limit",
    "tool_name",
    "tool_input",
    "tool_use_id",
    "toolUseId",
    "cwd",
    "title",
    "type",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["hook", "api", "manual", "PROJECT", "2024-01-01", ""]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
PLAUSIBLE = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=8)
BODIES = st.one_of(JSON, PLAUSIBLE, st.lists(PLAUSIBLE, max_size=3))


def _with_project(body: Any, project: str, use_project: bool) -> Any:
    if use_project and isinstance(body, dict) and "projectId" in body:
        return {**body, "projectId": project}
    return body


@settings(
    max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(route=st.sampled_from(POST_ROUTES), body=BODIES, use_project=st.booleans())
async def test_post_routes_never_5xx(
    api: Api, world: World, route: str, body: Any, use_project: bool
) -> None:
    reply = await api.post(route, _with_project(body, world.project, use_project), key=world.key)
    assert reply.status < 500, (route, body, reply.body)


QUERY_NAMES = [
    "status",
    "source_type",
    "since",
    "limit",
    "offset",
    "include",
    "wait",
    "generate",
    "waitTimeoutMs",
]


@settings(
    max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    path=st.sampled_from(["/v1/jobs", "/v1/projects", "/v1/teams/{team}/jobs"]),
    params=st.dictionaries(st.sampled_from(QUERY_NAMES), st.text(max_size=30), max_size=4),
)
async def test_query_strings_never_5xx(
    api: Api, world: World, path: str, params: dict[str, str]
) -> None:
    reply = await api.get(path.format(team=world.team), key=world.admin_key, params=params)
    assert reply.status < 500, (path, params, reply.body)


@settings(
    max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    params=st.dictionaries(
        st.sampled_from(["projectId", "limit", "offset"]),
        st.one_of(st.text(max_size=30), st.sampled_from(["PROJECT", "1", "100", "101", "-1"])),
        max_size=3,
    ),
    key=st.sampled_from(["key", "team_key", "other_key"]),
)
async def test_recent_memories_query_never_5xx(
    api: Api, world: World, params: dict[str, str], key: str
) -> None:
    sent = {k: world.project if v == "PROJECT" else v for k, v in params.items()}
    reply = await api.get("/v1/memories/recent", key=getattr(world, key), params=sent)
    assert reply.status < 500, (sent, reply.body)
    assert reply.status in (200, 400, 404), (sent, reply.body)


@settings(
    max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(memory_id=st.text(min_size=1, max_size=40))
async def test_memory_ids_never_5xx(api: Api, world: World, memory_id: str) -> None:
    reply = await api.get(f"/v1/memories/{quote(memory_id, safe='')}", key=world.key)
    assert reply.status < 500, (memory_id, reply.body)
