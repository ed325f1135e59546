"""Excerpts: the stretch of a passage that matches a question, matches marked."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from claude_mem_core.domain.excerpts import ELLIPSIS, EXCERPT_CHARS, distinct_excerpts, excerpt
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


def test_an_echoed_passage_shows_its_other_matches_instead_of_the_same_stretch() -> None:
    # A Write's content is in its input and echoed in its response: two passages sharing
    # the stretch that matches best.
    plan = "## Goal publish the session transcript to a gist " + "pad " * 150
    echo = plan + " later: the gist file is named session.jsonl " + "end " * 20
    query = parse_query("which file went into the gist?")
    first, second = distinct_excerpts([plan, echo], query)
    assert first is not None and "**gist**" in first
    assert second is not None and "session.jsonl" in second
    assert second != first


def test_an_excerpt_with_nothing_new_is_left_out() -> None:
    text = "the cache ttl is 300 seconds " + "pad " * 50
    query = parse_query("cache ttl")
    assert distinct_excerpts([text, text], query) == [excerpt(text, query), None]


def test_the_same_word_on_another_line_is_still_shown() -> None:
    first_line = "deploy failed on staging because the token expired " + "a " * 200
    other_line = "deploy succeeded after rotating credentials " + "b " * 10
    query = parse_query("deploy")
    shown = distinct_excerpts([first_line, first_line + other_line], query)
    assert shown[1] is not None and "rotating credentials" in shown[1]


@given(st.lists(st.text(max_size=600), max_size=4), st.text(min_size=1, max_size=30))
def test_distinct_excerpts_never_repeat_and_start_like_excerpt(
    texts: list[str], question: str
) -> None:
    query = parse_query(question)
    found = distinct_excerpts(texts, query)
    assert len(found) == len(texts)
    if texts:
        assert found[0] == excerpt(texts[0], query)
    shown = [f for f in found if f is not None]
    assert len(shown) == len(set(shown))


def test_a_run_wider_than_the_window_is_shown_cut() -> None:
    # A long URL or a minified line is one run: it used to crash the excerpt (an index past
    # the end of the matches) and so the search that found it.
    text = "see " + "a/" * 300 + "login"
    found = excerpt(text, parse_query("login"))
    assert found.startswith("…a/a/")
    assert len(found) <= EXCERPT_CHARS + 2
    beside = excerpt("we fixed the login " + text, parse_query("login fixed"))
    assert beside.startswith("we **fixed** the **login**")


@given(
    st.lists(st.sampled_from(["a", "login", "redirect_uri", "x" * 50, "ok"]), max_size=80),
    st.sampled_from(["/", "-", ".", " ", "/", "_"]),
    st.sampled_from(["login", "redirect uri", "ok login", "absent"]),
)
def test_long_identifiers_give_bounded_excerpts(
    pieces: list[str], joiner: str, question: str
) -> None:
    text = "start " + joiner.join(pieces) + " end"
    found = excerpt(text, parse_query(question))
    assert len(found.replace("**", "")) <= 2 * EXCERPT_CHARS + 2
    assert distinct_excerpts([text, text], parse_query(question))[0] == found
