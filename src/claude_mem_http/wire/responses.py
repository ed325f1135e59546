"""Wire shapes, responses: the JSON objects of api.md each route answers with, and the
error bodies. Every ``*Epoch`` field is integer milliseconds since the Unix epoch; field
names are camelCase as the reference server spells them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

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
from claude_mem_core.ports.ledger import UsageGrouping, UsageRow
from claude_mem_core.services.budgets import BudgetStatus
from claude_mem_core.services.erase import Erasure
from claude_mem_core.services.memories import SearchResult
from claude_mem_core.services.outbox import Transport
from claude_mem_core.services.usage import UsageReport
from claude_mem_http.wire import models as wire
from claude_mem_http.wire.converter import camel, epoch_ms, epoch_ms_or_none, to_wire
from claude_mem_http.wire.schemas import RequestInvalid

# -- responses ----------------------------------------------------------------------------
#
# Each builder fills a wire class (:mod:`.models`) from the domain; the server and the local
# backend wrap them in their route's body (:mod:`.bodies`) and send that through the one
# converter, so the document generated from the same classes describes what is sent.


def epoch(value: datetime | None) -> int | None:
    return epoch_ms_or_none(value)


def json_of(value: Any) -> dict[str, Any]:
    """A wire class instance as its JSON object."""
    return cast(dict[str, Any], to_wire(value))


def event(e: AgentEvent) -> wire.Event:
    return wire.Event(
        id=e.id,
        project_id=e.project_id,
        team_id=e.team_id,
        server_session_id=e.server_session_id,
        source_adapter=e.source_adapter,
        source_event_id=e.source_event_id,
        event_type=e.event_type,
        payload=e.payload,
        # The received payload's hash stays inside: it was taken before redaction.
        metadata={k: v for k, v in e.metadata.items() if k != RECEIVED_DIGEST_KEY},
        occurred_at_epoch=epoch_ms(e.occurred_at),
        received_at_epoch=epoch_ms(e.received_at),
        created_at_epoch=epoch_ms(e.created_at),
    )


def job_summary(job: GenerationJob, transport: Transport) -> wire.JobSummary:
    return wire.JobSummary(
        id=job.id,
        status=job.status.value,
        bullmq_job_id=job.transport_id,
        source_type=job.source_type.value,
        source_id=job.source_id,
        transport=transport,
        created_at_epoch=epoch_ms(job.created_at),
        updated_at_epoch=epoch_ms(job.updated_at),
    )


def job_wait_status(job: GenerationJob, transport: Transport) -> wire.JobWaitStatus:
    return wire.JobWaitStatus(
        id=job.id,
        status=job.status.value,
        transport=transport,
        bullmq_job_id=job.transport_id,
        source_type=job.source_type.value,
        source_id=job.source_id,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        created_at_epoch=epoch_ms(job.created_at),
        updated_at_epoch=epoch_ms(job.updated_at),
    )


def _last_error(job: GenerationJob) -> dict[str, Any] | None:
    return job.last_error if isinstance(job.last_error, dict) else None


def _held_reason(job: GenerationJob) -> wire.HeldReason | None:
    return cast(wire.HeldReason | None, held_reason(job))


def job_status(job: GenerationJob) -> wire.JobStatus:
    return wire.JobStatus(
        id=job.id,
        project_id=job.project_id,
        team_id=job.team_id,
        source_type=job.source_type.value,
        source_id=job.source_id,
        agent_event_id=job.agent_event_id,
        server_session_id=job.server_session_id,
        job_type=job.job_type.value,
        status=job.status.value,
        bullmq_job_id=job.transport_id,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        next_attempt_at_epoch=epoch_ms_or_none(job.next_attempt_at),
        completed_at_epoch=epoch_ms_or_none(job.completed_at),
        failed_at_epoch=epoch_ms_or_none(job.failed_at),
        cancelled_at_epoch=epoch_ms_or_none(job.cancelled_at),
        last_error=_last_error(job),
        held_reason=_held_reason(job),
        created_at_epoch=epoch_ms(job.created_at),
        updated_at_epoch=epoch_ms(job.updated_at),
    )


def job_list_entry(job: GenerationJob, *, include_payload: bool = False) -> wire.JobListEntry:
    return wire.JobListEntry(
        id=job.id,
        project_id=job.project_id,
        team_id=job.team_id,
        source_type=job.source_type.value,
        source_id=job.source_id,
        status=job.status.value,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        created_at_epoch=epoch_ms(job.created_at),
        completed_at_epoch=epoch_ms_or_none(job.completed_at),
        failed_at_epoch=epoch_ms_or_none(job.failed_at),
        last_error=_last_error(job),
        held_reason=_held_reason(job),
        payload=job.payload if include_payload and isinstance(job.payload, dict) else None,
    )


def session(s: ServerSession) -> wire.Session:
    return wire.Session(
        id=s.id,
        project_id=s.project_id,
        team_id=s.team_id,
        external_session_id=s.external_session_id,
        content_session_id=s.content_session_id,
        agent_id=s.agent_id,
        agent_type=s.agent_type,
        platform_source=s.platform_source,
        generation_status=s.generation_status.value,
        metadata=s.metadata,
        started_at_epoch=epoch_ms(s.started_at),
        ended_at_epoch=epoch_ms_or_none(s.ended_at),
        last_generated_at_epoch=epoch_ms_or_none(s.last_generated_at),
        created_at_epoch=epoch_ms(s.created_at),
        updated_at_epoch=epoch_ms(s.updated_at),
    )


def _observation_fields(o: Observation) -> dict[str, Any]:
    """The attributes every observation shape shares (search hits and sourced ones add)."""
    return {
        "id": o.id,
        "project_id": o.project_id,
        "team_id": o.team_id,
        "server_session_id": o.server_session_id,
        "kind": str(o.kind),
        "type": o.type,
        "title": o.title,
        "content": o.content,
        "metadata": o.metadata,
        "created_at_epoch": epoch_ms(o.created_at),
        "updated_at_epoch": epoch_ms(o.updated_at),
        "occurrences": o.occurrences,
        "superseded_by": o.superseded_by,
        "superseded_at_epoch": epoch_ms_or_none(o.superseded_at),
    }


def observation(o: Observation) -> wire.Observation:
    return wire.Observation(**_observation_fields(o))


def search_result(r: SearchResult) -> wire.SearchHit:
    """An observation as search returns it: the wire's fields, plus the evidence."""
    return wire.SearchHit(
        **_observation_fields(r.observation),
        score=r.score,
        similarity=r.similarity,
        excerpt=r.excerpt,
        evidence=[
            wire.Evidence(excerpt=e.text, event_id=e.event_id, score=e.score) for e in r.excerpts
        ],
    )


