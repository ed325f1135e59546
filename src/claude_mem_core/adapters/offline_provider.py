"""A provider that needs no model: observations derived from the events themselves.

It makes the whole pipeline usable (and testable end to end) without an API key. Its answer
is rendered as the XML a model would return, so it goes through the same parser and
persisters as any other provider.

Mapping (one observation per event that says something):

* Edit / Write / MultiEdit / NotebookEdit → ``change``, paths → files_modified.
* Read / Grep / Glob / LS / WebFetch / WebSearch → ``discovery``, paths → files_read.
* Bash → ``change`` when the command looks mutating (git commit, rm, mv, pip install,
  sed -i, ``>`` redirect to a file…), else ``discovery``.
* Any other tool → ``discovery``.
* A user prompt → ``decision``: what the user asked for is the decision that steers the
  work, and keeping it searchable is worth more than dropping it. Summaries use the first
  prompt as ``request``.
* An assistant's final message, or a plain-text payload → ``discovery`` with the text as
  narrative.

What each field holds. Search and the session-start context read only the stored
``content``, which is title, subtitle, narrative and facts joined
(:func:`~claude_mem_core.generation.render.observation_content`); ``files_read`` and
``files_modified`` are not part of it. So everything someone may later search for goes
into facts, kept whole up to the generous bounds below rather than clipped to a width:

* title: a short, specific label ("Edited auth/middleware.py", "Ran `pytest -k login`").
* subtitle: the tool's own description of the step (Bash's ``description``), when the
  title does not already show it.
* facts: the identifying strings, one per fact: the paths ("Files modified: …",
  "Files read: …", "Paths: …"), the full command, search patterns, URLs and queries, the
  changed lines of an edit (a line diff of old and new text), the first lines of written
  content, and an excerpt of the tool's output: its first lines, the lines that look like
  errors, and its last lines, where results usually are.
* narrative: for a prompt, a final message or a note, the text itself; tool events have
  none, since their story is the title and facts and repeating it would only skew ranking.
* concepts: ``what-changed`` for changes; files_read / files_modified: the paths.

A type the mode (or the request's ``allowed_types``) does not offer falls back to its first
type. Payloads are privacy-stripped first, since this provider reads events directly rather
than through the prompt. Nothing here raises on odd payloads, and the same events always
give the same observations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from claude_mem_core.adapters.offline_facts import (
    COMMAND_CHARS,
    READ_HEAD_CHARS,
    READ_HEAD_LINES,
    SUMMARY_FIELD_CHARS,
    TEXT_CHARS,
    TITLE_CHARS,
    TITLE_COMMAND_CHARS,
    TITLE_PATTERN_CHARS,
    VALUE_CHARS,
    WRITE_HEAD_CHARS,
    WRITE_HEAD_LINES,
    _bounded_facts,
    _compact_json,
    _cut,
    _diff_fact,
    _edit_pairs,
    _excerpt_fact,
    _first_line,
    _head_fact,
    _is_mutating_command,
    _labelled,
    _limited,
    _matched_files,
    _maybe_json_object,
    _one_line,
    _paths,
    _paths_fact,
    _pick,
    _result_text,
    _strs,
    _text,
)
from claude_mem_core.domain.models import AgentEvent
from claude_mem_core.generation.modes import CODE_MODE, Mode
from claude_mem_core.generation.parser import ParsedObservation, ParsedSummary
from claude_mem_core.generation.privacy import strip_tags_in_json
from claude_mem_core.generation.render import render_observations, render_skip, render_summary
from claude_mem_core.ports.provider import GenerationRequest, GenerationResult

if TYPE_CHECKING:
    from claude_mem_core.ports.provider import Provider

NOTHING_TO_RECORD = "nothing_to_record"

_EDIT_TOOLS = {"edit": "Edited", "multiedit": "Edited", "write": "Wrote"}
_NOTEBOOK_TOOLS = {"notebookedit"}
_READ_TOOLS = {"read", "grep", "glob", "ls", "webfetch", "websearch"}
_AGENT_TOOLS = {"task", "agent"}
_PROMPT_EVENT_TYPES = {"user_prompt", "userpromptsubmit", "prompt", "user_prompt_submit"}
_ASSISTANT_EVENT_TYPES = {"assistant_message", "stop", "last_assistant_message"}
# Input values of the known tools that identify what they looked for, as (label, key).
_VALUE_FACTS = (
    ("Pattern", "pattern"),
    ("Glob", "glob"),
    ("Query", "query"),
    ("URL", "url"),
    ("Agent", "subagent_type"),
    ("Prompt", "prompt"),
)

# -- what one event amounts to ------------------------------------------------------------


@frozen(kw_only=True)
class _Activity:
    """What one event amounts to, before it is shaped into an observation or summary."""

    kind: str  # "tool", "prompt", "assistant" or "note"
    preferred_type: str
    title: str
    subtitle: str | None = None
    narrative: str | None = None
    facts: tuple[str, ...] = field(default=(), converter=_strs)
    files_read: tuple[str, ...] = field(default=(), converter=_strs)
    files_modified: tuple[str, ...] = field(default=(), converter=_strs)
    command: str | None = None
    text: str | None = None


def _edit_activity(
    key: str, tool_input: Mapping[Any, Any], tool_response: Any, paths: list[str]
) -> _Activity:
    verb = _EDIT_TOOLS.get(key, "Edited notebook")
    title = f"{verb} {_limited(paths)}" if paths else f"{verb} a file"
    edits = tool_input.get("edits")
    if key == "multiedit" and isinstance(edits, list) and edits:
        title += f" ({len(edits)} edits)"
    content = _pick(tool_input, "content", "new_source", "newSource")
    if not isinstance(content, str) and isinstance(tool_response, Mapping) and key == "write":
        content = tool_response.get("content")
    facts = [
        _paths_fact("Files modified", paths) if paths else None,
        _diff_fact(_edit_pairs(tool_input, tool_response)),
        "Replaced every occurrence" if tool_input.get("replace_all") is True else None,
        _head_fact(
            "Content" if key == "write" else "New source",
            content if isinstance(content, str) else None,
            WRITE_HEAD_LINES,
            WRITE_HEAD_CHARS,
        ),
        # A plain-text answer to an edit is its outcome, usually why it failed.
        _excerpt_fact("Result", _text(tool_response)),
    ]
    return _Activity(
        kind="tool",
        preferred_type="change",
        title=_one_line(title, TITLE_CHARS),
        facts=_bounded_facts(facts),
        files_modified=paths,
    )


def _bash_activity(tool_input: Mapping[Any, Any], tool_response: Any) -> _Activity:
    command = _text(_pick(tool_input, "command", "cmd"))
    if command:
        title = f"Ran `{_one_line(_first_line(command), TITLE_COMMAND_CHARS)}`"
    else:
        title = "Ran a shell command"
    facts: list[str | None] = [
        _labelled("Command", _cut(command, COMMAND_CHARS)) if command else None
    ]
    if isinstance(tool_response, Mapping) and (
        "stdout" in tool_response or "stderr" in tool_response
    ):
        result = _text(tool_response.get("stdout"))  # not the JSON of an empty stdout
    else:
        result = _result_text(tool_response)
    facts.append(_excerpt_fact("Output", result))
    if isinstance(tool_response, Mapping):
        stderr = _text(tool_response.get("stderr"))
        if stderr and stderr != result:
            facts.append(_excerpt_fact("Stderr", stderr))
        if tool_response.get("interrupted") is True:
            facts.append("The command was interrupted")
    title = _one_line(title, TITLE_CHARS)
    return _Activity(
        kind="tool",
        preferred_type="change" if command and _is_mutating_command(command) else "discovery",
        title=title,
        subtitle=_subtitle(title, tool_input),
        facts=_bounded_facts(facts),
        command=command,
    )


def _subtitle(title: str, tool_input: Mapping[Any, Any]) -> str | None:
    """The tool's own description of the step, unless the title already shows it whole."""
    description = _text(tool_input.get("description"))
    if description is None or description in title:
        return None
    return _cut(description, VALUE_CHARS)


