"""Use cases: start (find-or-create), read and end a server session."""

from __future__ import annotations

from typing import Any, cast

import attrs
from attrs import field, frozen

from claude_mem_core.domain import keys
from claude_mem_core.domain.models import GenerationJob, ServerSession
from claude_mem_core.domain.scopes import Need, require
from claude_mem_core.errors import FieldIssue, InvalidInput, NotFound
from claude_mem_core.services import outbox
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.ingest import MAX_IDENTIFIER_LENGTH
from claude_mem_core.services.tenancy import audit, project_visible, require_project


@frozen(kw_only=True)
class SessionInput:
    project_id: str
    external_session_id: str | None = None
    content_session_id: str | None = None
    agent_id: str | None = None
    agent_type: str | None = None
    platform_source: str | None = None
    metadata: dict[str, Any] = field(factory=dict)


@frozen(kw_only=True)
class StartedSession:
    session: ServerSession
    created: bool


@frozen(kw_only=True)
class EndedSession:
    session: ServerSession
    job: GenerationJob
    transport: outbox.Transport


def _validate(item: SessionInput) -> None:
    issues = []
    if not isinstance(item.project_id, str) or not item.project_id.strip():
        issues.append(FieldIssue("project_id", "must be a non-empty string"))
    for name in (
        "external_session_id",
        "content_session_id",
        "agent_id",
        "agent_type",
        "platform_source",
    ):
        value = getattr(item, name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            issues.append(FieldIssue(name, "must be a non-empty string or null"))
        elif value is not None and len(value) > MAX_IDENTIFIER_LENGTH:
            # An id this long cannot be a key of the sessions table (nor a real session id).
            issues.append(
                FieldIssue(name, f"must be at most {MAX_IDENTIFIER_LENGTH} characters", "too_big")
            )
    if not isinstance(cast(object, item.metadata), dict):
        issues.append(FieldIssue("metadata", "must be an object"))
    if issues:
        raise InvalidInput(issues)


def identity_key(team_id: str, item: SessionInput) -> str | None:
    """One Claude session maps to one server session whichever route it arrives by: an
    external id and a content session id are the same identity (compat routes use the
    content session id as the external id)."""
    return keys.server_session_key(
        team_id=team_id,
        project_id=item.project_id,
        external_session_id=item.external_session_id or item.content_session_id,
        agent_id=item.agent_id,
        agent_type=item.agent_type,
        platform_source=item.platform_source,
    )


async def start_session(deps: Deps, caller: Caller, item: SessionInput) -> StartedSession:
    """Find or create the session. A replay returns the stored row unchanged (never resets
    its generation status or metadata); a new identity creates a row and is audited."""
    require(caller.scopes, Need.WRITE_SESSIONS)
    return await _start(deps, caller, item)


async def _start(deps: Deps, caller: Caller, item: SessionInput) -> StartedSession:
    _validate(item)
    now = deps.clock.now()
    key = identity_key(caller.team_id, item)
    async with deps.storage.unit_of_work() as uow:
        await require_project(uow, caller, item.project_id)
        candidate = ServerSession(
            id=deps.ids.new_id(),
            team_id=caller.team_id,
            project_id=item.project_id,
            external_session_id=item.external_session_id or item.content_session_id,
            idempotency_key=key,
            content_session_id=item.content_session_id,
            agent_id=item.agent_id,
            agent_type=item.agent_type,
            platform_source=item.platform_source,
            metadata=dict(item.metadata),
            started_at=now,
            created_at=now,
            updated_at=now,
        )
        session, created = await uow.sessions.add(candidate)
        if created:
            await audit(
                uow,
                deps,
                caller,
                "session.write",
                project_id=session.project_id,
                resource_id=session.id,
            )
    return StartedSession(session=session, created=created)


async def get_session(deps: Deps, caller: Caller, session_id: str) -> ServerSession:
    require(caller.scopes, Need.READ_SESSIONS)
    async with deps.storage.unit_of_work() as uow:
        session = await uow.sessions.get(caller.team_id, session_id)
    if session is None or not caller.scope.admits(session.team_id, session.project_id):
        raise NotFound("Session not found")
    return session


async def end_session(
    deps: Deps,
    caller: Caller,
    session_id: str,
    *,
    job_source: str = "http_post_v1_sessions_end",
    source_adapter: str = "api",
) -> EndedSession:
    """Mark the session ended (first time only) and queue its summary job (once)."""
    require(caller.scopes, Need.WRITE_SESSIONS)
    now = deps.clock.now()
    async with deps.storage.unit_of_work() as uow:
        session = await uow.sessions.get(caller.team_id, session_id)
        if session is None or not caller.scope.admits(session.team_id, session.project_id):
            raise NotFound("Session not found")
        if session.ended_at is None:
            session = attrs.evolve(session, ended_at=now, updated_at=now)
            await uow.sessions.save(session)
        made = await outbox.create_summary_job(
            uow, deps, caller, session, source=job_source, source_adapter=source_adapter
        )
        await audit(
            uow,
            deps,
            caller,
            "session.end",
            project_id=session.project_id,
            resource_id=session.id,
            details={"generationJobId": made.job.id},
        )
    transport = await outbox.publish(deps, made.job)
    return EndedSession(session=session, job=made.job, transport=transport)


async def find_or_start_by_content_id(
    deps: Deps,
    caller: Caller,
    *,
    project_id: str,
    content_session_id: str,
    need: Need = Need.WRITE_SESSIONS,
    **extra: Any,
) -> ServerSession:
    """The compat routes' and hooks' way in: the Claude session id is the identity.
    ``need``: what the caller's action needs (recording a tool use finds or starts its
    session as part of the event, so ``events:write`` is enough there)."""
    require(caller.scopes, need)
    started = await _start(
        deps,
        caller,
        SessionInput(project_id=project_id, content_session_id=content_session_id, **extra),
    )
    return started.session


__all__ = [
    "EndedSession",
    "SessionInput",
    "StartedSession",
    "end_session",
    "find_or_start_by_content_id",
    "get_session",
    "project_visible",
    "require_project",
    "start_session",
]