def observation_with_source(o: Observation, src: ObservationSource) -> wire.ObservationWithSource:
    return wire.ObservationWithSource(
        **_observation_fields(o),
        generation_key=o.generation_key,
        created_by_job_id=o.created_by_job_id,
        source=wire.ObservationSource(
            id=src.id,
            source_type=src.source_type.value,
            source_id=src.source_id,
            generation_job_id=src.generation_job_id,
            created_at_epoch=epoch_ms(src.created_at),
        ),
    )


def project(p: Project) -> wire.Project:
    return wire.Project(
        id=p.id,
        team_id=p.team_id,
        name=p.name,
        metadata=p.metadata,
        # Days its sessions and events are kept after their last activity; null: until
        # erased.
        retain_days=p.retain_days,
        created_at_epoch=epoch_ms(p.created_at),
        updated_at_epoch=epoch_ms(p.updated_at),
    )


def erasure(e: Erasure) -> wire.Erasure:
    """What an erase removed: ids and counts, never content. ``complete`` is False for a
    project whose rows are still being purged in the background."""
    return wire.Erasure(
        kind=e.kind,
        id=e.id,
        team_id=e.team_id,
        project_id=e.project_id,
        erased_at_iso=e.erased_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        erased_at_epoch=epoch_ms(e.erased_at),
        removed={camel(name): n for name, n in e.counts.items()},
        requeued_jobs=e.requeued_jobs,
        cancelled_jobs=e.cancelled_jobs,
        revoked_keys=e.revoked_keys,
        complete=e.complete,
    )


