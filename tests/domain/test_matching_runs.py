"""``matching_runs`` (what an excerpt marks) looks only where a wanted term can be; it must
find exactly what analysing every run of the text finds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from claude_mem_core.domain.tokens import _COMPOUND, _analyse, index_terms, matching_runs
from claude_mem_core.domain.words import ABBREVIATIONS


def every_run(text: str, wanted: set[str]) -> list[tuple[int, int, str]]:
    """The definition: each run of the text, with the first of its terms that is wanted."""
    found: list[tuple[int, int, str]] = []
    for match in _COMPOUND.finditer(text):
        for term in _analyse(match.group())[1]:
            if term in wanted:
                found.append((match.start(), match.end(), term))
                break
    return found


# Words, inflections, abbreviations and their long forms, camelCase, identifiers with
# joiners, digits and some non-ASCII, joined by the separators texts really have.
PIECES = st.sampled_from(
    [
        "fix",
        "fixed",
        "Fixes",
        "fixing",
        "login",
        "redirect",
        "redirect_uri",
        "parseConfig",
        "HTTPServer",
        "auth/middleware.py",
        "--no-verify",
        "HTTP",
        "502",
        "v1.2.3",
        "cmd",
        "command",
        "Commands",
        "db",
        "database",
        "Databases",
        "repo",
        "repositories",
        "WRN",
        "warning",
        "dbg",
        "debugging",
        "stopped",
        "stop",
        "e2e",
        "x",
        "_",
        "-",
        "naïve",
        "Straße",
        "café",
        "\uff46\uff55\uff4c\uff4c",  # full-width "full"
        "a-b",
        "a.b.c",
        "__init__",
        "CamelCaseWord",
    ]
    + [long for long, _ in ABBREVIATIONS[:8]]
)
SEPARATORS = st.sampled_from([" ", "  ", "\n", ", ", "(", ") ", "'", ": ", "/", "-", ""])


@st.composite
def texts(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(st.tuples(PIECES, SEPARATORS), max_size=25))
    return "".join(p + s for p, s in pieces)


@settings(max_examples=400)
@given(text=texts(), query_text=texts(), extra=st.lists(PIECES, max_size=3))
def test_matching_runs_finds_what_every_run_holds(
    text: str, query_text: str, extra: list[str]
) -> None:
    wanted = set(index_terms(query_text + " " + " ".join(extra)))
    assert matching_runs(text, wanted) == every_run(text, wanted)


@given(text=texts())
def test_every_term_of_a_text_is_marked_where_it_is(text: str) -> None:
    for term in set(index_terms(text)):
        runs = matching_runs(text, {term})
        assert runs, term
        assert runs == every_run(text, {term})


def test_a_word_is_found_through_the_abbreviation_it_folds_to() -> None:
    text = "we ran the Command twice and the database answered"
    assert [text[s:e] for s, e, _ in matching_runs(text, {"cmd", "db"})] == ["Command", "database"]


def test_nothing_wanted_or_nothing_there() -> None:
    assert matching_runs("some words here", set()) == []
    assert matching_runs("some words here", {"absent"}) == []
