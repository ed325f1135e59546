"""The OpenAPI 3.1 document of every route, served at ``/v1/openapi.json`` by the server.

``docs/openapi.json`` is this document written out (``python -m claude_mem_http.wire.openapi
docs/openapi.json``); a test keeps the two identical and checks real responses against it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from claude_mem_core.domain.budgets import PERIODS
from claude_mem_core.services.budgets import MAX_TOKENS, MAX_USD
from claude_mem_core.services.ingest import MAX_EPOCH_MS, MAX_IDENTIFIER_LENGTH
from claude_mem_core.services.retention import MAX_RETAIN_DAYS
from claude_mem_core.services.usage import GROUPINGS, MAX_REPORT_DAYS

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
NSTR: Schema = {"type": ["string", "null"]}
INT: Schema = {"type": "integer"}
NINT: Schema = {"type": ["integer", "null"]}
NUM: Schema = {"type": "number"}
NNUM: Schema = {"type": ["number", "null"]}
BOOL: Schema = {"type": "boolean"}
OBJ: Schema = {"type": "object"}
NOBJ: Schema = {"type": ["object", "null"]}
ANY: Schema = {}
JOB_STATUSES = ["queued", "processing", "completed", "failed", "cancelled"]
SOURCE_TYPES = ["agent_event", "session_summary", "observation_reindex"]
TRANSPORTS = ["enqueued", "queued_only", "skipped"]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(
    props: dict[str, Schema], required: list[str] | None = None, *, closed: bool = True
) -> Schema:
    schema: Schema = {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


def nstr_in(values: list[str]) -> Schema:
    return {"type": "string", "enum": values}


# Request text never holds NUL characters (no database stores them): every string of a
# request body, at any depth and in object keys too, is refused with a 400 if it does.
NO_NUL = "^[^\\x00]*$"
TEXT: Schema = {"type": "string", "pattern": NO_NUL}
NTEXT: Schema = {"type": ["string", "null"], "pattern": NO_NUL}
JSON_VALUE: Schema = {"$ref": "#/components/schemas/JsonValue"}


KIND_PATTERN = r"^\s*[\w.:/-]+\s*$"


# Whitespace as the server strips it (Python's str.isspace), spelled out: regular
# expression dialects disagree on what \s matches.
_SPACE = (
    "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
NOT_BLANK = f"^[^\\x00]*[^\\x00{_SPACE}][^\\x00]*$"


def nonempty(nullable: bool = False) -> Schema:
    """A string holding more than whitespace (and no NUL)."""
    return {
        "type": ["string", "null"] if nullable else "string",
        "minLength": 1,
        "pattern": NOT_BLANK,
    }


def json_object(nullable: bool = False) -> Schema:
    """A request object: any keys and values, no NUL in any string."""
    return {
        "type": ["object", "null"] if nullable else "object",
        "propertyNames": {"pattern": NO_NUL},
        "additionalProperties": JSON_VALUE,
    }


def body_obj(props: dict[str, Schema], required: list[str]) -> Schema:
    """A request body object: the named fields, and any others (ignored)."""
    schema = obj(props, required, closed=False)
    schema["propertyNames"] = {"pattern": NO_NUL}
    schema["additionalProperties"] = JSON_VALUE
    return schema


def identifier(nullable: bool = False) -> Schema:
    """An id or label of an event: non-empty and at most MAX_IDENTIFIER_LENGTH characters."""
    return {**nonempty(nullable), "maxLength": MAX_IDENTIFIER_LENGTH}


SCHEMAS: dict[str, Schema] = {
    "JsonValue": {
        "description": "Any JSON value; no string in it (nor any object key) holds a NUL",
        "anyOf": [
            {"type": ["null", "boolean", "number"]},
            TEXT,
            {"type": "array", "items": JSON_VALUE},
            json_object(),
        ],
    },
    "Error": obj({"error": STR, "message": STR}, closed=False),
    "EventConflict": obj(
        {
            "error": {"const": "Conflict"},
            "message": STR,
            "eventId": {"type": "string", "description": "the stored event"},
            "sourceEventId": NSTR,
            "index": {"type": "integer", "description": "the attempt's position in a batch"},
        },
        required=["error", "message", "eventId", "sourceEventId"],
    ),
    "EventGone": obj(
        {
            "error": {"const": "Gone"},
            "message": STR,
            "sourceEventId": {
                "type": ["string", "null"],
                "description": "the replayed id: it names an erased event",
            },
            "index": {"type": "integer", "description": "the event's position in a batch"},
        },
        required=["error", "message", "sourceEventId"],
    ),
    "Erasure": obj(
        {
            "kind": nstr_in(["event", "session", "project"]),
            "id": STR,
            "teamId": STR,
            "projectId": STR,
            "erasedAt": {"type": "string", "description": "ISO 8601, UTC"},
            "erasedAtEpoch": INT,
            "removed": {
                "type": "object",
                "description": "rows removed, by kind (events, sessions, observations, "
                "sources, passages, vectors, jobs, jobEvents, statistics, tombstones)",
                "additionalProperties": INT,
            },
            "requeuedJobs": {
                **INT,
                "description": "running jobs of the session sent back to the queue",
            },
            "cancelledJobs": INT,
            "revokedKeys": {**INT, "description": "a project's keys, revoked"},
            "complete": {
                **BOOL,
                "description": "false while a project's rows are still being purged in "
                "the background (it is already gone to every read and write)",
            },
        }
    ),
    "ExportLineError": obj(
        {
            "error": nstr_in(["ValidationError", "Conflict"]),
            "message": STR,
            "line": {**INT, "description": "the line of the body, from 1"},
            "field": {"type": "string", "description": "the field of that line ('' for all)"},
            "version": {"description": "the header's version, when it is not supported"},
            "issues": {"type": "array", "items": {"type": "object"}},
        },
        required=["error", "message", "line", "field"],
    ),
    "ValidationError": obj(
        {
            "error": {"const": "ValidationError"},
            "message": STR,
            "issues": {
                "type": "array",
                "items": obj(
                    {
                        "path": {"type": "array", "items": {"type": ["string", "integer"]}},
                        "message": STR,
                        "code": STR,
                    }
                ),
            },
        }
    ),
    "Event": obj(
        {
            "id": STR,
            "projectId": STR,
            "teamId": STR,
            "serverSessionId": NSTR,
            "sourceAdapter": STR,
            "sourceEventId": NSTR,
            "eventType": STR,
            "payload": ANY,
            "metadata": OBJ,
            "occurredAtEpoch": INT,
            "receivedAtEpoch": INT,
            "createdAtEpoch": INT,
        }
    ),
    "JobSummary": obj(
        {
            "id": STR,
            "status": nstr_in(JOB_STATUSES),
            "bullmqJobId": NSTR,
            "sourceType": nstr_in(SOURCE_TYPES),
            "sourceId": STR,
            "transport": nstr_in(TRANSPORTS),
            "createdAtEpoch": INT,
            "updatedAtEpoch": INT,
        }
    ),
    "JobWaitStatus": obj(
        {
            "id": STR,
            "status": nstr_in(JOB_STATUSES),
            "transport": nstr_in(TRANSPORTS),
            "bullmqJobId": NSTR,
            "sourceType": nstr_in(SOURCE_TYPES),
            "sourceId": STR,
            "attempts": INT,
            "maxAttempts": INT,
            "createdAtEpoch": INT,
            "updatedAtEpoch": INT,
        }
    ),
    "JobStatus": obj(
        {
            "id": STR,
            "projectId": STR,
            "teamId": STR,
            "sourceType": nstr_in(SOURCE_TYPES),
            "sourceId": STR,
            "agentEventId": NSTR,
            "serverSessionId": NSTR,
            "jobType": STR,
            "status": nstr_in(JOB_STATUSES),
            "bullmqJobId": NSTR,
            "attempts": INT,
            "maxAttempts": INT,
            "nextAttemptAtEpoch": NINT,
            "completedAtEpoch": NINT,
            "failedAtEpoch": NINT,
            "cancelledAtEpoch": NINT,
            "lastError": NOBJ,
            "heldReason": {
                "type": ["string", "null"],
                "enum": ["budget", "rate_limit", None],
                "description": "why a queued job waits for its next attempt: its project's "
                "budget is spent, or its provider asked every worker to wait; null otherwise",
            },
            "createdAtEpoch": INT,
            "updatedAtEpoch": INT,
        }
    ),
    "JobListEntry": obj(
        {
            "id": STR,
            "projectId": STR,
            "teamId": STR,
            "sourceType": nstr_in(SOURCE_TYPES),
            "sourceId": STR,
            "status": nstr_in(JOB_STATUSES),
            "attempts": INT,
            "maxAttempts": INT,
            "createdAtEpoch": INT,
            "completedAtEpoch": NINT,
            "failedAtEpoch": NINT,
            "lastError": NOBJ,
            "heldReason": {
                "type": ["string", "null"],
                "enum": ["budget", "rate_limit", None],
                "description": "why a queued job waits for its next attempt: its project's "
                "budget is spent, or its provider asked every worker to wait; null otherwise",
            },
            "payload": OBJ,
        },
        required=[
            "id",
            "projectId",
            "teamId",
            "sourceType",
            "sourceId",
            "status",
            "attempts",
            "maxAttempts",
            "createdAtEpoch",
            "completedAtEpoch",
            "failedAtEpoch",
            "lastError",
            "heldReason",
        ],
    ),
    "Session": obj(
        {
            "id": STR,
            "projectId": STR,
            "teamId": STR,
            "externalSessionId": NSTR,
            "contentSessionId": NSTR,
            "agentId": NSTR,
            "agentType": NSTR,
            "platformSource": NSTR,
            "generationStatus": nstr_in(["idle", "processing", "completed", "failed"]),
            "metadata": OBJ,
            "startedAtEpoch": INT,
            "endedAtEpoch": NINT,
            "lastGeneratedAtEpoch": NINT,
            "createdAtEpoch": INT,
            "updatedAtEpoch": INT,
        }
    ),
    "Observation": obj(
        {
            "id": STR,
            "projectId": STR,
            "teamId": STR,
            "serverSessionId": NSTR,
            "kind": {
                "type": ["string", "null"],
                "description": "observation, summary, manual, or the kind a memory was "
                "written with (decision, note…)",
            },
            "type": NSTR,
            "title": NSTR,
            "content": STR,
            "metadata": OBJ,
            "createdAtEpoch": INT,
            "updatedAtEpoch": INT,
            "occurrences": {
                "type": "integer",
                "minimum": 1,
                "description": "How many times this fact was generated: the same generated "
                "observation from another event is stored once, linked to each event",
            },
            "supersededBy": {
                **NSTR,
                "description": "The newer observation that replaced this one, or null",
            },
            "supersededAtEpoch": NINT,
        }
    ),
    "Project": obj(
        {
            "id": STR,
            "teamId": STR,
            "name": STR,
            "metadata": OBJ,
            "retainDays": {
                **NINT,
                "description": "days its sessions and events are kept after their last "
                "activity; null: until erased",
            },
            "createdAtEpoch": INT,
            "updatedAtEpoch": INT,
        }
    ),
    "UsageRow": obj(
        {
            "group": {
                **STR,
                "description": "a UTC day (YYYY-MM-DD), provider/model, project id, or total",
            },
            "calls": INT,
            "inputTokens": INT,
            "outputTokens": INT,
            "costUsd": {"type": "number", "description": "the sum of the known estimates"},
            "unpricedCalls": {**INT, "description": "calls whose cost is not known"},
        }
    ),
    "Usage": obj(
        {
            "teamId": STR,
            "projectId": NSTR,
            "sinceEpoch": INT,
            "untilEpoch": INT,
            "groupBy": {"enum": list(GROUPINGS)},
            "rows": {"type": "array", "items": ref("UsageRow")},
            "total": ref("UsageRow"),
            "pricesAsOf": STR,
            "budget": {"oneOf": [ref("Budget"), {"type": "null"}]},
        }
    ),
    "Budget": obj(
        {
            "period": {"enum": list(PERIODS)},
            "tokenLimit": NINT,
            "usdLimit": NNUM,
            "periodStartEpoch": INT,
            "periodEndEpoch": INT,
            "spentTokens": INT,
            "spentUsd": NUM,
            "reservedTokens": {**INT, "description": "estimates of calls in flight"},
            "reservedUsd": NUM,
            "remainingTokens": NINT,
            "remainingUsd": NNUM,
            "calls": {**INT, "description": "calls settled in this period"},
            "exhausted": BOOL,
        }
    ),
    # -- request bodies
    "BudgetInput": body_obj(
        {
            "period": {"enum": list(PERIODS), "description": "UTC day or month (default month)"},
            "tokenLimit": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_TOKENS},
            "usdLimit": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": MAX_USD},
        },
        [],
    ),
    "RetentionInput": body_obj(
        {"retainDays": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_RETAIN_DAYS}},
        ["retainDays"],
    ),
    "EventInput": body_obj(
        {
            "projectId": identifier(),
            "sourceType": nstr_in(["hook", "worker", "provider", "server", "api"]),
            "eventType": identifier(),
            "occurredAtEpoch": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_EPOCH_MS,
                "description": "milliseconds since the Unix epoch, at most the end of 9999",
            },
            "serverSessionId": identifier(True),
            "sourceEventId": identifier(True),
            "contentSessionId": nonempty(True),
            "memorySessionId": nonempty(True),
            "payload": JSON_VALUE,
            "metadata": json_object(True),
        },
        required=["projectId", "sourceType", "eventType", "occurredAtEpoch"],
    ),
    "SessionStartInput": body_obj(
        {
            "projectId": nonempty(),
            "externalSessionId": nonempty(True),
            "contentSessionId": nonempty(True),
            "agentId": nonempty(True),
            "agentType": nonempty(True),
            "platformSource": nonempty(True),
            "metadata": json_object(True),
        },
        required=["projectId"],
    ),
    "MemoryInput": body_obj(
        {
            "projectId": nonempty(),
            "content": nonempty(),
            "kind": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": 64,
                "pattern": KIND_PATTERN,
                "description": "Any kind (default manual): 1 to 64 letters, digits, "
                "'_', '-', '.', ':' or '/', surrounding whitespace removed; stored and "
                "returned as sent",
            },
            "serverSessionId": nonempty(True),
            "title": nonempty(True),
            "type": nonempty(True),
            "metadata": json_object(True),
        },
        required=["projectId", "content"],
    ),
    "SearchInput": body_obj(
        {
            "projectId": nonempty(),
            "query": nonempty(),
            "limit": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": 100,
                "default": 20,
                "description": "null or absent: the default",
            },
            "kind": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": 64,
                "pattern": KIND_PATTERN,
                "description": "Only observations of this kind (a memory's kind as written, "
                "or observation, summary, manual); null or absent: every kind",
            },
        },
        required=["projectId", "query"],
    ),
    "ContextInput": body_obj(
        {
            "projectId": nonempty(),
            "query": nonempty(),
            "limit": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": 50,
                "default": 10,
                "description": "null or absent: the default",
            },
            "maxTokens": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": 1_000_000,
                "description": "Budget of the context text (about 4 characters a token): "
                "titles and matching excerpts of the best observations while they fit. "
                "Without it (or null), the contents joined by a blank line.",
            },
        },
        required=["projectId", "query"],
    ),
    "CompatObservationInput": body_obj(
        {
            "contentSessionId": nonempty(),
            "tool_name": nonempty(),
            "tool_input": JSON_VALUE,
            "tool_response": JSON_VALUE,
            "cwd": NTEXT,
            "agentId": NTEXT,
            "agentType": NTEXT,
            "platformSource": NTEXT,
            "tool_use_id": NTEXT,
            "toolUseId": NTEXT,
        },
        required=["contentSessionId", "tool_name"],
    ),
    "CompatSummarizeInput": body_obj(
        {
            "contentSessionId": nonempty(),
            "last_assistant_message": {
                **NTEXT,
                "description": "Stored as the session's closing assistant_message event "
                "(needs the right to write events); its summary is written from it too.",
            },
            "agentId": NTEXT,
            "platformSource": NTEXT,
        },
        required=["contentSessionId"],
    ),
}

# A search hit: the observation's wire fields, plus the evidence (our addition).
SCHEMAS["SearchHit"] = obj(
    {
        **SCHEMAS["Observation"]["properties"],
        "score": {"type": "number"},
        # Semantic recall on: the best cosine of the hit's passages with the query; else null.
        "similarity": {"type": ["number", "null"]},
        "excerpt": STR,
        "evidence": {
            "type": "array",
            "items": obj({"excerpt": STR, "eventId": NSTR, "score": {"type": "number"}}),
        },
    }
)

SCHEMAS["ObservationWithSource"] = obj(
    {
        **SCHEMAS["Observation"]["properties"],
        "generationKey": NSTR,
        "createdByJobId": NSTR,
        "source": obj(
            {
                "id": STR,
                "sourceType": nstr_in([*SOURCE_TYPES, "manual"]),
                "sourceId": STR,
                "generationJobId": NSTR,
                "createdAtEpoch": INT,
            }
        ),
    }
)

_EVENT_RESULT = obj(
    {
        "event": ref("Event"),
        "replayed": {
            **BOOL,
            "description": "true when the event was stored before (an idempotent replay: "
            "nothing new is stored); `transport` then says what this request did with its "
            "job, e.g. queued_only when it was not published again",
        },
        "generationJob": {"oneOf": [ref("JobSummary"), ref("JobWaitStatus"), {"type": "null"}]},
        "waitTimedOut": {"const": True},
    },
    required=["event", "replayed"],
)
SCHEMAS["EventResult"] = _EVENT_RESULT

_JOB_PAGE = obj(
    {
        "jobs": {"type": "array", "items": ref("JobListEntry")},
        "total": INT,
        "limit": INT,
        "offset": INT,
        "requestId": STR,
    },
    required=["jobs", "total", "limit", "offset"],
)
SCHEMAS["JobPage"] = _JOB_PAGE

_HEALTH_QUEUE = obj(
    {
        "engine": nstr_in(["memory", "taskiq", "disabled"]),
        "status": nstr_in(["ok", "error", "disabled"]),
        "lanes": {
            "type": "array",
            "items": obj(
                {"kind": STR, "name": STR, "waiting": INT, "unavailable": BOOL},
            ),
        },
        # Only with the Redis queue: the reference's object, without host, port or prefix.
        "redis": obj(
            {
                "status": nstr_in(["ok", "error"]),
                "mode": nstr_in(["external", "managed", "docker"]),
            }
        ),
    },
    required=["engine", "status", "lanes"],
)


def _error(description: str, name: str = "Error") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(name)}}}


def _ok(schema: Schema, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


COMMON_ERRORS = {
    "400": _error("Invalid request (fields named in `issues`)", "ValidationError"),
    "401": _error("Missing bearer API key"),
    "403": _error("Invalid, revoked or expired key, or insufficient scope"),
    "404": _error("Not found, or outside the caller's team or project"),
    "413": _error("Request body over 5 MB"),
    "500": _error("Unexpected error (no internals)"),
    "503": _error("A storage or queue dependency is unavailable"),
}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    body: str | None = None,
    params: list[dict[str, Any]] | None = None,
    secured: bool = True,
    tags: list[str] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": dict(responses)}
    if secured:
        op["security"] = [{"bearer": []}]
        for code, response in COMMON_ERRORS.items():
            op["responses"].setdefault(code, response)
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
    if params:
        op["parameters"] = params
    if tags:
        op["tags"] = tags
    return op


def _refused(allow: str) -> dict[str, Any]:
    """405: the path is served, this method is not (``Allow`` names those that are)."""
    return {
        **_error("Method not allowed on this path"),
        "headers": {"Allow": {"required": True, "schema": {"type": "string", "const": allow}}},
    }


GONE = "EventGone"


def _erase_op(summary: str, tag: str) -> dict[str, Any]:
    return _op(
        summary,
        {"200": _ok(obj({"erased": ref("Erasure"), "requestId": STR}), "Erased")},
        params=[_path_param("id")],
        tags=[tag],
    )


COMPAT_400 = {
    "description": "Invalid body, or a team key where a project key is required",
    "content": {"application/json": {"schema": {"anyOf": [ref("ValidationError"), ref("Error")]}}},
}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": STR}


def _query(name: str, schema: Schema, description: str = "") -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


_FLAG = {"type": "string", "enum": ["true", "false"]}
EVENT_PARAMS = [
    _query("generate", _FLAG, "create a generation job (default true)"),
    _query("wait", _FLAG, "wait for the job to finish (default false)"),
    _query(
        "waitTimeoutMs",
        {"type": "integer", "minimum": 0, "maximum": 30000},
        "wait at most this long (default and maximum 30000)",
    ),
]
# Query integers are read as at most 18 digits.
MAX_OFFSET = 10**18 - 1
OFFSET = {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}
PAGE_PARAMS = [
    _query("status", nstr_in(JOB_STATUSES)),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}),
    _query("offset", OFFSET),
]
SINCE = {
    "anyOf": [
        {"type": "string", "pattern": "^[0-9]{1,14}$"},
        {"type": "string", "format": "date-time"},
    ]
}
_JOB_ID = [_path_param("id")]


_STREAM_KIND = "(event|observation|summary|job)"
STREAM_KINDS_PATTERN = f"^{_STREAM_KIND}(,{_STREAM_KIND})*$"


def build() -> dict[str, Any]:
    session_body = obj({"session": ref("Session")})
    job_status_body = obj({"generationJob": ref("JobStatus")})
    paths: dict[str, Any] = {
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
                {
                    "200": _ok(
                        obj(
                            {"session": ref("Session"), "generationJob": ref("JobSummary")},
                            required=["session"],
                        )
                    )
                },
                params=[_path_param("id")],
                tags=["sessions"],
            )
        },
        "/v1/events": {
            "post": _op(
                "Ingest one event",
                {
                    "201": _ok(ref("EventResult"), "Stored (also on an idempotent replay)"),
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
                    "201": _ok(
                        obj(
                            {
                                "events": {"type": "array", "items": ref("EventResult")},
                                "waitTimedOut": {"const": True},
                            },
                            required=["events"],
                        ),
                        "Stored",
                    ),
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
                {"200": _ok(obj({"event": ref("Event")}))},
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
                {
                    "200": _ok(
                        obj(
                            {
                                "eventId": STR,
                                "observations": {
                                    "type": "array",
                                    "items": ref("ObservationWithSource"),
                                },
                            }
                        )
                    )
                },
                params=[_path_param("id")],
                tags=["events"],
            )
        },
        "/v1/memories": {
            "post": _op(
                "Write a manual memory (no generation job)",
                {"201": _ok(obj({"memory": ref("Observation")}), "Created")},
                body="MemoryInput",
                tags=["memories"],
            )
        },
        "/v1/memories/recent": {
            "get": _op(
                "The newest memories (observations) of a project, newest first",
                {"200": _ok(obj({"memories": {"type": "array", "items": ref("Observation")}}))},
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
                {"200": _ok(obj({"memory": ref("Observation")}))},
                params=[_path_param("id")],
                tags=["memories"],
            )
        },
        "/v1/search": {
            "post": _op(
                "Full-text search of a project's observations",
                {"200": _ok(obj({"observations": {"type": "array", "items": ref("SearchHit")}}))},
                body="SearchInput",
                tags=["memories"],
            )
        },
        "/v1/context": {
            "post": _op(
                "Search and join the matching contents into a context block",
                {
                    "200": _ok(
                        obj(
                            {
                                "observations": {"type": "array", "items": ref("SearchHit")},
                                "context": STR,
                            }
                        )
                    )
                },
                body="ContextInput",
                tags=["memories"],
            )
        },
        "/v1/jobs": {
            "get": _op(
                "List the caller's generation jobs",
                {"200": _ok(ref("JobPage"))},
                params=[
                    *PAGE_PARAMS,
                    _query("source_type", nstr_in(SOURCE_TYPES)),
                    _query("since", SINCE, "ISO-8601 timestamp or epoch milliseconds"),
                    _query("include", {"type": "string", "enum": ["payload"]}, "admin only"),
                ],
                tags=["jobs"],
            )
        },
        "/v1/jobs/{id}": {
            "get": _op(
                "Read a generation job",
                {"200": _ok(job_status_body)},
                params=_JOB_ID,
                tags=["jobs"],
            )
        },
        "/v1/jobs/{id}/retry": {
            "post": _op(
                "Requeue a failed or cancelled job",
                {
                    "200": _ok(
                        obj(
                            {
                                "generationJob": ref("JobStatus"),
                                "retriedCount": INT,
                                "alreadyQueued": BOOL,
                                "requestId": STR,
                            }
                        )
                    ),
                    "409": _error("The job is processing or completed"),
                },
                params=_JOB_ID,
                tags=["jobs"],
            )
        },
        "/v1/jobs/{id}/cancel": {
            "post": _op(
                "Cancel a queued or processing job",
                {
                    "200": _ok(
                        obj(
                            {
                                "generationJob": ref("JobStatus"),
                                "alreadyCancelled": BOOL,
                                "requestId": STR,
                            }
                        )
                    ),
                    "409": _error("The job already completed or failed"),
                },
                params=_JOB_ID,
                tags=["jobs"],
            )
        },
        "/v1/teams/{teamId}/jobs": {
            "get": _op(
                "List the jobs of the caller's team",
                {"200": _ok(ref("JobPage"))},
                params=[_path_param("teamId"), *PAGE_PARAMS],
                tags=["jobs"],
            )
        },
        "/v1/projects/{projectId}/jobs": {
            "get": _op(
                "List the jobs of one project",
                {"200": _ok(ref("JobPage"))},
                params=[_path_param("projectId"), *PAGE_PARAMS],
                tags=["jobs"],
            )
        },
        "/v1/projects": {
            "get": _op(
                "List the projects the caller can see",
                {
                    "200": _ok(
                        obj(
                            {
                                "projects": {"type": "array", "items": ref("Project")},
                                "total": INT,
                                "limit": INT,
                                "offset": INT,
                            }
                        )
                    )
                },
                params=[
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                    _query("offset", OFFSET),
                ],
                tags=["projects"],
            )
        },
        "/v1/projects/{id}": {
            "delete": _erase_op(
                "Erase a project: gone at once, its rows purged in batches (complete: "
                "false when the rest is purged in the background)",
                "projects",
            )
        },
        "/v1/projects/{id}/export": {
            "get": _op(
                "Export the project as versioned NDJSON, streamed: a header line "
                '(`{"format": "claude-mem-export", "version": 1, ...}`), then every session, '
                "event and observation (summaries and memories too, with their source links), "
                "one JSON object a line, in a fixed order. Needs memories:read. "
                "docs/your-data.md.",
                {
                    "200": {
                        "description": "The project, one JSON object a line",
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                    }
                },
                params=[_path_param("id")],
                tags=["projects"],
            )
        },
        "/v1/projects/{id}/import": {
            "post": {
                **_op(
                    "Import an export into the project (body: NDJSON, read as a stream; send "
                    "it chunked). Every line is checked before any is written; ids are kept "
                    "and rows the project holds already are skipped (importing twice adds "
                    "nothing). `generate=true` queues generation for the imported events. "
                    "Needs memories:write. docs/your-data.md.",
                    {
                        "200": _ok(
                            obj(
                                {
                                    "imported": obj(
                                        {
                                            "projectId": STR,
                                            "lines": INT,
                                            "sessions": INT,
                                            "events": INT,
                                            "observations": INT,
                                            "sources": INT,
                                            "skipped": INT,
                                            "jobs": INT,
                                        }
                                    ),
                                    "requestId": NSTR,
                                }
                            ),
                            "Imported",
                        ),
                        "400": {
                            "description": "A bad line (`line`, `field`), an export of an "
                            "unsupported `version`, or a bad parameter (`issues`)",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "anyOf": [ref("ExportLineError"), ref("ValidationError")]
                                    }
                                }
                            },
                        },
                        "409": _error(
                            "A line defines an id stored in another project (`line`)",
                            "ExportLineError",
                        ),
                    },
                    params=[
                        _path_param("id"),
                        _query("generate", _FLAG, "queue generation for imported events"),
                    ],
                    tags=["projects"],
                ),
                "requestBody": {
                    "required": True,
                    "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                },
            }
        },
        "/v1/projects/{id}/retention": {
            "put": _op(
                "Set how many days the project keeps its sessions and events (null: until "
                "erased); the sweep erases what is older",
                {"200": _ok(obj({"project": ref("Project"), "requestId": NSTR}))},
                body="RetentionInput",
                params=[_path_param("id")],
                tags=["projects"],
            )
        },
        "/v1/projects/{id}/budget": {
            "put": _op(
                "Set the project's budget per UTC day or month, in tokens and/or estimated US "
                "dollars (both limits null: no budget); jobs it held run at once if the "
                "change lets them",
                {
                    "200": _ok(
                        obj(
                            {
                                "budget": {"oneOf": [ref("Budget"), {"type": "null"}]},
                                "requestId": NSTR,
                            }
                        )
                    )
                },
                body="BudgetInput",
                params=[_path_param("id")],
                tags=["projects"],
            )
        },
        "/v1/usage": {
            "get": _op(
                "Token ledger sums: what generation cost the team or one project, by day, "
                "model or project",
                {"200": _ok(obj({"usage": ref("Usage"), "requestId": NSTR}))},
                params=[
                    _query("projectId", STR, "one project (a project key: always its own)"),
                    _query(
                        "days",
                        {"type": "integer", "minimum": 1, "maximum": MAX_REPORT_DAYS},
                        "the last N days (default 30)",
                    ),
                    _query("groupBy", {"enum": list(GROUPINGS)}, "default day"),
                ],
                tags=["usage"],
            )
        },
        "/api/sessions/observations": {
            "post": _op(
                "Legacy hook: record one tool use (project key required)",
                {
                    "200": _ok(
                        obj(
                            {
                                "status": nstr_in(["queued", "skipped"]),
                                "observationCount": INT,
                                "sessionId": STR,
                                "serverSessionId": STR,
                                "eventId": NSTR,
                                "generationJobId": NSTR,
                                "transport": nstr_in(TRANSPORTS),
                                "replayed": {
                                    **BOOL,
                                    "description": "true when the tool use was recorded "
                                    "before (nothing new is stored)",
                                },
                                "conflict": {
                                    "const": True,
                                    "description": "tool_use_id already used for other "
                                    "content; eventId is the stored event (nothing stored)",
                                },
                                "erased": {
                                    "const": True,
                                    "description": "tool_use_id names an erased event; "
                                    "status is skipped and nothing is stored",
                                },
                            },
                            required=[
                                "status",
                                "observationCount",
                                "sessionId",
                                "serverSessionId",
                                "eventId",
                                "generationJobId",
                                "transport",
                            ],
                        )
                    ),
                    "400": COMPAT_400,
                    "500": _ok(
                        obj({"stored": {"const": False}, "reason": STR}), "Unexpected error"
                    ),
                },
                body="CompatObservationInput",
                tags=["compat"],
            )
        },
        "/api/sessions/summarize": {
            "post": _op(
                "Legacy hook: end a Claude session and queue its summary",
                {
                    "200": _ok(
                        {
                            "oneOf": [
                                obj(
                                    {
                                        "status": {"const": "queued"},
                                        "sessionId": STR,
                                        "serverSessionId": STR,
                                        "generationJobId": STR,
                                        "transport": nstr_in(TRANSPORTS),
                                    }
                                ),
                                obj({"status": {"const": "skipped"}, "reason": STR}),
                            ]
                        }
                    ),
                    "400": COMPAT_400,
                    "500": _ok(
                        obj({"status": {"const": "error"}, "reason": STR}), "Unexpected error"
                    ),
                },
                body="CompatSummarizeInput",
                tags=["compat"],
            )
        },
        "/mcp": {
            # Only POST works: no stream is offered (GET) and no session is kept (DELETE);
            # both are answered 405 with Allow: POST (after authentication), as the MCP
            # transport permits.
            "post": _op(
                "MCP streamable HTTP transport, stateless, JSON answers (read tools only)",
                {
                    "200": _ok(ref("JsonRpcAnswer"), "The JSON-RPC answer to a request"),
                    "202": {"description": "A notification or response was accepted"},
                    "400": {
                        "description": "Not JSON (fields named in `issues`), or not a "
                        "JSON-RPC message",
                        "content": {
                            "application/json": {
                                "schema": {"anyOf": [ref("ValidationError"), ref("JsonRpcAnswer")]}
                            }
                        },
                    },
                    "406": _ok(ref("JsonRpcAnswer"), "The client does not accept JSON"),
                },
                body="JsonRpcMessage",
                tags=["mcp"],
            ),
            **{
                method: _op(
                    summary,
                    {"405": _refused("POST")},
                    tags=["mcp"],
                )
                for method, summary in (
                    ("get", "Refused: no stream of server-initiated messages is offered"),
                    ("delete", "Refused: the transport is stateless, no session to end"),
                )
            },
        },
        "/healthz": {
            "get": _op(
                "Liveness",
                {"200": _ok(obj({"status": {"const": "ok"}, "runtime": STR}))},
                secured=False,
                tags=["health"],
            )
        },
        "/api/health": {
            "get": _op(
                "Health with real storage and queue pings",
                {
                    "200": _ok(ref("Health")),
                    "503": _ok(ref("Health"), "Degraded: a dependency is down"),
                },
                secured=False,
                tags=["health"],
            )
        },
        "/api/readiness": {
            "get": _op(
                "Readiness",
                {
                    "200": _ok(obj({"status": {"const": "ready"}, "mcpReady": BOOL})),
                    "503": _ok(
                        obj({"status": nstr_in(["initializing", "degraded"]), "message": STR}),
                        "Not ready",
                    ),
                },
                secured=False,
                tags=["health"],
            )
        },
        "/v1/info": {
            "get": _op(
                "Server information", {"200": _ok(ref("Info"))}, secured=False, tags=["health"]
            )
        },
        "/v1/openapi.json": {
            "get": _op(
                "This document",
                {"200": _ok({"type": "object"})},
                secured=False,
                tags=["health"],
            )
        },
        "/v1/stream": {
            "get": _op(
                "Live stream (Server-Sent Events) of new events, observations, summaries and "
                "job status changes of the projects the key may read, in commit order. Each "
                "message: `id: <cursor>`, `event: <kind>`, `data: {kind, projectId, item}` "
                "(`item`: an Event, an Observation, or a JobStatus). Reconnect with "
                "`Last-Event-ID` (or `?after=`; the header wins) to resume exactly after it. "
                "Without a cursor the stream starts now and first sends `: ready <cursor>`; "
                "`: ping` comments keep it alive. Each kind needs the scope of its read route "
                "(event: memories:read; observation, summary: observations:read; job: "
                "jobs:read). docs/stream.md.",
                {
                    "200": {
                        "description": "An endless text/event-stream",
                        "content": {
                            "text/event-stream": {
                                # One message: its cursor, its kind, and the JSON of the item
                                # (``{"kind", "projectId", "item"}``) as the data line.
                                "itemSchema": {
                                    "type": "object",
                                    "properties": {
                                        "id": {
                                            "type": "string",
                                            "pattern": "^[0-9]{1,19}-[0-9]{1,19}$",
                                        },
                                        "event": {
                                            "enum": ["event", "observation", "summary", "job"]
                                        },
                                        "data": {"type": "string"},
                                    },
                                    "required": ["id", "event", "data"],
                                },
                            }
                        },
                    },
                    "410": {
                        "description": "The cursor is older than the feed keeps (pruned "
                        "after CLAUDE_MEM_STREAM_RETAIN_HOURS): start again without it",
                        "content": {
                            "application/json": {
                                "schema": obj(
                                    {"error": {"const": "Gone"}, "message": STR, "field": STR},
                                    ["error", "message", "field"],
                                )
                            }
                        },
                    },
                },
                params=[
                    _query(
                        "projectId",
                        nonempty(),
                        "one project of a team key's team (a project key's own project always)",
                    ),
                    _query(
                        "after",
                        {"type": "string", "pattern": "^[0-9]{1,19}-[0-9]{1,19}$"},
                        "resume after this cursor (an `id:` the stream sent)",
                    ),
                    _query(
                        "kinds",
                        {"type": "string", "pattern": STREAM_KINDS_PATTERN},
                        "comma-separated kinds: event, observation, summary, job (default: "
                        "every kind the key may read)",
                    ),
                ],
                tags=["stream"],
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics, in its text format. Served without a key by default; "
                "CLAUDE_MEM_METRICS=key asks for a key with metrics:read (or an admin key), "
                "CLAUDE_MEM_METRICS=off removes the route.",
                {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                secured=False,
                tags=["health"],
            )
        },
    }
    schemas = dict(SCHEMAS)
    schemas["EventBatchInput"] = {
        "type": "array",
        "minItems": 1,
        "maxItems": 500,
        "items": ref("EventInput"),
    }
    # The MCP SDK reads these (any extra member is ignored, and any text accepted).
    rpc_id = {"type": ["string", "integer"]}
    rpc_params = {"type": ["object", "null"]}
    schemas["JsonRpcMessage"] = {
        "anyOf": [
            obj(
                {"jsonrpc": {"const": "2.0"}, "id": rpc_id, "method": STR, "params": rpc_params},
                required=["jsonrpc", "id", "method"],
                closed=False,
            ),
            obj(
                {"jsonrpc": {"const": "2.0"}, "method": STR, "params": rpc_params},
                required=["jsonrpc", "method"],
                closed=False,
            ),
            obj(
                {"jsonrpc": {"const": "2.0"}, "id": rpc_id, "result": OBJ},
                required=["jsonrpc", "id", "result"],
                closed=False,
            ),
            obj(
                {
                    "jsonrpc": {"const": "2.0"},
                    "id": {"type": ["string", "integer", "null"]},
                    "error": obj({"code": INT, "message": STR}, closed=False),
                },
                required=["jsonrpc", "id", "error"],
                closed=False,
            ),
        ],
        "description": "A JSON-RPC 2.0 request (answered with 200), or a notification or "
        "response (accepted with 202)",
    }
    schemas["JsonRpcAnswer"] = obj(
        {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["string", "integer", "null"]},
            "result": OBJ,
            "error": obj({"code": INT, "message": STR, "data": ANY}, ["code", "message"]),
        },
        required=["jsonrpc"],
        closed=False,
    )
    schemas["Health"] = obj(
        {
            "status": nstr_in(["ok", "degraded"]),
            "runtime": {"const": "server-beta"},
            "version": STR,
            "uptime": {"type": "number"},
            "managed": BOOL,
            "pid": INT,
            "initialized": BOOL,
            "mcpReady": BOOL,
            "ai": obj({"provider": STR, "authMethod": STR, "lastInteraction": {"type": "null"}}),
            "storage": obj({"engine": STR, "status": nstr_in(["ok", "error"])}),
            "queue": _HEALTH_QUEUE,
            "generation": obj({"embedded": BOOL}),
        }
    )
    boundary = obj(
        {"status": nstr_in(["active", "disabled", "errored"]), "reason": STR, "details": OBJ},
        required=["status", "reason"],
    )
    schema_status = obj({"initialized": BOOL, "schemaVersion": NSTR, "engine": STR})
    schemas["Info"] = obj(
        {
            "name": {"const": "claude-mem-server"},
            "runtime": {"const": "server-beta"},
            "version": STR,
            "authMode": STR,
            "postgres": schema_status,
            "storage": schema_status,
            "queue": obj({"engine": nstr_in(["memory", "taskiq", "disabled"])}),
            "provider": STR,
            "boundaries": obj(
                {
                    "queueManager": boundary,
                    "generationWorkerManager": boundary,
                    "providerRegistry": boundary,
                    "eventBroadcaster": boundary,
                }
            ),
            "queueLanes": _HEALTH_QUEUE["properties"]["lanes"],
            "semanticRecall": obj({"enabled": BOOL, "model": NSTR}),
        }
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "claude-mem server",
            "version": "1",
            "description": "Wire-compatible with claude-mem server-beta (see docs/ and api.md). "
            "Every *Epoch field is integer milliseconds since the Unix epoch. Every response "
            "carries an X-Request-Id header (an accepted inbound one, else a new UUID).",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


DOCUMENT = build()


def render() -> str:
    return json.dumps(DOCUMENT, indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if args:
        Path(args[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
