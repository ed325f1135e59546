"""Parsing model answers, and rendering parsed values back to XML and stored content."""

from __future__ import annotations

import time

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_mem_core.generation.modes import CODE_MODE, Mode
from claude_mem_core.generation.parser import (
    ParsedObservation,
    ParsedObservations,
    ParsedSummary,
    ParseFailure,
    decode_entities,
    parse_observations,
    parse_summary,
)
from claude_mem_core.generation.render import (
    escape_xml,
    observation_content,
    render_observations,
    render_skip,
    render_summary,
    summary_content,
)

FULL = """<observation>
  <type>bugfix</type>
  <title>Fixed token refresh</title>
  <subtitle>auth module</subtitle>
  <facts>
    <fact>Refresh used the wrong clock</fact>
    <fact>Tokens now expire after 15 min</fact>
  </facts>
  <narrative>The refresh path compared local time with server time.</narrative>
  <concepts>
    <concept>problem-solution</concept>
    <concept>gotcha</concept>
  </concepts>
  <files_read>
    <file>src/auth/clock.py</file>
  </files_read>
  <files_modified>
    <file>src/auth/refresh.py</file>
    <file>tests/test_refresh.py</file>
  </files_modified>
</observation>"""

FULL_PARSED = ParsedObservation(
    type="bugfix",
    title="Fixed token refresh",
    subtitle="auth module",
    facts=("Refresh used the wrong clock", "Tokens now expire after 15 min"),
    narrative="The refresh path compared local time with server time.",
    concepts=("problem-solution", "gotcha"),
    files_read=("src/auth/clock.py",),
    files_modified=("src/auth/refresh.py", "tests/test_refresh.py"),
    index=0,
)


def only(text: str, mode: Mode = CODE_MODE) -> ParsedObservations:
    result = parse_observations(text, mode)
    assert isinstance(result, ParsedObservations), result
    return result


# -- observations ---------------------------------------------------------------------------


def test_full_block() -> None:
    assert only(FULL).observations == (FULL_PARSED,)


def test_fenced_block_is_accepted() -> None:
    assert only(f"```xml\n{FULL}\n```").observations == (FULL_PARSED,)
    assert only(f"```XML\n{FULL}\n```\n").observations == (FULL_PARSED,)
    assert only(f"```\n{FULL}\n```").observations == (FULL_PARSED,)


def test_prose_around_the_xml_is_ignored() -> None:
    text = f"Here is what I found:\n\n{FULL}\n\nLet me know if you need more."
    assert only(text).observations == (FULL_PARSED,)


def test_tag_case_and_attributes_are_tolerated() -> None:
    text = (
        '<Observation id="1"><TYPE>Discovery</TYPE><Title lang="en">Read config</Title>'
        "<FACTS><Fact>uses TOML</Fact></FACTS></OBSERVATION>"
    )
    (parsed,) = only(text).observations
    assert parsed.type == "discovery"
    assert parsed.title == "Read config"
    assert parsed.facts == ("uses TOML",)


def test_whitespace_is_trimmed_and_empty_items_dropped() -> None:
    text = """<observation>
      <type>  change  </type>
      <title>
         Renamed module
      </title>
      <subtitle>   </subtitle>
      <facts><fact>  a  </fact><fact>   </fact><fact></fact><fact>b</fact></facts>
    </observation>"""
    (parsed,) = only(text).observations
    assert parsed.type == "change"
    assert parsed.title == "Renamed module"
    assert parsed.subtitle is None
    assert parsed.facts == ("a", "b")


def test_unknown_or_missing_type_becomes_first_mode_type() -> None:
    unknown = only("<observation><type>mystery</type><title>x</title></observation>")
    missing = only("<observation><title>x</title></observation>")
    assert unknown.observations[0].type == "bugfix"
    assert missing.observations[0].type == "bugfix"
    mode = Mode("notes", types=("idea", "todo"))
    assert (
        only("<observation><type>zzz</type><title>x</title></observation>", mode)
        .observations[0]
        .type
        == "idea"
    )


def test_type_from_a_custom_mode() -> None:
    mode = Mode("notes", types=("idea", "todo"))
    text = "<observation><type>todo</type><title>x</title></observation>"
    assert only(text, mode).observations[0].type == "todo"
    # bugfix is a code-mode type, not a notes-mode one
    text = "<observation><type>bugfix</type><title>x</title></observation>"
    assert only(text, mode).observations[0].type == "idea"


