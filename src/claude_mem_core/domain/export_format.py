"""The project export format: versioned NDJSON (docs/your-data.md, "Taking your data with
you").

Line 1 is the header, ``{"format": "claude-mem-export", "version": 1, ...}``; every other
line is one record with a ``type``: every ``session``, then every ``event``, then every
``observation`` (generated observations, summaries and memories alike, told apart by
``kind``) with its source links inside it (``sources``). Within a type, records are in a
fixed order: sessions and observations by creation time, events by the time they
occurred, then by id. Each line is compact JSON with sorted keys and UTC timestamps with
milliseconds (``2025-01-31T09:15:00.123Z``), so one project exports to the same bytes on
every backend.

What a record holds is what is stored, without what belongs to the installation: no
idempotency keys (they hash the team and project, and are computed again for the project
an export is imported into), no job ids (jobs are not exported), no API keys, no audit.

Parsing (:func:`parse_header`, :func:`parse_record`) checks every field and raises
:class:`BadExportLine` naming the line and the field; a header of another format or of a
version this code does not read raises :class:`UnsupportedExportVersion`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from attrs import evolve, frozen

from claude_mem_core.domain import keys
from claude_mem_core.domain.models import (
    AgentEvent,
    Observation,
    ObservationSource,
    ObservationSourceType,
    ServerSession,
    SessionGenerationStatus,
)
from claude_mem_core.domain.supersession import subject_of
from claude_mem_core.errors import FieldIssue, InvalidInput

FORMAT = "claude-mem-export"
VERSION = 1

SESSION, EVENT, OBSERVATION = "session", "event", "observation"
RECORD_TYPES = (SESSION, EVENT, OBSERVATION)
"""The record types, in the order they appear (what a record refers to comes first)."""

HEADER_FIELDS_THAT_DIFFER = ("exportedAt", "team", "project")
"""Header fields that name the installation and the moment: two exports of the same
rows differ only there."""


class BadExportLine(InvalidInput):
    """A line of an export that cannot be imported: ``line`` (from 1) and ``path`` (the
    record's field, dotted inside it; ``""`` for the line as a whole) say where."""

    def __init__(self, line: int, field: str, message: str) -> None:
        super().__init__(
            [FieldIssue(field, message)],
            f"line {line}: {field + ': ' if field else ''}{message}",
        )
        self.line = line
        self.path = field


class UnsupportedExportVersion(BadExportLine):
    """The header names a format or a version this code does not read."""

    def __init__(self, line: int, version: object) -> None:
        super().__init__(
            line,
            "version",
            f"export format version {version!r} is not supported (this claude-mem reads "
            f"version {VERSION}; a newer claude-mem wrote it)",
        )
        self.version = version


# -- writing ----------------------------------------------------------------------------------


def encode(record: Mapping[str, Any]) -> str:
    """One line (with its newline): compact, sorted keys, non-ASCII kept as is."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def timestamp(moment: datetime | None) -> str | None:
    return None if moment is None else keys.iso_ms(moment)


@frozen(kw_only=True)
class Counts:
    sessions: int = 0
    events: int = 0
    observations: int = 0

    @property
    def total(self) -> int:
        return self.sessions + self.events + self.observations


def header(
    *, team_id: str, project_id: str, project_name: str, exported_at: datetime, counts: Counts
) -> dict[str, Any]:
    """The first line. ``counts`` are what the project held when the export began (rows
    written during an export may add to them); an import uses them for its progress only."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "exportedAt": timestamp(exported_at),
        "team": {"id": team_id},
        "project": {"id": project_id, "name": project_name},
        "counts": {
            "sessions": counts.sessions,
            "events": counts.events,
            "observations": counts.observations,
        },
        "order": list(RECORD_TYPES),
    }


def session_record(session: ServerSession) -> dict[str, Any]:
    return {
        "type": SESSION,
        "id": session.id,
        "externalSessionId": session.external_session_id,
        "contentSessionId": session.content_session_id,
        "agentId": session.agent_id,
        "agentType": session.agent_type,
        "platformSource": session.platform_source,
        "generationStatus": session.generation_status.value,
        "metadata": session.metadata,
        "startedAt": timestamp(session.started_at),
        "endedAt": timestamp(session.ended_at),
        "lastGeneratedAt": timestamp(session.last_generated_at),
        "createdAt": timestamp(session.created_at),
        "updatedAt": timestamp(session.updated_at),
    }


