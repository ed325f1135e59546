"""Wire shapes, requests: strict parsing of bodies and query parameters (the responses
are :mod:`claude_mem_http.wire.responses`).

Parsing never guesses: a wrong type is a 400 naming the field as the client spelled it
(camelCase body fields, snake_case query parameters). Unknown body keys are ignored.
Every ``*Epoch`` field is integer milliseconds since the Unix epoch.
"""

from __future__ import annotations

import codecs
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from claude_mem_core.errors import FieldIssue, InvalidInput
from claude_mem_core.services.ingest import (
    MAX_EPOCH_MS,
    MAX_IDENTIFIER_LENGTH,
    EventInput,
    epoch_ms_to_datetime,
    off_loop,
)
from claude_mem_core.services.memories import MemoryInput
from claude_mem_core.services.sessions import SessionInput

MAX_BODY_BYTES = 5 * 1024 * 1024
# Ids and names (session ids, agent names, tool use ids): keys and labels, not content.
MAX_ID = MAX_IDENTIFIER_LENGTH
MAX_WAIT_MS = 30_000
JSON = Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class RequestInvalid(InvalidInput):
    """A request that failed parsing; issue paths are already in the client's terms."""


# -- request bodies -----------------------------------------------------------------------


def _is_json_type(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def read_json(request: web.Request) -> JSON:
    """The request body as JSON. Wrong content type, unsupported charset or malformed JSON
    is a 400. A large body is decoded and checked in a worker thread: that is CPU work
    proportional to its size, and the event loop keeps serving other requests meanwhile."""
    raw = await request.read()  # > client_max_size raises 413 (mapped by the middleware)
    if not _is_json_type(request.content_type):
        raise RequestInvalid(
            FieldIssue(
                "", "request body must be JSON (Content-Type: application/json)", "content_type"
            )
        )
    encoding = _body_encoding(request.charset)
    if len(raw) > OFF_LOOP_BYTES:
        return await off_loop(lambda: _decode_json(raw, encoding))
    return _decode_json(raw, encoding)


# Bodies larger than this are decoded off the event loop.
OFF_LOOP_BYTES = 64 * 1024
# The Unicode encodings a JSON text may be sent in (RFC 8259 asks for UTF-8; RFC 7159
# allowed the others): the declared one is honoured, any other charset is refused.
_JSON_ENCODINGS = frozenset(
    {"utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}
)


def _body_encoding(charset: str | None) -> str:
    if charset is None:
        return "utf-8"
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        name = ""
    if name not in _JSON_ENCODINGS:
        raise RequestInvalid(
            FieldIssue(
                "",
                "unsupported charset in Content-Type: send UTF-8 (or UTF-16 or UTF-32)",
                "content_type",
            )
        )
    return name


def _decode_json(raw: bytes, encoding: str) -> JSON:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise RequestInvalid(
            FieldIssue("", f"request body is not valid {encoding}", "invalid_json")
        ) from None
    if not text.strip():
        raise RequestInvalid(FieldIssue("", "request body must be a JSON value", "invalid_json"))
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise RequestInvalid(FieldIssue("", f"malformed JSON: {exc}", "invalid_json")) from None
    except RecursionError:
        raise RequestInvalid(FieldIssue("", "JSON is nested too deeply", "invalid_json")) from None
    if _UNSTORABLE_ESCAPE.search(text) is not None:
        _check_text(value)
    return value


# The only way a decoded JSON string can hold a NUL or a lone surrogate: json.loads refuses
# raw control characters in strings, and the strict codecs refuse encoded surrogates. A
# text without such an escape skips the walk over every string (a quarter of a second for
# 5 MB of short strings); a false alarm (an escaped backslash before "u0000", a surrogate
# pair) only costs the walk.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def _no_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON (RFC 8259) and PostgreSQL do not.
    raise ValueError(f"{name} is not a JSON value")


def _check_text(value: JSON) -> None:
    """Refuse text no database can store faithfully: NUL characters (PostgreSQL rejects
    them in text and jsonb) and lone UTF-16 surrogates (not encodable as UTF-8)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                _check_string(path or "<key>", key)
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((f"{path}.{n}" if path else str(n), child) for n, child in enumerate(item))
        elif isinstance(item, str):
            _check_string(path, item)


def _check_string(path: str, text: str) -> None:
    if "\x00" in text:
        raise RequestInvalid(FieldIssue(path, "must not contain NUL characters", "invalid_string"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestInvalid(
            FieldIssue(path, "must be valid Unicode (lone surrogate)", "invalid_string")
        ) from None


class Reader:
    """Reads fields of one JSON object, collecting every problem before failing."""

    def __init__(self, data: JSON, prefix: str = "") -> None:
        self.prefix = prefix
        self.issues: list[FieldIssue] = []
        if isinstance(data, dict):
            self.data: dict[str, Any] = data
        else:
            self.data = {}
            self.issues.append(
                FieldIssue(prefix.rstrip("."), "must be a JSON object", "invalid_type")
            )

    def _issue(self, name: str, message: str, code: str = "invalid_type") -> None:
        self.issues.append(FieldIssue(self.prefix + name, message, code))

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        nullable: bool = True,
        max_length: int | None = None,
    ) -> str | None:
        """A non-empty string (of at most ``max_length`` characters). Absent is None (or an
        issue when required); JSON null is None when ``nullable``."""
        if name not in self.data:
            if required:
                self._issue(name, "is required", "required")
            return None
        value = self.data[name]
        if value is None:
            if required or not nullable:
                self._issue(name, "must be a non-empty string, not null")
            return None
        if not isinstance(value, str) or not value:
            self._issue(name, "must be a non-empty string")
            return None
        if max_length is not None and len(value) > max_length:
            self._issue(name, f"must be at most {max_length} characters", "too_big")
            return None
        return value

    def integer(
        self,
        name: str,
        *,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        if name not in self.data or (self.data[name] is None and not required):
            if required:
                self._issue(name, "is required", "required")
            return None
        value = self.data[name]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self._issue(name, "must be an integer")
            return None
        if minimum is not None and value < minimum:
            self._issue(name, f"must be at least {minimum}", "too_small")
            return None
        if maximum is not None and value > maximum:
            self._issue(name, f"must be at most {maximum}", "too_big")
            return None
        return value

    def object(self, name: str) -> dict[str, Any] | None:
        if name not in self.data or self.data[name] is None:
            return None
        value = self.data[name]
        if not isinstance(value, dict):
            self._issue(name, "must be a JSON object")
            return None
        return value

    def any(self, name: str) -> JSON:
        return self.data.get(name)

    def enum(self, name: str, values: tuple[str, ...], *, required: bool = False) -> str | None:
        value = self.string(name, required=required)
        if value is not None and value not in values:
            self._issue(name, f"must be one of {', '.join(values)}", "invalid_enum_value")
            return None
        return value

    def done(self) -> None:
        if self.issues:
            raise RequestInvalid(self.issues)


EVENT_SOURCE_TYPES = ("hook", "worker", "provider", "server", "api")


def _event(reader: Reader) -> EventInput | None:
    project_id = reader.string("projectId", required=True)
    source_type = reader.enum("sourceType", EVENT_SOURCE_TYPES, required=True)
    event_type = reader.string("eventType", required=True)
    occurred = reader.integer("occurredAtEpoch", required=True, minimum=0, maximum=MAX_EPOCH_MS)
    session_id = reader.string("serverSessionId")
    source_event_id = reader.string("sourceEventId")
    reader.string("contentSessionId")  # accepted, not stored (api.md §3.1)
    reader.string("memorySessionId")
    metadata = reader.object("metadata")
    payload = reader.any("payload")
    if project_id is None or source_type is None or event_type is None or occurred is None:
        return None
    return EventInput(
        project_id=project_id,
        source_adapter=source_type,
        event_type=event_type,
        occurred_at=epoch_ms_to_datetime(occurred),
        server_session_id=session_id,
        source_event_id=source_event_id,
        payload=payload if payload is not None else {},
        metadata=metadata or {},
    )


def parse_event(data: JSON) -> EventInput:
    reader = Reader(data)
    item = _event(reader)
    reader.done()
    assert item is not None
    return item


MAX_BATCH = 500


def parse_event_batch(data: JSON) -> list[EventInput]:
    if not isinstance(data, list):
        raise RequestInvalid(FieldIssue("", "must be a JSON array of events", "invalid_type"))
    if not data:
        raise RequestInvalid(FieldIssue("", "must contain at least one event", "too_small"))
    if len(data) > MAX_BATCH:
        raise RequestInvalid(FieldIssue("", f"must contain at most {MAX_BATCH} events", "too_big"))
    items: list[EventInput] = []
    issues: list[FieldIssue] = []
    for index, element in enumerate(data):
        reader = Reader(element, f"{index}.")
        item = _event(reader)
        issues.extend(reader.issues)
        if item is not None:
            items.append(item)
    if issues:
        raise RequestInvalid(issues)
    return items


def parse_session_start(data: JSON) -> SessionInput:
    reader = Reader(data)
    project_id = reader.string("projectId", required=True)
    fields = {
        "external_session_id": reader.string("externalSessionId", max_length=MAX_ID),
        "content_session_id": reader.string("contentSessionId", max_length=MAX_ID),
        "agent_id": reader.string("agentId", max_length=MAX_ID),
        "agent_type": reader.string("agentType", max_length=MAX_ID),
        "platform_source": reader.string("platformSource", max_length=MAX_ID),
    }
    metadata = reader.object("metadata")
    reader.done()
    assert project_id is not None
    return SessionInput(project_id=project_id, metadata=metadata or {}, **fields)


def parse_memory(data: JSON) -> MemoryInput:
    reader = Reader(data)
    project_id = reader.string("projectId", required=True)
    content = reader.string("content", required=True)
    kind = reader.string("kind", max_length=MAX_ID)
    session_id = reader.string("serverSessionId", max_length=MAX_ID)
    title = reader.string("title")
    type_ = reader.string("type", max_length=MAX_ID)
    metadata = reader.object("metadata")
    reader.done()
    assert project_id is not None and content is not None
    return MemoryInput(
        project_id=project_id,
        content=content,
        kind=kind or "manual",
        server_session_id=session_id,
        title=title,
        type=type_,
        metadata=metadata or {},
    )


def _search_fields(
    reader: Reader, *, default_limit: int, max_limit: int
) -> tuple[str | None, str | None, int]:
    """The search fields (``None`` where one is missing: ``reader.done()`` refuses it)."""
    project_id = reader.string("projectId", required=True)
    query = reader.string("query", required=True)
    limit = reader.integer("limit", minimum=1, maximum=max_limit)
    return project_id, query, default_limit if limit is None else limit


def parse_search(
    data: JSON, *, default_limit: int, max_limit: int
) -> tuple[str, str, int, str | None]:
    """``/v1/search``: the search fields and an optional ``kind`` (checked by the core)."""
    reader = Reader(data)
    project_id, query, limit = _search_fields(
        reader, default_limit=default_limit, max_limit=max_limit
    )
    kind = reader.string("kind")
    reader.done()
    assert project_id is not None and query is not None
    return project_id, query, limit, kind


def parse_context(
    data: JSON, *, default_limit: int, max_limit: int
) -> tuple[str, str, int, int | None]:
    """``/v1/context``: the search fields and an optional ``maxTokens`` budget."""
    reader = Reader(data)
    project_id, query, limit = _search_fields(
        reader, default_limit=default_limit, max_limit=max_limit
    )
    max_tokens = reader.integer("maxTokens", minimum=1, maximum=MAX_CONTEXT_TOKENS)
    reader.done()
    assert project_id is not None and query is not None
    return project_id, query, limit, max_tokens


# A budget above any model's context window is a mistake, not a wish.
MAX_CONTEXT_TOKENS = 1_000_000


def parse_compat_observation(data: JSON) -> dict[str, Any]:
    """Legacy hook body; JSON null is tolerated for every optional string."""
    reader = Reader(data)
    out: dict[str, Any] = {
        "contentSessionId": reader.string("contentSessionId", required=True, max_length=MAX_ID),
        "tool_name": reader.string("tool_name", required=True, max_length=MAX_ID),
    }
    for name in ("cwd", "agentId", "agentType", "platformSource", "tool_use_id", "toolUseId"):
        out[name] = _lenient_string(reader, name)
    out["tool_input"] = reader.any("tool_input")
    out["tool_response"] = reader.any("tool_response")
    reader.done()
    return out


def parse_compat_summarize(data: JSON) -> dict[str, Any]:
    reader = Reader(data)
    out: dict[str, Any] = {
        "contentSessionId": reader.string("contentSessionId", required=True, max_length=MAX_ID)
    }
    for name in ("agentId", "platformSource", "last_assistant_message"):
        out[name] = _lenient_string(reader, name)
    reader.done()
    return out


def _lenient_string(reader: Reader, name: str) -> str | None:
    """Optional legacy string: absent, null and "" all mean "not given"."""
    value = reader.data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        reader.issues.append(FieldIssue(reader.prefix + name, "must be a string"))
        return None
    if name in _COMPAT_IDS and len(value) > MAX_ID:
        reader.issues.append(
            FieldIssue(reader.prefix + name, f"must be at most {MAX_ID} characters", "too_big")
        )
        return None
    return value


# Legacy strings that are ids or names (``cwd`` is a path and ``last_assistant_message`` text).
_COMPAT_IDS = frozenset({"agentId", "agentType", "platformSource", "tool_use_id", "toolUseId"})


# -- query parameters ---------------------------------------------------------------------


def query_flag(query: MultiMapping[str], name: str, default: bool) -> bool:
    values = query.getall(name, [])
    if not values:
        return default
    if len(values) > 1 or values[0] not in ("true", "false"):
        raise RequestInvalid(FieldIssue(name, 'must be "true" or "false"', "invalid_enum_value"))
    return values[0] == "true"


def query_one(query: MultiMapping[str], name: str) -> str | None:
    values = query.getall(name, [])
    if not values:
        return None
    if len(values) > 1:
        raise RequestInvalid(FieldIssue(name, "must be given at most once", "invalid"))
    return values[0]


_QUERY_INT = re.compile(r"[+-]?[0-9]{1,18}")


def query_int(
    query: MultiMapping[str], name: str, default: int, *, minimum: int, maximum: int | None
) -> int:
    raw = query_one(query, name)
    if raw is None:
        return default
    text = raw.strip()
    # ASCII digits only: str.isdigit() also accepts "²" and int() refuses it, and a sign
    # is accepted once ("--5" is not a number).
    if _QUERY_INT.fullmatch(text) is None:
        raise RequestInvalid(FieldIssue(name, "must be an integer", "invalid_type"))
    value = int(text)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise RequestInvalid(FieldIssue(name, f"must be an integer {bounds}", "invalid"))
    return value


def query_since(query: MultiMapping[str], name: str = "since") -> datetime | None:
    """An ISO-8601 timestamp (a missing offset means UTC) or epoch milliseconds."""
    raw = query_one(query, name)
    if raw is None:
        return None
    text = raw.strip()
    try:
        if text.isascii() and text.isdigit() and len(text) <= 15:
            return epoch_ms_to_datetime(int(text))
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        raise RequestInvalid(
            FieldIssue(name, "must be an ISO-8601 timestamp or epoch milliseconds", "invalid")
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
