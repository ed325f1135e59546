"""The offline provider: observations and summaries derived from events, no model."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, target
from hypothesis import strategies as st

from claude_mem_core.adapters.offline_facts import (
    COMMAND_CHARS,
    DIFF_SIDE_CHARS,
    DIFF_SIDE_LINES,
    FACTS_CHARS,
    MAX_CONTENT_CHARS,
    OUTPUT_ERROR_CHARS,
    OUTPUT_HEAD_CHARS,
    OUTPUT_HEAD_LINES,
    OUTPUT_TAIL_CHARS,
    OUTPUT_TAIL_LINES,
    PATH_CHARS,
    PATH_LIMIT,
    TEXT_CHARS,
    TITLE_CHARS,
    VALUE_CHARS,
    WRITE_HEAD_CHARS,
    WRITE_HEAD_LINES,
)
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.domain.models import AgentEvent
from claude_mem_core.generation.modes import CODE_MODE, Mode
from claude_mem_core.generation.parser import (
    ParsedObservation,
    ParsedObservations,
    ParsedSummary,
    parse_observations,
    parse_summary,
)
from claude_mem_core.generation.render import observation_content
from claude_mem_core.ports.provider import (
    GenerationPurpose,
    GenerationRequest,
    GenerationResult,
    Provider,
)

WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def event(payload: Any, event_type: str = "tool_use", id: str = "e1") -> AgentEvent:
    return AgentEvent(
        id=id,
        team_id="t",
        project_id="p",
        source_adapter="hook",
        idempotency_key=f"k-{id}",
        event_type=event_type,
        payload=payload,
        occurred_at=WHEN,
        received_at=WHEN,
        created_at=WHEN,
    )


def tool(name: str, tool_input: Any = None, response: Any = None) -> AgentEvent:
    return event({"tool_name": name, "tool_input": tool_input, "tool_response": response})


def respond(*events: AgentEvent, purpose: GenerationPurpose = "observations", **kwargs: Any) -> str:
    request = GenerationRequest(prompt="ignored", purpose=purpose, events=events, **kwargs)
    return OfflineProvider().respond(request)


def observations(
    *events: AgentEvent, mode: Mode = CODE_MODE, **kwargs: Any
) -> list[ParsedObservation]:
    result = parse_observations(respond(*events, **kwargs), mode)
    assert isinstance(result, ParsedObservations), result
    return list(result.observations)


def one(*events: AgentEvent) -> ParsedObservation:
    (observation,) = observations(*events)
    return observation


def summary(*events: AgentEvent) -> ParsedSummary:
    result = parse_summary(respond(*events, purpose="summary"))
    assert isinstance(result, ParsedSummary), result
    return result


async def test_generate_returns_a_result_the_parser_accepts() -> None:
    provider: Provider = OfflineProvider()
    assert provider.name == "offline"
    assert provider.model is None
    result = await provider.generate(
        GenerationRequest(prompt="x", events=[tool("Read", {"file_path": "a.py"})])
    )
    assert isinstance(result, GenerationResult)
    assert result.provider == "offline"
    assert result.model is None
    assert isinstance(parse_observations(result.text, CODE_MODE), ParsedObservations)
    await provider.close()


@pytest.mark.parametrize(
    ("name", "tool_input", "kind", "title"),
    [
        ("Edit", {"file_path": "src/app/auth.py"}, "change", "Edited src/app/auth.py"),
        ("Write", {"file_path": "new.py", "content": "a\nb"}, "change", "Wrote new.py"),
        ("NotebookEdit", {"notebook_path": "nb.ipynb"}, "change", "Edited notebook nb.ipynb"),
        ("Read", {"file_path": "README.md"}, "discovery", "Read README.md"),
        ("Grep", {"pattern": "TODO", "path": "src"}, "discovery", "Searched for `TODO` in src"),
        ("Glob", {"pattern": "**/*.py"}, "discovery", "Listed files matching `**/*.py`"),
        ("LS", {"path": "/repo"}, "discovery", "Listed /repo"),
        ("WebFetch", {"url": "https://x.dev"}, "discovery", "Fetched https://x.dev"),
        ("WebSearch", {"query": "attrs"}, "discovery", "Searched the web for `attrs`"),
        ("mcp__db__query", {}, "discovery", "Used mcp__db__query"),
        ("Task", {"description": "find callers"}, "discovery", "Task: find callers"),
    ],
)
def test_tool_mapping(name: str, tool_input: dict[str, Any], kind: str, title: str) -> None:
    observation = one(tool(name, tool_input))
    assert observation.type == kind
    assert observation.title == title


def test_edit_paths_go_to_files_modified_and_reads_to_files_read() -> None:
    edited = one(
        tool(
            "MultiEdit",
            {
                "file_path": "a.py",
                "edits": [{"old_string": "x", "new_string": "y"}, {"path": "b.py"}],
            },
        )
    )
    assert edited.files_modified == ("a.py", "b.py")
    assert edited.files_read == ()
    assert edited.title == "Edited a.py, b.py (2 edits)"
    assert "what-changed" in edited.concepts
    read = one(tool("Read", {"file_path": "c.py"}))
    assert read.files_read == ("c.py",)
    assert read.files_modified == ()


def test_edit_facts_name_the_file_and_the_changed_lines() -> None:
    observation = one(
        tool("Edit", {"file_path": "a.py", "old_string": "x = 1", "new_string": "x = 2"})
    )
    assert observation.facts == ("Files modified: a.py", "Changed lines:\n-x = 1\n+x = 2")


def test_path_can_come_from_the_response() -> None:
    response = {"type": "text", "file": {"filePath": "from/response.py", "content": "body"}}
    observation = one(tool("Read", {}, response))
    assert observation.files_read == ("from/response.py",)
    assert observation.facts == ("Files read: from/response.py", "Content: body")


def test_camel_case_payload() -> None:
    observation = one(
        event({"toolName": "Edit", "toolInput": {"filePath": "x.py"}, "toolResponse": "ok"})
    )
    assert observation.type == "change"
    assert observation.files_modified == ("x.py",)


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        ("pytest -q", "discovery"),
        ("git status", "discovery"),
        ("git log --oneline | head", "discovery"),
        ("ls -la > /dev/null 2>&1", "discovery"),
        ("grep '>' notes.txt", "discovery"),
        ("npm test", "discovery"),
        ("git commit -m 'fix: x'", "change"),
        ("cd repo && git push", "change"),
        ("rm -rf build", "change"),
        ("mv a b", "change"),
        ("sudo pip install requests", "change"),
        ("python -m pip install -e .", "change"),
        ("uv pip install attrs", "change"),
        ("sed -i 's/a/b/' f.txt", "change"),
        ("echo hi > out.txt", "change"),
        ("FOO=1 /bin/mkdir -p x", "change"),
    ],
)
def test_bash_mutation_heuristic(command: str, kind: str) -> None:
    observation = one(tool("Bash", {"command": command}))
    assert observation.type == kind
    assert observation.title == f"Ran `{command}`"


def test_bash_facts_hold_command_output_excerpt_and_stderr() -> None:
    stdout = "".join(f"line {i}\n" for i in range(200))
    response = {"stdout": stdout, "stderr": "warning: x", "interrupted": True}
    observation = one(tool("Bash", {"command": "pytest -q"}, response))
    command, output, stderr, interrupted = observation.facts
    assert command == "Command: pytest -q"
    head = [f"line {i}" for i in range(OUTPUT_HEAD_LINES)]
    tail = [f"line {i}" for i in range(200 - OUTPUT_TAIL_LINES, 200)]
    omitted = 200 - OUTPUT_HEAD_LINES - OUTPUT_TAIL_LINES
    assert output.splitlines() == [
        "Output (200 lines):",
        *head,
        f"[… {omitted} lines omitted]",
        *tail,
    ]
    assert stderr == "Stderr: warning: x"
    assert interrupted == "The command was interrupted"


def test_a_short_output_is_kept_whole() -> None:
    stdout = "".join(f"{i}\n" for i in range(OUTPUT_HEAD_LINES + OUTPUT_TAIL_LINES))
    observation = one(tool("Bash", {"command": "seq 0 14"}, {"stdout": stdout, "stderr": ""}))
    assert observation.facts[1] == "Output (15 lines):\n" + stdout.strip()


def test_bash_description_is_the_subtitle_and_reaches_content() -> None:
    observation = one(
        tool("Bash", {"command": "make docs", "description": "Build the HTML docs"}, "done")
    )
    assert observation.title == "Ran `make docs`"
    assert observation.subtitle == "Build the HTML docs"
    assert "Build the HTML docs" in observation_content(observation)


def test_bash_command_as_a_string_input() -> None:
    assert one(tool("Bash", "rm x")).title == "Ran `rm x`"


def test_user_prompt_is_a_decision() -> None:
    observation = one(event({"prompt": "Add rate limiting\nto the login route"}, "user_prompt"))
    assert observation.type == "decision"
    assert observation.title == "User asked: Add rate limiting"
    assert observation.narrative == "Add rate limiting\nto the login route"
    assert observation.facts == ()


def test_plain_string_payloads() -> None:
    assert one(event("  a free note  ", "note")).title == "a free note"
    assert one(event("do it", "user_prompt")).type == "decision"
    assert one(event("all done", "assistant_message")).title == "Agent reported: all done"
    as_json = one(event(json.dumps({"tool_name": "Read", "tool_input": {"file_path": "j.py"}})))
    assert as_json.files_read == ("j.py",)


def test_private_content_never_reaches_the_output() -> None:
    text = respond(
        tool("Bash", {"command": "deploy --token <private>s3cr3t</private>"}, "<private>out"),
        event({"prompt": "use <private>hunter2</private> as password"}, "user_prompt"),
    )
    assert "s3cr3t" not in text
    assert "hunter2" not in text
    assert "Ran `deploy --token`" in text


def test_odd_payloads_do_not_raise() -> None:
    deep: Any = "<private>x</private>"
    for _ in range(3000):
        deep = [deep]
    odd = [
        deep,
        {"tool_name": "Read", "tool_response": deep},
        {"tool_name": 5, "tool_input": "not json"},
        {"tool_name": "Bash", "tool_input": {"command": ["not", "a", "string"]}},
        {"tool_name": "Edit", "tool_input": {"edits": "nope", "file_path": 3}},
        {1: "int key", None: "none key"},
        {"tool_name": "X", "tool_response": {"a": {1, 2}, "b": object()}},
        float("nan"),
        b"bytes",
    ]
    for purpose in ("observations", "summary"):
        text = respond(*(event(p, id=f"e{i}") for i, p in enumerate(odd)), purpose=purpose)
        parsed = parse_summary(text) if purpose == "summary" else parse_observations(text)
        assert isinstance(parsed, ParsedSummary | ParsedObservations)
        assert "<private>" not in text


def test_nothing_meaningful_is_a_skip() -> None:
    text = respond(event({"foo": 1}), event(None), event("   "), event({"prompt": "<private>x"}))
    assert text == '<skip_summary reason="nothing_to_record" />'
    parsed = parse_observations(text, CODE_MODE)
    assert parsed == ParsedObservations(skipped=True, skip_reason="nothing_to_record")
    assert respond() == '<skip_summary reason="nothing_to_record" />'


def test_one_observation_per_meaningful_event_with_positions() -> None:
    result = observations(tool("Read", {"file_path": "a"}), tool("Edit", {"file_path": "b"}))
    assert [(o.index, o.type) for o in result] == [(0, "discovery"), (1, "change")]


def test_types_the_request_does_not_allow_fall_back_to_the_first_allowed() -> None:
    mode = Mode("tiny", types=("note", "change"))
    result = observations(
        tool("Read", {"file_path": "a"}),
        tool("Edit", {"file_path": "b"}),
        mode=mode,
        allowed_types=mode.types,
    )
    assert [o.type for o in result] == ["note", "change"]


def test_provider_mode_is_used_without_allowed_types() -> None:
    mode = Mode("tiny", types=("note",))
    text = OfflineProvider(mode).respond(
        GenerationRequest(prompt="", events=[tool("Edit", {"file_path": "b"})])
    )
    parsed = parse_observations(text, mode)
    assert isinstance(parsed, ParsedObservations)
    assert [o.type for o in parsed.observations] == ["note"]


def test_summary_from_events() -> None:
    result = summary(
        event({"prompt": "Fix login"}, "user_prompt"),
        event({"prompt": "Also add a test"}, "user_prompt"),
        tool("Read", {"file_path": "auth.py"}),
        tool("Bash", {"command": "pytest -q"}),
        tool("Edit", {"file_path": "auth.py"}),
        tool("Bash", {"command": "git commit -m fix"}),
        event({"last_assistant_message": "Fixed and tested."}, "assistant_message"),
    )
    assert result.request == "Fix login"
    assert result.investigated == "Read: auth.py. Also: `pytest -q`."
    assert result.completed == "Modified: auth.py. Ran: `git commit -m fix`."
    assert result.learned == "Fixed and tested."
    assert result.next_steps is None
    assert not result.skipped


def test_summary_without_anything_is_a_skip() -> None:
    assert summary(event({"foo": "bar"})) == ParsedSummary(
        skipped=True, skip_reason="nothing_to_record"
    )


# -- what an observation keeps whole -----------------------------------------------------------

# An output excerpt: its three budgets plus the label and the omission markers.
OUTPUT_BOUND = OUTPUT_HEAD_CHARS + OUTPUT_ERROR_CHARS + OUTPUT_TAIL_CHARS + 200


def test_a_long_bash_command_is_kept_whole() -> None:
    settings = " ".join(f"-e SETTING_{i}=value_{i}" for i in range(80))
    command = f"docker run --rm {settings} app:latest migrate --target 0042_add_login_index"
    assert 1_500 < len(command) <= COMMAND_CHARS
    observation = one(tool("Bash", {"command": command}, {"stdout": "ok", "stderr": ""}))
    assert observation.facts == (f"Command: {command}", "Output: ok")
    assert command in observation_content(observation)
    title = observation.title or ""
    assert title.startswith("Ran `docker run --rm -e SETTING_0=value_0")
    assert len(title) <= TITLE_CHARS


def test_a_multi_line_command_keeps_every_line() -> None:
    command = "cat > notes.txt <<'EOF'\nfirst\n  second\nEOF"
    observation = one(tool("Bash", {"command": command}))
    assert observation.title == "Ran `cat > notes.txt <<'EOF'`"
    assert observation.facts == (f"Command:\n{command}",)


def test_the_changed_lines_deep_inside_a_long_edit_are_kept() -> None:
    old = "".join(f"    value_{i} = compute({i})\n" for i in range(400))
    new = old.replace(
        "    value_321 = compute(321)\n",
        "    value_321 = compute_cached(321, ttl=30)\n    log.debug('cached 321')\n",
    )
    observation = one(
        tool("Edit", {"file_path": "src/app/values.py", "old_string": old, "new_string": new})
    )
    assert observation.facts == (
        "Files modified: src/app/values.py",
        "Changed lines:\n"
        "-    value_321 = compute(321)\n"
        "+    value_321 = compute_cached(321, ttl=30)\n"
        "+    log.debug('cached 321')",
    )
    assert "compute_cached(321, ttl=30)" in observation_content(observation)


def test_multi_edit_keeps_the_changed_lines_of_every_edit() -> None:
    edits = [
        {"old_string": "a = 1\nb = 2\nc = 3", "new_string": "a = 1\nb = 20\nc = 3"},
        {"old_string": "start()", "new_string": "start(retries=3)", "replace_all": True},
        {"old_string": "x", "new_string": "x"},
    ]
    observation = one(tool("MultiEdit", {"file_path": "m.py", "edits": edits}))
    assert observation.facts == (
        "Files modified: m.py",
        "Changed lines:\n-b = 2\n+b = 20\n[…]\n-start()\n+start(retries=3)",
    )


def test_an_edit_that_only_adds_or_removes_lines() -> None:
    added = one(tool("Edit", {"file_path": "a.py", "old_string": "", "new_string": "import os"}))
    assert added.facts[1] == "Changed lines:\n+import os"
    removed = one(tool("Edit", {"old_string": "a\nb\nc", "new_string": "a\nc"}))
    assert removed.facts == ("Changed lines:\n-b",)


def test_a_file_sized_rewrite_is_bounded_per_side() -> None:
    old = "".join(f"old line {i} " + "o" * 150 + "\n" for i in range(5_000))
    new = "".join(f"new line {i}\n" for i in range(5_000))
    observation = one(tool("Edit", {"file_path": "big.py", "old_string": old, "new_string": new}))
    lines = observation.facts[1].splitlines()
    removed = [line for line in lines if line.startswith("-")]
    added = [line for line in lines if line.startswith("+")]
    assert removed == [f"-{line}" for line in old.splitlines()[: len(removed)]]
    assert sum(len(line) + 1 for line in removed) <= DIFF_SIDE_CHARS
    assert added == [f"+new line {i}" for i in range(DIFF_SIDE_LINES)]
    assert lines[-2:] == [
        f"[… {5_000 - len(removed)} more removed lines]",
        f"[… {5_000 - DIFF_SIDE_LINES} more added lines]",
    ]


def test_a_writes_first_lines_are_kept() -> None:
    content = "".join(f"line {i}: {'x' * 20}\n" for i in range(100))
    observation = one(tool("Write", {"file_path": "gen/report.md", "content": content}))
    assert observation.title == "Wrote gen/report.md"
    files, written = observation.facts
    assert files == "Files modified: gen/report.md"
    assert written.splitlines() == [
        "Content (100 lines):",
        *content.splitlines()[:WRITE_HEAD_LINES],
        f"[… {100 - WRITE_HEAD_LINES} more lines]",
    ]
    assert "line 29: " in observation_content(observation)


def test_a_short_write_is_kept_whole_with_its_indentation() -> None:
    content = "# Title\n\n    indented = True\n"
    observation = one(tool("Write", {"file_path": "w.md", "content": content}))
    assert observation.facts[1] == "Content (3 lines):\n# Title\n\n    indented = True"


def test_a_write_of_long_lines_is_bounded() -> None:
    content = ("z" * 900 + "\n") * 50
    written = one(tool("Write", {"file_path": "w.txt", "content": content})).facts[1]
    assert len(written) <= WRITE_HEAD_CHARS + 100
    assert written.splitlines()[1] == "z" * 900


def test_an_error_line_at_the_end_of_a_20kb_output_is_kept() -> None:
    noise = "".join(f"downloading chunk {i:05d} of 99999 ... ok\n" for i in range(500))
    error = "RuntimeError: checksum mismatch for wheel attrs-23.2.0-py3-none-any.whl"
    stdout = noise + error + "\n"
    assert len(stdout) > 20_000
    observation = one(tool("Bash", {"command": "pip download attrs"}, {"stdout": stdout}))
    assert error in observation.facts[1].splitlines()
    assert error in observation_content(observation)


def test_source_locations_cited_in_a_long_output_are_kept() -> None:
    # A secret scanner, a linter or a compiler says *where* on a line of its own.
    lines = [f"remote: checking object {i}" for i in range(300)]
    located = {
        120: "remote:            path: tests/test_redaction.py:32",
        200: "  --> src/claude_mem_core/config.py:118:5",
        250: r"C:\Users\dev\repo\app\main.ts:7:1 - warning TS6133",
    }
    for index, line in located.items():
        lines[index] = line
    lines[150] = "see https://example.com:8443/docs for details"
    output = one(tool("Bash", {"command": "git push"}, "\n".join(lines))).facts[1]
    kept = output.splitlines()
    assert all(line in kept for line in located.values())
    assert lines[150] not in kept  # a URL's port is not a source location
    assert "remote: checking object 100" not in kept


def test_error_lines_in_the_middle_of_a_long_output_are_kept() -> None:
    lines = [f"step {i} ok" for i in range(1_000)]
    errors = {
        400: "Traceback (most recent call last):",
        402: "KeyError: 'session_token'",
        600: "Exit code 2",
        700: "src/app.py:12: error: Incompatible return value type",
        750: "fatal: not a git repository",
        800: "FAILED tests/test_login.py::test_remember_me - assert 401 == 200",
    }
    for index, line in errors.items():
        lines[index] = line
    lines[650] = "Process finished with exit code 0"
    output = one(tool("Bash", {"command": "./ci.sh"}, "\n".join(lines))).facts[1]
    kept = output.splitlines()
    assert all(line in kept for line in errors.values())
    assert "Process finished with exit code 0" not in kept
    assert "step 500 ok" not in kept
    assert len(output) <= OUTPUT_BOUND


@pytest.mark.parametrize("line_length", [100, 100_000])
def test_a_100kb_output_gives_a_bounded_observation(line_length: int) -> None:
    line = "y" * (line_length - 1) + "\n"
    stdout = line * (100_000 // line_length)
    assert len(stdout) == 100_000
    response = {"stdout": stdout, "stderr": "E" + stdout}
    observation = one(tool("Bash", {"command": "cat big.log"}, response))
    _, output, stderr = observation.facts
    assert len(output) <= OUTPUT_BOUND
    assert len(stderr) <= OUTPUT_BOUND
    assert len(observation_content(observation)) <= MAX_CONTENT_CHARS


def test_an_event_with_every_field_huge_stays_within_the_facts_budget() -> None:
    huge = "v" * (VALUE_CHARS * 2)
    names = [f"{i:03d}/" + "d" * 500 for i in range(PATH_LIMIT)]
    tool_input: dict[str, Any] = dict.fromkeys(
        ("pattern", "glob", "query", "url", "subagent_type", "prompt", "description"), huge
    )
    tool_input["paths"] = names
    output = "".join(f"Error {i} " + "e" * 300 + "\n" for i in range(100))
    observation = one(tool("Grep", tool_input, {"filenames": names, "content": output}))
    assert sum(len(fact) for fact in observation.facts) <= FACTS_CHARS
    assert observation.facts[0].startswith("Paths: 000/")
    pattern = observation.facts[1]
    assert pattern.startswith("Pattern: vvv")
    assert len(pattern) <= len("Pattern: ") + VALUE_CHARS
    assert pattern.endswith(" more chars]")
    # The facts past the budget are cut, and the cut is marked.
    assert observation.facts[-1].endswith((" more chars]", " more facts omitted]"))
    assert len(observation_content(observation)) <= MAX_CONTENT_CHARS


def test_a_5000_char_prompt_is_kept_whole() -> None:
    prompt = "Please refactor the session store. " * 143
    prompt = prompt.strip()
    assert 5_000 <= len(prompt) <= TEXT_CHARS
    observation = one(event({"prompt": prompt}, "user_prompt"))
    assert observation.narrative == prompt
    assert prompt in observation_content(observation)


def test_a_huge_prompt_is_cut_at_a_word_boundary_with_a_marker() -> None:
    prompt = " ".join(f"word{i}" for i in range(20_000))
    narrative = one(event({"prompt": prompt}, "user_prompt")).narrative
    assert narrative is not None
    assert len(narrative) <= TEXT_CHARS
    kept, marker = narrative.rsplit(" … ", 1)
    assert prompt.startswith(kept + " ")
    assert marker == f"[{len(prompt) - len(kept)} more chars]"


def test_every_path_is_a_fact_even_when_the_title_lists_only_some() -> None:
    paths = [f"src/pkg/module_{i}/implementation.py" for i in range(30)]
    observation = one(tool("Read", {"paths": paths}))
    assert observation.files_read == tuple(paths)
    assert len(observation.title or "") <= TITLE_CHARS
    assert observation.facts == (f"Files read: {', '.join(paths)}",)
    content = observation_content(observation)
    assert all(path in content for path in paths)


def test_paths_are_bounded() -> None:
    paths = [f"p{i}.py" for i in range(PATH_LIMIT + 10)]
    observation = one(tool("Read", {"file_path": "x" * (PATH_CHARS + 1), "paths": paths}))
    assert observation.files_read == tuple(paths[:PATH_LIMIT])


def test_search_patterns_urls_and_queries_are_facts() -> None:
    pattern = r"def\s+(login|logout)_handler\(request: HttpRequest, \*, remember: bool\)"
    grep = one(
        tool(
            "Grep",
            {"pattern": pattern, "path": "src/auth", "glob": "*.py"},
            {"mode": "files_with_matches", "filenames": ["src/auth/views.py"], "numFiles": 1},
        )
    )
    assert grep.facts == (
        "Paths: src/auth",
        f"Pattern: {pattern}",
        "Glob: *.py",
        "Matched files: src/auth/views.py",
    )
    url = "https://docs.example.com/" + "section/" * 30 + "page?version=2.0"
    fetched = one(
        tool("WebFetch", {"url": url, "prompt": "What changed?"}, {"result": "Drops 3.8"})
    )
    assert fetched.facts == (f"URL: {url}", "Prompt: What changed?", "Result: Drops 3.8")
    searched = one(tool("WebSearch", {"query": "attrs frozen slots performance"}))
    assert searched.facts == ("Query: attrs frozen slots performance",)


def test_an_agent_task_keeps_its_prompt_and_answer() -> None:
    observation = one(
        tool(
            "Task",
            {"description": "find callers", "prompt": "Find callers of login()"},
            {"content": [{"type": "text", "text": "Three callers: a.py, b.py, c.py"}]},
        )
    )
    assert observation.title == "Task: find callers"
    assert observation.subtitle is None
    assert observation.facts == (
        "Prompt: Find callers of login()",
        "Result: Three callers: a.py, b.py, c.py",
    )


def test_an_unknown_tools_input_is_kept_as_json() -> None:
    sql = "select id from users where email = 'a@b.c'"
    observation = one(tool("mcp__db__query", {"sql": sql}, "1 row"))
    assert observation.facts == (f'Input: {{"sql": "{sql}"}}', "Result: 1 row")


def test_an_edits_plain_text_answer_is_kept() -> None:
    failure = "<tool_use_error>String to replace not found in file.</tool_use_error>"
    observation = one(
        tool("Edit", {"file_path": "a.py", "old_string": "q", "new_string": "r"}, failure)
    )
    assert observation.facts[-1] == f"Result: {failure}"


def test_private_content_in_kept_text_never_reaches_the_output() -> None:
    old = "a\n<private>old-secret</private>\nb"
    new = "a\nc\n<private>new-secret</private>"
    stdout = "x\n" * 1_000 + "Error: <private>t0ken</private> rejected\n"
    text = respond(
        tool("Edit", {"file_path": "e.py", "old_string": old, "new_string": new}),
        tool("Bash", {"command": "deploy"}, {"stdout": stdout, "stderr": ""}),
        tool("Write", {"file_path": "w.py", "content": "visible\n<private>\nall-hidden"}),
    )
    for secret in ("old-secret", "new-secret", "t0ken", "all-hidden", "<private>"):
        assert secret not in text
    assert "Error:  rejected" in text
    assert "visible" in text


def test_the_same_events_give_the_same_observations() -> None:
    events = [
        tool("Edit", {"file_path": "a.py", "old_string": "a\nb\nc\nd", "new_string": "a\nB\nc\nD"}),
        tool("Bash", {"command": "pytest"}, {"stdout": "ok\n" * 500 + "1 failed\n"}),
        event({"prompt": "go"}, "user_prompt"),
    ]
    assert respond(*events) == respond(*events)


# -- property -------------------------------------------------------------------------------

SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
KEYS = st.sampled_from(
    ["tool_name", "toolName", "tool_input", "toolInput", "tool_response", "toolResponse",
     "prompt", "last_assistant_message", "file_path", "path", "edits", "command", "stdout",
     "file", "filePath", "paths", "content", "message"]
)  # fmt: skip
TOOL_NAMES = st.sampled_from(["Bash", "Edit", "MultiEdit", "Read", "Grep", "Write", "X", ""])
HOOKISH = st.recursive(
    SCALARS | TOOL_NAMES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)
PAYLOADS = JSON | HOOKISH | HOOKISH.map(json.dumps)
EVENT_TYPES = st.sampled_from(["tool_use", "user_prompt", "assistant_message", "note", ""])


@given(
    st.lists(st.tuples(PAYLOADS, EVENT_TYPES), max_size=4),
    st.sampled_from(["observations", "summary"]),
)
def test_any_payload_gives_parseable_output(
    payloads: list[tuple[Any, str]], purpose: GenerationPurpose
) -> None:
    events = [
        event(payload, event_type, id=f"e{i}") for i, (payload, event_type) in enumerate(payloads)
    ]
    request = GenerationRequest(prompt="", purpose=purpose, events=events)
    result = asyncio.run(OfflineProvider().generate(request))
    if purpose == "summary":
        assert isinstance(parse_summary(result.text), ParsedSummary)
    else:
        parsed = parse_observations(result.text, CODE_MODE)
        assert isinstance(parsed, ParsedObservations)
        # Every observation the provider wrote survives parsing: none is silently dropped.
        assert [o.index for o in parsed.observations] == list(range(len(parsed.observations)))


# Text of any size up to about 1 MB, built from pieces the provider reacts to (error lines,
# blank lines, tags, XML specials), so bounds are exercised without generating it char by char.
PIECES = st.sampled_from(
    ["Error: boom\n", "ok\n", "\n", "word ", "Traceback (most recent call last):\n", "x" * 50,
     "<private>s</private>", "é\t", "FAILED t::x\n", "&<>\"'", "    indented\n", "\r\n"]
)  # fmt: skip
BIG_TEXT = st.text(max_size=20) | st.builds(
    lambda pieces, times: "".join(pieces) * times,
    st.lists(PIECES, min_size=1, max_size=6),
    st.integers(1, 2_000),
)
EDIT = st.fixed_dictionaries(
    {}, optional={"old_string": BIG_TEXT, "new_string": BIG_TEXT, "file_path": BIG_TEXT}
)
TEXT_KEYS = (
    "command", "description", "file_path", "path", "old_string", "new_string", "content",
    "new_source", "pattern", "glob", "query", "url", "prompt",
)  # fmt: skip
TOOL_INPUT = st.fixed_dictionaries(
    {},
    optional={
        **dict.fromkeys(TEXT_KEYS, BIG_TEXT),
        "paths": st.lists(BIG_TEXT, max_size=80),
        "edits": st.lists(EDIT, max_size=4),
        "replace_all": st.booleans(),
        "other": JSON,
    },
)
RESPONSE = (
    st.none()
    | BIG_TEXT
    | JSON
    | st.lists(BIG_TEXT | st.fixed_dictionaries({"text": BIG_TEXT}), max_size=3)
    | st.fixed_dictionaries(
        {},
        optional={
            "stdout": BIG_TEXT,
            "stderr": BIG_TEXT,
            "result": BIG_TEXT,
            "interrupted": st.booleans(),
            "filenames": st.lists(BIG_TEXT, max_size=80),
            "numFiles": st.integers(),
            "file": st.fixed_dictionaries({}, optional={"filePath": BIG_TEXT, "content": BIG_TEXT}),
        },
    )
)
ANY_TOOL = st.sampled_from(
    ["Bash", "Edit", "MultiEdit", "Write", "NotebookEdit", "Read", "Grep", "Glob", "LS",
     "WebFetch", "WebSearch", "Task", "mcp__x__y", "bash"]
)  # fmt: skip


@given(st.lists(st.tuples(ANY_TOOL, TOOL_INPUT, RESPONSE), min_size=1, max_size=3), BIG_TEXT)
def test_any_tool_use_gives_observations_within_the_bounds(
    uses: list[tuple[str, dict[str, Any], Any]], prompt: str
) -> None:
    events = [
        *(event({"tool_name": n, "tool_input": i, "tool_response": r}) for n, i, r in uses),
        event({"prompt": prompt}, "user_prompt"),
    ]
    text = respond(*events)
    parsed = parse_observations(text, CODE_MODE)
    assert isinstance(parsed, ParsedObservations)
    assert len(parsed.observations) >= len(uses)
    longest = max(len(observation_content(o)) for o in parsed.observations)
    target(float(longest), label="longest content")  # steer examples towards the bounds
    for observation in parsed.observations:
        assert len(observation.title or "") <= TITLE_CHARS
        assert len(observation.subtitle or "") <= VALUE_CHARS
        assert len(observation.narrative or "") <= TEXT_CHARS
        assert sum(len(fact) for fact in observation.facts) <= FACTS_CHARS
        for paths in (observation.files_read, observation.files_modified):
            assert len(paths) <= PATH_LIMIT
            assert all(len(path) <= PATH_CHARS for path in paths)
        assert len(observation_content(observation)) <= MAX_CONTENT_CHARS
    assert "<private>" not in text
    assert isinstance(parse_summary(respond(*events, purpose="summary")), ParsedSummary)
