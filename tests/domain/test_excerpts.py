"""Excerpts: the stretch of a passage that matches a question, matches marked."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from claude_mem_core.domain.excerpts import ELLIPSIS, EXCERPT_CHARS, excerpt
from claude_mem_core.domain.tokens import parse_query


def test_the_window_holds_the_matches_marked_and_identifiers_whole() -> None:
    text = "filler " * 200 + "upload name: coverage-report path: coverage.xml " + "tail " * 200
    found = excerpt(text, parse_query("which coverage artifact is uploaded?"))
    assert "**coverage-report**" in found and "**coverage.xml**" in found
    assert found.startswith(ELLIPSIS) and found.endswith(ELLIPSIS)


def test_no_match_gives_the_start() -> None:
    assert excerpt("short text", parse_query("absent")) == "short text"
    long = excerpt("word " * 400, parse_query("absent"))
    assert long.endswith(ELLIPSIS) and len(long) <= EXCERPT_CHARS + 1


def test_the_densest_window_wins() -> None:
    text = "login " + "x " * 400 + "login redirect loop fixed " + "y " * 400
    found = excerpt(text, parse_query("login redirect loop"))
    assert "**login** **redirect** **loop**" in found


@given(st.text(max_size=3000), st.text(min_size=1, max_size=40))
def test_bounded_and_marks_balanced(text: str, question: str) -> None:
    found = excerpt(text, parse_query(question))
    marks = found.count("**") - " ".join(text.split()).count("**")
    assert marks % 2 == 0
    # The window, its marks and the ellipses; marked spans may reach past it by a word.
    assert len(found.replace("**", "")) <= 2 * EXCERPT_CHARS + 2