def _tool_activity(tool: str, tool_input: Mapping[Any, Any], tool_response: Any) -> _Activity:
    key = tool.casefold()
    paths = _paths(tool_input, tool_response)
    if key in _EDIT_TOOLS or key in _NOTEBOOK_TOOLS:
        return _edit_activity(key, tool_input, tool_response, paths)
    if key == "bash":
        return _bash_activity(tool_input, tool_response)

    target = _limited(paths) if paths else None
    pattern = _text(_pick(tool_input, "pattern", "query", "url"))
    if key == "grep" and pattern:
        quoted = _one_line(pattern, TITLE_PATTERN_CHARS)
        title = f"Searched for `{quoted}`" + (f" in {target}" if target else "")
    elif key == "glob" and pattern:
        title = f"Listed files matching `{_one_line(pattern, TITLE_PATTERN_CHARS)}`"
    elif key == "websearch" and pattern:
        title = f"Searched the web for `{_one_line(pattern, TITLE_PATTERN_CHARS)}`"
    elif key == "webfetch" and pattern:
        title = f"Fetched {pattern}"
    elif key == "read":
        title = f"Read {target}" if target else "Read a file"
    elif key == "ls":
        title = f"Listed {target}" if target else "Listed a directory"
    elif (description := _text(tool_input.get("description"))) is not None:
        title = f"{tool}: {description}"
    else:
        title = f"Used {tool}" + (f" on {target}" if target else "")
    title = _one_line(title, TITLE_CHARS)

    facts: list[str | None] = []
    if paths:
        facts.append(_paths_fact("Files read" if key == "read" else "Paths", paths))
    if key in _READ_TOOLS or key in _AGENT_TOOLS:
        for label, name in _VALUE_FACTS:
            value = _text(tool_input.get(name))
            if value:
                facts.append(_labelled(label, _cut(value, VALUE_CHARS)))
    elif tool_input:
        dumped = _compact_json(dict(tool_input))
        if dumped:
            facts.append(f"Input: {_cut(dumped, VALUE_CHARS)}")
    matched = _matched_files(tool_response)
    if matched:
        total = tool_response.get("numFiles") if isinstance(tool_response, Mapping) else None
        count = total if isinstance(total, int) and total >= len(matched) else len(matched)
        facts.append(_paths_fact("Matched files", matched, count))
    result = _result_text(tool_response)
    if key == "read":
        facts.append(_head_fact("Content", result, READ_HEAD_LINES, READ_HEAD_CHARS))
    else:
        facts.append(_excerpt_fact("Result", result))
    return _Activity(
        kind="tool",
        preferred_type="discovery",
        title=title,
        subtitle=_subtitle(title, tool_input),
        facts=_bounded_facts(facts),
        files_read=paths,
    )


