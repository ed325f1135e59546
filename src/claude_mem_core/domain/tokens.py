"""One tokenizer for indexing and querying, the same on every backend.

Backends store the terms of :func:`index_terms` (joined by single spaces) and look up the
terms of :func:`parse_query`; neither side relies on a database's own tokenizer, so
SQLite, PostgreSQL and the in-memory store find exactly the same rows.

Vocabulary
==========

*Normal form*
    :func:`normalize`: Unicode NFKC, then :meth:`str.casefold`. The ligature
    ``"\\ufb01le"``, full-width ``"\\uff26\\uff29\\uff2c\\uff25"`` and ``"File"`` are all
    ``"file"``; ``"Straße"`` and ``"STRASSE"`` are both ``"strasse"``.
    Each token is normalized on its own (spans are found on the original text, so offsets
    stay valid even where NFKC changes lengths). A handful of letters normalize to text
    with spaces in it (``"\\ufdfa"``, ``"\\u037a"``); that whitespace is removed, so no
    term ever holds whitespace.

*Word*
    A maximal run of alphanumeric characters (:meth:`str.isalnum`, the regex ``[^\\W_]``),
    plus the combining marks (Unicode category M) that follow its characters. Marks are
    not alphanumeric in Python, but without them decomposed text (``"cafe\\u0301"``, as
    macOS writes file names) would lose its accents and Devanagari, Thai or vocalised
    Hebrew words would fall apart at every vowel sign. A word never starts with a mark.

*Joiner*
    One of ``_ . / - : @ + # \\`` or a character that NFKC turns into one of them
    (the full-width stop ``"\\uff0e"``, the small hyphen ``"\\ufe63"``, ...), so a file name
    typed in full-width forms indexes like the ASCII one.

*Compound*
    Words joined by runs of joiners with no whitespace in between: ``auth/middleware.py``,
    ``redirect_uri``, ``v1.2.3``, ``user@example.com``, ``a::b``, ``C:\\src\\app.py``,
    ``https://example.com/x``. A run may hold several joiners (``::``, ``:\\``, ``://``,
    ``--``). Leading and trailing joiners are not part of it: ``--no-verify`` gives
    ``no-verify``, ``__init__.py`` gives ``init__.py``.

    A single word written in camelCase is a compound too. Its parts start at an upper-case
    letter that follows

    * a lower-case or caseless letter: ``parseConfig`` -> ``parse``, ``config``;
    * another upper-case letter and is followed by two lower-case ones (the end of an
      acronym): ``HTTPServer`` -> ``http``, ``server``. Requiring two keeps plural
      acronyms whole: ``URLs``, ``APIs``, ``IDs`` are plain words;
    * digits that follow a letter of the same part, when a lower-case letter comes next:
      ``utf8Decode`` -> ``utf8``, ``decode``; ``HTTP2Server`` -> ``http2``, ``server``.
      A leading number stays with its unit (``2FA``, ``64KB`` are plain words) and
      upper-case hex stays whole (``3F2504E0``).

    Letters and digits are never split apart: ``v1``, ``utf8``, ``ipv6``, ``sha256``,
    ``getHTTPResponse2`` -> ``get``, ``http``, ``response2``.

*Parts*
    The parts of a joined compound are its words, each split further if it is camelCase:
    ``src/parseConfig.py`` -> ``src``, ``parse``, ``config``, ``py``. Intermediate groups
    (``parseconfig`` inside that path, ``redirect_uri`` inside ``self.redirect_uri``) are
    not emitted: there are quadratically many, and the parts already find them.

Tokens and terms
================

:func:`tokenize` emits, in text order, one :class:`Token` per plain word and, per compound,
one token for the whole (normalized, joiners kept) followed by one ``is_part`` token per
part. ``start``/``end`` index the *original* text. Terms longer than
:data:`MAX_TERM_CHARS` are not emitted (a compound's parts still are).

Stemming (the light English :func:`~claude_mem_core.domain.words.stem`) applies to every
plain word and every part made only of letters, so ``fixed``/``fixes``/``fixing`` meet and
the part ``configs`` of ``parseConfigs`` meets ``config``. Wholes of compounds and any term
holding a digit or a mark are kept exact: ``redirect_uri``, ``v1.2.3``, ``response2``.

Queries
=======

:func:`parse_query` reads a question with the same tokenizer. A plain word gives
``QueryTerm(term)``; a compound gives ``QueryTerm(whole, parts)``, which matches a document
holding the whole *or every one* of its parts, so ``nonexistent_xyz_term`` does not match a
text that only says ``term``, while ``redirect_uri`` still finds ``self.redirect_uri`` and
``redirectUri``.

* Stop words are dropped as plain words but kept as parts (``the/file`` keeps ``the``). So
  are English clitics after an apostrophe (the ``s`` of ``redirect's``, the ``t`` of
  ``don't``), as the previous tokenizer did.
* Duplicates are dropped (first occurrence wins), at most :data:`MAX_QUERY_TERMS` terms are
  kept and a compound keeps at most :data:`MAX_QUERY_PARTS` distinct parts (a pasted blob
  must not become a thousand-way AND).
* A query of stop words only falls back to all its plain words. Plain words longer than
  :data:`MAX_TERM_CHARS` are dropped (no index holds them).
* A compound whose whole is longer than :data:`MAX_TERM_CHARS` cannot be found by its
  whole, which no index holds. Its ``term`` is then the first ``MAX_TERM_CHARS + 1``
  characters of the whole: still longer than any indexed term (so it can never match
  anything by accident), bounded in size, and the parts decide alone. A compound with no
  indexable part at all is dropped.

Cost
====

One pass of a regular expression built only from possessive quantifiers over disjoint
character classes (no backtracking), plus per-word work that is linear in the word;
results for short runs are memoized (bounded caches), since texts repeat their
vocabulary. :func:`index_terms` is the indexing path: it builds no :class:`Token` objects,
which cost more than the tokenizing itself.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Sequence
from functools import lru_cache
from itertools import pairwise

from attrs import frozen

from claude_mem_core.domain.words import STOP_WORDS, spellings_of, stem

__all__ = [
    "JOINERS",
    "JOINER_LOOKALIKES",
    "MARKS_UNICODE_VERSION",
    "MARK_RANGES",
    "MAX_QUERY_PARTS",
    "MAX_QUERY_TERMS",
    "MAX_TERM_CHARS",
    "Query",
    "QueryTerm",
    "Token",
    "index_terms",
    "matching_runs",
    "normalize",
    "parse_query",
    "tokenize",
]

MAX_TERM_CHARS = 128
MAX_QUERY_TERMS = 24
MAX_QUERY_PARTS = 24

JOINERS = "_./-:@+#\\"
# Characters NFKC maps to a joiner (Unicode 14; NFKC mappings of assigned characters never
# change, and tests/domain/test_tokens.py checks the list against the running Python).
JOINER_LOOKALIKES = (
    "\u2024\u207a\u208a\ufb29\ufe13\ufe33\ufe34\ufe4d\ufe4e\ufe4f\ufe52\ufe55\ufe5f"
    "\ufe62\ufe63\ufe68\ufe6b\uff03\uff0b\uff0d\uff0e\uff0f\uff1a\uff20\uff3c\uff3f"
)

# Combining marks (general category M) as of Unicode 14, the version of Python 3.11's
# unicodedata; tests/domain/test_tokens.py checks the table against the running Python.
MARKS_UNICODE_VERSION = "14.0.0"
MARK_RANGES = (
    "0300-036F 0483-0489 0591-05BD 05BF 05C1-05C2 05C4-05C5 05C7 0610-061A 064B-065F 0670 "
    "06D6-06DC 06DF-06E4 06E7-06E8 06EA-06ED 0711 0730-074A 07A6-07B0 07EB-07F3 07FD "
    "0816-0819 081B-0823 0825-0827 0829-082D 0859-085B 0898-089F 08CA-08E1 08E3-0903 "
    "093A-093C 093E-094F 0951-0957 0962-0963 0981-0983 09BC 09BE-09C4 09C7-09C8 09CB-09CD "
    "09D7 09E2-09E3 09FE 0A01-0A03 0A3C 0A3E-0A42 0A47-0A48 0A4B-0A4D 0A51 0A70-0A71 0A75 "
    "0A81-0A83 0ABC 0ABE-0AC5 0AC7-0AC9 0ACB-0ACD 0AE2-0AE3 0AFA-0AFF 0B01-0B03 0B3C "
    "0B3E-0B44 0B47-0B48 0B4B-0B4D 0B55-0B57 0B62-0B63 0B82 0BBE-0BC2 0BC6-0BC8 0BCA-0BCD "
    "0BD7 0C00-0C04 0C3C 0C3E-0C44 0C46-0C48 0C4A-0C4D 0C55-0C56 0C62-0C63 0C81-0C83 0CBC "
    "0CBE-0CC4 0CC6-0CC8 0CCA-0CCD 0CD5-0CD6 0CE2-0CE3 0D00-0D03 0D3B-0D3C 0D3E-0D44 "
    "0D46-0D48 0D4A-0D4D 0D57 0D62-0D63 0D81-0D83 0DCA 0DCF-0DD4 0DD6 0DD8-0DDF 0DF2-0DF3 "
    "0E31 0E34-0E3A 0E47-0E4E 0EB1 0EB4-0EBC 0EC8-0ECD 0F18-0F19 0F35 0F37 0F39 0F3E-0F3F "
    "0F71-0F84 0F86-0F87 0F8D-0F97 0F99-0FBC 0FC6 102B-103E 1056-1059 105E-1060 1062-1064 "
    "1067-106D 1071-1074 1082-108D 108F 109A-109D 135D-135F 1712-1715 1732-1734 1752-1753 "
    "1772-1773 17B4-17D3 17DD 180B-180D 180F 1885-1886 18A9 1920-192B 1930-193B 1A17-1A1B "
    "1A55-1A5E 1A60-1A7C 1A7F 1AB0-1ACE 1B00-1B04 1B34-1B44 1B6B-1B73 1B80-1B82 1BA1-1BAD "
    "1BE6-1BF3 1C24-1C37 1CD0-1CD2 1CD4-1CE8 1CED 1CF4 1CF7-1CF9 1DC0-1DFF 20D0-20F0 "
    "2CEF-2CF1 2D7F 2DE0-2DFF 302A-302F 3099-309A A66F-A672 A674-A67D A69E-A69F A6F0-A6F1 "
    "A802 A806 A80B A823-A827 A82C A880-A881 A8B4-A8C5 A8E0-A8F1 A8FF A926-A92D A947-A953 "
    "A980-A983 A9B3-A9C0 A9E5 AA29-AA36 AA43 AA4C-AA4D AA7B-AA7D AAB0 AAB2-AAB4 AAB7-AAB8 "
    "AABE-AABF AAC1 AAEB-AAEF AAF5-AAF6 ABE3-ABEA ABEC-ABED FB1E FE00-FE0F FE20-FE2F 101FD "
    "102E0 10376-1037A 10A01-10A03 10A05-10A06 10A0C-10A0F 10A38-10A3A 10A3F 10AE5-10AE6 "
    "10D24-10D27 10EAB-10EAC 10F46-10F50 10F82-10F85 11000-11002 11038-11046 11070 "
    "11073-11074 1107F-11082 110B0-110BA 110C2 11100-11102 11127-11134 11145-11146 11173 "
    "11180-11182 111B3-111C0 111C9-111CC 111CE-111CF 1122C-11237 1123E 112DF-112EA "
    "11300-11303 1133B-1133C 1133E-11344 11347-11348 1134B-1134D 11357 11362-11363 "
    "11366-1136C 11370-11374 11435-11446 1145E 114B0-114C3 115AF-115B5 115B8-115C0 "
    "115DC-115DD 11630-11640 116AB-116B7 1171D-1172B 1182C-1183A 11930-11935 11937-11938 "
    "1193B-1193E 11940 11942-11943 119D1-119D7 119DA-119E0 119E4 11A01-11A0A 11A33-11A39 "
    "11A3B-11A3E 11A47 11A51-11A5B 11A8A-11A99 11C2F-11C36 11C38-11C3F 11C92-11CA7 "
    "11CA9-11CB6 11D31-11D36 11D3A 11D3C-11D3D 11D3F-11D45 11D47 11D8A-11D8E 11D90-11D91 "
    "11D93-11D97 11EF3-11EF6 16AF0-16AF4 16B30-16B36 16F4F 16F51-16F87 16F8F-16F92 16FE4 "
    "16FF0-16FF1 1BC9D-1BC9E 1CF00-1CF2D 1CF30-1CF46 1D165-1D169 1D16D-1D172 1D17B-1D182 "
    "1D185-1D18B 1D1AA-1D1AD 1D242-1D244 1DA00-1DA36 1DA3B-1DA6C 1DA75 1DA84 1DA9B-1DA9F "
    "1DAA1-1DAAF 1E000-1E006 1E008-1E018 1E01B-1E021 1E023-1E024 1E026-1E02A 1E130-1E136 "
    "1E2AE 1E2EC-1E2EF 1E8D0-1E8D6 1E944-1E94A E0100-E01EF "
)

_CLITICS = frozenset({"s", "t", "d", "m", "ll", "re", "ve"})
_APOSTROPHES = "'\u2019"
# Memoize per-word work for words up to this length (longer ones are rare and, unbounded,
# would let a pathological text pin megabytes in the cache).
_CACHE_MAX_CHARS = 48


def _char_class(ranges: str) -> str:
    out: list[str] = []
    for item in ranges.split():
        first, _, last = item.partition("-")
        out.append(chr(int(first, 16)))
        if last:
            out.append("-" + chr(int(last, 16)))
    return "".join(out)


_MARK = "[" + _char_class(MARK_RANGES) + "]"
_JOIN = "[" + re.escape(JOINERS + JOINER_LOOKALIKES) + "]"
# Possessive quantifiers over disjoint classes (alnum, mark, joiner): nothing is ever given
# back, so every character is examined a bounded number of times. The mark class is large
# (and slow to test), so it is only tried on characters from U+0300 up, where marks start.
_WORD_SRC = rf"[^\W_]++(?:(?=[^\x00-\u02ff]){_MARK}++[^\W_]*+)*+"
_WORD = re.compile(_WORD_SRC)
_COMPOUND = re.compile(rf"{_WORD_SRC}(?:{_JOIN}++{_WORD_SRC})*+")
_JOINER = re.compile(_JOIN)

_Part = tuple[int, int, str]  # start, end (in the word), term ("" if too long)
_Span = tuple[str, int, int, bool]  # term, start, end, is_part
# Per run of text matched by _COMPOUND: is it a compound, its terms, and its tokens with
# spans relative to the start of the run.
_Analysis = tuple[bool, tuple[str, ...], tuple[_Span, ...]]


def normalize(text: str) -> str:
    """Unicode NFKC, then case folding: the form every term is compared in."""
    return unicodedata.normalize("NFKC", text).casefold()


@frozen
class Token:
    """One term of a text, with the span of the original text it was read from."""

    term: str
    start: int
    end: int
    is_part: bool


@frozen
class QueryTerm:
    """Matches a document holding ``term``, or holding every one of ``parts``.

    ``parts`` is empty for a plain word.
    """

    term: str
    parts: tuple[str, ...] = ()


@frozen
class Query:
    """The distinct search terms of a query, in their first order."""

    text: str
    terms: tuple[QueryTerm, ...]

    @property
    def is_empty(self) -> bool:
        return not self.terms

    @property
    def all_terms(self) -> tuple[str, ...]:
        """Every distinct term and part, in first order (for looking up statistics)."""
        return tuple(dict.fromkeys(s for t in self.terms for s in (t.term, *t.parts)))


def tokenize(text: str) -> list[Token]:
    """Every term of ``text`` with its span, in order; see the module documentation."""
    tokens: list[Token] = []
    for match in _COMPOUND.finditer(text):
        offset = match.start()
        for term, start, end, is_part in _analyse(match.group())[2]:
            tokens.append(Token(term, offset + start, offset + end, is_part))
    return tokens


def index_terms(text: str) -> list[str]:
    """The term of every token of ``text``, in order, duplicates kept."""
    terms: list[str] = []
    extend = terms.extend
    for raw in _COMPOUND.findall(text):
        extend(_analyse(raw)[1])
    return terms


def matching_runs(text: str, wanted: Collection[str]) -> list[tuple[int, int, str]]:
    """The runs of ``text`` (plain words, or whole identifiers) holding a term of ``wanted``
    as ``(start, end, first such term)``, in order: what an excerpt marks. Cheaper than
    :func:`tokenize` (no :class:`Token` per part).

    Only the runs that can hold a wanted term are analysed: an ASCII run yields a term only
    if its lower-cased text contains the term or a word the term abbreviates (a stem is a
    prefix of its word), so a search for those spellings finds every candidate, and most
    of a text's runs are never looked at."""
    if not text.isascii():  # NFKC may change what a spelling looks like: analyse every run
        return _scan_runs(text, _COMPOUND.finditer(text), wanted)
    spellings = _spellings_for(frozenset(wanted))
    if not spellings:
        return []
    lowered = text.lower()
    found: set[int] = set()
    for spelling in spellings:  # str.find: several times cheaper than one regex scan
        at = lowered.find(spelling)
        while at != -1:
            found.add(at)
            at = lowered.find(spelling, at + 1)
    positions = sorted(found)
    if not positions:
        return []
    return _scan_runs(text, _runs_at(text, positions), wanted)