def test_concepts_equal_to_the_type_are_removed() -> None:
    text = (
        "<observation><type>decision</type><title>t</title>"
        "<concepts><concept>Decision</concept><concept>trade-off</concept></concepts>"
        "</observation>"
    )
    assert only(text).observations[0].concepts == ("trade-off",)


def test_blocks_without_content_are_dropped_but_keep_their_index() -> None:
    text = (
        "<observation><type>change</type><subtitle>only a subtitle</subtitle>"
        "<files_modified><file>a.py</file></files_modified></observation>"
        "<observation><title>second</title></observation>"
        "<observation><concepts><concept>bugfix</concept></concepts></observation>"
        "<observation><concepts><concept>gotcha</concept></concepts></observation>"
    )
    result = only(text)
    assert [(o.index, o.title) for o in result.observations] == [(1, "second"), (3, None)]
    assert list(result.indexed()) == [(1, result.observations[0]), (3, result.observations[1])]


def test_each_kind_of_content_is_enough() -> None:
    for inner in (
        "<title>t</title>",
        "<narrative>n</narrative>",
        "<facts><fact>f</fact></facts>",
        "<concepts><concept>gotcha</concept></concepts>",
    ):
        assert len(only(f"<observation>{inner}</observation>").observations) == 1


def test_first_occurrence_of_a_field_wins() -> None:
    text = (
        "<observation><title>first</title><title>second</title>"
        "<facts><fact>a</fact></facts><facts><fact>b</fact></facts></observation>"
    )
    (parsed,) = only(text).observations
    assert parsed.title == "first"
    assert parsed.facts == ("a",)


def test_nothing_usable_is_a_failure() -> None:
    assert isinstance(parse_observations("<observation><type>x</type></observation>"), ParseFailure)
    assert isinstance(parse_observations("I could not find anything."), ParseFailure)
    assert isinstance(parse_observations("<summary><request>r</request></summary>"), ParseFailure)


@pytest.mark.parametrize("text", ["", "   \n\t", None, b"<observation>", 42])
def test_blank_or_non_string_is_a_failure(text: object) -> None:
    assert parse_observations(text) == ParseFailure("empty response")
    assert parse_summary(text) == ParseFailure("empty response")


def test_unclosed_block_is_ignored() -> None:
    text = "<observation><title>complete</title></observation><observation><title>cut off"
    assert [o.title for o in only(text).observations] == ["complete"]


def test_skip_marker() -> None:
    result = only('<skip_summary reason="all_events_private" />')
    assert result == ParsedObservations(skipped=True, skip_reason="all_events_private")
    assert only("<skip_summary/>") == ParsedObservations(skipped=True, skip_reason=None)
    assert only("Nothing here. <SKIP_SUMMARY reason='trivial'>").skip_reason == "trivial"
    assert only('```xml\n<skip_summary reason="a &amp; b"/>\n```').skip_reason == "a & b"


def test_real_observations_win_over_a_skip_marker() -> None:
    result = only(f'<skip_summary reason="x"/>\n{FULL}')
    assert not result.skipped
    assert result.observations == (FULL_PARSED,)


def test_skip_marker_after_only_empty_blocks_is_a_skip() -> None:
    result = only('<observation><type>x</type></observation><skip_summary reason="r"/>')
    assert result.skipped
    assert result.skip_reason == "r"


def test_entities_are_decoded_once() -> None:
    text = (
        "<observation><title>a &lt; b &amp;&amp; c &gt; d</title>"
        "<facts><fact>&quot;q&quot; &apos;s&apos;</fact><fact>&amp;lt; stays escaped</fact>"
        "<fact>&#65;&#x42; &#0; &#xD800; &nbsp; &amp</fact></facts></observation>"
    )
    (parsed,) = only(text).observations
    assert parsed.title == "a < b && c > d"
    assert parsed.facts == ("\"q\" 's'", "&lt; stays escaped", "AB &#0; &#xD800; &nbsp; &amp")


def test_decode_inverts_escape() -> None:
    for text in ("plain", "&amp;", "<a href='x'>&lt;</a>", '"&#65;"'):
        assert decode_entities(escape_xml(text)) == text


