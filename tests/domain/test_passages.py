"""Passages: what search indexes of observations and the events they were made from."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from claude_mem_core.domain.models import AgentEvent, Observation, ObservationKind
from claude_mem_core.domain.passages import (
    FIELD_WEIGHTS,
    MAX_EVENT_CHARS,
    MAX_PASSAGE_CHARS,
    Origin,
    chunk,
    event_text,
    observation_passage,
    passages_for,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _observation(oid: str, content: str, **kw: object) -> Observation:
    fields: dict[str, object] = {
        "id": oid,
        "team_id": "t",
        "project_id": "p",
        "content": content,
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(kw)
    return Observation(**fields)  # type: ignore[arg-type]


def _event(eid: str, payload: dict[str, object]) -> AgentEvent:
    return AgentEvent(
        id=eid,
        team_id="t",
        project_id="p",
        source_adapter="api",
        idempotency_key=f"k-{eid}",
        event_type="tool_use",
        payload=payload,
        occurred_at=T0,
        received_at=T0,
        created_at=T0,
    )


lines = st.lists(st.text(alphabet="ab \t-", max_size=2 * MAX_PASSAGE_CHARS), max_size=40)


@given(lines)
def test_chunks_are_bounded_and_keep_every_word(parts: list[str]) -> None:
    text = "\n".join(parts)
    passages = chunk(text)
    assert all(0 < len(p) <= MAX_PASSAGE_CHARS for p in passages)
    # Nothing is lost (a word longer than a passage is cut, the only exception).
    if all(len(word) <= MAX_PASSAGE_CHARS // 2 for word in text.split()):
        assert set(" ".join(passages).split()) == set(text.split())


def test_a_short_line_at_a_cut_starts_the_next_passage_too() -> None:
    body = ["x" * 500, "y" * 500, "the answer line", "z" * 500]
    first, second = chunk("\n".join(body))
    assert first.endswith("the answer line") and second.startswith("the answer line")


def test_event_text_keeps_the_words_and_drops_identifiers_of_the_transport() -> None:
    text = event_text(
        _event(
            "e",
            {
                "tool_name": "Bash",
                "tool_input": {"command": "pytest -k login", "timeout": 30},
                "tool_response": {"stdout": "1 failed\nFAILED test_login", "interrupted": False},
                "tool_use_id": "toolu_123",
            },
        )
    )
    assert "command: pytest -k login" in text and "FAILED test_login" in text
    assert "timeout: 30" in text and "toolu_123" not in text and "False" not in text
    huge = event_text(_event("h", {"tool_response": "w " * MAX_EVENT_CHARS}))
    assert len(huge) == MAX_EVENT_CHARS


def test_fields_are_weighted_title_over_facts_over_content() -> None:
    passage = observation_passage(
        _observation("o", "deploy", title="login", files_modified=("src/ttl.py",))
    )
    assert passage.origin is Origin.OBSERVATION and passage.text is None
    assert passage.tf["login"] == FIELD_WEIGHTS["title"]
    assert passage.tf["src/ttl.py"] == FIELD_WEIGHTS["facts"]
    assert passage.tf["deploy"] == FIELD_WEIGHTS["body"]
    assert passage.length == 3 + 3  # the path whole and its three parts


def test_events_link_by_position_and_summaries_get_none() -> None:
    first, second = _observation("o1", "one"), _observation("o2", "two")
    summary = _observation("s", "the session", kind=ObservationKind.SUMMARY)
    events = [_event("e1", {"prompt": "alpha"}), _event("e2", {"prompt": "beta"})]
    found = passages_for([first, second, summary], events)
    linked = {(p.observation_id, p.event_id) for p in found if p.origin is Origin.EVENT}
    assert linked == {("o1", "e1"), ("o2", "e2")}
    assert [p.observation_id for p in found if p.origin is Origin.OBSERVATION] == [
        "o1",
        "o2",
        "s",
    ]
    # Not one event per observation: every event's text is linked to every observation.
    (only,) = [_observation("o3", "three")]
    shared = passages_for([only], events)
    assert {p.event_id for p in shared if p.origin is Origin.EVENT} == {"e1", "e2"}
