"""Prompt building: the events of one job wrapped in an XML envelope plus instructions.

Both prompts share the envelope (the data) and differ in what they ask for: observation
jobs ask for ``<observation>`` blocks, session-summary jobs for one ``<summary>`` block (the
original sent the observation prompt for both, so summaries never came back).

Each payload is rendered to text, privacy-stripped, cut to ``max_payload_chars`` and
XML-escaped. Events that are blank after stripping are left out; when every event is blank
``skipped_all`` is set and providers answer :data:`ALL_PRIVATE_RESPONSE` without a call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from attrs import field, frozen

from claude_mem_core.domain.keys import iso_ms
from claude_mem_core.domain.models import AgentEvent
from claude_mem_core.generation.modes import CODE_MODE, Mode
from claude_mem_core.generation.privacy import strip_tags
from claude_mem_core.generation.render import escape_xml

DEFAULT_MAX_PAYLOAD_CHARS = 16_384
TRUNCATION_MARKER = "[...truncated]"
UNRENDERABLE_PAYLOAD = "[payload could not be rendered]"
ENVELOPE_TAG = "server_beta_observation_request"
ALL_PRIVATE_RESPONSE = '<skip_summary reason="all_events_private" />'
_EMPTY_COMMENT = "<!-- no agent events remain after privacy stripping -->"


def _ids(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@frozen(kw_only=True)
class PromptBuild:
    prompt: str
    had_private_content: bool
    skipped_all: bool
    # Ids of the events that made it into the prompt, in order.
    included_event_ids: tuple[str, ...] = field(default=(), converter=_ids)


def render_payload(payload: Any) -> str:
    """A string payload as is; anything else as 2-space JSON (``None`` → ``{}``)."""
    if isinstance(payload, str):
        return payload
    if payload is None:
        return "{}"
    # Circular or absurdly deep values still deserve a prompt rather than a crash.
    try:
        return json.dumps(payload, indent=2, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        pass
    try:
        return str(payload)
    except RecursionError:
        return UNRENDERABLE_PAYLOAD


def _payload_text(payload: Any, max_chars: int) -> tuple[str, bool]:
    """Stripped, truncated (not yet escaped) payload text and whether private tags were cut."""
    stripped = strip_tags(render_payload(payload))
    text = stripped.text
    if len(text) > max_chars:
        text = text[:max_chars] + "\n" + TRUNCATION_MARKER
    return text, stripped.had_private


def _envelope(
    events: Iterable[AgentEvent],
    *,
    project_id: str,
    team_id: str,
    job_id: str,
    server_session_id: str | None,
    project_name: str | None,
    max_payload_chars: int,
) -> tuple[str, bool, bool, tuple[str, ...]]:
    lines = [f"<{ENVELOPE_TAG}>"]

    def element(indent: int, name: str, value: str) -> None:
        lines.append(f"{'  ' * indent}<{name}>{escape_xml(value)}</{name}>")

    element(1, "project_id", project_id)
    element(1, "team_id", team_id)
    if server_session_id is not None:
        element(1, "server_session_id", server_session_id)
    if project_name is not None:
        element(1, "project_name", project_name)
    element(1, "generation_job_id", job_id)
    lines.append("  <agent_events>")

    seen = 0
    had_private = False
    included: list[str] = []
    for event in events:
        seen += 1
        text, private = _payload_text(event.payload, max_payload_chars)
        had_private = had_private or private
        if not text.strip():
            continue
        included.append(event.id)
        lines.append("    <agent_event>")
        element(3, "id", event.id)
        element(3, "event_type", event.event_type)
        element(3, "source_adapter", event.source_adapter)
        element(3, "occurred_at", iso_ms(event.occurred_at))
        lines.append("      <payload>")
        lines.append(escape_xml(text))  # verbatim, on its own lines
        lines.append("      </payload>")
        lines.append("    </agent_event>")
    if not included:
        lines.append(f"    {_EMPTY_COMMENT}")
    lines.append("  </agent_events>")
    lines.append(f"</{ENVELOPE_TAG}>")
    skipped_all = seen > 0 and not included
    return "\n".join(lines), had_private, skipped_all, tuple(included)


def _observation_instructions(mode: Mode) -> str:
    types = " | ".join(mode.types)
    concepts = ", ".join(mode.concepts)
    parts = [
        "You are reading the activity log of a coding agent (above). Record what a developer "
        "would want remembered next week: how parts of the system work, what was changed and "
        "why, decisions and their reasons, problems and how they were solved. Write one "
        "<observation> element per distinct finding; leave out routine noise. If nothing is "
        "worth keeping (the events were scrubbed, or the activity was trivial), reply with a "
        'single <skip_summary reason="..." /> element and nothing else. Reply with XML only: '
        "no prose, no code fences. Escape &, < and > inside text as &amp;, &lt; and &gt;.",
        "",
        "Each observation uses this structure (every element except type is optional):",
        "<observation>",
        f"  <type>[{types}]</type>",
        "  <title>...</title>",
        "  <subtitle>...</subtitle>",
        "  <facts>",
        "    <fact>...</fact>",
        "  </facts>",
        "  <narrative>...</narrative>",
        "  <concepts>",
        "    <concept>...</concept>",
        "  </concepts>",
        "  <files_read>",
        "    <file>...</file>",
        "  </files_read>",
        "  <files_modified>",
        "    <file>...</file>",
        "  </files_modified>",
        "</observation>",
    ]
    if concepts:
        parts += ["", f"Concepts, where they fit: {concepts}."]
    return "\n".join(parts)


_SUMMARY_INSTRUCTIONS = "\n".join(
    [
        "The events above are one working session of a coding agent. Sum the session up in "
        "exactly one <summary> element with these children, each plain text; leave out any "
        "child you have nothing for:",
        "  request: what the user asked for;",
        "  investigated: what was looked at or explored;",
        "  learned: what was found out about the code or the problem;",
        "  completed: what was actually done or shipped;",
        "  next_steps: what remains or should happen next;",
        "  notes: anything else worth keeping.",
        "If there is nothing to sum up, reply with a single "
        '<skip_summary reason="..." /> element instead. Reply with XML only: no prose, no code '
        "fences. Escape &, < and > inside text as &amp;, &lt; and &gt;.",
        "",
        "<summary>",
        "  <request>...</request>",
        "  <investigated>...</investigated>",
        "  <learned>...</learned>",
        "  <completed>...</completed>",
        "  <next_steps>...</next_steps>",
        "  <notes>...</notes>",
        "</summary>",
    ]
)


def build_observation_prompt(
    events: Sequence[AgentEvent],
    *,
    project_id: str,
    team_id: str,
    job_id: str,
    server_session_id: str | None = None,
    project_name: str | None = None,
    mode: Mode = CODE_MODE,
    max_payload_chars: int = DEFAULT_MAX_PAYLOAD_CHARS,
) -> PromptBuild:
    """The prompt asking for ``<observation>`` blocks about ``events``."""
    envelope, had_private, skipped_all, included = _envelope(
        events,
        project_id=project_id,
        team_id=team_id,
        job_id=job_id,
        server_session_id=server_session_id,
        project_name=project_name,
        max_payload_chars=max_payload_chars,
    )
    return PromptBuild(
        prompt=f"{envelope}\n\n{_observation_instructions(mode)}",
        had_private_content=had_private,
        skipped_all=skipped_all,
        included_event_ids=included,
    )


def build_summary_prompt(
    events: Sequence[AgentEvent],
    *,
    project_id: str,
    team_id: str,
    job_id: str,
    server_session_id: str | None = None,
    project_name: str | None = None,
    mode: Mode = CODE_MODE,
    max_payload_chars: int = DEFAULT_MAX_PAYLOAD_CHARS,
) -> PromptBuild:
    """The prompt asking for exactly one ``<summary>`` block about a session's ``events``.

    ``mode`` is accepted (and unused: a summary has no types) so that both builders can be
    called with the same arguments.
    """
    del mode
    envelope, had_private, skipped_all, included = _envelope(
        events,
        project_id=project_id,
        team_id=team_id,
        job_id=job_id,
        server_session_id=server_session_id,
        project_name=project_name,
        max_payload_chars=max_payload_chars,
    )
    return PromptBuild(
        prompt=f"{envelope}\n\n{_SUMMARY_INSTRUCTIONS}",
        had_private_content=had_private,
        skipped_all=skipped_all,
        included_event_ids=included,
    )
