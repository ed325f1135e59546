"""The fingerprint of a generated observation (``domain/fingerprint.py``): equal under
changes of case, Unicode compatibility form, whitespace and fact order; different as soon
as the meaning changes."""

from __future__ import annotations

import unicodedata

from hypothesis import assume, given
from hypothesis import strategies as st

from claude_mem_core.domain.fingerprint import fingerprint, normalise

words = st.text(alphabet=st.characters(categories=("L", "N", "P")), min_size=1, max_size=12).filter(
    # Words whose characters upper-case and case-fold back to themselves (not a dotless i), so the
    # test can vary their case, and that normalise to one word.
    lambda w: normalise(w) == w.casefold() == normalise(w.upper()) and " " not in normalise(w)
)
texts = st.lists(words, min_size=1, max_size=6)
spaces = st.sampled_from([" ", "  ", "\t", "\n", " \u00a0", "\u3000"])


def _respaced(parts: list[str], draw: st.DrawFn) -> str:
    gaps = [draw(spaces) for _ in parts]
    return draw(spaces) + "".join(p + g for p, g in zip(parts, gaps, strict=True))


def _recased(text: str, draw: st.DrawFn) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c for c in text)


@st.composite
def observations(draw: st.DrawFn) -> dict[str, list[str]]:
    return {
        "type": draw(texts),
        "title": draw(texts),
        "narrative": draw(texts),
        "facts": draw(st.lists(texts, max_size=4)),
    }


def _plain(obs: dict[str, list[str]]) -> str:
    return fingerprint(
        type=" ".join(obs["type"]),
        title=" ".join(obs["title"]),
        facts=[" ".join(f) for f in obs["facts"]],
        narrative=" ".join(obs["narrative"]),
    )


@given(observations(), st.data())
def test_equal_under_case_whitespace_and_fact_order(
    obs: dict[str, list[str]], data: st.DataObject
) -> None:
    draw = data.draw

    def vary(parts: list[str]) -> str:
        return _recased(_respaced(parts, draw), draw)

    facts = [vary(f) for f in obs["facts"]]
    facts = [*reversed(facts), "  ", ""]  # order and empty facts do not matter
    varied = fingerprint(
        type=vary(obs["type"]),
        title=vary(obs["title"]),
        facts=facts,
        narrative=vary(obs["narrative"]),
    )
    assert varied == _plain(obs)


@given(observations(), st.sampled_from(["type", "title", "narrative", "facts"]), words)
def test_different_when_a_field_changes(obs: dict[str, list[str]], name: str, extra: str) -> None:
    changed = {**obs}
    if name == "facts":
        changed["facts"] = [*obs["facts"], [extra]]
        assume(normalise(extra) not in {normalise(" ".join(f)) for f in obs["facts"]})
    else:
        changed[name] = [*obs[name], extra]
    assert _plain(changed) != _plain(obs)


@given(words, words)
def test_fields_do_not_run_into_each_other(a: str, b: str) -> None:
    assert fingerprint(type=a, title=b, facts=[], narrative=None) != fingerprint(
        type=None, title=a + " " + b, facts=[], narrative=None
    )


def test_compatibility_forms_and_ids_are_not_part_of_it() -> None:
    full_width = "\uff26\uff29\uff2c\uff25 \uff41.\uff50\uff59"  # "FILE a.py", full width
    wide = unicodedata.normalize("NFKC", full_width)
    assert wide == "FILE a.py"
    assert fingerprint(type="change", title=full_width, facts=(), narrative=None) == (
        fingerprint(type="change", title=wide, facts=(), narrative=None)
    )
    assert fingerprint(type=None, title=None, facts=(), narrative=None).startswith("v1:")
