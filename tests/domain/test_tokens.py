"""The shared tokenizer: spec examples, Unicode handling, query parsing, properties, cost."""

from __future__ import annotations

import gc
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_mem_core.domain.tokens import (
    JOINER_LOOKALIKES,
    JOINERS,
    MARK_RANGES,
    MARKS_UNICODE_VERSION,
    MAX_QUERY_PARTS,
    MAX_QUERY_TERMS,
    MAX_TERM_CHARS,
    Query,
    QueryTerm,
    Token,
    index_terms,
    normalize,
    parse_query,
    tokenize,
)
from claude_mem_core.domain.words import STOP_WORDS, stem


def matches(term: QueryTerm, index: Iterable[str]) -> bool:
    """The documented rule: the whole term, or every one of its parts."""
    held = set(index)
    return term.term in held or (bool(term.parts) and all(p in held for p in term.parts))


def finds(query: str, document: str) -> bool:
    index = index_terms(document)
    return any(matches(t, index) for t in parse_query(query).terms)


def spans(text: str) -> list[tuple[str, str, bool]]:
    return [(t.term, text[t.start : t.end], t.is_part) for t in tokenize(text)]


def has_space(term: str) -> bool:
    return any(c.isspace() for c in term)


# --------------------------------------------------------------------------- spec examples


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("auth/middleware.py", ["auth/middleware.py", "auth", stem("middleware"), "py"]),
        ("redirect_uri", ["redirect_uri", "redirect", "uri"]),
        ("parseConfig", ["parseconfig", stem("parse"), "config"]),
        ("parseConfigs", ["parseconfigs", stem("parse"), "config"]),
        ("--no-verify", ["no-verify", "no", stem("verify")]),
        ("HTTP 502", ["http", "502"]),
        ("v1.2.3", ["v1.2.3", "v1", "2", "3"]),
        ("user@example.com", ["user@example.com", "user", stem("example"), "com"]),
        ("C:\\src\\app.py", ["c:\\src\\app.py", "c", "src", "app", "py"]),
        ("a::b", ["a::b", "a", "b"]),
        ("https://x.io/a", ["https://x.io/a", stem("https"), "x", "io", "a"]),
        ("HTTPServer", ["httpserver", "http", stem("server")]),
        ("getHTTPResponse2", ["gethttpresponse2", "get", "http", "response2"]),
        ("XMLHttpRequest", ["xmlhttprequest", "xml", "http", stem("request")]),
        ("utf8Decode", ["utf8decode", "utf8", stem("decode")]),
        ("src/parseConfig.py", ["src/parseconfig.py", "src", stem("parse"), "config", "py"]),
        ("__init__.py", ["init__.py", "init", "py"]),
        ("x--y", ["x--y", "x", "y"]),
    ],
)
def test_spec_examples(text: str, terms: list[str]) -> None:
    assert index_terms(text) == terms


@pytest.mark.parametrize("word", ["v1", "utf8", "ipv6", "IPv6", "sha256", "2FA", "64KB", "URLs"])
def test_letters_and_digits_and_plural_acronyms_stay_whole(word: str) -> None:
    (token,) = tokenize(word)
    assert not token.is_part
    assert token.term in {word.lower(), stem(word.lower())}


def test_whole_comes_first_then_parts_in_order() -> None:
    assert spans("see auth/middleware.py") == [
        ("see", "see", False),
        ("auth/middleware.py", "auth/middleware.py", False),
        ("auth", "auth", True),
        (stem("middleware"), "middleware", True),
        ("py", "py", True),
    ]


def test_offsets_point_into_the_original_text() -> None:
    text = "Run `git commit --no-verify` on HTTPServer (v1.2.3)."
    got = {(t.term, t.start, t.end) for t in tokenize(text)}
    assert ("no-verify", text.index("no-verify"), text.index("no-verify") + 9) in got
    start = text.index("HTTPServer")
    assert ("http", start, start + 4) in got
    assert (stem("server"), start + 4, start + 10) in got
    assert ("v1.2.3", text.index("v1.2.3"), text.index("v1.2.3") + 6) in got


