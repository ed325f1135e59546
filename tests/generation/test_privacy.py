"""Tag stripping: what is removed, what is kept, and that nothing private survives."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_mem_core.generation.privacy import (
    STRIPPED_TAGS,
    WARN_THRESHOLD,
    strip_private,
    strip_private_json,
    strip_tags,
    strip_tags_in_json,
)

# Written independently of the module's own pattern on purpose.
OPEN_PRIVATE = re.compile(r"<private(?=[\s/>])[^>]*>", re.IGNORECASE)


def test_removes_block_and_counts_it() -> None:
    result = strip_tags("keep <private>secret</private> this")
    assert result.text == "keep  this"
    assert result.counts == {"private": 1}
    assert result.had_private
    assert result.total == 1


@pytest.mark.parametrize("tag", STRIPPED_TAGS)
def test_every_listed_tag_is_removed(tag: str) -> None:
    result = strip_tags(f"a<{tag}>inside</{tag}>b")
    assert result.text == "ab"
    assert result.counts == {tag: 1}
    assert result.had_private is (tag == "private")


def test_counts_per_tag_name() -> None:
    text = "<private>1</private><system-reminder>2</system-reminder><private>3</private>x"
    assert strip_tags(text).counts == {"private": 2, "system-reminder": 1}


def test_attributes_and_case_are_accepted() -> None:
    assert strip_tags('a<Private reason="pw">x</PRIVATE>b').text == "ab"
    assert strip_tags("a<SYSTEM-REMINDER\n  kind='x'>y</system-reminder >b").text == "ab"


def test_non_greedy_keeps_text_between_blocks() -> None:
    assert strip_tags("<private>a</private>middle<private>b</private>").text == "middle"


def test_nested_blocks_are_removed_whole() -> None:
    # A plain non-greedy regex would leak "c" here.
    assert strip_tags("<private>a<private>b</private>c</private>d").text == "d"
    assert strip_tags("<system-reminder>a<private>b</private>c</system-reminder>d").text == "d"


def test_unclosed_private_hides_the_rest() -> None:
    result = strip_tags("visible <private>password=hunter2 and more\nlines")
    assert result.text == "visible"
    assert result.had_private


def test_unclosed_other_tag_stays_but_inner_private_is_removed() -> None:
    result = strip_tags("<system-reminder>note <private>pw</private> tail")
    assert result.text == "<system-reminder>note  tail"
    assert result.counts == {"private": 1}


def test_unclosed_private_inside_unclosed_wrapper_hides_from_the_private_tag_on() -> None:
    assert strip_tags("ok <system-reminder>x <private>pw").text == "ok <system-reminder>x"


def test_closing_tag_pairs_with_the_nearest_open_tag_of_its_name() -> None:
    assert strip_tags("<system-reminder>a<system-reminder>b</system-reminder>c").text == (
        "<system-reminder>ac"
    )
    # Closing the outer tag also ends an inner one that was never closed.
    assert strip_tags("<system-reminder>a<claude-mem-context>b</system-reminder>c").text == "c"


def test_tag_with_angle_bracket_inside_is_not_a_tag() -> None:
    assert strip_tags("a <private x=<y>>b</private>").text == "a <private x=<y>>b</private>"


def test_deeply_nested_json_is_still_cleaned() -> None:
    value: object = "<private>x</private>leaf"
    for _ in range(3000):  # deeper than the default recursion limit
        value = [value, {"k": "v"}]
    cleaned = strip_tags_in_json(value)
    assert cleaned.counts == {"private": 1}
    inner = cleaned.value
    depth = 0
    while isinstance(inner, list):
        inner, depth = inner[0], depth + 1
    assert (depth, inner) == (3000, "leaf")


def test_junk_input_is_handled_in_linear_time() -> None:
    junk = "<system-reminder>" * 20_000 + "<private " * 20_000 + "</private>" * 20_000
    started = time.perf_counter()
    assert strip_tags(junk).text == junk.strip()
    # A quadratic scan takes minutes here; a linear one a few milliseconds.
    assert time.perf_counter() - started < 5


def test_stray_closing_tag_is_left_alone() -> None:
    assert strip_tags("a </private> b").text == "a </private> b"


def test_self_closing_tag_is_removed() -> None:
    assert strip_tags("a<private/>b").text == "ab"
    assert strip_tags("a<private />b").counts == {"private": 1}


def test_lookalike_names_are_not_stripped() -> None:
    text = "<private-notes>x</private-notes> <privateer>y</privateer>"
    result = strip_tags(text)
    assert result.text == text
    assert result.counts == {}


def test_blocks_that_rejoin_into_a_new_tag_are_removed_too() -> None:
    result = strip_tags("<pri<private>x</private>vate>secret</private>after")
    assert result.text == "after"
    assert result.counts == {"private": 2}


def test_result_is_trimmed() -> None:
    assert strip_tags("  \n<private>x</private>  text \n").text == "text"


def test_plain_text_is_unchanged() -> None:
    result = strip_tags("if a < b and c > d: pass")
    assert result.text == "if a < b and c > d: pass"
    assert result.counts == {}
    assert not result.had_private


def test_many_tags_log_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    text = "<private>x</private>" * (WARN_THRESHOLD + 1)
    with caplog.at_level(logging.WARNING, logger="claude_mem_core.generation.privacy"):
        result = strip_tags(text)
    assert result.private_count == WARN_THRESHOLD + 1
    assert any("stripped" in record.message for record in caplog.records)


def test_json_strings_are_stripped_recursively() -> None:
    payload: dict[str, Any] = {
        "tool_input": {"command": "echo <private>token</private> done"},
        "list": [
            "<private>a</private>",
            3,
            None,
            {"deep": "<system-reminder>r</system-reminder>x"},
        ],
        "tuple": ("<private>t</private>keep",),
        "<private>key</private>": "keys are names, not content",
    }
    result = strip_tags_in_json(payload)
    assert result.value == {
        "tool_input": {"command": "echo  done"},
        "list": ["", 3, None, {"deep": "x"}],
        "tuple": ("keep",),
        "<private>key</private>": "keys are names, not content",
    }
    assert result.counts == {"private": 3, "system-reminder": 1}
    assert result.had_private
    assert payload["list"][0] == "<private>a</private>"  # the input is not mutated


def test_json_clean_strings_are_returned_untrimmed() -> None:
    payload = {"stdout": "  line\n", "n": 1.5}
    result = strip_tags_in_json(payload)
    assert result.value == payload
    assert result.counts == {}


def test_shorthands() -> None:
    assert strip_private(" a<private>b</private> ") == "a"
    assert strip_private_json({"p": "<private>x</private>y"}) == {"p": "y"}
    assert strip_private_json("<private>x") == ""


# -- properties -----------------------------------------------------------------------------

FRAGMENTS = st.sampled_from(
    [
        "<private>",
        "</private>",
        "<PRIVATE a='1'>",
        "<private/>",
        "<system-reminder>",
        "</system-reminder>",
        "<claude-mem-context>",
        "</claude-mem-context>",
        "<pri",
        "vate>",
        "</",
        "<",
        ">",
        " ",
        "\n",
        "secret",
    ]
)
TAGGY_TEXT = st.lists(st.one_of(st.text(max_size=8), FRAGMENTS), max_size=24).map("".join)


@given(TAGGY_TEXT)
def test_stripping_is_idempotent(text: str) -> None:
    once = strip_tags(text)
    twice = strip_tags(once.text)
    assert twice.text == once.text
    assert twice.counts == {}


@given(TAGGY_TEXT)
def test_no_opening_private_tag_survives(text: str) -> None:
    assert OPEN_PRIVATE.search(strip_tags(text).text) is None


@given(st.text().filter(lambda s: "<" not in s))
def test_text_without_tags_is_only_trimmed(text: str) -> None:
    assert strip_tags(text).text == text.strip()


@given(st.text(max_size=20), st.text(max_size=20), st.text(max_size=20))
def test_wrapped_secret_never_survives(before: str, secret: str, after: str) -> None:
    marker = "MARKER-7f3a"
    text = f"{before}<private>{marker}{secret}</private>{after}"
    result = strip_tags(text)
    if marker not in before + after:
        assert marker not in result.text
    assert result.had_private


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | TAGGY_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for child in value.values() for s in _strings(child)]
    if isinstance(value, list):
        return [s for child in value for s in _strings(child)]
    return []


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _shape(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_shape(child) for child in value]
    return type(value).__name__


@given(JSON)
def test_json_stripping_keeps_shape_and_leaves_no_private_tag(value: Any) -> None:
    cleaned = strip_tags_in_json(value).value
    assert _shape(cleaned) == _shape(value)
    for text in _strings(cleaned):
        assert OPEN_PRIVATE.search(text) is None
    assert strip_tags_in_json(cleaned).value == cleaned


# -- one linear pass (issue #13) ------------------------------------------------------------


def _rebuilding(k: int) -> str:
    # Every removal joins "<pri" and "vate>" into a new tag: a strip-until-nothing-changes
    # loop needs k passes over the text (quadratic).
    return "<pri" * k + "<private></private>" + "vate></private>" * k


def _seconds(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.process_time()  # CPU time: a busy machine's waits do not count
        strip_tags(text)
        best = min(best, time.process_time() - started)
    return best


def test_rebuilt_tags_are_stripped_in_one_linear_pass() -> None:
    result = strip_tags(_rebuilding(2_000))
    assert result.text == ""
    assert result.counts == {"private": 2_001}
    small, large = _seconds(_rebuilding(8_000)), _seconds(_rebuilding(16_000))
    assert large / small < 3, (small, large)
    # The reported request (120 KB): milliseconds, not seconds.
    assert _seconds(_rebuilding(120_000 // 19)) < 0.5


def test_private_block_cannot_be_ended_by_another_closing_tag() -> None:
    text = "<system-reminder>x<private>pw</system-reminder>more pw</private>after"
    assert strip_tags(text).text == "<system-reminder>xafter"


def test_rejoined_closing_tag_closes_the_block() -> None:
    assert strip_tags("<private>pw</pri<private>x</private>vate>after").text == "after"


PRIVATE_SECRET = "SECRET-9c1e"


@st.composite
def _documents(draw: st.DrawFn) -> tuple[str, list[int]]:
    """Tag soup, with the secret only ever inside well-formed private blocks."""
    pieces = draw(st.lists(st.one_of(st.text(max_size=6), FRAGMENTS), max_size=16))
    blocks = draw(st.lists(st.integers(0, len(pieces)), max_size=3))
    out = list(pieces)
    for index in sorted(blocks, reverse=True):
        inner = draw(st.lists(st.one_of(st.text(max_size=4), FRAGMENTS), max_size=4))
        out.insert(index, "<private>" + PRIVATE_SECRET + "".join(inner) + "</private>")
    return "".join(out), blocks


@given(_documents())
def test_no_private_content_survives_whatever_surrounds_it(doc: tuple[str, list[int]]) -> None:
    text, _ = doc
    result = strip_tags(text)
    assert PRIVATE_SECRET not in result.text
    assert OPEN_PRIVATE.search(result.text) is None
    assert strip_tags(result.text).text == result.text