def _scan_runs(
    text: str, runs: Iterable[re.Match[str]], wanted: Collection[str]
) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []
    for match in runs:
        for term in _analyse(match.group())[1]:
            if term in wanted:
                found.append((match.start(), match.end(), term))
                break
    return found


def _runs_at(text: str, positions: Sequence[int]) -> Iterator[re.Match[str]]:
    """The runs of ``text``, cut as a scan from its start cuts them, that contain one of
    the sorted ``positions``, each once."""
    scanned = 0  # the end of the last run yielded: a scan may resume there
    for position in positions:
        if position < scanned:
            continue
        # No run holds whitespace, so a scan starting after a space cuts the runs after
        # it as a scan from the start does: only the runs of one word are looked at.
        begin = max(text.rfind(" ", scanned, position) + 1, scanned)
        for match in _COMPOUND.finditer(text, begin):
            start, end = match.span()
            if end <= position:
                continue
            if start <= position:
                yield match
                scanned = end
            break


@lru_cache(maxsize=256)
def _spellings_for(wanted: frozenset[str]) -> tuple[str, ...]:
    """Every place a run holding one of ``wanted`` can be, in lower-cased ASCII text,
    starts with one of these: each term, and each word it abbreviates (``cmd`` <-
    ``command``). Every occurrence is looked for, overlapping ones too, so no run is
    skipped."""
    return tuple(sorted({s for term in wanted if term for s in spellings_of(term) if s}))


