"""What PostgreSQL is sent for a passage's terms: each term quoted as one lexeme, whatever
characters it holds, and the high-impact terms as the ranking model defines them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from claude_mem_core.adapters.sqlalchemy.passage_writes import statistics, tsvector_literal
from claude_mem_core.domain import ranking
from claude_mem_core.domain.passages import Origin, Passage

# Terms as the tokenizer makes them, and the characters tsvector input treats specially.
terms = st.lists(st.text(alphabet=st.sampled_from("ab_'\\ -.é"), min_size=1, max_size=6))


def _quoted(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


@given(terms)
def test_every_term_is_one_quoted_lexeme_with_quotes_and_backslashes_escaped(
    words: list[str],
) -> None:
    assert tsvector_literal(words) == " ".join(_quoted(w) for w in words)


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.floats(min_value=0.5, max_value=30.0, allow_nan=False),
        max_size=12,
    ),
    st.integers(min_value=1, max_value=5000),
)
def test_high_impact_terms_are_those_whose_term_factor_reaches_the_threshold(
    tf: dict[str, float], length: int
) -> None:
    expected = sorted(
        s for s, f in tf.items() if ranking.term_factor(f, length) >= ranking.HIGH_IMPACT
    )
    assert ranking.high_impact_terms(tf, length) == expected


passages = st.lists(
    st.builds(
        Passage,
        team_id=st.sampled_from(["t1", "t2"]),
        project_id=st.sampled_from(["p1", "p2"]),
        observation_id=st.sampled_from(["o1", "o2", "o3"]),
        origin=st.sampled_from(list(Origin)),
        tf=st.dictionaries(
            st.sampled_from(["cache", "key", "ttl", "x"]),
            st.floats(min_value=0.5, max_value=9.0, allow_nan=False),
        ),
        length=st.integers(min_value=1, max_value=400),
    ),
    max_size=12,
)


@given(passages)
def test_statistics_count_each_projects_passages_and_each_terms_document_frequency(
    written: list[Passage],
) -> None:
    projects, terms = statistics(written)
    scopes = sorted({(p.team_id, p.project_id) for p in written})
    assert [(r["team_id"], r["project_id"]) for r in projects] == scopes
    for row in projects:
        mine = [
            p for p in written if (p.team_id, p.project_id) == (row["team_id"], row["project_id"])
        ]
        assert row["passages"] == len(mine)
        assert row["tokens"] == sum(p.length for p in mine)
        assert row["min_length"] == min(p.length for p in mine)
    expected = sorted((p.team_id, p.project_id, term) for p in written for term in p.tf)
    assert [(r["team_id"], r["project_id"], r["term"]) for r in terms] == sorted(set(expected))
    for row in terms:
        holding = [
            p.tf[row["term"]]
            for p in written
            if (p.team_id, p.project_id) == (row["team_id"], row["project_id"])
            and row["term"] in p.tf
        ]
        assert row["df"] == len(holding)
        assert row["max_tf"] == max(holding)