def test_junk_input_is_handled_in_linear_time() -> None:
    junk = "<observation " * 50_000 + "<skip_summary " * 50_000 + "<summary>" * 50_000
    started = time.perf_counter()
    assert isinstance(parse_observations(junk), ParseFailure)
    assert isinstance(parse_summary(junk), ParseFailure)
    # A quadratic scan takes minutes here; a linear one a few milliseconds.
    assert time.perf_counter() - started < 5


def test_raw_specials_written_by_a_model_are_kept() -> None:
    text = "<observation><title>if a < b & c > d</title></observation>"
    assert only(text).observations[0].title == "if a < b & c > d"


# -- summaries ------------------------------------------------------------------------------


def test_summary_block() -> None:
    text = """Sure.
```xml
<Summary>
  <request>Add rate limiting</request>
  <investigated>middleware &amp; config</investigated>
  <learned>limits live in settings</learned>
  <completed>  </completed>
  <next_steps>load test</next_steps>
  <notes>none</notes>
</Summary>
```"""
    assert parse_summary(text) == ParsedSummary(
        request="Add rate limiting",
        investigated="middleware & config",
        learned="limits live in settings",
        completed=None,
        next_steps="load test",
        notes="none",
    )


def test_notes_alone_is_not_a_summary() -> None:
    assert isinstance(parse_summary("<summary><notes>x</notes></summary>"), ParseFailure)


def test_only_the_first_summary_counts() -> None:
    text = "<summary><notes>x</notes></summary><summary><request>later</request></summary>"
    assert isinstance(parse_summary(text), ParseFailure)
    text = "<summary><request>first</request></summary><summary><request>b</request></summary>"
    result = parse_summary(text)
    assert isinstance(result, ParsedSummary)
    assert result.request == "first"


def test_summary_skip_marker() -> None:
    result = parse_summary('<skip_summary reason="nothing_to_record"/>')
    assert result == ParsedSummary(skipped=True, skip_reason="nothing_to_record")


def test_summary_without_block_is_a_failure() -> None:
    assert isinstance(parse_summary(FULL), ParseFailure)


# -- rendering ------------------------------------------------------------------------------


def test_observation_content() -> None:
    assert observation_content(FULL_PARSED) == (
        "Fixed token refresh\n\nauth module\n\n"
        "The refresh path compared local time with server time.\n\n"
        "- Refresh used the wrong clock\n- Tokens now expire after 15 min"
    )
    assert observation_content(ParsedObservation(type="change", facts=("only",))) == "- only"
    assert observation_content(ParsedObservation(type="change", concepts=("gotcha",))) == ""


def test_observation_content_is_privacy_stripped() -> None:
    parsed = ParsedObservation(
        type="change", title="t <private>pw</private>", facts=("<private>x", "kept")
    )
    assert observation_content(parsed) == "t\n\n- kept"
    # Facts that only form a tag once joined are still caught.
    joined = ParsedObservation(type="change", title="t", facts=("a <private", "b>secret"))
    assert observation_content(joined) == "t\n\n- a"
    assert observation_content(ParsedObservation(type="change", title="<private>x</private>")) == ""


def test_summary_content() -> None:
    summary = ParsedSummary(
        request="r", completed="c", next_steps="n", notes="<private>x</private>"
    )
    assert summary_content(summary) == "Request: r\n\nCompleted: c\n\nNext steps: n"
    assert summary_content(ParsedSummary(learned="l", investigated="i")) == (
        "Investigated: i\n\nLearned: l"
    )
    assert summary_content(ParsedSummary(skipped=True, skip_reason="x")) == ""


def test_render_summary_and_skip_round_trip() -> None:
    summary = ParsedSummary(request="a < b", notes="n & m")
    assert parse_summary(render_summary(summary)) == summary
    skipped = ParsedSummary(skipped=True, skip_reason='say "hi"')
    assert parse_summary(render_summary(skipped)) == skipped
    assert render_skip() == "<skip_summary />"
    assert render_observations([]) == ""


# -- properties -----------------------------------------------------------------------------

ALPHABET = st.one_of(st.characters(), st.sampled_from("<>&;#\"' \n\tx"))
TEXT = st.text(ALPHABET, min_size=1, max_size=20).map(str.strip).filter(bool)
ITEMS = st.lists(TEXT, max_size=3).map(tuple)