def parse_query(text: str) -> Query:
    """The search terms of an agent's question; see the module documentation."""
    terms: dict[QueryTerm, None] = {}
    words: dict[str, None] = {}  # every plain word, for a query of stop words only
    for match in _COMPOUND.finditer(text):
        raw = match.group()
        is_compound, _, spans = _analyse(raw)
        if not spans:  # nothing short enough to index
            continue
        if not is_compound:
            term = spans[0][0]
            if len(words) < MAX_QUERY_TERMS:
                words[term] = None
            if _dropped_from_query(text, match.start(), raw):
                continue
            query_term = QueryTerm(term)
        else:
            parts = tuple(dict.fromkeys(t for t, _, _, is_part in spans if is_part))
            whole = spans[0][0] if not spans[0][3] else _index_form(raw)[: MAX_TERM_CHARS + 1]
            query_term = QueryTerm(whole, parts[:MAX_QUERY_PARTS])
        if query_term not in terms:
            terms[query_term] = None
            if len(terms) >= MAX_QUERY_TERMS:
                break
    if not terms:
        # "what did we do?" still deserves an answer: fall back to its words.
        return Query(text=text, terms=tuple(QueryTerm(w) for w in words))
    return Query(text=text, terms=tuple(terms))


# --------------------------------------------------------------------------- internals


