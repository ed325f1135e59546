"""The offline provider's facts: bounded, marked excerpts of untrusted tool values.

How much of a command, an output, a written file or an edit is kept (the bounds below),
the total helpers that read odd payloads without raising, the excerpts of outputs (first
lines, error lines, last lines), the line diffs of edits, and which shell commands change
something. :mod:`claude_mem_core.adapters.offline_provider` builds observations from them.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

NOTHING_TO_RECORD = "nothing_to_record"

_EDIT_TOOLS = {"edit": "Edited", "multiedit": "Edited", "write": "Wrote"}
_NOTEBOOK_TOOLS = {"notebookedit"}
_READ_TOOLS = {"read", "grep", "glob", "ls", "webfetch", "websearch"}
_AGENT_TOOLS = {"task", "agent"}
_PROMPT_EVENT_TYPES = {"user_prompt", "userpromptsubmit", "prompt", "user_prompt_submit"}
_ASSISTANT_EVENT_TYPES = {"assistant_message", "stop", "last_assistant_message"}
# Input values of the known tools that identify what they looked for, as (label, key).

# -- bounds ---------------------------------------------------------------------------------
# Every cut is marked ("… [N more chars]", "[… N more lines]"), so a reader knows the text
# goes on. The aim: the strings a person later searches for stay whole in real sessions,
# while one huge event (a 100 KB log, a file-sized rewrite) still gives a bounded observation.

# A title is a one-line label in lists and context blocks; the facts carry the detail.
TITLE_CHARS = 100
# How much of a command's first line, or of a pattern, a title quotes.
TITLE_COMMAND_CHARS = 80
TITLE_PATTERN_CHARS = 60
# Paths named in a title, and in a summary's lists; the facts list every path.
LIST_LIMIT = 20
# A user prompt, a final message or a note, kept whole up to here: real prompts are far
# shorter; longer ones are pasted logs or files whose gist is in the first few pages.
TEXT_CHARS = 8_000
# A shell command, kept whole up to here: commands are rarely over a few hundred chars;
# longer ones embed a script or heredoc, and their start (program and flags) identifies them.
COMMAND_CHARS = 4_000
# An identifying value (search pattern, glob, URL, query, a subagent's prompt, a tool's
# description, an unknown tool's input as JSON): real ones are well under this; the cap only
# stops a pasted blob posing as one from filling the observation.
VALUE_CHARS = 2_000
# A path longer than this is not a path anyone types or searches for (real ones stay under a
# few hundred chars); such a value is left out rather than clipped into a non-path.
PATH_CHARS = 1_000
# Paths kept per observation: far more than one tool use touches, few enough to read.
PATH_LIMIT = 50
# One fact listing paths (an event's paths, or the files a search matched).
PATHS_FACT_CHARS = 4_000
# Changed lines of an edit, per side (removed, added): real edits change a handful of lines,
# so nearly all stay whole, while a file-sized rewrite stays a bounded excerpt.
DIFF_SIDE_LINES = 40
DIFF_SIDE_CHARS = 4_000
# Beyond this many lines in the differing middle of old and new text, lines are not matched
# (difflib's matching is quadratic) and the whole middle counts as replaced; the side bounds
# above still apply.
DIFF_MATCH_LINES = 500
# A Write's (or notebook cell's) content from the top: imports, docstring and the first
# definitions say what the file is; the file itself holds the rest.
WRITE_HEAD_LINES = 30
WRITE_HEAD_CHARS = 3_000
# A Read's content from the top: the file is on disk; its head ties the path to a subject.
READ_HEAD_LINES = 10
READ_HEAD_CHARS = 1_000
# A tool's output: its first lines (what ran), the lines that look like errors (why it
# failed; the latest ones, nearest the result, win) and its last lines (where results and
# summaries usually are). An output within these bounds is kept whole.
OUTPUT_HEAD_LINES = 5
OUTPUT_HEAD_CHARS = 1_000
OUTPUT_ERROR_LINES = 20
OUTPUT_ERROR_CHARS = 2_000
OUTPUT_TAIL_LINES = 10
OUTPUT_TAIL_CHARS = 2_000
# One output line: a minified JSON or progress-bar line would otherwise fill a whole budget.
OUTPUT_LINE_CHARS = 500
# All facts of one observation together. Real events stay well under it; only an event with
# every field huge at once reaches it, and then the last facts are cut (marked).
FACTS_CHARS = 20_000
# A summary's request and learned fields: a summary is an overview, and each prompt and
# final message is already kept, up to TEXT_CHARS, in its own observation.
SUMMARY_FIELD_CHARS = 2_000
# The stored content (title, subtitle, narrative, facts joined) of any observation this
# provider writes stays under this: the parts above plus room for labels and separators.
MAX_CONTENT_CHARS = TITLE_CHARS + VALUE_CHARS + TEXT_CHARS + FACTS_CHARS + 1_000

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

# A line of tool output that looks like an error: a traceback, an exception or error name,
# test failures, fatal/panic messages, npm's ERR!, pytest's "E   " detail lines, a non-zero
# exit code, and the usual shell complaints.
_ERROR_LINE = re.compile(
    r"Traceback \(most recent call last\)"
    r"|\b\w*(?:Error|Exception)\b"
    r"|(?i:\berror\b)"
    r"|\bFAIL(?:ED|URE)?\b"
    r"|(?i:\bfatal\b)"
    r"|\bpanic:"
    r"|\bERR!"
    r"|^E\s{2,}\S"
    r"|(?i:\bexit(?:ed with)? (?:code|status)[:=]?\s*-?[1-9])"
    r"|(?i:non-zero exit)"
    r"|(?i:command not found|no such file or directory|permission denied|segmentation fault)"
    # A source location, path:line[:column] (compilers, test runners, linters, scanners).
    r"|(?<![:/\\\w.-])(?:[A-Za-z]:)?[\w.-]*[/\\][\w./\\-]*\.\w+:\d+\b"
)


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
    """Whitespace collapsed to single spaces and clipped with an ellipsis (for labels)."""
    collapsed = " ".join(text.split())
    if len(collapsed) <= limit:
        return collapsed
    return collapsed[: limit - 1].rstrip() + "…"


def _cut(text: str, limit: int) -> str:
    """``text`` when it fits in ``limit`` chars; else its start, ended at a word boundary
    when one is near, and a ``… [N more chars]`` marker, all within ``limit``."""
    if len(text) <= limit:
        return text
    room = max(limit - len(f" … [{len(text)} more chars]"), 0)
    head = text[:room]
    boundary = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    if boundary >= room * 4 // 5:
        head = head[:boundary]
    head = head.rstrip()
    return f"{head} … [{len(text) - len(head)} more chars]"


def _labelled(label: str, value: str) -> str:
    """``Label: value``, or the label on its own line when the value has several."""
    return f"{label}:\n{value}" if "\n" in value else f"{label}: {value}"


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


def _joined_texts(items: Sequence[Any]) -> str | None:
    """The strings of a list, and the ``text`` of its objects (content blocks), joined."""
    texts = [
        item if isinstance(item, str) else item.get("text") if isinstance(item, Mapping) else None
        for item in items
    ]
    joined = "\n".join(text for text in texts if isinstance(text, str) and text.strip())
    return joined.strip() or None


def _result_text(response: Any) -> str | None:
    """The most readable text of a tool response (stdout, content…), untrimmed in length."""
    if response is None:
        return None
    if isinstance(response, str):
        return _text(response)
    if isinstance(response, Mapping):
        for key in ("stdout", "output", "result", "content", "text", "message", "error"):
            value = response.get(key)
            found = _joined_texts(value) if isinstance(value, list) else _text(value)
            if found:
                return found
        nested = response.get("file")
        if isinstance(nested, Mapping):
            found = _text(nested.get("content"))
            if found:
                return found
        if isinstance(response.get("filenames"), list):
            return None  # a file search's answer: its matches are listed on their own
    if isinstance(response, list):
        joined = _joined_texts(response)
        if joined:
            return joined
    if isinstance(response, bool | int | float):
        return str(response)
    dumped = _compact_json(response)
    return _text(dumped) if dumped not in (None, "{}", "[]", "null") else None


def _paths(tool_input: Mapping[Any, Any], tool_response: Any) -> list[str]:
    """The event's paths, in order of appearance, at most ``PATH_LIMIT``."""
    found: list[str] = []

    def add(value: Any) -> None:
        path = _text(value)
        if path and len(path) <= PATH_CHARS and path not in found and len(found) < PATH_LIMIT:
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


