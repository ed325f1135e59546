"""Removal of private and injected blocks from text before it is stored or sent to a model.

Product rule: whatever a user wraps in ``<private>…</private>`` never reaches storage or a
provider. The other tags are context that tools inject into transcripts (earlier memories,
system reminders, persisted tool output); recording them again would feed memories back into
memory.

Differences from a plain non-greedy regex, all in the direction of removing more:

* Tag names match case-insensitively and may carry attributes (``<private reason="x">``).
* Nesting is tracked, so ``<private>a<private>b</private>c</private>`` removes ``c`` too.
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
_TAG_RE = re.compile(rf"<(/?)({_NAMES})(?=[\s/>])([^>]*)>", re.IGNORECASE)


def _frozen_counts(value: Mapping[str, int]) -> dict[str, int]:
    return {name: count for name, count in value.items() if count}


@frozen
class StripResult:
    """Stripped text (trimmed) and how many tags of each name were removed."""

    text: str
    counts: dict[str, int] = field(factory=dict, converter=_frozen_counts)

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
    counts: dict[str, int] = field(factory=dict, converter=_frozen_counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def had_private(self) -> bool:
        return self.counts.get(PRIVATE_TAG, 0) > 0


def _strip_pass(text: str) -> tuple[str, Counter[str]]:
    """One left-to-right scan; returns the text with every complete region cut out."""
    pieces: list[str] = []
    removed: Counter[str] = Counter()
    keep_from = 0  # start of the text not yet copied into ``pieces``
    search_at = 0
    stack: list[str] = []  # names of the open tags of the current region, outermost first
    region_start = 0
    region_resume = 0  # just after the region's opening tag, for rescanning
    region_counts: Counter[str] = Counter()

    while True:
        match = _TAG_RE.search(text, search_at)
        if match is None:
            if not stack:
                break
            if PRIVATE_TAG in stack:
                # Unclosed private block: everything from the region on is private.
                pieces.append(text[keep_from:region_start])
                removed.update(region_counts)
                keep_from = len(text)
                break
            # An unclosed non-private wrapper stays as text, but what it contains is still
            # scanned, so a complete private block inside it is removed.
            stack.clear()
            search_at = region_resume
            continue

        search_at = match.end()
        closing = match.group(1) == "/"
        name = match.group(2).lower()
        self_closing = not closing and match.group(3).rstrip().endswith("/")

        if not stack:
            if closing:
                continue  # a stray closing tag hides nothing
            if self_closing:
                pieces.append(text[keep_from : match.start()])
                keep_from = match.end()
                removed[name] += 1
                continue
            stack.append(name)
            region_start = match.start()
            region_resume = match.end()
            region_counts = Counter({name: 1})
            continue

        if closing:
            if name in stack:
                # Closing an outer tag implicitly closes the unclosed ones inside it.
                del stack[len(stack) - 1 - stack[::-1].index(name) :]
                if not stack:
                    pieces.append(text[keep_from:region_start])
                    keep_from = match.end()
                    removed.update(region_counts)
        else:
            region_counts[name] += 1
            if not self_closing:
                stack.append(name)

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