def test_offsets_survive_nfkc_length_changes() -> None:
    # A ligature (1 -> 2 chars), a letter that becomes 18 chars with spaces, a circled
    # digit, and a capital sharp s that case-folds to "ss": spans stay on the original.
    text = "\ufb01xed \ufdfa x\u2460y STRA\u1e9eE!"
    assert spans(text) == [
        ("fix", "\ufb01xed", False),
        ("".join(normalize("\ufdfa").split()), "\ufdfa", False),
        ("x1y", "x\u2460y", False),
        (stem("strasse"), "STRA\u1e9eE", False),
    ]


def test_full_width_and_ligatures_meet_ascii() -> None:
    full_width_fixed = "\uff26\uff29\uff38\uff25\uff24"
    full_width_foo_py = "\uff46\uff4f\uff4f\uff0e\uff50\uff59"  # with a full-width stop
    assert index_terms(full_width_fixed) == index_terms("fixed")
    assert index_terms("\ufb01le") == index_terms("file")  # the "fi" ligature
    assert index_terms(full_width_foo_py) == index_terms("foo.py")
    assert finds("foo.py", f"edited {full_width_foo_py} today")


def test_case_folding_meets_sharp_s() -> None:
    assert index_terms("Straße") == index_terms("STRASSE") == index_terms("strasse")
    assert finds("STRASSE", "die Straße")


def test_decomposed_accents_stay_in_the_word() -> None:
    nfd, nfc = "cafe\u0301", "caf\u00e9"
    assert index_terms(nfd) == index_terms(nfc) == ["café"]
    assert index_terms("हिन्दी") == ["हिन्दी"]  # vowel signs and virama are marks


def test_letters_that_normalize_to_spaces_give_one_term() -> None:
    (term,) = index_terms("\ufdfa")
    assert term and not has_space(term)
    assert term == "".join(normalize("\ufdfa").split())


def test_stemming_applies_to_words_and_letter_parts_only() -> None:
    assert len(set(index_terms("fixed fixes fixing"))) == 1
    assert index_terms("redirect_uris")[0] == "redirect_uris"  # wholes stay exact
    assert index_terms("redirect_uris")[2] == stem("uris")
    assert index_terms("files2") == ["files2"]  # digits: exact


@pytest.mark.parametrize(
    ("word", "code"),
    [
        ("repository", "REPO_ROOT"),
        ("repositories", "two repos"),
        ("environment", 'os.environ.get("TOKEN")'),
        ("binary", "/opt/homebrew/bin/gh"),
        ("configuration", "config_dir"),
        ("documentation", "see docs/"),
        ("warnings", "5:04PM WRN Invalid .gitleaksignore entry"),
        ("debug", "DBG cache miss"),
    ],
)
def test_words_meet_their_abbreviations_both_ways(word: str, code: str) -> None:
    assert finds(word, code)
    assert finds(word.capitalize(), code.upper())


def test_an_abbreviation_finds_the_word() -> None:
    assert finds("repo", "the repository")
    assert finds("env", "environments")
    assert finds("docs", "documentation")


def test_only_listed_abbreviations_fold() -> None:
    # "prod" is production's abbreviation, not product's; "temp" could be a temperature.
    assert not finds("product", "deploy to prod")
    assert not finds("temporary", "temp = 21.5")
    assert finds("temporary", "/tmp/build")


def test_over_long_terms_are_skipped_but_parts_kept() -> None:
    long_word = "a" * (MAX_TERM_CHARS + 1)
    assert index_terms(long_word) == []
    assert index_terms("a" * MAX_TERM_CHARS) == [stem("a" * MAX_TERM_CHARS)]
    long_path = "/".join(["segment"] * 20)
    assert len(long_path) > MAX_TERM_CHARS
    assert index_terms(long_path) == [stem("segment")] * 20
    tokens = tokenize(long_path)
    assert all(t.is_part for t in tokens)


def test_empty_and_junk_give_nothing() -> None:
    assert index_terms("") == []
    assert index_terms(" -- ./ @@ \n\t ") == []
    assert parse_query("?? ...").is_empty