def _matched_files(tool_response: Any) -> list[str]:
    """The files a Grep or Glob matched (its ``filenames``), at most ``PATH_LIMIT``."""
    if not isinstance(tool_response, Mapping):
        return []
    names = tool_response.get("filenames")
    if not isinstance(names, list):
        return []
    found: list[str] = []
    for name in names:
        path = _text(name)
        if path and len(path) <= PATH_CHARS and path not in found:
            found.append(path)
            if len(found) == PATH_LIMIT:
                break
    return found


def _limited(items: Sequence[str]) -> str:
    shown = ", ".join(items[:LIST_LIMIT])
    if len(items) > LIST_LIMIT:
        shown += f" and {len(items) - LIST_LIMIT} more"
    return shown


def _paths_fact(label: str, paths: Sequence[str], total: int | None = None) -> str:
    """``Label: a, b, c``: every path, whole, as long as ``PATHS_FACT_CHARS`` allows."""
    total = len(paths) if total is None else total
    shown: list[str] = []
    used = len(label) + 2
    for path in paths:
        if used + len(path) + 2 > PATHS_FACT_CHARS - 40:  # room left for the "more" marker
            break
        shown.append(path)
        used += len(path) + 2
    text = f"{label}: {', '.join(shown)}"
    if total > len(shown):
        text += f" and {total - len(shown)} more"
    return text


