"""Deterministic keys, byte-compatible with the reference server (api.md §1.14).

They make replays idempotent: the same event, session, job or generated observation always
maps to the same key, so a retry finds the row it wrote before instead of writing another.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any, Literal

QueueKind = Literal["event", "event-batch", "summary", "reindex"]

TRANSPORT_PREFIXES: dict[str, str] = {
    "event": "evt",
    "event-batch": "evtb",
    "summary": "sum",
    "reindex": "rdx",
}


def _js_numbers(value: Any) -> Any:
    """JavaScript prints integral floats without a fraction (1.0 -> 1)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _js_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_js_numbers(v) for v in value]
    return value


def _utf16_key(key: str) -> list[int]:
    # JS sorts object keys by UTF-16 code units, not code points.
    encoded = key.encode("utf-16-be")
    return [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        # Below U+10000 UTF-16 order is code point order, Python's own: most keys are ASCII.
        ordered = (
            sorted(value) if all(k.isascii() for k in value) else sorted(value, key=_utf16_key)
        )
        return {k: _sorted(value[k]) for k in ordered}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """Keys sorted recursively, no whitespace, non-ASCII unescaped (JSON.stringify rules)."""
    return json.dumps(
        _sorted(_js_numbers(value)), separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _hash_array(items: list[Any]) -> str:
    return _sha256(canonical_json(items))


def payload_digest(payload: Any) -> str:
    """SHA-256 of a payload's canonical JSON: tells a replay from a different payload."""
    return _sha256(canonical_json(payload if payload is not None else {}))


def iso_ms(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, as JavaScript's ``toISOString``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def agent_event_key(
    *,
    team_id: str,
    project_id: str,
    source_adapter: str,
    source_event_id: str | None,
    server_session_id: str | None,
    event_type: str,
    occurred_at: datetime,
    payload: Any,
) -> str:
    if source_event_id:
        items: list[Any] = [team_id, project_id, source_adapter, source_event_id]
    else:
        items = [
            team_id,
            project_id,
            source_adapter,
            server_session_id,
            event_type,
            iso_ms(occurred_at),
            canonical_json(payload if payload is not None else {}),
        ]
    return "agent_event:v1:" + _hash_array(items)


def server_session_key(
    *,
    team_id: str,
    project_id: str,
    external_session_id: str | None = None,
    content_session_id: str | None = None,
    agent_id: str | None = None,
    agent_type: str | None = None,
    platform_source: str | None = None,
) -> str | None:
    if external_session_id:
        items: list[Any] = [team_id, project_id, "external", external_session_id]
    elif content_session_id:
        items = [team_id, project_id, "content", platform_source, agent_id, content_session_id]
    elif agent_id and platform_source:
        items = [team_id, project_id, "agent", platform_source, agent_id, agent_type]
    else:
        return None
    return "server_session:v1:" + _hash_array(items)


def generation_job_key(
    *, team_id: str, project_id: str, source_type: str, source_id: str, job_type: str
) -> str:
    return "observation_generation_job:v1:" + _hash_array(
        [team_id, project_id, source_type, source_id, job_type]
    )


def generation_key(job_id: str, index: int, content: str) -> str:
    # The reference double-encodes: the array's one element is the JSON string literal.
    digest = _hash_array([canonical_json(content.strip())])
    return f"generation:v1:{job_id}:{index}:{digest}"


def transport_id(
    kind: QueueKind, *, team_id: str, project_id: str, source_type: str, source_id: str
) -> str:
    # Insertion order, not sorted: exactly kind, team_id, project_id, source_type, source_id.
    body = json.dumps(
        {
            "kind": kind,
            "team_id": team_id,
            "project_id": project_id,
            "source_type": source_type,
            "source_id": source_id,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return f"{TRANSPORT_PREFIXES[kind]}_{_sha256(body)}"