def test_index_terms_are_the_token_terms() -> None:
    text = "Fix auth/middleware.py: parseConfig() raised HTTPError 502 for user@example.com"
    assert index_terms(text) == [t.term for t in tokenize(text)]
    assert isinstance(tokenize(text)[0], Token)


# --------------------------------------------------------------------------- queries


def test_nonexistent_compound_does_not_match_a_single_part() -> None:
    assert not finds("nonexistent_xyz_term", "term")
    assert not finds("nonexistent_xyz_term", "a term about xyz")
    assert finds("nonexistent_xyz_term", "xyz: the term is nonexistent")
    assert finds("nonexistent_xyz_term", "nonexistent_xyz_term")


def test_compound_query_finds_other_spellings_through_parts() -> None:
    assert finds("redirect_uri", "self.redirect_uri = x")
    assert finds("redirect_uri", "redirectUri")
    assert finds("parseConfig", "def parse_configs():")


def test_query_terms_carry_parts() -> None:
    query = parse_query("where is auth/middleware.py")
    assert query.terms == (QueryTerm("auth/middleware.py", ("auth", stem("middleware"), "py")),)
    assert query.all_terms == ("auth/middleware.py", "auth", stem("middleware"), "py")
    assert not query.is_empty


def test_stop_words_are_dropped_as_words_but_kept_as_parts() -> None:
    query = parse_query("which file did we change to fix the login redirect?")
    assert [t.term for t in query.terms] == [
        stem(w) for w in "file change fix login redirect".split()
    ]
    assert parse_query("the/file").terms == (QueryTerm("the/file", ("the", stem("file"))),)


def test_query_of_stop_words_falls_back_to_its_words() -> None:
    query = parse_query("What did we do?")
    assert [t.term for t in query.terms] == [stem(w) for w in ["what", "did", "we", "do"]]
    assert all(w in STOP_WORDS for w in ["what", "did", "we", "do"])


def test_clitics_after_apostrophes_are_dropped() -> None:
    assert [t.term for t in parse_query("why is redirect's uri broken").terms] == [
        "redirect",
        "uri",
        stem("broken"),
    ]
    assert [t.term for t in parse_query("don\u2019t use re").terms] == ["don", "use", "re"]


def test_duplicates_are_dropped_first_order_kept() -> None:
    query = parse_query("Config config CONFIGS redirect_uri redirect_uri config")
    assert query.terms == (QueryTerm("config"), QueryTerm("redirect_uri", ("redirect", "uri")))


def test_at_most_max_query_terms() -> None:
    query = parse_query(" ".join(f"word{i}" for i in range(MAX_QUERY_TERMS * 2)))
    assert [t.term for t in query.terms] == [f"word{i}" for i in range(MAX_QUERY_TERMS)]


def test_compound_parts_are_capped_and_deduplicated() -> None:
    blob = "/".join(f"p{i}" for i in range(MAX_QUERY_PARTS * 3))
    (term,) = parse_query(blob).terms
    assert term.parts == tuple(f"p{i}" for i in range(MAX_QUERY_PARTS))
    assert parse_query("a.b.a.b").terms == (QueryTerm("a.b.a.b", ("a", "b")),)


def test_over_long_compound_query_matches_by_parts_only() -> None:
    path = "/".join(["segment", "other"] * 12)
    assert len(path) > MAX_TERM_CHARS
    (term,) = parse_query(path).terms
    assert len(term.term) == MAX_TERM_CHARS + 1  # longer than anything an index holds
    assert term.parts == (stem("segment"), "other")
    assert matches(term, index_terms(path))
    assert not matches(term, index_terms("segment alone"))
    assert parse_query("x" * (MAX_TERM_CHARS + 1)).is_empty


def test_empty_query() -> None:
    assert parse_query("") == Query(text="", terms=())
    assert parse_query("").all_terms == ()


# --------------------------------------------------------------------------- tables


def _all_chars() -> Iterable[str]:
    return map(chr, range(sys.maxunicode + 1))


def _ranges(text: str) -> set[int]:
    points: set[int] = set()
    for item in text.split():
        first, _, last = item.partition("-")
        points.update(range(int(first, 16), int(last or first, 16) + 1))
    return points


