"""The offline provider: observations and summaries derived from events, no model."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def test_edit_fact_shows_the_replacement() -> None:
    observation = one(
        tool("Edit", {"file_path": "a.py", "old_string": "x = 1", "new_string": "x = 2"})
    )
    assert observation.facts == ("Replaced `x = 1` with `x = 2`",)


def test_path_can_come_from_the_response() -> None:
    response = {"type": "text", "file": {"filePath": "from/response.py", "content": "body"}}
    observation = one(tool("Read", {}, response))
    assert observation.files_read == ("from/response.py",)
    assert observation.facts == ("Result: body",)


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


def test_bash_facts_hold_command_and_trimmed_output() -> None:
    response = {"stdout": "line\n" * 200, "stderr": "warning: x", "interrupted": False}
    observation = one(tool("Bash", {"command": "pytest -q"}, response))
    command, output, errors = observation.facts
    assert command == "Command: pytest -q"
    assert output.startswith("Result: line line")
    assert output.endswith("…")
    assert len(output) <= len("Result: ") + 300
    assert errors == "Errors: warning: x"


def test_bash_command_as_a_string_input() -> None:
    assert one(tool("Bash", "rm x")).title == "Ran `rm x`"


def test_user_prompt_is_a_decision() -> None:
    observation = one(event({"prompt": "Add rate limiting\nto the login route"}, "user_prompt"))
    assert observation.type == "decision"
    assert observation.title == "User asked: Add rate limiting"
    assert observation.narrative == "Add rate limiting\nto the login route"


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
