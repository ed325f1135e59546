"""Wire shapes, responses: the JSON objects of api.md each route answers with, and the
error bodies. Every ``*Epoch`` field is integer milliseconds since the Unix epoch; field
names are camelCase as the reference server spells them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from claude_mem_core.domain.budgets import held_reason
from claude_mem_core.domain.models import (
    AgentEvent,
    GenerationJob,
    Observation,
    ObservationSource,
    Project,
    ServerSession,
)
from claude_mem_core.domain.prices import PRICES_AS_OF
from claude_mem_core.domain.redaction import RECEIVED_DIGEST_KEY
from claude_mem_core.errors import EventConflict, Gone, InvalidInput
from claude_mem_core.ports.ledger import UsageRow
from claude_mem_core.services.budgets import BudgetStatus
from claude_mem_core.services.erase import Erasure
from claude_mem_core.services.memories import SearchResult
from claude_mem_core.services.outbox import Transport
from claude_mem_core.services.usage import UsageReport
from claude_mem_http.wire.schemas import _EPOCH, _MS, RequestInvalid

# -- responses ----------------------------------------------------------------------------


def epoch(value: datetime | None) -> int | None:
    if value is None:
        return None
    return (value - _EPOCH) // _MS


def _epoch(value: datetime) -> int:
    return (value - _EPOCH) // _MS


def event(e: AgentEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "projectId": e.project_id,
        "teamId": e.team_id,
        "serverSessionId": e.server_session_id,
        "sourceAdapter": e.source_adapter,
        "sourceEventId": e.source_event_id,
        "eventType": e.event_type,
        "payload": e.payload,
        # The received payload's hash stays inside: it was taken before redaction.
        "metadata": {k: v for k, v in e.metadata.items() if k != RECEIVED_DIGEST_KEY},
        "occurredAtEpoch": _epoch(e.occurred_at),
        "receivedAtEpoch": _epoch(e.received_at),
        "createdAtEpoch": _epoch(e.created_at),
    }


def job_summary(job: GenerationJob, transport: Transport) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status.value,
        "bullmqJobId": job.transport_id,
        "sourceType": job.source_type.value,
        "sourceId": job.source_id,
        "transport": transport,
        "createdAtEpoch": _epoch(job.created_at),
        "updatedAtEpoch": _epoch(job.updated_at),
    }


def job_wait_status(job: GenerationJob, transport: Transport) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status.value,
        "transport": transport,
        "bullmqJobId": job.transport_id,
        "sourceType": job.source_type.value,
        "sourceId": job.source_id,
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "createdAtEpoch": _epoch(job.created_at),
        "updatedAtEpoch": _epoch(job.updated_at),
    }


def _last_error(job: GenerationJob) -> dict[str, Any] | None:
    return job.last_error if isinstance(job.last_error, dict) else None


def job_status(job: GenerationJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "projectId": job.project_id,
        "teamId": job.team_id,
        "sourceType": job.source_type.value,
        "sourceId": job.source_id,
        "agentEventId": job.agent_event_id,
        "serverSessionId": job.server_session_id,
        "jobType": job.job_type.value,
        "status": job.status.value,
        "bullmqJobId": job.transport_id,
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "nextAttemptAtEpoch": epoch(job.next_attempt_at),
        "completedAtEpoch": epoch(job.completed_at),
        "failedAtEpoch": epoch(job.failed_at),
        "cancelledAtEpoch": epoch(job.cancelled_at),
        "lastError": _last_error(job),
        "heldReason": held_reason(job),
        "createdAtEpoch": _epoch(job.created_at),
        "updatedAtEpoch": _epoch(job.updated_at),
    }


def job_list_entry(job: GenerationJob, *, include_payload: bool = False) -> dict[str, Any]:
    entry = {
        "id": job.id,
        "projectId": job.project_id,
        "teamId": job.team_id,
        "sourceType": job.source_type.value,
        "sourceId": job.source_id,
        "status": job.status.value,
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "createdAtEpoch": _epoch(job.created_at),
        "completedAtEpoch": epoch(job.completed_at),
        "failedAtEpoch": epoch(job.failed_at),
        "lastError": _last_error(job),
        "heldReason": held_reason(job),
    }
    if include_payload and isinstance(job.payload, dict):
        entry["payload"] = job.payload
    return entry


def session(s: ServerSession) -> dict[str, Any]:
    return {
        "id": s.id,
        "projectId": s.project_id,
        "teamId": s.team_id,
        "externalSessionId": s.external_session_id,
        "contentSessionId": s.content_session_id,
        "agentId": s.agent_id,
        "agentType": s.agent_type,
        "platformSource": s.platform_source,
        "generationStatus": s.generation_status.value,
        "metadata": s.metadata,
        "startedAtEpoch": _epoch(s.started_at),
        "endedAtEpoch": epoch(s.ended_at),
        "lastGeneratedAtEpoch": epoch(s.last_generated_at),
        "createdAtEpoch": _epoch(s.created_at),
        "updatedAtEpoch": _epoch(s.updated_at),
    }


def observation(o: Observation) -> dict[str, Any]:
    return {
        "id": o.id,
        "projectId": o.project_id,
        "teamId": o.team_id,
        "serverSessionId": o.server_session_id,
        "kind": str(o.kind),
        "type": o.type,
        "title": o.title,
        "content": o.content,
        "metadata": o.metadata,
        "createdAtEpoch": _epoch(o.created_at),
        "updatedAtEpoch": _epoch(o.updated_at),
        # Our additions: how often the fact was generated, and what replaced it.
        "occurrences": o.occurrences,
        "supersededBy": o.superseded_by,
        "supersededAtEpoch": epoch(o.superseded_at),
    }


def search_result(r: SearchResult) -> dict[str, Any]:
    """An observation as search returns it: the wire's fields, plus the evidence."""
    return {
        **observation(r.observation),
        "score": r.score,
        # The best cosine of its passages with the query, when semantic recall is on.
        "similarity": r.similarity,
        "excerpt": r.excerpt,
        "evidence": [
            {"excerpt": e.text, "eventId": e.event_id, "score": e.score} for e in r.excerpts
        ],
    }