def event_record(event: AgentEvent) -> dict[str, Any]:
    return {
        "type": EVENT,
        "id": event.id,
        "sessionId": event.server_session_id,
        "sourceAdapter": event.source_adapter,
        "sourceEventId": event.source_event_id,
        "eventType": event.event_type,
        "payload": event.payload,
        "metadata": event.metadata,
        "occurredAt": timestamp(event.occurred_at),
        "receivedAt": timestamp(event.received_at),
        "createdAt": timestamp(event.created_at),
    }


def _source_record(source: ObservationSource) -> dict[str, Any]:
    return {
        "id": source.id,
        "sourceType": source.source_type.value,
        "sourceId": source.source_id,
        "metadata": source.metadata,
        "createdAt": timestamp(source.created_at),
    }


def observation_record(
    observation: Observation, sources: Sequence[ObservationSource]
) -> dict[str, Any]:
    ordered = sorted(sources, key=lambda s: (s.created_at, s.id))
    return {
        "type": OBSERVATION,
        "id": observation.id,
        "sessionId": observation.server_session_id,
        "kind": str(observation.kind),
        "observationType": observation.type,
        "title": observation.title,
        "subtitle": observation.subtitle,
        "narrative": observation.narrative,
        "facts": list(observation.facts),
        "concepts": list(observation.concepts),
        "filesRead": list(observation.files_read),
        "filesModified": list(observation.files_modified),
        "content": observation.content,
        "generationKey": observation.generation_key,
        "metadata": observation.metadata,
        "createdAt": timestamp(observation.created_at),
        "updatedAt": timestamp(observation.updated_at),
        # Dedup and supersession (optional on import: exports before them lack them).
        "fingerprint": observation.fingerprint,
        "occurrences": observation.occurrences,
        "supersededBy": observation.superseded_by,
        "supersededAt": timestamp(observation.superseded_at),
        "sources": [_source_record(s) for s in ordered],
    }


# -- reading ----------------------------------------------------------------------------------


@frozen(kw_only=True)
class Header:
    version: int
    counts: Counts


@frozen(kw_only=True)
class ImportedObservation:
    """An observation with its source links, attributed to the target project."""

    observation: Observation
    sources: tuple[ObservationSource, ...]