def _text_activity(kind: str, text: str) -> _Activity:
    line = _one_line(_first_line(text), TITLE_CHARS - 16)
    if kind == "prompt":
        title, preferred = f"User asked: {line}", "decision"
    elif kind == "assistant":
        title, preferred = f"Agent reported: {line}", "discovery"
    else:
        title, preferred = line, "discovery"
    return _Activity(
        kind=kind,
        preferred_type=preferred,
        title=_one_line(title, TITLE_CHARS),
        narrative=_cut(text, TEXT_CHARS),
        text=text,
    )


def _describe_event(event: AgentEvent) -> _Activity | None:
    """What ``event`` amounts to, or ``None`` when it carries nothing worth recording."""
    payload = strip_tags_in_json(event.payload).value
    event_type = event.event_type.casefold() if isinstance(event.event_type, str) else ""
    if isinstance(payload, str):
        as_object = _maybe_json_object(payload)
        if as_object is None:
            text = _text(payload)
            if text is None:
                return None
            if event_type in _PROMPT_EVENT_TYPES:
                return _text_activity("prompt", text)
            if event_type in _ASSISTANT_EVENT_TYPES:
                return _text_activity("assistant", text)
            return _text_activity("note", text)
        payload = as_object
    if not isinstance(payload, Mapping):
        return None

    tool = _text(_pick(payload, "tool_name", "toolName"))
    if tool is not None:
        tool_input = _pick(payload, "tool_input", "toolInput")
        if isinstance(tool_input, str):
            tool_input = _maybe_json_object(tool_input) or {"command": tool_input}
        if not isinstance(tool_input, Mapping):
            tool_input = {}
        return _tool_activity(tool, tool_input, _pick(payload, "tool_response", "toolResponse"))

    prompt = _text(_pick(payload, "prompt", "user_prompt", "userPrompt"))
    if prompt is not None:
        return _text_activity("prompt", prompt)
    message = _text(_pick(payload, "last_assistant_message", "lastAssistantMessage"))
    if message is not None:
        return _text_activity("assistant", message)
    note = _text(_pick(payload, "message", "text", "content", "note"))
    if note is not None:
        return _text_activity("note", note)
    return None