def observation_with_source(o: Observation, src: ObservationSource) -> dict[str, Any]:
    return {
        **observation(o),
        "generationKey": o.generation_key,
        "createdByJobId": o.created_by_job_id,
        "source": {
            "id": src.id,
            "sourceType": src.source_type.value,
            "sourceId": src.source_id,
            "generationJobId": src.generation_job_id,
            "createdAtEpoch": _epoch(src.created_at),
        },
    }


def project(p: Project) -> dict[str, Any]:
    return {
        "id": p.id,
        "teamId": p.team_id,
        "name": p.name,
        "metadata": p.metadata,
        # Days its sessions and events are kept after their last activity; null: until erased.
        "retainDays": p.retain_days,
        "createdAtEpoch": _epoch(p.created_at),
        "updatedAtEpoch": _epoch(p.updated_at),
    }


def erasure(e: Erasure) -> dict[str, Any]:
    """What an erase removed: ids and counts, never content. ``complete`` is False for a
    project whose rows are still being purged in the background."""
    return {
        "kind": e.kind,
        "id": e.id,
        "teamId": e.team_id,
        "projectId": e.project_id,
        "erasedAt": e.erased_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "erasedAtEpoch": _epoch(e.erased_at),
        "removed": {_camel(name): n for name, n in e.counts.items()},
        "requeuedJobs": e.requeued_jobs,
        "cancelledJobs": e.cancelled_jobs,
        "revokedKeys": e.revoked_keys,
        "complete": e.complete,
    }


def usage_row(r: UsageRow) -> dict[str, Any]:
    return {
        "group": r.group,
        "calls": r.calls,
        "inputTokens": r.input_tokens,
        "outputTokens": r.output_tokens,
        "costUsd": round(r.cost_usd, 6),
        "unpricedCalls": r.unpriced_calls,
    }


def usage_report(report: UsageReport, budget: BudgetStatus | None = None) -> dict[str, Any]:
    """Token ledger sums: rows by group, their total, the date of the price table, and the
    project's budget (null without one, or for a team-wide report)."""
    return {
        "teamId": report.team_id,
        "projectId": report.project_id,
        "sinceEpoch": _epoch(report.since),
        "untilEpoch": _epoch(report.until),
        "groupBy": report.group_by,
        "rows": [usage_row(r) for r in report.rows],
        "total": usage_row(report.total),
        "pricesAsOf": PRICES_AS_OF,
        "budget": budget_status(budget),
    }


def budget_status(status: BudgetStatus | None) -> dict[str, Any] | None:
    """A project's budget and its current UTC period (null: no budget)."""
    if status is None:
        return None
    b, p = status.budget, status.period
    return {
        "period": b.period,
        "tokenLimit": b.token_limit,
        "usdLimit": b.usd_limit,
        "periodStartEpoch": _epoch(p.start),
        "periodEndEpoch": _epoch(status.period_end),
        "spentTokens": p.spent_tokens,
        "spentUsd": round(p.spent_usd, 6),
        "reservedTokens": p.reserved_tokens,
        "reservedUsd": round(p.reserved_usd, 6),
        "remainingTokens": status.remaining_tokens,
        "remainingUsd": None if status.remaining_usd is None else round(status.remaining_usd, 6),
        "calls": p.calls,
        "exhausted": status.exhausted,
    }


# -- error bodies -------------------------------------------------------------------------

# Service field names (snake_case) that do not simply camelize to their wire name.
_WIRE_NAMES = {
    "source_adapter": "sourceType",
    "occurred_at": "occurredAtEpoch",
    "events": None,  # the batch body itself
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _segments(path: str, *, translate: bool) -> list[str | int]:
    out: list[str | int] = []
    for segment in path.split(".") if path else []:
        if segment.isdigit():
            out.append(int(segment))
        elif translate:
            wire = _WIRE_NAMES.get(segment, _camel(segment))
            if wire is not None:
                out.append(wire)
        else:
            out.append(segment)
    return out


def validation_body(exc: InvalidInput) -> dict[str, Any]:
    translate = not isinstance(exc, RequestInvalid)
    issues = [
        {
            "path": _segments(issue.path, translate=translate),
            "message": issue.message,
            "code": issue.code,
        }
        for issue in exc.issues
    ]
    message = "; ".join(
        f"{'.'.join(str(p) for p in i['path']) or '<body>'}: {i['message']}" for i in issues
    )
    return {"error": "ValidationError", "message": message, "issues": issues}


def error_body(error: str, message: str) -> dict[str, Any]:
    return {"error": error, "message": message}


def event_conflict(conflict: EventConflict) -> dict[str, Any]:
    """409 of an event whose ``sourceEventId`` was used for another payload: the stored
    event's id, and the attempt's source id (and position, in a batch)."""
    body = error_body("Conflict", conflict.message)
    body["eventId"] = conflict.event_id
    body["sourceEventId"] = conflict.source_event_id
    if conflict.index is not None:
        body["index"] = conflict.index
    return body


def event_gone(gone: Gone) -> dict[str, Any]:
    """410 of an event whose ``sourceEventId`` names an erased event: the id replayed (and
    the position of the event, in a batch). Nothing of the request was stored."""
    body = error_body("Gone", gone.message)
    body["sourceEventId"] = gone.source_event_id
    if gone.index is not None:
        body["index"] = gone.index
    return body
