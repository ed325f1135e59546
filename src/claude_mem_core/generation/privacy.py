"""Removal of private and injected blocks from text before it is stored or sent to a model.

Product rule: whatever a user wraps in ``<private>…</private>`` never reaches storage or a
provider. The other tags are context that tools inject into transcripts (earlier memories,
system reminders, persisted tool output); recording them again would feed memories back into
memory.

Differences from a plain non-greedy regex, all in the direction of removing more:

* Tag names match case-insensitively and may carry attributes (``<private reason="x">``).
* Nesting is tracked, so ``<private>a<private>b</private>c</private>`` removes ``c`` too.
  A closing tag pairs with the nearest open tag of its name; stray closing tags stay.
* An opening ``<private>`` that is never closed hides everything after it; leaking the rest
  of a payload because someone forgot the closing tag would defeat the point of the tag.
  Other unclosed tags are left as text (they are not secrets) but are still searched inside.
* Removal repeats until nothing changes: cutting a block out can join the text around it
  into a new tag (``<pri<private>x</private>vate>``), which must not survive.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from attrs import field, frozen

logger = logging.getLogger(__name__)

PRIVATE_TAG = "private"
STRIPPED_TAGS: tuple[str, ...] = (
    PRIVATE_TAG,
    "claude-mem-context",
    "system_instruction",
    "system-instruction",
    "persisted-output",
    "system-reminder",
)
# Beyond this many removed tags in one text something odd is going on; say so in the log.
WARN_THRESHOLD = 100

_NAMES = "|".join(re.escape(name) for name in STRIPPED_TAGS)
# The look-ahead keeps ``<private-notes>`` or ``<privateer>`` from counting as ``<private>``.
# XML forbids ``<`` inside a tag, and stopping there keeps the scan linear on junk input.
_TAG_RE = re.compile(rf"<(/?)({_NAMES})(?=[\s/>])([^<>]*)>", re.IGNORECASE)


def _nonzero(value: Mapping[str, int]) -> dict[str, int]:
    return {name: count for name, count in value.items() if count}


@frozen
class StripResult:
    """Stripped text (trimmed) and how many tags of each name were removed."""

    text: str
    counts: dict[str, int] = field(factory=dict, converter=_nonzero)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def private_count(self) -> int:
        return self.counts.get(PRIVATE_TAG, 0)

    @property
    def had_private(self) -> bool:
        return self.private_count > 0


@frozen
class JsonStripResult:
    """A JSON value with every string in it stripped, and the summed tag counts."""

    value: Any
    counts: dict[str, int] = field(factory=dict, converter=_nonzero)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def had_private(self) -> bool:
        return self.counts.get(PRIVATE_TAG, 0) > 0


def _strip_pass(text: str) -> tuple[str, Counter[str]]:
    """One left-to-right scan; returns the text with every tagged region cut out.

    Regions are matched pairs (a closing tag pairs with the nearest open tag of its name,
    implicitly closing any unclosed tags opened after it), self-closing tags, and the tail
    from an unclosed ``<private>``. Unclosed other tags stay as text. Linear in the number
    of tags: the stack is popped at most once per push.
    """
    regions: list[tuple[int, int]] = []
    openings: list[tuple[int, str]] = []  # (start, name) of every opening tag, in order
    stack: list[tuple[str, int]] = []  # (name, start) of tags still open
    open_names: Counter[str] = Counter()

    for match in _TAG_RE.finditer(text):
        name = match.group(2).lower()
        if match.group(1) == "/":
            if not open_names[name]:
                continue  # a stray closing tag hides nothing
            while True:
                open_name, open_start = stack.pop()
                open_names[open_name] -= 1
                if open_name == name:
                    break
            regions.append((open_start, match.end()))
            continue
        openings.append((match.start(), name))
        if match.group(3).rstrip().endswith("/"):
            regions.append((match.start(), match.end()))
        else:
            stack.append((name, match.start()))
            open_names[name] += 1

    unclosed_private = [start for name, start in stack if name == PRIVATE_TAG]
    if unclosed_private:
        # An unclosed private block hides everything after it.
        regions.append((unclosed_private[0], len(text)))
    if not regions:
        return text, Counter()

    regions.sort()
    merged: list[list[int]] = []
    for start, end in regions:
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])

    removed: Counter[str] = Counter()
    position = 0
    for start, name in openings:
        while merged[position][1] <= start and position < len(merged) - 1:
            position += 1
        if merged[position][0] <= start < merged[position][1]:
            removed[name] += 1

    pieces: list[str] = []
    keep_from = 0
    for start, end in merged:
        pieces.append(text[keep_from:start])
        keep_from = end
    pieces.append(text[keep_from:])
    return "".join(pieces), removed


def _strip_untrimmed(text: str) -> tuple[str, Counter[str]]:
    total: Counter[str] = Counter()
    while True:
        text, removed = _strip_pass(text)
        if not removed:
            return text, total
        total.update(removed)


def strip_tags(text: str) -> StripResult:
    """Remove private and injected blocks from ``text``; the result is trimmed."""
    stripped, counts = _strip_untrimmed(text)
    result = StripResult(stripped.strip(), counts)
    if result.total > WARN_THRESHOLD:
        logger.warning("stripped %d tagged blocks from one text", result.total)
    return result


def strip_private(text: str) -> str:
    """Shorthand for ``strip_tags(text).text``."""
    return strip_tags(text).text


def _pairs(container: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(container, dict):
        return iter(container.items())
    return enumerate(container)


def _rebuild(container: Any, built: list[tuple[Any, Any]]) -> Any:
    if isinstance(container, dict):
        return dict(built)
    values = [child for _key, child in built]
    return tuple(values) if isinstance(container, tuple) else values


def _map_strings(value: Any, change: Callable[[str], str]) -> Any:
    """A copy of a JSON-like value with ``change`` applied to every string in it.

    Iterative rather than recursive: a payload nested deeper than Python's recursion limit
    must still be cleaned, not passed through (or crash the caller).
    """

    def leaf(item: Any) -> Any:
        return change(item) if isinstance(item, str) else item

    if not isinstance(value, dict | list | tuple):
        return leaf(value)
    # Frame: original container, iterator over its (key, child) pairs, rebuilt pairs so far,
    # and the key under which the rebuilt container goes into its parent.
    stack: list[tuple[Any, Iterator[tuple[Any, Any]], list[tuple[Any, Any]], Any]] = [
        (value, _pairs(value), [], None)
    ]
    while True:
        container, pairs, built, key_in_parent = stack[-1]
        for key, child in pairs:
            if isinstance(child, dict | list | tuple):
                stack.append((child, _pairs(child), [], key))
                break
            built.append((key, leaf(child)))
        else:
            stack.pop()
            rebuilt = _rebuild(container, built)
            if not stack:
                return rebuilt
            stack[-1][2].append((key_in_parent, rebuilt))


def strip_tags_in_json(value: Any) -> JsonStripResult:
    """Strip every string inside a JSON-like value (dicts, lists, tuples, scalars).

    Strings with nothing to strip are returned unchanged (not trimmed), so a clean payload
    comes back equal to the input. Dict keys are left alone: they name fields, and renaming
    one could collide with another.
    """
    counts: Counter[str] = Counter()

    def clean(text: str) -> str:
        stripped, removed = _strip_untrimmed(text)
        if not removed:
            return text
        counts.update(removed)
        return stripped.strip()

    cleaned = _map_strings(value, clean)
    total = sum(counts.values())
    if total > WARN_THRESHOLD:
        logger.warning("stripped %d tagged blocks from one payload", total)
    return JsonStripResult(cleaned, counts)


def strip_private_json(value: Any) -> Any:
    """Shorthand for ``strip_tags_in_json(value).value``: clean a payload before storing it."""
    return strip_tags_in_json(value).value
