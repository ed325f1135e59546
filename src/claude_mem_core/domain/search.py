"""Turning an agent's question into search terms.

Agents ask questions ("which file did we change to fix the login redirect?"), not keyword
lists. A query therefore matches rows containing *any* of its meaningful terms; stop words
are dropped, and backends rank rows that match more, and rarer, terms first. Terms are plain
words only, so no user text can ever be read as query syntax by a backend.
"""

from __future__ import annotations

import re

from attrs import frozen

MAX_TERMS = 24
MAX_TERM_LENGTH = 64

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)?", re.UNICODE)

# English function words plus question scaffolding agents typically use. Kept short on
# purpose: content words like "file" or "change" must stay searchable.
_STOP_WORD_TEXT = """
a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing done down during each few
for from further had has have having he her here hers herself him himself his how i if
in into is it its itself just let me more most my myself no nor not now of off on once
only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until
up very was we were what when where which while who whom why will with would you your
yours yourself yourselves also get got us tell show find please ever
"""
STOP_WORDS = frozenset(_STOP_WORD_TEXT.split())


@frozen
class SearchQuery:
    """The meaningful, lower-cased, de-duplicated words of a query, in their first order."""

    text: str
    terms: tuple[str, ...]

    @property
    def is_empty(self) -> bool:
        return not self.terms


def tokenize(text: str) -> list[str]:
    return [m.group(0).lower().replace("\u2019", "'") for m in _WORD.finditer(text)]


def parse_query(text: str) -> SearchQuery:
    terms: list[str] = []
    seen: set[str] = set()
    for word in tokenize(text):
        word = word.split("'", 1)[0]  # "redirect's" -> "redirect"
        if len(word) > MAX_TERM_LENGTH or word in STOP_WORDS or word in seen:
            continue
        seen.add(word)
        terms.append(word)
        if len(terms) >= MAX_TERMS:
            break
    if not terms:
        # A query made only of stop words ("what did we do?") still deserves an answer:
        # fall back to its words rather than matching nothing.
        terms = list(dict.fromkeys(w.split("'", 1)[0] for w in tokenize(text)))[:MAX_TERMS]
    return SearchQuery(text=text, terms=tuple(t for t in terms if t))


_SUFFIXES = (
    "ational",
    "ization",
    "fulness",
    "ousness",
    "iveness",
    "ations",
    "ation",
    "ments",
    "ment",
    "ness",
    "ings",
    "ing",
    "edly",
    "ies",
    "ied",
    "ed",
    "es",
    "ly",
    "s",
)


def stem(word: str) -> str:
    """A small, deterministic suffix-stripper for the in-memory backend.

    SQL backends use their own stemmers (Postgres ``english``, SQLite FTS5 ``porter``);
    this one only has to make "fixed", "fixes" and "fixing" meet at "fix".
    """
    word = word.lower()
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiousl":
        word = word[:-1]  # "fixx"-style doubled consonants after stripping: "stopp" -> "stop"
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word