def _strs(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


# -- excerpts: output, file heads, line diffs -------------------------------------------------


def _clip_line(line: str, limit: int) -> str:
    line = line.rstrip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _take(indices: Iterable[int], lines: Sequence[str], most: int, chars: int) -> list[int]:
    """Indices from ``indices``, in their order, until ``most`` lines or ``chars`` are used."""
    taken: list[int] = []
    used = 0
    for index in indices:
        cost = len(lines[index]) + 1
        if len(taken) >= most or used + cost > chars:
            break
        taken.append(index)
        used += cost
    return taken


def _excerpt(
    text: str,
    *,
    line_chars: int,
    head: tuple[int, int],
    errors: tuple[int, int] = (0, 0),
    tail: tuple[int, int] = (0, 0),
) -> tuple[str, int]:
    """Lines of ``text`` in their order: up to ``head`` (lines, chars) from the top, the last
    error-looking lines after them within ``errors``, and the bottom lines within ``tail``;
    gaps are marked. Returns the excerpt and the text's line count."""
    lines = [_clip_line(line, line_chars) for line in text.splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    count = len(lines)
    top = _take(range(count), lines, *head)
    bottom = _take(range(count - 1, len(top) - 1, -1), lines, *tail)
    end = count - len(bottom)
    flagged = (i for i in range(end - 1, len(top) - 1, -1) if _ERROR_LINE.search(lines[i]))
    chosen = sorted({*top, *bottom, *_take(flagged, lines, *errors)})
    shown: list[str] = []
    previous = -1
    for index in chosen:
        if index > previous + 1:
            shown.append(f"[… {index - previous - 1} lines omitted]")
        shown.append(lines[index])
        previous = index
    if previous < count - 1:
        shown.append(f"[… {count - 1 - previous} more lines]")
    return "\n".join(shown), count


def _excerpt_fact(
    label: str,
    text: str | None,
    *,
    line_chars: int = OUTPUT_LINE_CHARS,
    head: tuple[int, int] = (OUTPUT_HEAD_LINES, OUTPUT_HEAD_CHARS),
    errors: tuple[int, int] = (OUTPUT_ERROR_LINES, OUTPUT_ERROR_CHARS),
    tail: tuple[int, int] = (OUTPUT_TAIL_LINES, OUTPUT_TAIL_CHARS),
) -> str | None:
    if not text:
        return None
    body, count = _excerpt(text, line_chars=line_chars, head=head, errors=errors, tail=tail)
    if not body.strip():
        return None
    if "\n" not in body:
        return f"{label}: {body.strip()}"
    return f"{label} ({count} lines):\n{body}"


def _head_fact(label: str, text: str | None, lines: int, chars: int) -> str | None:
    """The first lines of file content (a Write's, a Read's), within ``lines`` and ``chars``."""
    return _excerpt_fact(
        label, text, line_chars=chars, head=(lines, chars), errors=(0, 0), tail=(0, 0)
    )


def _hunks(old: str, new: str) -> Iterator[tuple[list[str], list[str]]]:
    """The (removed, added) line groups that turn ``old`` into ``new``."""
    before, after = old.splitlines(), new.splitlines()
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    end_before, end_after = len(before), len(after)
    while (
        end_before > start and end_after > start and before[end_before - 1] == after[end_after - 1]
    ):
        end_before -= 1
        end_after -= 1
    removed, added = before[start:end_before], after[start:end_after]
    if not removed and not added:
        return
    if max(len(removed), len(added)) > DIFF_MATCH_LINES:
        yield removed, added
        return
    matcher = difflib.SequenceMatcher(None, removed, added, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            yield removed[i1:i2], added[j1:j2]


def _edit_pairs(tool_input: Mapping[Any, Any], tool_response: Any) -> list[tuple[str, str]]:
    """(old, new) text of each replacement an Edit or MultiEdit made."""
    pairs: list[tuple[str, str]] = []

    def add(source: Mapping[Any, Any]) -> None:
        old = _pick(source, "old_string", "oldString")
        new = _pick(source, "new_string", "newString")
        if isinstance(old, str) or isinstance(new, str):
            pairs.append((old if isinstance(old, str) else "", new if isinstance(new, str) else ""))

    add(tool_input)
    edits = tool_input.get("edits")
    if isinstance(edits, list):
        for edit in edits:
            if isinstance(edit, Mapping):
                add(edit)
    if not pairs and isinstance(tool_response, Mapping):
        add(tool_response)
    return pairs


def _diff_fact(pairs: Sequence[tuple[str, str]]) -> str | None:
    """``Changed lines:`` then ``-removed`` and ``+added`` lines, as in a unified diff; each
    side within ``DIFF_SIDE_LINES`` and ``DIFF_SIDE_CHARS``, groups separated by ``[…]``."""
    shown: list[str] = []
    room = {"-": [DIFF_SIDE_LINES, DIFF_SIDE_CHARS], "+": [DIFF_SIDE_LINES, DIFF_SIDE_CHARS]}
    omitted = {"-": 0, "+": 0}
    groups = 0
    for old, new in pairs:
        for removed, added in _hunks(old, new):
            if groups and shown and shown[-1] != "[…]":
                shown.append("[…]")
            groups += 1
            for sign, side in (("-", removed), ("+", added)):
                for raw in side:
                    line = sign + _clip_line(raw, DIFF_SIDE_CHARS - 2)
                    lines_left, chars_left = room[sign]
                    if omitted[sign] or lines_left == 0 or len(line) + 1 > chars_left:
                        omitted[sign] += 1
                        continue
                    shown.append(line)
                    room[sign] = [lines_left - 1, chars_left - len(line) - 1]
    if not groups:
        return None
    if shown and shown[-1] == "[…]":
        shown.pop()
    if omitted["-"]:
        shown.append(f"[… {omitted['-']} more removed lines]")
    if omitted["+"]:
        shown.append(f"[… {omitted['+']} more added lines]")
    return "Changed lines:\n" + "\n".join(shown)


def _bounded_facts(facts: Iterable[str | None]) -> tuple[str, ...]:
    """The facts in order, within ``FACTS_CHARS`` together; past it the fact that crosses is
    cut and the rest are counted in a closing marker."""
    pending = [fact for fact in facts if fact]
    kept: list[str] = []
    used = 0
    reserve = 40  # room for the closing marker
    for fact in pending:
        room = FACTS_CHARS - used - reserve
        if len(fact) > room:
            if room >= 200:
                kept.append(_cut(fact, room))
            if len(kept) < len(pending):
                kept.append(f"[… {len(pending) - len(kept)} more facts omitted]")
            break
        kept.append(fact)
        used += len(fact)
    return tuple(kept)
