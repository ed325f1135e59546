"""Excerpts: the lines of a hit that match the question, with the matching words marked.

Computed in Python from each matching passage of a hit (or the observation's content), so every
backend gives the same excerpt. Matches are marked ``**like this**`` (Markdown bold: what an
agent reads as emphasis, and a viewer can render); the window is the stretch of at most
:data:`EXCERPT_CHARS` characters holding the most distinct query strings, widened to word
boundaries, with ``…`` where text was cut, on the text with its whitespace runs collapsed
to single spaces (an excerpt is one line).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from claude_mem_core.domain.tokens import Query, matching_runs

EXCERPT_CHARS = 480
MARK_OPEN = "**"
MARK_CLOSE = "**"
ELLIPSIS = "…"


def _best_window(spans: list[tuple[int, int, str]], width: int) -> tuple[int, int]:
    """The span range ``[i, j)`` covering the most distinct strings within ``width`` chars
    (two pointers: linear in the number of spans)."""
    best = (0, 1)
    best_count = 0
    counts: dict[str, int] = {}
    i = 0
    for j, (_, end, term) in enumerate(spans):
        counts[term] = counts.get(term, 0) + 1
        while i < j and end - spans[i][0] > width:  # a run wider than ``width`` stays alone
            left = spans[i][2]
            counts[left] -= 1
            if not counts[left]:
                del counts[left]
            i += 1
        if len(counts) > best_count:
            best_count, best = len(counts), (i, j + 1)
    return best


def excerpt(text: str, query: Query, *, width: int = EXCERPT_CHARS) -> str:
    """The part of ``text`` that best matches ``query``, matches marked; the start of
    ``text`` when nothing matches."""
    found = _excerpt(" ".join(text.split()), _wanted(query), width, shown=())
    assert found is not None  # nothing shown yet: there is always an excerpt
    return found


def distinct_excerpts(
    texts: Iterable[str], query: Query, *, width: int = EXCERPT_CHARS
) -> list[str | None]:
    """One excerpt per text, as :func:`excerpt`, without showing a stretch twice.

    The passages of one hit often share text (a tool's response echoes its input, a
    passage's last line starts the next): an excerpt whose window would repeat what an
    earlier one showed is taken from the best window of the matches not shown yet, and is
    ``None`` when every match of its text has been shown."""
    wanted = _wanted(query)
    shown: list[str] = []
    found: list[str | None] = []
    for text in texts:
        one = _excerpt(" ".join(text.split()), wanted, width, shown=shown)
        found.append(one)
        if one is not None:
            shown.append(_plain(one))
    return found


def _wanted(query: Query) -> set[str]:
    return {s for term in query.terms for s in (term.term, *term.parts)}


def _plain(excerpt_text: str) -> str:
    """An excerpt's text without marks and ellipses: what it shows of the passage."""
    return excerpt_text.replace(MARK_OPEN, "").replace(ELLIPSIS, "").strip()


def _excerpt(text: str, wanted: set[str], width: int, *, shown: Sequence[str]) -> str | None:
    # A match inside an identifier marks the whole identifier (**coverage-report**, not
    # **coverage**-report): marks never split what a reader would copy.
    spans = matching_runs(text, wanted)
    if shown:
        # Matches inside a stretch an earlier excerpt showed are not evidence twice.
        spans = [s for s in spans if not _inside_shown(text, s, shown)]
        if not spans:
            return None
    if not spans:
        cut = _boundary_before(text, width) if len(text) > width else len(text)
        return text[:cut] + (ELLIPSIS if cut < len(text) else "")
    i, j = _best_window(spans, width)
    first, last = spans[i][0], spans[j - 1][1]
    slack = max(width - (last - first), 0)
    start = max(first - slack // 2, 0)
    end = min(max(last, start + width), len(text))
    if end - start > width:  # one run wider than the window (a long URL): shown cut, unmarked
        end = _boundary_before(text, start + width, floor=start)
    if start > 0:
        space = text.find(" ", start, first)
        start = space + 1 if space != -1 else start
    if end < len(text):
        end = _boundary_before(text, end, floor=last)
    pieces: list[str] = [ELLIPSIS] if start > 0 else []
    position = start
    for s, e, _ in spans:
        if s < start or e > end:
            continue
        pieces.append(text[position:s])
        pieces.append(MARK_OPEN + text[s:e] + MARK_CLOSE)
        position = e
    pieces.append(text[position:end])
    if end < len(text):
        pieces.append(ELLIPSIS)
    return "".join(pieces)


def _inside_shown(text: str, span: tuple[int, int, str], shown: Sequence[str]) -> bool:
    """Whether the match ``span`` of ``text``, with the words around it, is part of a
    stretch already shown (the same line of the same echo, not merely the same word)."""
    start, end, _ = span
    context = text[max(start - _SHOWN_CONTEXT, 0) : end + _SHOWN_CONTEXT].replace(MARK_OPEN, "")
    return any(context in stretch for stretch in shown)


# Characters either side of a match that must also have been shown for the match to
# count as shown: enough to tell one line from another that uses the same word.
_SHOWN_CONTEXT = 40


def _boundary_before(text: str, end: int, *, floor: int = 0) -> int:
    """The last whitespace before ``end`` (not before ``floor``), else ``end``."""
    space = max(text.rfind(" ", floor, end), text.rfind("\n", floor, end))
    return space if space > floor else end
