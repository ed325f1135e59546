"""The OpenAPI document's paths for operating the memory: jobs, teams and projects (export,
import, retention, budgets), usage, the compatibility routes, MCP, health, the live
stream and metrics."""

from __future__ import annotations

from typing import Any

from claude_mem_core.services.usage import GROUPINGS, MAX_REPORT_DAYS
from claude_mem_http.wire import bodies, health_models
from claude_mem_http.wire.bodies import body_ref
from claude_mem_http.wire.json_schema import (
    SOURCE_TYPES,
    STR,
    nonempty,
    nstr_in,
    ref,
)
from claude_mem_http.wire.models import CursorGone
from claude_mem_http.wire.openapi_operations import (
    _FLAG,
    _JOB_ID,
    COMPAT_400,
    OFFSET,
    PAGE_PARAMS,
    SINCE,
    STREAM_KINDS_PATTERN,
    _erase_op,
    _error,
    _ok,
    _op,
    _path_param,
    _query,
    _refused,
)


def admin_paths() -> dict[str, Any]:
    """Jobs, teams and projects, usage and budgets, the compatibility routes, MCP,
    health, the stream and metrics."""
    job_status_body = body_ref(bodies.JobBody)
    return {
        "/v1/jobs": {
            "get": _op(
                "List the caller's generation jobs",
                {"200": _ok(body_ref(bodies.JobPage))},
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
                    "200": _ok(body_ref(bodies.RetryBody)),
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
                    "200": _ok(body_ref(bodies.CancelBody)),
                    "409": _error("The job already completed or failed"),
                },
                params=_JOB_ID,
                tags=["jobs"],
            )
        },
        "/v1/teams/{teamId}/jobs": {
            "get": _op(
                "List the jobs of the caller's team",
                {"200": _ok(body_ref(bodies.JobPage))},
                params=[_path_param("teamId"), *PAGE_PARAMS],
                tags=["jobs"],
            )
        },
        "/v1/projects/{projectId}/jobs": {
            "get": _op(
                "List the jobs of one project",
                {"200": _ok(body_ref(bodies.JobPage))},
                params=[_path_param("projectId"), *PAGE_PARAMS],
                tags=["jobs"],
            )
        },
        "/v1/projects": {
            "get": _op(
                "List the projects the caller can see",
                {"200": _ok(body_ref(bodies.ProjectPage))},
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
                        "200": _ok(body_ref(bodies.ImportedBody), "Imported"),
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
                {"200": _ok(body_ref(bodies.ProjectBody))},
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
                {"200": _ok(body_ref(bodies.BudgetBody))},
                body="BudgetInput",
                params=[_path_param("id")],
                tags=["projects"],
            )
        },
        "/v1/usage": {
            "get": _op(
                "Token ledger sums: what generation cost the team or one project, by day, "
                "model or project",
                {"200": _ok(body_ref(bodies.UsageBody))},
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
                    "200": _ok(body_ref(bodies.CompatToolUse)),
                    "400": COMPAT_400,
                    "500": _ok(body_ref(bodies.CompatNotStored), "Unexpected error"),
                },
                body="CompatObservationInput",
                tags=["compat"],
            )
        },
        "/api/sessions/summarize": {
            "post": _op(
                "Legacy hook: end a Claude session and queue its summary",
                {
                    "200": _ok(body_ref(bodies.CompatSummary)),
                    "400": COMPAT_400,
                    "500": _ok(body_ref(bodies.CompatSummaryFailed), "Unexpected error"),
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
                {"200": _ok(body_ref(health_models.Alive))},
                secured=False,
                tags=["health"],
            )
        },
        "/api/health": {
            "get": _op(
                "Health with real storage and queue pings",
                {
                    "200": _ok(body_ref(health_models.Health)),
                    "503": _ok(body_ref(health_models.Health), "Degraded: a dependency is down"),
                },
                secured=False,
                tags=["health"],
            )
        },
        "/api/readiness": {
            "get": _op(
                "Readiness",
                {
                    "200": _ok(body_ref(health_models.Ready)),
                    "503": _ok(body_ref(health_models.NotReady), "Not ready"),
                },
                secured=False,
                tags=["health"],
            )
        },
        "/v1/info": {
            "get": _op(
                "Server information",
                {"200": _ok(body_ref(health_models.Info))},
                secured=False,
                tags=["health"],
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
                        "content": {"application/json": {"schema": body_ref(CursorGone)}},
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