def test_joiner_lookalikes_are_what_nfkc_maps_to_joiners() -> None:
    assert all(unicodedata.normalize("NFKC", c) in JOINERS for c in JOINER_LOOKALIKES)
    if unicodedata.unidata_version == MARKS_UNICODE_VERSION:
        expected = {
            c
            for c in _all_chars()
            if c not in JOINERS and unicodedata.normalize("NFKC", c) in set(JOINERS)
        }
        assert set(JOINER_LOOKALIKES) == expected


def test_mark_table_is_unicode_category_m() -> None:
    table = _ranges(MARK_RANGES)
    assert all(unicodedata.category(chr(p)).startswith("M") for p in table)
    if unicodedata.unidata_version == MARKS_UNICODE_VERSION:
        expected = {ord(c) for c in _all_chars() if unicodedata.category(c).startswith("M")}
        assert table == expected


# --------------------------------------------------------------------------- properties

LOWER_WORD = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)
LETTER_WORD = st.from_regex(r"[a-z]{2,8}", fullmatch=True)


def _camel(words: list[str]) -> str:
    return words[0] + "".join(w.capitalize() for w in words[1:])


IDENTIFIERS = st.one_of(
    st.builds(
        lambda words, sep: sep.join(words),
        st.lists(LOWER_WORD, min_size=1, max_size=5),
        st.sampled_from(["_", ".", "-", "/", "::", "\\", "@", ":", "+", "#"]),
    ),
    st.builds(_camel, st.lists(LETTER_WORD, min_size=1, max_size=4)),
    st.builds(lambda w: _camel(w)[0].upper() + _camel(w)[1:], st.lists(LETTER_WORD, min_size=2)),
    st.builds(
        lambda dirs, name, ext: "/".join([*dirs, f"{name}.{ext}"]),
        st.lists(LOWER_WORD, max_size=3),
        st.builds(_camel, st.lists(LETTER_WORD, min_size=1, max_size=3)) | LOWER_WORD,
        st.sampled_from(["py", "ts", "md", "json"]),
    ),
)
WRAPPERS = st.sampled_from(["{}", "({})", "`{}`", "'{}'", "{}.", "{},", "--{}", "{}:", "@{}"])
CODE_TEXT = st.text(
    alphabet=st.sampled_from(
        list(
            "abzXYZ09_./-:@+#\\ \n'\u2019()é\u0301\ufb01\uff21\uff0e\u00df\u1e9e\ufdfa\u0915\u093f"
        )
    ),
    max_size=80,
)
# Long runs without spaces: compounds and words past MAX_TERM_CHARS.
LONG_RUNS = st.text(
    alphabet=st.sampled_from(list("aZ9./_-\u00e9\u0301")), min_size=100, max_size=400
)
ANY_TEXT = st.text(max_size=80) | CODE_TEXT | LONG_RUNS


def _identifier_words(identifier: str) -> list[str]:
    """The words the generator joined: split at joiners and at camelCase capitals."""
    words: list[str] = []
    for chunk in "".join(" " if c in JOINERS else c for c in identifier).split():
        start = 0
        for i in range(1, len(chunk)):
            if chunk[i].isupper():
                words.append(chunk[start:i])
                start = i
        words.append(chunk[start:])
    return words


@given(st.text(max_size=30), IDENTIFIERS, WRAPPERS, st.text(max_size=30))
def test_an_identifier_is_found_by_itself_and_by_each_part(
    before: str, identifier: str, wrapper: str, after: str
) -> None:
    document = f"{before} {wrapper.format(identifier)} {after}"
    index = index_terms(document)
    query = parse_query(identifier)
    assert not query.is_empty
    assert all(matches(term, index) for term in query.terms)
    for word in _identifier_words(identifier):
        word_query = parse_query(word)
        assert word_query.terms, word
        assert all(matches(term, index) for term in word_query.terms), word


@given(ANY_TEXT)
def test_a_text_finds_itself(text: str) -> None:
    index = index_terms(text)
    for term in parse_query(text).terms:
        assert matches(term, index), term