def _usage_row(r: UsageRow) -> wire.UsageRow:
    return wire.UsageRow(
        group=r.group,
        calls=r.calls,
        input_tokens=r.input_tokens,
        output_tokens=r.output_tokens,
        cost_usd=round(r.cost_usd, 6),
        unpriced_calls=r.unpriced_calls,
    )


def usage_report(report: UsageReport, budget: BudgetStatus | None = None) -> wire.Usage:
    """Token ledger sums: rows by group, their total, the date of the price table, and the
    project's budget (null without one, or for a team-wide report)."""
    return wire.Usage(
        team_id=report.team_id,
        project_id=report.project_id,
        since_epoch=epoch_ms(report.since),
        until_epoch=epoch_ms(report.until),
        group_by=cast(UsageGrouping, report.group_by),  # parse_grouping admitted it
        rows=[_usage_row(r) for r in report.rows],
        total=_usage_row(report.total),
        prices_as_of=PRICES_AS_OF,
        budget=budget_status(budget),
    )


def budget_status(status: BudgetStatus | None) -> wire.Budget | None:
    """A project's budget and its current UTC period (None: no budget)."""
    if status is None:
        return None
    b, p = status.budget, status.period
    return wire.Budget(
        period=b.period,
        token_limit=b.token_limit,
        usd_limit=b.usd_limit,
        period_start_epoch=epoch_ms(p.start),
        period_end_epoch=epoch_ms(status.period_end),
        spent_tokens=p.spent_tokens,
        spent_usd=round(p.spent_usd, 6),
        reserved_tokens=p.reserved_tokens,
        reserved_usd=round(p.reserved_usd, 6),
        remaining_tokens=status.remaining_tokens,
        remaining_usd=None if status.remaining_usd is None else round(status.remaining_usd, 6),
        calls=p.calls,
        exhausted=status.exhausted,
    )


# -- error bodies -------------------------------------------------------------------------

# Service field names (snake_case) that do not simply camelize to their wire name.
_WIRE_NAMES = {
    "source_adapter": "sourceType",
    "occurred_at": "occurredAtEpoch",
    "events": None,  # the batch body itself
}


def _segments(path: str, *, translate: bool) -> list[str | int]:
    out: list[str | int] = []
    for segment in path.split(".") if path else []:
        if segment.isdigit():
            out.append(int(segment))
        elif translate:
            wire = _WIRE_NAMES.get(segment, camel(segment))
            if wire is not None:
                out.append(wire)
        else:
            out.append(segment)
    return out


def validation_body(exc: InvalidInput) -> dict[str, Any]:
    translate = not isinstance(exc, RequestInvalid)
    issues = [
        wire.ValidationIssue(
            path=_segments(issue.path, translate=translate),
            message=issue.message,
            code=issue.code,
        )
        for issue in exc.issues
    ]
    message = "; ".join(
        f"{'.'.join(str(p) for p in i.path) or '<body>'}: {i.message}" for i in issues
    )
    body = wire.ValidationError(error="ValidationError", message=message, issues=issues)
    return cast(dict[str, Any], to_wire(body))


def error_body(error: str, message: str) -> dict[str, Any]:
    return cast(dict[str, Any], to_wire(wire.Error(error=error, message=message)))


def event_conflict(conflict: EventConflict) -> dict[str, Any]:
    """409 of an event whose ``sourceEventId`` was used for another payload: the stored
    event's id, and the attempt's source id (and position, in a batch)."""
    body = wire.EventConflict(
        error="Conflict",
        message=conflict.message,
        event_id=conflict.event_id,
        source_event_id=conflict.source_event_id,
        index=conflict.index,
    )
    return cast(dict[str, Any], to_wire(body))


def event_gone(gone: Gone) -> dict[str, Any]:
    """410 of an event whose ``sourceEventId`` names an erased event: the id replayed (and
    the position of the event, in a batch). Nothing of the request was stored."""
    body = wire.EventGone(
        error="Gone", message=gone.message, source_event_id=gone.source_event_id, index=gone.index
    )
    return cast(dict[str, Any], to_wire(body))
