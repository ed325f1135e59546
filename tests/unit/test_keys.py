"""Deterministic keys: golden values from pipeline.md §2.3 and their properties."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from claude_mem_core.domain import keys


def test_golden_transport_ids() -> None:
    assert (
        keys.transport_id(
            "event",
            team_id="team_abc",
            project_id="project_xyz",
            source_type="agent_event",
            source_id="evt_001",
        )
        == "evt_9997b2a9bbb5e90423d1b84b76f72816356fa9e690dff3fce2adde268214beeb"
    )
    assert (
        keys.transport_id(
            "summary", team_id="t", project_id="p", source_type="session_summary", source_id="s1"
        )
        == "sum_e98d9aa616454b70c34a042e467eeca96f6107f416221f01209a5406176c3a35"
    )


def test_golden_job_and_generation_keys() -> None:
    assert keys.generation_job_key(
        team_id="t",
        project_id="p",
        source_type="agent_event",
        source_id="e1",
        job_type="observation_generate_for_event",
    ) == (
        "observation_generation_job:v1:"
        "e5d8b46200e84ee3884c1a714fd82b4695148b7fd2f84307c612d1fb1f01d4bb"
    )
    assert keys.generation_key("job-1", 0, "hello world") == (
        "generation:v1:job-1:0:3902b1809aa8e111b2dcd07ed7323ea6a940f1245c1a015ac1e1f7b588074b66"
    )
    # Content is trimmed before hashing: surrounding whitespace is not a new observation.
    assert keys.generation_key("job-1", 0, "  hello world\n") == keys.generation_key(
        "job-1", 0, "hello world"
    )


def test_canonical_json_follows_javascript() -> None:
    assert keys.canonical_json({"b": 1.0, "a": [2.5, {"d": None, "c": "ü"}]}) == (
        '{"a":[2.5,{"c":"ü","d":null}],"b":1}'
    )
    assert keys.iso_ms(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == (
        "2026-01-02T03:04:05.678Z"
    )


def test_canonical_json_sorts_keys_by_utf16_code_units() -> None:
    # U+1F600 is the surrogate pair D83D DE00 in UTF-16: before U+FF5E there, after it in
    # code points. JSON.stringify of the sorted object puts the emoji first.
    assert keys.canonical_json({"\uff5e": 1, "\U0001f600": 2, "a": 3}) == (
        '{"a":3,"\U0001f600":2,"\uff5e":1}'
    )


@given(st.dictionaries(st.text(), st.integers(), max_size=6))
def test_canonical_json_key_order_is_utf16_order(value: dict[str, int]) -> None:
    ordered = list(json.loads(keys.canonical_json(value)))
    assert ordered == sorted(value, key=lambda k: k.encode("utf-16-be"))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(json_values, json_values)
def test_event_key_depends_on_payload_only_through_its_canonical_form(a: object, b: object) -> None:
    def key(payload: object) -> str:
        return keys.agent_event_key(
            team_id="t",
            project_id="p",
            source_adapter="api",
            source_event_id=None,
            server_session_id=None,
            event_type="x",
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
            payload=payload,
        )

    def canonical(payload: object) -> str:
        # An absent payload is stored as {} (api.md §3.1), so it keys like one.
        return keys.canonical_json({} if payload is None else payload)

    assert (key(a) == key(b)) == (canonical(a) == canonical(b))


@given(st.text(min_size=1), st.text(min_size=1))
def test_source_event_id_wins_over_content(first: str, second: str) -> None:
    def key(source_event_id: str, payload: object) -> str:
        return keys.agent_event_key(
            team_id="t",
            project_id="p",
            source_adapter="hook",
            source_event_id=source_event_id,
            server_session_id="s",
            event_type="tool_use",
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
            payload=payload,
        )

    assert key(first, {"a": 1}) == key(first, {"b": 2})
    assert (key(first, {}) == key(second, {})) == (first == second)


@given(st.text(), st.text(), st.text())
def test_transport_ids_never_contain_colons(team: str, project: str, source: str) -> None:
    tid = keys.transport_id(
        "event", team_id=team, project_id=project, source_type="agent_event", source_id=source
    )
    assert ":" not in tid and tid.startswith("evt_")


def test_session_identity_prefers_external_then_content_then_agent() -> None:
    ext = keys.server_session_key(
        team_id="t", project_id="p", external_session_id="x", content_session_id="c"
    )
    assert ext == keys.server_session_key(team_id="t", project_id="p", external_session_id="x")
    content = keys.server_session_key(team_id="t", project_id="p", content_session_id="c")
    assert content is not None and content != ext
    agent = keys.server_session_key(
        team_id="t", project_id="p", agent_id="a", platform_source="claude"
    )
    assert agent is not None and agent not in (ext, content)
    assert keys.server_session_key(team_id="t", project_id="p") is None
