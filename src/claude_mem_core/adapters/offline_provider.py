"""A provider that needs no model: observations derived from the events themselves.

It makes the whole pipeline usable (and testable end to end) without an API key. Its answer
is rendered as the XML a model would return, so it goes through the same parser and
persisters as any other provider.

Mapping (one observation per event that says something):

* Edit / Write / MultiEdit / NotebookEdit → ``change``, paths → files_modified.
* Read / Grep / Glob / LS / WebFetch / WebSearch → ``discovery``, paths → files_read.
* Bash → ``change`` when the command looks mutating (git commit, rm, mv, pip install,
  sed -i, ``>`` redirect to a file…), else ``discovery``; command and the start of its
  output become facts.
* Any other tool → ``discovery``.
* A user prompt → ``decision``: what the user asked for is the decision that steers the
  work, and keeping it searchable is worth more than dropping it. Summaries use the first
  prompt as ``request``.
* An assistant's final message, or a plain-text payload → ``discovery`` with the text as
  narrative.

A type the mode (or the request's ``allowed_types``) does not offer falls back to its first
type. Payloads are privacy-stripped first, since this provider reads events directly rather
than through the prompt. Nothing here raises on odd payloads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

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
_PROMPT_EVENT_TYPES = {"user_prompt", "userpromptsubmit", "prompt", "user_prompt_submit"}
_ASSISTANT_EVENT_TYPES = {"assistant_message", "stop", "last_assistant_message"}

_TITLE_CHARS = 100
_FACT_CHARS = 300
_NARRATIVE_CHARS = 2000
_LIST_LIMIT = 20

# Bash heuristics: a command segment is mutating if its program (after sudo/env prefixes)
# changes files, git state or installed packages.
_MUTATING_PROGRAMS = {
    "rm", "mv", "cp", "mkdir", "rmdir", "touch", "chmod", "chown", "ln", "install",
    "patch", "truncate", "dd", "tee", "unlink", "rsync", "tar", "unzip",
}  # fmt: skip
_GIT_MUTATING = {
    "commit", "push", "merge", "rebase", "reset", "checkout", "switch", "add", "rm", "mv",
    "apply", "cherry-pick", "stash", "tag", "revert", "pull", "clone", "init", "restore", "am",
}  # fmt: skip
_PACKAGE_MANAGERS = {
    "pip", "pip3", "uv", "poetry", "npm", "yarn", "pnpm", "cargo", "apt", "apt-get", "brew",
    "gem", "go", "conda", "bun",
}  # fmt: skip
_PACKAGE_VERBS = {
    "install", "uninstall", "add", "remove", "update", "upgrade", "sync", "i", "ci", "get",
}  # fmt: skip
_IN_PLACE_EDITORS = {"sed", "perl"}
_SEGMENT_SPLIT = re.compile(r"&&|\|\||[;|\n]")
_QUOTED = re.compile(r"'[^']*'|\"(?:[^\"\\]|\\.)*\"")
_REDIRECT = re.compile(r"(?<![<>&])>>?\s*([^\s&|;]\S*)")
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _is_mutating_command(command: str) -> bool:
    unquoted = _QUOTED.sub("''", command)
    for target in _REDIRECT.findall(unquoted):
        if target != "/dev/null":
            return True
    for segment in _SEGMENT_SPLIT.split(unquoted):
        words = segment.split()
        while words and (_ENV_ASSIGNMENT.match(words[0]) or words[0] in {"sudo", "env", "time"}):
            words = words[1:]
        if not words:
            continue
        program = words[0].rsplit("/", 1)[-1]
        rest = words[1:]
        if program in _MUTATING_PROGRAMS:
            return True
        if program == "git" and any(word in _GIT_MUTATING for word in rest[:2]):
            return True
        if program in _PACKAGE_MANAGERS and any(word in _PACKAGE_VERBS for word in rest[:3]):
            return True
        if program in _IN_PLACE_EDITORS and any(
            word.startswith("-i") or word == "--in-place" for word in rest
        ):
            return True
        if program.startswith("python") and "pip" in rest and "install" in rest:
            return True
    return False


# -- small, total helpers over untrusted values --------------------------------------------


def _text(value: Any) -> str | None:
    """A non-blank string, trimmed; anything else is ``None``."""
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return None


def _pick(mapping: Mapping[Any, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None


def _one_line(text: str, limit: int) -> str:
    """Whitespace collapsed to single spaces and clipped with an ellipsis."""
    collapsed = " ".join(text.split())
    if len(collapsed) <= limit:
        return collapsed
    return collapsed[: limit - 1].rstrip() + "…"


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line
    return text


def _maybe_json_object(text: str) -> dict[Any, Any] | None:
    if not text.lstrip().startswith("{"):
        return None
    try:
        loaded = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _compact_json(value: Any) -> str | None:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        return None


def _result_text(response: Any) -> str | None:
    """The most readable text of a tool response (stdout, content…), untrimmed in length."""
    if response is None:
        return None
    if isinstance(response, str):
        return _text(response)
    if isinstance(response, Mapping):
        for key in ("stdout", "output", "result", "content", "text", "message", "error"):
            found = _text(response.get(key))
            if found:
                return found
        nested = response.get("file")
        if isinstance(nested, Mapping):
            found = _text(nested.get("content"))
            if found:
                return found
    if isinstance(response, list):
        texts = [
            item
            if isinstance(item, str)
            else item.get("text")
            if isinstance(item, Mapping)
            else None
            for item in response
        ]
        joined = "\n".join(text for text in texts if isinstance(text, str) and text.strip())
        if joined:
            return joined.strip()
    if isinstance(response, bool | int | float):
        return str(response)
    dumped = _compact_json(response)
    return _text(dumped) if dumped not in (None, "{}", "[]", "null") else None


def _paths(tool_input: Mapping[Any, Any], tool_response: Any) -> list[str]:
    found: list[str] = []

    def add(value: Any) -> None:
        path = _text(value)
        if path and path not in found:
            found.append(path)

    for key in ("file_path", "filePath", "notebook_path", "notebookPath", "path"):
        add(tool_input.get(key))
    paths = tool_input.get("paths")
    if isinstance(paths, list):
        for path in paths:
            add(path)
    edits = tool_input.get("edits")
    if isinstance(edits, list):
        for edit in edits:
            if isinstance(edit, Mapping):
                add(_pick(edit, "file_path", "filePath", "path"))
    if not found and isinstance(tool_response, Mapping):
        add(tool_response.get("filePath"))
        nested = tool_response.get("file")
        if isinstance(nested, Mapping):
            add(nested.get("filePath"))
    return found


def _limited(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    if len(items) > _LIST_LIMIT:
        shown += f" and {len(items) - _LIST_LIMIT} more"
    return shown


def _strs(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


# -- what one event amounts to ------------------------------------------------------------


@frozen(kw_only=True)
class _Activity:
    """What one event amounts to, before it is shaped into an observation or summary."""

    kind: str  # "tool", "prompt", "assistant" or "note"
    preferred_type: str
    title: str
    narrative: str | None = None
    facts: tuple[str, ...] = field(default=(), converter=_strs)
    files_read: tuple[str, ...] = field(default=(), converter=_strs)
    files_modified: tuple[str, ...] = field(default=(), converter=_strs)
    command: str | None = None
    text: str | None = None


def _tool_activity(tool: str, tool_input: Mapping[Any, Any], tool_response: Any) -> _Activity:
    key = tool.casefold()
    paths = _paths(tool_input, tool_response)
    target = _limited(paths) if paths else None
    result = _result_text(tool_response)
    facts: list[str] = []

    if key in _EDIT_TOOLS or key in _NOTEBOOK_TOOLS:
        verb = _EDIT_TOOLS.get(key, "Edited notebook")
        title = f"{verb} {target}" if target else f"{verb} a file"
        edits = tool_input.get("edits")
        if key == "multiedit" and isinstance(edits, list) and edits:
            title += f" ({len(edits)} edits)"
        old, new = _text(tool_input.get("old_string")), _text(tool_input.get("new_string"))
        if old and new:
            facts.append(f"Replaced `{_one_line(old, 120)}` with `{_one_line(new, 120)}`")
        content = _text(tool_input.get("content"))
        if key == "write" and content:
            facts.append(f"Wrote {len(content.splitlines())} lines")
        return _Activity(
            kind="tool",
            preferred_type="change",
            title=_one_line(title, _TITLE_CHARS),
            facts=facts,
            files_modified=paths,
        )

    command = _text(_pick(tool_input, "command", "cmd")) if key == "bash" else None
    trailing: list[str] = []  # facts that read best after the result
    if key == "bash":
        mutating = command is not None and _is_mutating_command(command)
        title = f"Ran `{_one_line(_first_line(command), 80)}`" if command else "Ran a shell command"
        if command:
            facts.append(f"Command: {_one_line(command, _FACT_CHARS)}")
        if isinstance(tool_response, Mapping):
            stderr = _text(tool_response.get("stderr"))
            if stderr and stderr != result:
                trailing.append(f"Errors: {_one_line(stderr, _FACT_CHARS)}")
            if tool_response.get("interrupted") is True:
                trailing.append("The command was interrupted")
        preferred = "change" if mutating else "discovery"
        paths = []  # a shell command's paths are not known
    else:
        preferred = "discovery"
        pattern = _text(_pick(tool_input, "pattern", "query", "url"))
        if key == "grep" and pattern:
            title = f"Searched for `{_one_line(pattern, 60)}`" + (f" in {target}" if target else "")
        elif key == "glob" and pattern:
            title = f"Listed files matching `{_one_line(pattern, 60)}`"
        elif key == "websearch" and pattern:
            title = f"Searched the web for `{_one_line(pattern, 60)}`"
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
    if result:
        facts.append(f"Result: {_one_line(result, _FACT_CHARS)}")
    facts += trailing
    return _Activity(
        kind="tool",
        preferred_type=preferred,
        title=_one_line(title, _TITLE_CHARS),
        facts=facts,
        files_read=paths,
        command=command,
    )


def _text_activity(kind: str, text: str) -> _Activity:
    line = _one_line(_first_line(text), _TITLE_CHARS - 16)
    if kind == "prompt":
        title, preferred = f"User asked: {line}", "decision"
    elif kind == "assistant":
        title, preferred = f"Agent reported: {line}", "discovery"
    else:
        title, preferred = line, "discovery"
    return _Activity(
        kind=kind,
        preferred_type=preferred,
        title=_one_line(title, _TITLE_CHARS),
        narrative=_clip(text, _NARRATIVE_CHARS),
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
                command = f"`{_one_line(activity.command, 80)}`"
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

        request = _clip(prompts[0], _NARRATIVE_CHARS) if prompts else None
        learned = _clip(messages[-1], _NARRATIVE_CHARS) if messages else None
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
