"""Row ↔ model mapping for the SQLAlchemy storage: a row read back becomes a domain record
(``_event``, ``_job``, …), a record becomes the column values it is written with
(``_event_values``, ``_job_values``, …), and ``_merge`` is the shallow metadata merge of
every read-merge-write. ``event_from_row`` and ``observation_from_row`` are the readers the
search-index rebuild uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from claude_mem_core.domain.models import (
    AgentEvent,
    ApiKey,
    AuditEntry,
    GenerationJob,
    JobEvent,
    JobEventType,
    JobStatus,
    JobType,
    Observation,
    ObservationSource,
    ObservationSourceType,
    Project,
    ServerSession,
    SessionGenerationStatus,
    SourceType,
    Team,
)


def _columns(table: sa.Table) -> list[sa.Column[Any]]:
    # content_search is PostgreSQL-only and internal: never read it back.
    return [c for c in table.columns if c.key != "content_search"]


def _team(r: RowMapping) -> Team:
    return Team(
        id=r["id"],
        name=r["name"],
        metadata=r["metadata"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _project(r: RowMapping) -> Project:
    return Project(
        id=r["id"],
        team_id=r["team_id"],
        name=r["name"],
        metadata=r["metadata"],
        retain_days=r.get("retain_days"),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _api_key(r: RowMapping) -> ApiKey:
    return ApiKey(
        id=r["id"],
        key_hash=r["key_hash"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        actor_id=r["actor_id"],
        name=r["name"],
        scopes=r["scopes"],
        revoked_at=r["revoked_at"],
        expires_at=r["expires_at"],
        last_used_at=r["last_used_at"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _session(r: RowMapping) -> ServerSession:
    return ServerSession(
        id=r["id"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        external_session_id=r["external_session_id"],
        idempotency_key=r["idempotency_key"],
        content_session_id=r["content_session_id"],
        agent_id=r["agent_id"],
        agent_type=r["agent_type"],
        platform_source=r["platform_source"],
        generation_status=SessionGenerationStatus(r["generation_status"]),
        metadata=r["metadata"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        last_generated_at=r["last_generated_at"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _event(r: RowMapping) -> AgentEvent:
    return AgentEvent(
        id=r["id"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        server_session_id=r["server_session_id"],
        source_adapter=r["source_adapter"],
        source_event_id=r["source_event_id"],
        idempotency_key=r["idempotency_key"],
        event_type=r["event_type"],
        payload=r["payload"],
        metadata=r["metadata"],
        occurred_at=r["occurred_at"],
        received_at=r["received_at"],
        created_at=r["created_at"],
    )


def _job(r: RowMapping) -> GenerationJob:
    return GenerationJob(
        id=r["id"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        agent_event_id=r["agent_event_id"],
        source_type=SourceType(r["source_type"]),
        source_id=r["source_id"],
        server_session_id=r["server_session_id"],
        job_type=JobType(r["job_type"]),
        status=JobStatus(r["status"]),
        idempotency_key=r["idempotency_key"],
        transport_id=r["transport_id"],
        attempts=r["attempts"],
        max_attempts=r["max_attempts"],
        next_attempt_at=r["next_attempt_at"],
        locked_at=r["locked_at"],
        locked_by=r["locked_by"],
        completed_at=r["completed_at"],
        failed_at=r["failed_at"],
        cancelled_at=r["cancelled_at"],
        last_error=r["last_error"],
        payload=r["payload"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _job_event(r: RowMapping) -> JobEvent:
    return JobEvent(
        id=r["id"],
        generation_job_id=r["generation_job_id"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        event_type=JobEventType(r["event_type"]),
        status_after=JobStatus(r["status_after"]),
        attempt=r["attempt"],
        details=r["details"],
        created_at=r["created_at"],
    )


def _observation(r: RowMapping) -> Observation:
    return Observation(
        id=r["id"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        server_session_id=r["server_session_id"],
        kind=r["kind"],
        type=r["type"],
        title=r["title"],
        subtitle=r["subtitle"],
        narrative=r["narrative"],
        facts=r["facts"],
        concepts=r["concepts"],
        files_read=r["files_read"],
        files_modified=r["files_modified"],
        content=r["content"],
        generation_key=r["generation_key"],
        metadata=r["metadata"],
        created_by_job_id=r["created_by_job_id"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        # Absent from reads of the reindexing revisions, which run before revision 0016.
        fingerprint=r.get("fingerprint"),
        occurrences=r.get("occurrences", 1),
        superseded_by=r.get("superseded_by"),
        superseded_at=r.get("superseded_at"),
        subject=r.get("subject"),
    )


def _source(r: RowMapping) -> ObservationSource:
    return ObservationSource(
        id=r["id"],
        observation_id=r["observation_id"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        source_type=ObservationSourceType(r["source_type"]),
        source_id=r["source_id"],
        agent_event_id=r["agent_event_id"],
        generation_job_id=r["generation_job_id"],
        metadata=r["metadata"],
        created_at=r["created_at"],
    )


def _audit(r: RowMapping) -> AuditEntry:
    return AuditEntry(
        id=r["id"],
        team_id=r["team_id"],
        project_id=r["project_id"],
        actor_id=r["actor_id"],
        api_key_id=r["api_key_id"],
        action=r["action"],
        resource_type=r["resource_type"],
        resource_id=r["resource_id"],
        details=r["details"],
        created_at=r["created_at"],
    )


def _job_values(job: GenerationJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "team_id": job.team_id,
        "project_id": job.project_id,
        "agent_event_id": job.agent_event_id,
        "source_type": job.source_type.value,
        "source_id": job.source_id,
        "server_session_id": job.server_session_id,
        "job_type": job.job_type.value,
        "idempotency_key": job.idempotency_key,
        "created_at": job.created_at,
        **_job_mutable_values(job),
    }


_JOB_MUTABLE = (
    "status",
    "transport_id",
    "attempts",
    "max_attempts",
    "next_attempt_at",
    "locked_at",
    "locked_by",
    "completed_at",
    "failed_at",
    "cancelled_at",
    "last_error",
    "payload",
    "updated_at",
)


def _job_mutable_values(job: GenerationJob) -> dict[str, Any]:
    return {
        "status": job.status.value,
        "transport_id": job.transport_id,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "next_attempt_at": job.next_attempt_at,
        "locked_at": job.locked_at,
        "locked_by": job.locked_by,
        "completed_at": job.completed_at,
        "failed_at": job.failed_at,
        "cancelled_at": job.cancelled_at,
        "last_error": job.last_error,
        "payload": job.payload,
        "updated_at": job.updated_at,
    }


def _event_values(event: AgentEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "team_id": event.team_id,
        "project_id": event.project_id,
        "server_session_id": event.server_session_id,
        "source_adapter": event.source_adapter,
        "source_event_id": event.source_event_id,
        "idempotency_key": event.idempotency_key,
        "event_type": event.event_type,
        "payload": event.payload,
        "metadata": event.metadata,
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "created_at": event.created_at,
    }


def _job_event_values(event: JobEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "generation_job_id": event.generation_job_id,
        "team_id": event.team_id,
        "project_id": event.project_id,
        "event_type": event.event_type.value,
        "status_after": event.status_after.value,
        "attempt": event.attempt,
        "details": event.details,
        "created_at": event.created_at,
        "w_job_id": event.generation_job_id,
    }


def _observation_values(observation: Observation) -> dict[str, Any]:
    return {
        "id": observation.id,
        "team_id": observation.team_id,
        "project_id": observation.project_id,
        "server_session_id": observation.server_session_id,
        "kind": str(observation.kind),
        "type": observation.type,
        "title": observation.title,
        "subtitle": observation.subtitle,
        "narrative": observation.narrative,
        "facts": list(observation.facts),
        "concepts": list(observation.concepts),
        "files_read": list(observation.files_read),
        "files_modified": list(observation.files_modified),
        "content": observation.content,
        "generation_key": observation.generation_key,
        "metadata": observation.metadata,
        "created_by_job_id": observation.created_by_job_id,
        "created_at": observation.created_at,
        "updated_at": observation.updated_at,
        "fingerprint": observation.fingerprint,
        "occurrences": observation.occurrences,
        "superseded_by": observation.superseded_by,
        "superseded_at": observation.superseded_at,
        "subject": observation.subject,
    }


def _source_values(source: ObservationSource) -> dict[str, Any]:
    return {
        "id": source.id,
        "observation_id": source.observation_id,
        "team_id": source.team_id,
        "project_id": source.project_id,
        "agent_event_id": source.agent_event_id,
        "generation_job_id": source.generation_job_id,
        "source_type": source.source_type.value,
        "source_id": source.source_id,
        "metadata": source.metadata,
        "created_at": source.created_at,
    }


def _audit_values(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "team_id": entry.team_id,
        "project_id": entry.project_id,
        "actor_id": entry.actor_id,
        "api_key_id": entry.api_key_id,
        "action": entry.action,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "details": entry.details,
        "created_at": entry.created_at,
    }


def _merge(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """Shallow merge, new keys winning: PostgreSQL's ``jsonb || jsonb``."""
    return {**(old or {}), **new}


# Row readers, for the migrations that index stored rows.
observation_from_row = _observation
event_from_row = _event