@given(ANY_TEXT)
def test_terms_are_never_empty_never_hold_whitespace_and_survive_joining(text: str) -> None:
    terms = index_terms(text)
    assert all(0 < len(t) <= MAX_TERM_CHARS and not has_space(t) for t in terms)
    assert " ".join(terms).split() == terms
    query_terms = list(parse_query(text).all_terms)
    assert all(t and not has_space(t) for t in query_terms)
    assert " ".join(query_terms).split() == query_terms


@given(ANY_TEXT)
def test_spans_are_normalized_to_their_terms(text: str) -> None:
    tokens = tokenize(text)
    assert [t.term for t in tokens] == index_terms(text)
    for i, token in enumerate(tokens):
        assert 0 <= token.start < token.end <= len(text)
        written = text[token.start : token.end]
        assert not has_space(written)
        covering = [j for j, t in enumerate(tokens) if j != i and _covers(t, token)]
        # The term is the span's normal form (whitespace removed), stemmed when the span is
        # a plain word or a part made of letters only; a compound's whole is never stemmed.
        exact = "".join(normalize(written).split())
        if token.is_part:
            assert all(j < i and not tokens[j].is_part for j in covering)  # whole first
            assert token.term == exact or (exact.isalpha() and token.term == stem(exact))
        elif any(tokens[j].is_part for j in covering):  # the whole of a compound
            assert token.term == exact
        else:
            assert not covering
            assert token.term == exact or (exact.isalpha() and token.term == stem(exact))
    starts = [t.start for t in tokens]
    assert starts == sorted(starts)


def _covers(outer: Token, inner: Token) -> bool:
    return outer.start <= inner.start and inner.end <= outer.end


@given(ANY_TEXT)
def test_query_limits_hold(text: str) -> None:
    query = parse_query(text)
    assert len(query.terms) <= MAX_QUERY_TERMS
    assert len(set(query.terms)) == len(query.terms)
    assert all(len(t.parts) <= MAX_QUERY_PARTS for t in query.terms)
    assert query.is_empty == (not query.terms)


# --------------------------------------------------------------------------- cost


def _seconds(run: Callable[[str], object], text: str, calls: int) -> float:
    # CPU time of this process: time spent waiting for a core on a busy machine (other
    # tests, a benchmark beside them) does not count.
    started = time.process_time()
    for _ in range(calls):
        run(text)
    return time.process_time() - started


def _growth(run: Callable[[str], object], small: str, large: str) -> float:
    """Time for ``large`` over time for ``small``: best of several interleaved rounds, each
    long enough (~10 ms) that timer noise cannot dominate. The garbage
    collector is paused: its pauses land at arbitrary points and are amortized linear."""
    once = _seconds(run, small, 1)
    calls = max(1, min(1000, round(0.01 / max(once, 1e-6))))
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        best_small = best_large = float("inf")
        for _ in range(5):
            best_small = min(best_small, _seconds(run, small, calls))
            best_large = min(best_large, _seconds(run, large, calls))
    finally:
        if was_enabled:
            gc.enable()
    return best_large / best_small


ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "dots": lambda k: "a." * k,
    "camel": lambda k: "aA" * k,
    "dashes": lambda k: "-" * k,
    "dangling joiners": lambda k: ("a" + "-" * 40 + " ") * (k // 40),
    "marks": lambda k: "a\u0301" * k,
    "acronyms": lambda k: "ABCd1E" * (k // 3),
    "words": lambda k: "ab " * k,
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
@pytest.mark.parametrize("run", [index_terms, parse_query, tokenize], ids=lambda f: f.__name__)
def test_cost_is_linear_in_the_text(name: str, run: Callable[[str], object]) -> None:
    make = ADVERSARIAL[name]
    small, large = make(20_000), make(40_000)
    # Linear doubles (~2); quadratic would quadruple, every time. A busy machine can
    # still spoil one measurement, so a high ratio is measured again before failing.
    ratios = [_growth(run, small, large)]
    while ratios[-1] >= 3.5 and len(ratios) < 3:
        ratios.append(_growth(run, small, large))
    assert min(ratios) < 3.5, (name, ratios)