# -- the provider ---------------------------------------------------------------------------


class OfflineProvider:
    """Derives observations and summaries from events, without a language model."""

    def __init__(self, mode: Mode = CODE_MODE) -> None:
        self.name: str = "offline"
        self.model: str | None = None
        self._mode = mode

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return GenerationResult(text=self.respond(request), provider=self.name, model=None)

    async def close(self) -> None:
        return None

    def respond(self, request: GenerationRequest) -> str:
        """The XML answer for ``request`` (synchronous; ``generate`` wraps it)."""
        activities = [a for a in (_describe_event(e) for e in request.events) if a is not None]
        if request.purpose == "summary":
            return render_summary(self._summary(activities))
        observations = self._observations(activities, tuple(request.allowed_types))
        if not observations:
            return render_skip(NOTHING_TO_RECORD)
        return render_observations(observations)

    def _observations(
        self, activities: Iterable[_Activity], allowed: tuple[str, ...]
    ) -> list[ParsedObservation]:
        types = allowed or self._mode.types
        concepts = set(self._mode.concepts)
        observations = []
        for index, activity in enumerate(activities):
            kind = activity.preferred_type if activity.preferred_type in types else types[0]
            observations.append(
                ParsedObservation(
                    type=kind,
                    title=activity.title,
                    subtitle=activity.subtitle,
                    facts=activity.facts,
                    narrative=activity.narrative,
                    concepts=["what-changed"]
                    if kind == "change" and "what-changed" in concepts
                    else [],
                    files_read=activity.files_read,
                    files_modified=activity.files_modified,
                    index=index,
                )
            )
        return observations

    def _summary(self, activities: Sequence[_Activity]) -> ParsedSummary:
        prompts = [a.text for a in activities if a.kind == "prompt" and a.text]
        messages = [a.text for a in activities if a.kind == "assistant" and a.text]
        read: list[str] = []
        modified: list[str] = []
        looked: list[str] = []
        ran: list[str] = []
        for activity in activities:
            read += [p for p in activity.files_read if p not in read]
            modified += [p for p in activity.files_modified if p not in modified]
            if activity.command:
                command = f"`{_one_line(activity.command, TITLE_COMMAND_CHARS)}`"
                (ran if activity.preferred_type == "change" else looked).append(command)
            elif (
                activity.kind == "tool" and not activity.files_read and not activity.files_modified
            ):
                looked.append(activity.title)

        investigated = []
        if read:
            investigated.append(f"Read: {_limited(read)}.")
        if looked:
            investigated.append(f"Also: {_limited(looked)}.")
        completed = []
        if modified:
            completed.append(f"Modified: {_limited(modified)}.")
        if ran:
            completed.append(f"Ran: {_limited(ran)}.")

        request = _cut(prompts[0], SUMMARY_FIELD_CHARS) if prompts else None
        learned = _cut(messages[-1], SUMMARY_FIELD_CHARS) if messages else None
        if not (request or investigated or learned or completed):
            return ParsedSummary(skipped=True, skip_reason=NOTHING_TO_RECORD)
        return ParsedSummary(
            request=request,
            investigated=" ".join(investigated) or None,
            learned=learned,
            completed=" ".join(completed) or None,
            notes=f"Derived from {len(activities)} events without a language model.",
        )


if TYPE_CHECKING:
    _conforms: Provider = OfflineProvider()
