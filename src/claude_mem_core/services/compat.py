"""Use cases behind the legacy ``/api/sessions/*`` routes of the reference's clients.

They are compositions of the ordinary use cases: the Claude session id is the session's
identity, a tool use becomes one ``tool_use`` event of that session (idempotent by its tool
use id), and a summarize request ends the session, except for subagents, whose stops the
reference skips.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen

from claude_mem_core.domain.models import EventSourceAdapter, ServerSession
from claude_mem_core.errors import EventConflict
from claude_mem_core.services import ingest, sessions
from claude_mem_core.services.context import Caller, Deps

COMPAT_SOURCE_ADAPTER = EventSourceAdapter.CLAUDE_CODE_COMPAT.value


@frozen(kw_only=True)
class ToolUse:
    content_session_id: str
    tool_name: str
    tool_input: Any = None
    tool_response: Any = None
    tool_use_id: str | None = None
    cwd: str | None = None
    agent_id: str | None = None
    agent_type: str | None = None
    platform_source: str | None = None


@frozen(kw_only=True)
class RecordedToolUse:
    """``result`` is None when the tool use id was already used with other content:
    ``conflict`` then names the stored event (these routes answer 2xx only)."""

    session: ServerSession
    result: ingest.IngestedEvent | None
    conflict: EventConflict | None = None


async def record_tool_use(
    deps: Deps, caller: Caller, project_id: str, use: ToolUse
) -> RecordedToolUse:
    """Attach a tool use to its (found or started) session as one idempotent event."""
    session = await sessions.find_or_start_by_content_id(
        deps,
        caller,
        project_id=project_id,
        content_session_id=use.content_session_id,
        agent_id=use.agent_id,
        agent_type=use.agent_type,
        platform_source=use.platform_source,
    )
    item = ingest.EventInput(
        project_id=project_id,
        source_adapter=COMPAT_SOURCE_ADAPTER,
        event_type="tool_use",
        occurred_at=deps.clock.now(),
        server_session_id=session.id,
        source_event_id=use.tool_use_id,
        payload={
            "contentSessionId": use.content_session_id,
            "tool_name": use.tool_name,
            "tool_input": use.tool_input,
            "tool_response": use.tool_response,
            "cwd": use.cwd,
            "platformSource": use.platform_source,
            "agentId": use.agent_id,
            "agentType": use.agent_type,
            "toolUseId": use.tool_use_id,
        },
        metadata={"compat": "sessions/observations"},
    )
    try:
        result = await ingest.ingest_event(
            deps, caller, item, generate=True, job_source="http_post_api_sessions_observations"
        )
    except EventConflict as conflict:
        return RecordedToolUse(session=session, result=None, conflict=conflict)
    return RecordedToolUse(session=session, result=result)


async def summarize(
    deps: Deps,
    caller: Caller,
    project_id: str,
    *,
    content_session_id: str,
    agent_id: str | None = None,
    platform_source: str | None = None,
) -> sessions.EndedSession | None:
    """End the session and queue its summary; ``None`` for a subagent (skipped)."""
    if agent_id:
        return None
    session = await sessions.find_or_start_by_content_id(
        deps,
        caller,
        project_id=project_id,
        content_session_id=content_session_id,
        platform_source=platform_source,
    )
    return await sessions.end_session(
        deps,
        caller,
        session.id,
        job_source="http_post_api_sessions_summarize",
        source_adapter=COMPAT_SOURCE_ADAPTER,
    )