def _analyse_uncached(raw: str) -> _Analysis:
    """The tokens of one run matched by ``_COMPOUND`` (a word or a joined compound)."""
    parts: list[_Part] | tuple[_Part, ...]
    if _JOINER.search(raw) is None:
        parts = _split_word(raw)
    else:
        parts = []
        for word in _WORD.finditer(raw):
            offset = word.start()
            parts.extend((offset + a, offset + b, t) for a, b, t in _word_parts(word.group()))
    if len(parts) == 1:  # a plain word
        term = parts[0][2]
        return (False, (term,), ((term, 0, len(raw), False),)) if term else (False, (), ())
    spans: list[_Span] = []
    whole = _index_form(raw)
    if len(whole) <= MAX_TERM_CHARS:
        spans.append((whole, 0, len(raw), False))
    spans.extend((t, a, b, True) for a, b, t in parts if t)
    return True, tuple(t for t, _, _, _ in spans), tuple(spans)


_analyse_cached = lru_cache(maxsize=16384)(_analyse_uncached)


def _analyse(raw: str) -> _Analysis:
    # Texts repeat their vocabulary; memoize short runs only, so that a pathological text
    # cannot pin megabytes in the cache.
    return _analyse_cached(raw) if len(raw) <= _CACHE_MAX_CHARS else _analyse_uncached(raw)


