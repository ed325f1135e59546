"""English word rules shared by indexing and queries: stop words, a light stemmer and the
abbreviations of programmers.

Questions are full of function words ("which file did we change…"); they are dropped from
queries (never from the index). The stemmer makes "fixed", "fixes" and "fixing" meet, and
folds a word and its usual abbreviation into one term: a question says "repository" or
"environment variable" where the code says ``REPO_ROOT`` or ``os.environ``.
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
    """The term of an all-letters word: suffixes stripped (:func:`strip_suffix`), then a
    word folded onto its abbreviation ("repository", "repositories" and "repos" are all
    "repo"), the same way at index and query time on every backend."""
    stripped = strip_suffix(word)
    return _ABBREVIATED.get(stripped, stripped)


def strip_suffix(word: str) -> str:
    """A small, deterministic suffix-stripper: it only has to make "fixed", "fixes" and
    "fixing" meet at "fix"."""
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


# Words programmers abbreviate, each with the abbreviation code and commands use (long, short;
# letters only: the stemmer sees only words of letters). Only unambiguous pairs: "temp" or
# "res" could be another word, so they are not here.
ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    ("administrator", "admin"),
    ("application", "app"),
    ("argument", "arg"),
    ("asynchronous", "async"),
    ("attribute", "attr"),
    ("authentication", "auth"),
    ("authorization", "auth"),
    ("binary", "bin"),
    ("certificate", "cert"),
    ("command", "cmd"),
    ("configuration", "config"),
    ("context", "ctx"),
    ("credential", "cred"),
    ("database", "db"),
    ("dependency", "dep"),
    ("description", "desc"),
    ("development", "dev"),
    ("directory", "dir"),
    ("document", "doc"),
    ("documentation", "doc"),
    ("environment", "env"),
    ("error", "err"),
    ("executable", "exe"),
    ("function", "func"),
    ("implementation", "impl"),
    ("information", "info"),
    ("initialize", "init"),
    ("javascript", "js"),
    ("library", "lib"),
    ("maximum", "max"),
    ("message", "msg"),
    ("minimum", "min"),
    ("package", "pkg"),
    ("parameter", "param"),
    ("previous", "prev"),
    ("production", "prod"),
    ("reference", "ref"),
    ("repository", "repo"),
    ("request", "req"),
    ("source", "src"),
    ("specification", "spec"),
    ("statistics", "stats"),
    ("synchronize", "sync"),
    ("synchronization", "sync"),
    ("temporary", "tmp"),
    ("typescript", "ts"),
    ("utility", "util"),
    ("variable", "var"),
    # Log levels as zerolog, Go and Rust loggers print them ("WRN Invalid entry").
    ("warning", "wrn"),
    ("debug", "dbg"),
)


def _inflections(word: str) -> set[str]:
    forms = {word, word + "s", word + "es"}
    if word.endswith("y"):
        forms.add(word[:-1] + "ies")
    return forms


def _abbreviated() -> dict[str, str]:
    """Stripped form of every inflection of a pair's words -> the stripped abbreviation."""
    table: dict[str, str] = {}
    for long, short in ABBREVIATIONS:
        target = strip_suffix(short)
        for form in _inflections(long) | _inflections(short):
            stripped = strip_suffix(form)
            if stripped != target:
                table[stripped] = target
    return table


_ABBREVIATED = _abbreviated()


def _spellings() -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    for stripped, target in _ABBREVIATED.items():
        table.setdefault(target, []).append(stripped)
    return {target: tuple(sorted(words)) for target, words in table.items()}


_SPELLINGS = _spellings()


def spellings_of(term: str) -> tuple[str, ...]:
    """What a word holding ``term`` starts with, lower-cased: the term itself (a stem is a
    prefix of its word) and every word folded onto it ("command" for "cmd")."""
    return (term, *_SPELLINGS.get(term, ()))