@st.composite
def observations(draw: st.DrawFn) -> ParsedObservation:
    return ParsedObservation(
        type=draw(st.sampled_from(CODE_MODE.types)),
        title=draw(st.none() | TEXT),
        subtitle=draw(st.none() | TEXT),
        facts=draw(ITEMS),
        narrative=draw(st.none() | TEXT),
        concepts=draw(st.lists(TEXT | st.sampled_from(CODE_MODE.types), max_size=3)),
        files_read=draw(ITEMS),
        files_modified=draw(ITEMS),
    )


def expected_after_parse(items: list[ParsedObservation]) -> list[ParsedObservation]:
    """What the parser must return: concepts equal to the type removed, empty blocks dropped.

    Text values are generated already trimmed and non-empty, so trimming changes nothing.
    """
    kept = []
    for index, item in enumerate(items):
        concepts = tuple(c for c in item.concepts if c.casefold() != item.type.casefold())
        item = attrs.evolve(item, concepts=concepts, index=index)
        if item.title or item.narrative or item.facts or item.concepts:
            kept.append(item)
    return kept


@given(st.lists(observations(), min_size=1, max_size=4))
def test_render_then_parse_round_trips(items: list[ParsedObservation]) -> None:
    expected = expected_after_parse(items)
    result = parse_observations(render_observations(items), CODE_MODE)
    if expected:
        assert isinstance(result, ParsedObservations)
        assert list(result.observations) == expected
        assert not result.skipped
    else:
        assert isinstance(result, ParseFailure)


@given(
    st.builds(
        ParsedSummary,
        request=st.none() | TEXT,
        investigated=st.none() | TEXT,
        learned=st.none() | TEXT,
        completed=st.none() | TEXT,
        next_steps=st.none() | TEXT,
        notes=st.none() | TEXT,
    )
)
def test_summary_render_then_parse_round_trips(summary: ParsedSummary) -> None:
    result = parse_summary(render_summary(summary))
    if (
        summary.request
        or summary.investigated
        or summary.learned
        or summary.completed
        or (summary.next_steps)
    ):
        assert result == summary
    else:
        assert isinstance(result, ParseFailure)


FRAGMENTS = st.sampled_from(
    [
        "<observation>",
        "</observation>",
        "<Observation a='1'>",
        "<type>",
        "</type>",
        "bugfix",
        "<title>",
        "</title>",
        "<facts>",
        "<fact>",
        "</fact>",
        "</facts>",
        "<concepts><concept>",
        "</concept></concepts>",
        "<files_read><file>",
        "</file></files_read>",
        "<summary>",
        "</summary>",
        "<request>",
        "</request>",
        "<notes>",
        "</notes>",
        "<skip_summary",
        ' reason="',
        "'",
        '"',
        "/>",
        ">",
        "<",
        "&amp;",
        "&#",
        "&#x",
        "110000;",
        ";",
        "```xml\n",
        "\n```",
        " ",
    ]
)
ANSWERS = st.text() | st.lists(st.text(max_size=6) | FRAGMENTS, max_size=30).map("".join)


@given(ANSWERS)
def test_parse_observations_is_total(text: str) -> None:
    result = parse_observations(text, CODE_MODE)
    assert isinstance(result, ParsedObservations | ParseFailure)
    if isinstance(result, ParsedObservations):
        assert result.skipped or result.observations
        indexes = [o.index for o in result.observations]
        assert indexes == sorted(set(indexes))
        for item in result.observations:
            assert item.type in CODE_MODE.types
            assert item.title or item.narrative or item.facts or item.concepts
            assert item.type not in item.concepts
            for value in (item.title, item.subtitle, item.narrative):
                assert value is None or value == value.strip() != ""
            for values in (item.facts, item.concepts, item.files_read, item.files_modified):
                assert all(v == v.strip() != "" for v in values)


@given(ANSWERS)
def test_parse_summary_is_total(text: str) -> None:
    result = parse_summary(text)
    assert isinstance(result, ParsedSummary | ParseFailure)
    if isinstance(result, ParsedSummary) and not result.skipped:
        assert any(
            (
                result.request,
                result.investigated,
                result.learned,
                result.completed,
                result.next_steps,
            )
        )
