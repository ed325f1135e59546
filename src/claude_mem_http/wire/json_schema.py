"""JSON Schema building blocks for the OpenAPI document: the common types, object and
reference builders, and the string rules (no NUL, not blank, ids and labels bounded)."""

from __future__ import annotations

from typing import Any

from claude_mem_core.services.ingest import MAX_IDENTIFIER_LENGTH

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