Record = ServerSession | AgentEvent | ImportedObservation


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def decode(line: int, text: str | bytes) -> dict[str, Any]:
    """The JSON object of a line."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadExportLine(line, "", f"is not JSON ({e})") from None
    if not isinstance(value, dict):
        raise BadExportLine(line, "", "must be a JSON object")
    return value


def parse_header(line: int, value: Mapping[str, Any]) -> Header:
    if value.get("format") != FORMAT:
        if "type" in value:
            raise BadExportLine(line, "format", f"the first line must be the {FORMAT} header")
        raise BadExportLine(line, "format", f"must be {FORMAT!r}")
    version = value.get("version")
    if version != VERSION or isinstance(version, bool):
        raise UnsupportedExportVersion(line, version)
    # Other header fields describe the export; a reader needs none of them but the counts.
    counts = value.get("counts")
    parsed = Counts()
    if counts is not None:
        given = counts if isinstance(counts, Mapping) else {}
        numbers: tuple[Any, ...] = tuple(
            given.get(k) for k in ("sessions", "events", "observations")
        )
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            raise BadExportLine(line, "counts", "must hold whole numbers of 0 or more")
        parsed = Counts(sessions=numbers[0], events=numbers[1], observations=numbers[2])
    return Header(version=VERSION, counts=parsed)


class _Fields:
    """Typed access to one record's fields, each failure naming the line and field."""

    def __init__(self, line: int, value: Mapping[str, Any], *, allowed: set[str]) -> None:
        self.line = line
        self.value = value
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise BadExportLine(line, unknown[0], "is not a field of this record")

    def fail(self, name: str, message: str) -> BadExportLine:
        return BadExportLine(self.line, name, message)

    def text(self, name: str) -> str:
        value = self.value.get(name)
        if not isinstance(value, str) or not value:
            raise self.fail(name, "must be a non-empty string")
        return value

    def optional_text(self, name: str) -> str | None:
        value = self.value.get(name)
        if value is not None and not isinstance(value, str):
            raise self.fail(name, "must be a string or null")
        return value

    def moment(self, name: str) -> datetime:
        value = self.value.get(name)
        if not isinstance(value, str):
            raise self.fail(name, "must be an ISO-8601 timestamp with a time zone")
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise self.fail(name, "must be an ISO-8601 timestamp with a time zone") from None
        if parsed.tzinfo is None:
            raise self.fail(name, "must be an ISO-8601 timestamp with a time zone")
        parsed = parsed.astimezone(UTC)
        return parsed.replace(microsecond=(parsed.microsecond // 1000) * 1000)

    def optional_moment(self, name: str) -> datetime | None:
        return None if self.value.get(name) is None else self.moment(name)

    def count(self, name: str) -> int:
        """A positive integer, 1 when absent."""
        value = self.value.get(name, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self.fail(name, "must be a positive integer")
        return value

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.value.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(name, "must be an object")
        return value

    def texts(self, name: str) -> Any:  # a list of strings (Any: the converter's type)
        value = self.value.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, "must be a list of strings")
        return value

    def choice(self, name: str, choices: Sequence[str]) -> str:
        value = self.value.get(name)
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}")
        return str(value)


_SESSION_FIELDS = {
    "type", "id", "externalSessionId", "contentSessionId", "agentId", "agentType",
    "platformSource", "generationStatus", "metadata", "startedAt", "endedAt",
    "lastGeneratedAt", "createdAt", "updatedAt",
}  # fmt: skip
_EVENT_FIELDS = {
    "type", "id", "sessionId", "sourceAdapter", "sourceEventId", "eventType", "payload",
    "metadata", "occurredAt", "receivedAt", "createdAt",
}  # fmt: skip
_OBSERVATION_FIELDS = {
    "type", "id", "sessionId", "kind", "observationType", "title", "subtitle", "narrative",
    "facts", "concepts", "filesRead", "filesModified", "content", "generationKey", "metadata",
    "createdAt", "updatedAt", "fingerprint", "occurrences", "supersededBy", "supersededAt",
    "sources",
}  # fmt: skip
_SOURCE_FIELDS = {"id", "sourceType", "sourceId", "metadata", "createdAt"}
_SESSION_STATUSES = [s.value for s in SessionGenerationStatus]
_SOURCE_TYPES = [s.value for s in ObservationSourceType]


def record_type(line: int, value: Mapping[str, Any]) -> str:
    kind = value.get("type")
    if kind not in RECORD_TYPES:
        raise BadExportLine(line, "type", f"must be one of {', '.join(RECORD_TYPES)}")
    return str(kind)


def parse_record(line: int, value: Mapping[str, Any], *, team_id: str, project_id: str) -> Record:
    """The record of a line, attributed to ``project_id`` of ``team_id``."""
    kind = record_type(line, value)
    if kind == SESSION:
        return _session(_Fields(line, value, allowed=_SESSION_FIELDS), team_id, project_id)
    if kind == EVENT:
        return _event(_Fields(line, value, allowed=_EVENT_FIELDS), team_id, project_id)
    return _observation(_Fields(line, value, allowed=_OBSERVATION_FIELDS), team_id, project_id)


def _session(f: _Fields, team_id: str, project_id: str) -> ServerSession:
    external = f.optional_text("externalSessionId")
    agent_id, agent_type = f.optional_text("agentId"), f.optional_text("agentType")
    platform = f.optional_text("platformSource")
    return ServerSession(
        id=f.text("id"),
        team_id=team_id,
        project_id=project_id,
        external_session_id=external,
        # The identity a session start would compute in the target project.
        idempotency_key=keys.server_session_key(
            team_id=team_id,
            project_id=project_id,
            external_session_id=external,
            agent_id=agent_id,
            agent_type=agent_type,
            platform_source=platform,
        ),
        content_session_id=f.optional_text("contentSessionId"),
        agent_id=agent_id,
        agent_type=agent_type,
        platform_source=platform,
        generation_status=SessionGenerationStatus(f.choice("generationStatus", _SESSION_STATUSES)),
        metadata=f.mapping("metadata"),
        started_at=f.moment("startedAt"),
        ended_at=f.optional_moment("endedAt"),
        last_generated_at=f.optional_moment("lastGeneratedAt"),
        created_at=f.moment("createdAt"),
        updated_at=f.moment("updatedAt"),
    )


def _event(f: _Fields, team_id: str, project_id: str) -> AgentEvent:
    if "payload" not in f.value:
        raise f.fail("payload", "is required")
    session_id = f.optional_text("sessionId")
    adapter, source_event_id = f.text("sourceAdapter"), f.optional_text("sourceEventId")
    event_type, occurred_at = f.text("eventType"), f.moment("occurredAt")
    payload = f.value["payload"]
    try:
        # The key a replay of this event would compute in the target project.
        key = keys.agent_event_key(
            team_id=team_id,
            project_id=project_id,
            source_adapter=adapter,
            source_event_id=source_event_id,
            server_session_id=session_id,
            event_type=event_type,
            occurred_at=occurred_at,
            payload=payload,
        )
    except (TypeError, ValueError):
        raise f.fail("payload", "must be JSON") from None
    return AgentEvent(
        id=f.text("id"),
        team_id=team_id,
        project_id=project_id,
        server_session_id=session_id,
        source_adapter=adapter,
        source_event_id=source_event_id,
        idempotency_key=key,
        event_type=event_type,
        payload=payload,
        metadata=f.mapping("metadata"),
        occurred_at=occurred_at,
        received_at=f.moment("receivedAt"),
        created_at=f.moment("createdAt"),
    )


def _observation(f: _Fields, team_id: str, project_id: str) -> ImportedObservation:
    observation = Observation(
        id=f.text("id"),
        team_id=team_id,
        project_id=project_id,
        server_session_id=f.optional_text("sessionId"),
        kind=f.text("kind"),
        type=f.optional_text("observationType"),
        title=f.optional_text("title"),
        subtitle=f.optional_text("subtitle"),
        narrative=f.optional_text("narrative"),
        facts=f.texts("facts"),
        concepts=f.texts("concepts"),
        files_read=f.texts("filesRead"),
        files_modified=f.texts("filesModified"),
        content=f.text("content"),
        generation_key=f.optional_text("generationKey"),
        metadata=f.mapping("metadata"),
        created_at=f.moment("createdAt"),
        updated_at=f.moment("updatedAt"),
        fingerprint=f.optional_text("fingerprint"),
        occurrences=f.count("occurrences"),
        superseded_by=f.optional_text("supersededBy"),
        superseded_at=f.optional_moment("supersededAt"),
    )
    # Not exported: recomputed from the fields, so later observations can supersede it.
    observation = evolve(observation, subject=subject_of(observation))
    raw = f.value.get("sources", [])
    if not isinstance(raw, list):
        raise f.fail("sources", "must be a list")
    sources = []
    for n, item in enumerate(raw):
        if not isinstance(item, dict):
            raise f.fail(f"sources.{n}", "must be an object")
        sources.append(_source(f, n, item, observation))
    return ImportedObservation(observation=observation, sources=tuple(sources))


def _source(
    parent: _Fields, n: int, value: Mapping[str, Any], observation: Observation
) -> ObservationSource:
    try:
        f = _Fields(parent.line, value, allowed=_SOURCE_FIELDS)
        source_type = ObservationSourceType(f.choice("sourceType", _SOURCE_TYPES))
        source_id = f.text("sourceId")
        return ObservationSource(
            id=f.text("id"),
            observation_id=observation.id,
            team_id=observation.team_id,
            project_id=observation.project_id,
            source_type=source_type,
            source_id=source_id,
            agent_event_id=source_id if source_type is ObservationSourceType.AGENT_EVENT else None,
            metadata=f.mapping("metadata"),
            created_at=f.moment("createdAt"),
        )
    except BadExportLine as bad:
        raise BadExportLine(bad.line, f"sources.{n}.{bad.path}", bad.issues[0].message) from None


__all__ = [
    "EVENT",
    "FORMAT",
    "HEADER_FIELDS_THAT_DIFFER",
    "OBSERVATION",
    "RECORD_TYPES",
    "SESSION",
    "VERSION",
    "BadExportLine",
    "Counts",
    "Header",
    "ImportedObservation",
    "Record",
    "UnsupportedExportVersion",
    "decode",
    "encode",
    "event_record",
    "header",
    "observation_record",
    "parse_header",
    "parse_record",
    "record_type",
    "session_record",
]
