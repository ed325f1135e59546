"""English word rules shared by indexing and queries: stop words and a light stemmer.

Questions are full of function words ("which file did we change…"); they are dropped from
queries (never from the index). The stemmer makes "fixed", "fixes" and "fixing" meet.
"""

from __future__ import annotations

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
    """A small, deterministic suffix-stripper: it only has to make "fixed", "fixes" and
    "fixing" meet at "fix", the same way for every backend (``domain/tokens.py``)."""
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
