"""Use cases behind the legacy ``/api/sessions/*`` routes of the reference's clients.

They are compositions of the ordinary use cases: the Claude session id is the session's
identity, a tool use becomes one ``tool_use`` event of that session (idempotent by its tool
use id), and a summarize request ends the session, except for subagents, whose stops the
reference skips. The last assistant message a summarize request carries is recorded as the
session's closing ``assistant_message`` event first, so the summary is written from it too.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from attrs import frozen

from claude_mem_core.domain.models import EventSourceAdapter, ServerSession
from claude_mem_core.domain.scopes import Need, require
from claude_mem_core.errors import EventConflict, Gone
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
    ``conflict`` then names the stored event (these routes answer 2xx only); or when it
    names an erased event: ``erased`` is then True and nothing is stored."""

    session: ServerSession
    result: ingest.IngestedEvent | None
    conflict: EventConflict | None = None
    erased: bool = False


async def record_tool_use(
    deps: Deps, caller: Caller, project_id: str, use: ToolUse
) -> RecordedToolUse:
    """Attach a tool use to its (found or started) session as one idempotent event."""
    session = await sessions.find_or_start_by_content_id(
        deps,
        caller,
        project_id=project_id,
        content_session_id=use.content_session_id,
        need=Need.WRITE_EVENTS,
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
    except Gone:
        return RecordedToolUse(session=session, result=None, erased=True)
    return RecordedToolUse(session=session, result=result)


async def summarize(
    deps: Deps,
    caller: Caller,
    project_id: str,
    *,
    content_session_id: str,
    agent_id: str | None = None,
    platform_source: str | None = None,
    last_assistant_message: str | None = None,
) -> sessions.EndedSession | None:
    """End the session and queue its summary; ``None`` for a subagent (skipped).

    ``last_assistant_message`` (the agent's final answer) becomes an event of the session
    before its summary job is made: it is stored like any event (private parts stripped,
    secrets redacted) and the summary request sees it. Recording it needs the right to
    write events; a repeated request with the same message stores it once."""
    if agent_id:
        return None
    message = last_assistant_message if (last_assistant_message or "").strip() else None
    if message is not None:
        require(caller.scopes, Need.WRITE_EVENTS)
    session = await sessions.find_or_start_by_content_id(
        deps,
        caller,
        project_id=project_id,
        content_session_id=content_session_id,
        platform_source=platform_source,
    )
    if message is not None:
        await _record_last_message(deps, caller, session, message, platform_source)
    return await sessions.end_session(
        deps,
        caller,
        session.id,
        job_source="http_post_api_sessions_summarize",
        source_adapter=COMPAT_SOURCE_ADAPTER,
    )


async def _record_last_message(
    deps: Deps,
    caller: Caller,
    session: ServerSession,
    message: str,
    platform_source: str | None,
) -> None:
    payload = {
        "contentSessionId": session.content_session_id,
        "last_assistant_message": message,
        "platformSource": platform_source,
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:40]
    item = ingest.EventInput(
        project_id=session.project_id,
        source_adapter=COMPAT_SOURCE_ADAPTER,
        event_type="assistant_message",
        occurred_at=deps.clock.now(),
        server_session_id=session.id,
        source_event_id=f"compat:summarize:{digest}",
        payload=payload,
        metadata={"compat": "sessions/summarize"},
    )
    # No job of its own: the session's summary, queued next, covers it.
    await ingest.ingest_event(
        deps, caller, item, generate=False, job_source="http_post_api_sessions_summarize"
    )
