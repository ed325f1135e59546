"""The OpenAPI document's paths for what agents send and ask: sessions, events, memories,
search and context."""

from __future__ import annotations

from typing import Any

from claude_mem_http.wire import bodies
from claude_mem_http.wire.bodies import body_ref
from claude_mem_http.wire.json_schema import (
    KIND_PATTERN,
    nonempty,
)
from claude_mem_http.wire.openapi_operations import (
    EVENT_PARAMS,
    GONE,
    _erase_op,
    _error,
    _ok,
    _op,
    _path_param,
    _query,
)


def memory_paths() -> dict[str, Any]:
    """Sessions, events, memories, search and context."""
    session_body = body_ref(bodies.SessionBody)
    return {
        "/v1/sessions/start": {
            "post": _op(
                "Start (find or create) a server session",
                {
                    "201": _ok(session_body, "Created"),
                    "200": _ok(session_body, "Existing session"),
                },
                body="SessionStartInput",
                tags=["sessions"],
            )
        },
        "/v1/sessions/{id}": {
            "get": _op(
                "Read a session",
                {"200": _ok(session_body)},
                params=[_path_param("id")],
                tags=["sessions"],
            ),
            "delete": _erase_op(
                "Erase a session, its events and everything derived from them", "sessions"
            ),
        },
        "/v1/sessions/{id}/end": {
            "post": _op(
                "End a session and queue its summary (idempotent)",
                {"200": _ok(body_ref(bodies.EndSessionBody))},
                params=[_path_param("id")],
                tags=["sessions"],
            )
        },
        "/v1/events": {
            "post": _op(
                "Ingest one event",
                {
                    "201": _ok(
                        body_ref(bodies.EventResult), "Stored (also on an idempotent replay)"
                    ),
                    "409": _error(
                        "sourceEventId already used for a different payload", "EventConflict"
                    ),
                    "410": _error("sourceEventId names an erased event (nothing stored)", GONE),
                },
                body="EventInput",
                params=EVENT_PARAMS,
                tags=["events"],
            )
        },
        "/v1/events/batch": {
            "post": _op(
                "Ingest 1..500 events, all or nothing",
                {
                    "201": _ok(body_ref(bodies.EventBatchResult), "Stored"),
                    "409": _error(
                        "An event's sourceEventId already used for a different payload "
                        "(nothing stored)",
                        "EventConflict",
                    ),
                    "410": _error(
                        "An event's sourceEventId names an erased event (nothing stored)", GONE
                    ),
                },
                body="EventBatchInput",
                params=EVENT_PARAMS,
                tags=["events"],
            )
        },
        "/v1/events/{id}": {
            "get": _op(
                "Read an event",
                {"200": _ok(body_ref(bodies.EventBody))},
                params=[_path_param("id")],
                tags=["events"],
            ),
            "delete": _erase_op(
                "Erase an event and everything derived from it (its sourceEventId is "
                "then refused with 410)",
                "events",
            ),
        },
        "/v1/events/{id}/observations": {
            "get": _op(
                "Observations generated from an event",
                {"200": _ok(body_ref(bodies.EventObservations))},
                params=[_path_param("id")],
                tags=["events"],
            )
        },
        "/v1/memories": {
            "post": _op(
                "Write a manual memory (no generation job)",
                {"201": _ok(body_ref(bodies.MemoryBody), "Created")},
                body="MemoryInput",
                tags=["memories"],
            )
        },
        "/v1/memories/recent": {
            "get": _op(
                "The newest memories (observations) of a project, newest first",
                {"200": _ok(body_ref(bodies.RecentMemories))},
                params=[
                    {
                        "name": "projectId",
                        "in": "query",
                        "required": True,
                        "schema": nonempty(),
                    },
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                    ),
                    _query(
                        "kind",
                        {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 64,
                            "pattern": KIND_PATTERN,
                        },
                    ),
                ],
                tags=["memories"],
            )
        },
        "/v1/memories/{id}": {
            "get": _op(
                "Read one memory (observation)",
                {"200": _ok(body_ref(bodies.MemoryBody))},
                params=[_path_param("id")],
                tags=["memories"],
            )
        },
        "/v1/search": {
            "post": _op(
                "Full-text search of a project's observations",
                {"200": _ok(body_ref(bodies.SearchBody))},
                body="SearchInput",
                tags=["memories"],
            )
        },
        "/v1/context": {
            "post": _op(
                "Search and join the matching contents into a context block",
                {"200": _ok(body_ref(bodies.ContextBody))},
                body="ContextInput",
                tags=["memories"],
            )
        },
    }