def _index_form(raw: str) -> str:
    if raw.isascii():
        return raw.lower()  # NFKC leaves ASCII alone; casefold is lower() on ASCII
    return "".join(normalize(raw).split())


def _word_term(raw: str) -> str:
    """The term of a plain word or a part: stemmed if all letters; "" if too long."""
    term = _index_form(raw)
    if len(term) > MAX_TERM_CHARS:
        return ""
    return stem(term) if term.isalpha() else term


def _split_word(raw: str) -> tuple[_Part, ...]:
    """A word's camelCase parts (start, end, term); a single part if it is not camelCase."""
    tail = raw[1:]
    starts = [] if tail == tail.lower() else _camel_starts(raw)
    bounds = [0, *starts, len(raw)]
    return tuple((a, b, _word_term(raw[a:b])) for a, b in pairwise(bounds))


_split_word_cached = lru_cache(maxsize=16384)(_split_word)


def _word_parts(word: str) -> tuple[_Part, ...]:
    return _split_word_cached(word) if len(word) <= _CACHE_MAX_CHARS else _split_word(word)


def _camel_starts(word: str) -> list[int]:
    """Offsets (> 0) in ``word`` where a camelCase part starts."""
    starts: list[int] = []
    prev = ""  # last non-mark character: "U"pper, "l"ower, caseless "a"lpha, "d"igit
    letter_in_part = False
    size = len(word)
    for i, char in enumerate(word):
        if char.isupper():
            if i and (
                prev in ("l", "a")
                or (prev == "d" and letter_in_part and i + 1 < size and word[i + 1].islower())
                or (
                    prev == "U" and i + 2 < size and word[i + 1].islower() and word[i + 2].islower()
                )
            ):
                starts.append(i)
            prev = "U"
            letter_in_part = True
        elif char.islower():
            prev = "l"
            letter_in_part = True
        elif char.isalpha():
            prev = "a"
            letter_in_part = True
        elif char.isalnum():
            prev = "d"
        # else: a combining mark belongs to the character before it
    return starts


def _dropped_from_query(text: str, start: int, raw: str) -> bool:
    """A stop word, or a clitic after an apostrophe (``redirect's``, ``don't``)."""
    word = _index_form(raw)
    if word in STOP_WORDS:
        return True
    return (
        word in _CLITICS
        and start >= 2
        and text[start - 1] in _APOSTROPHES
        and _is_word_char(text[start - 2])
    )


def _is_word_char(char: str) -> bool:
    return char.isalnum() or unicodedata.category(char).startswith("M")
