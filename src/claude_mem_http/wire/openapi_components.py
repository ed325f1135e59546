"""The OpenAPI document's components: every request and response shape, by name. The
response shapes of :mod:`.models` are generated from their classes; the rest (request
bodies, and the answers not yet given a wire class) are written here."""

from __future__ import annotations

from claude_mem_core.domain.budgets import PERIODS
from claude_mem_core.services.budgets import MAX_TOKENS, MAX_USD
from claude_mem_core.services.ingest import MAX_EPOCH_MS
from claude_mem_core.services.retention import MAX_RETAIN_DAYS
from claude_mem_http.wire.attrs_schema import component_schemas
from claude_mem_http.wire.bodies import BODY_CLASSES
from claude_mem_http.wire.json_schema import (
    INT,
    JSON_VALUE,
    KIND_PATTERN,
    NTEXT,
    STR,
    TEXT,
    Schema,
    body_obj,
    identifier,
    json_object,
    nonempty,
    nstr_in,
    obj,
)
from claude_mem_http.wire.models import RESPONSE_CLASSES

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
    # The response shapes the server builds from its wire classes, generated from them.
    **component_schemas([*RESPONSE_CLASSES, *BODY_CLASSES]),
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
