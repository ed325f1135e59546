"""Claude Code hook payloads → spool records (pipeline.md §5.4-§5.5, with §10 fixed).

Pure functions, no I/O except reading a transcript file. A *record* is one unit of
delivery, kept as JSON in the spool until the memory acknowledged it:

    {"v": 1, "id": <uuid>, "op": "event" | "session" | "end",
     "project": <project name from cwd>, "projectId": <configured id or null>,
     "session": {"contentSessionId", "platformSource", "metadata"},
     "event": {"sourceType", "eventType", "occurredAtEpoch", "sourceEventId",
               "payload", "metadata"}}            # op "event" only

Every record names its Claude session; delivery first finds-or-starts the server session
by that id (idempotent), then sends the event with ``serverSessionId`` set, so tool uses
are linked to their session (weak spot 13). Every event carries a deterministic
``sourceEventId`` (the tool-use id when Claude gives one, else a hash of what identifies
it), so a record delivered twice is stored once. The transcript importer derives the same
ids, so importing a session the hooks already recorded adds nothing.

Differences from the reference, on purpose:
* Stop records the turn's last assistant message as an event but does not end the
  session; SessionEnd ends it (one summary per session, not "first Stop wins", §10.14).
* The user prompt is stored as a ``user_prompt`` event (tags stripped by the server), not
  in the session metadata (§10.15).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from attrs import field, frozen

from claude_mem_core.generation.privacy import strip_tags

RECORD_VERSION = 1
SOURCE_TYPE = "hook"
PLATFORM_SOURCE = "claude"
MEDIA_PROMPT = "[media prompt]"
MAX_AGENT_FIELD = 128
SOURCE_ID_PREFIX = "cc"
HOOK_EVENTS = ("SessionStart", "UserPromptSubmit", "PostToolUse", "Stop", "SessionEnd")

_TASK_NOTIFICATION = re.compile(
    r"^\s*<task-notification>.*</task-notification>\s*$", re.DOTALL | re.IGNORECASE
)


@frozen(kw_only=True)
class MappingOptions:
    """The settings the mapping depends on."""

    project_id: str | None = None
    project_override: str | None = None
    excluded_projects: tuple[str, ...] = ()
    internal: bool = False


@frozen(kw_only=True)
class HookPlan:
    """What one hook invocation should do: records to deliver, and whether to answer
    with context (SessionStart)."""

    event: str
    records: list[dict[str, Any]] = field(factory=list)
    wants_context: bool = False
    session_id: str | None = None
    project: str | None = None
    skipped: str | None = None


# -- identifiers ---------------------------------------------------------------------------


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def tool_event_id(session_id: str, tool_use_id: str | None, *parts: Any) -> str:
    if tool_use_id:
        return f"{SOURCE_ID_PREFIX}:tool:{tool_use_id}"
    return f"{SOURCE_ID_PREFIX}:tool:{_digest(session_id, *parts)}"


def prompt_event_id(session_id: str, prompt: str) -> str:
    return f"{SOURCE_ID_PREFIX}:prompt:{_digest(session_id, prompt.strip())}"


def assistant_event_id(session_id: str, message: str) -> str:
    return f"{SOURCE_ID_PREFIX}:assistant:{_digest(session_id, message.strip())}"


# -- normalisation -------------------------------------------------------------------------


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def agent_field(value: Any) -> str | None:
    """Agent id/type are kept only as strings of 1..128 characters."""
    if isinstance(value, str) and 1 <= len(value) <= MAX_AGENT_FIELD:
        return value
    return None


def session_id_of(payload: Mapping[str, Any]) -> str | None:
    for name in ("session_id", "id", "sessionId"):
        found = _str(payload.get(name))
        if found:
            return found
    return None


def project_name(cwd: str | None, override: str | None = None) -> str:
    if override and override.strip():
        return override.strip()
    if not cwd:
        return "default"
    name = Path(cwd.rstrip("/\\") or "/").name
    return name or "default"


def is_excluded(project: str, cwd: str | None, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        pattern = pattern.strip()
        if not pattern:
            continue
        if fnmatch.fnmatchcase(project, pattern):
            return True
        if cwd and (fnmatch.fnmatchcase(cwd, pattern) or cwd.rstrip("/") == pattern.rstrip("/")):
            return True
    return False


def clean_text(text: str) -> str:
    """Private blocks and injected context (system reminders, earlier memories) removed."""
    return strip_tags(text).text


# -- transcripts ----------------------------------------------------------------------------


def message_text(message: Any) -> str:
    """The plain text of a transcript message (string content or text blocks)."""
    content = message.get("content") if isinstance(message, Mapping) else message
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, Mapping) and block.get("type") == "text":
                text = block.get("text")
                if isinstance(text, str):
                    parts.append(text)
    return "\n".join(parts)


def last_assistant_message(transcript_path: str) -> str | None:
    """The text of the last assistant message with text in a Claude Code transcript."""
    path = Path(os.path.expanduser(transcript_path))
    last: str | None = None
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(entry, dict) or entry.get("type") != "assistant":
                continue
            text = message_text(entry.get("message"))
            if text.strip():
                last = text
    return last


# -- records --------------------------------------------------------------------------------


def _record(
    op: str,
    *,
    session_id: str,
    project: str,
    options: MappingOptions,
    cwd: str | None,
    event: dict[str, Any] | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "v": RECORD_VERSION,
        "id": uuid.uuid4().hex,
        "op": op,
        "project": project,
        "projectId": options.project_id,
        "session": {
            "contentSessionId": session_id,
            "platformSource": PLATFORM_SOURCE,
            "metadata": {"project": project, "cwd": cwd},
        },
    }
    if event is not None:
        record["event"] = event
    return record


def _event(
    event_type: str, source_event_id: str, payload: dict[str, Any], now_ms: int
) -> dict[str, Any]:
    return {
        "sourceType": SOURCE_TYPE,
        "eventType": event_type,
        "occurredAtEpoch": now_ms,
        "sourceEventId": source_event_id,
        "payload": payload,
        "metadata": {"via": "claude-code-hook"},
    }


def plan_hook(
    event_name: str, payload: Mapping[str, Any], options: MappingOptions, *, now_ms: int
) -> HookPlan:
    """Map one hook invocation. Never raises for odd input: it skips instead."""
    sid = session_id_of(payload)
    cwd = _str(payload.get("cwd")) or os.getcwd()
    project = project_name(cwd, options.project_override)
    wants_context = event_name == "SessionStart"

    def plan(**fields: Any) -> HookPlan:
        return HookPlan(event=event_name, session_id=sid, project=project, **fields)

    if event_name not in HOOK_EVENTS:
        return plan(skipped="unknown_event")
    if options.internal:
        return plan(skipped="internal")
    if is_excluded(project, cwd, options.excluded_projects):
        return plan(skipped="excluded_project")
    if sid is None:
        return plan(wants_context=wants_context, skipped="no_session_id")
    agent_id = agent_field(payload.get("agent_id"))
    agent_type = agent_field(payload.get("agent_type"))

    def record(op: str, event: dict[str, Any] | None = None) -> dict[str, Any]:
        return _record(op, session_id=sid, project=project, options=options, cwd=cwd, event=event)

    if event_name == "SessionStart":
        return plan(records=[record("session")], wants_context=True)

    if event_name == "UserPromptSubmit":
        raw = payload.get("prompt")
        prompt = raw if isinstance(raw, str) else ""
        if _TASK_NOTIFICATION.match(prompt):
            return plan(skipped="task_notification")
        text = prompt if prompt.strip() else MEDIA_PROMPT
        event = _event(
            "user_prompt",
            prompt_event_id(sid, clean_text(text)),
            {"prompt": text, "cwd": cwd, "agentId": agent_id, "agentType": agent_type},
            now_ms,
        )
        return plan(records=[record("event", event)])

    if event_name == "PostToolUse":
        tool_name = _str(payload.get("tool_name"))
        if tool_name is None:
            return plan(skipped="no_tool_name")
        tool_input = payload.get("tool_input")
        tool_response = payload.get("tool_response")
        tool_use_id = _str(payload.get("tool_use_id"))
        event = _event(
            "tool_use",
            tool_event_id(sid, tool_use_id, tool_name, tool_input, tool_response),
            {
                "tool_name": tool_name,
                "tool_input": tool_input,
                "tool_response": tool_response,
                "tool_use_id": tool_use_id,
                "cwd": cwd,
                "agentId": agent_id,
                "agentType": agent_type,
                "platformSource": PLATFORM_SOURCE,
            },
            now_ms,
        )
        return plan(records=[record("event", event)])

    if event_name == "Stop":
        if payload.get("stop_hook_active") is True:
            return plan(skipped="stop_hook_active")
        if agent_id is not None:
            return plan(skipped="subagent")
        message = _str(payload.get("last_assistant_message"))
        if message is None:
            transcript = _str(payload.get("transcript_path"))
            if transcript is None:
                return plan(skipped="no_assistant_message")
            try:
                message = last_assistant_message(transcript)
            except OSError:
                return plan(skipped="transcript_unreadable")
        cleaned = clean_text(message or "")
        if not cleaned:
            return plan(skipped="no_assistant_message")
        event = _event(
            "assistant_message",
            assistant_event_id(sid, cleaned),
            {"last_assistant_message": cleaned, "platformSource": PLATFORM_SOURCE},
            now_ms,
        )
        return plan(records=[record("event", event)])

    # SessionEnd: the session's summary job.
    if agent_id is not None:
        return plan(skipped="subagent")
    end = record("end")
    end["reason"] = _str(payload.get("reason"))
    return plan(records=[end])


__all__ = [
    "HOOK_EVENTS",
    "HookPlan",
    "MappingOptions",
    "assistant_event_id",
    "clean_text",
    "last_assistant_message",
    "message_text",
    "plan_hook",
    "project_name",
    "prompt_event_id",
    "tool_event_id",
]
