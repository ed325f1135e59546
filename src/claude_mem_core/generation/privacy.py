"""Removal of private and injected blocks from text before it is stored or sent to a model.

Product rule: whatever a user wraps in ``<private>…</private>`` never reaches storage or a
provider. The other tags are context that tools inject into transcripts (earlier memories,
system reminders, persisted tool output); recording them again would feed memories back into
memory.

The text is read once, left to right, as a stream in which a removed block leaves no trace:

* Tag names match case-insensitively and may carry attributes (``<private reason="x">``).
  ``<`` cannot occur inside a tag, so ``<private x=<y>>`` is text.
* Nesting is tracked: a block is removed with everything inside it, nested blocks included,
  so ``<private>a<private>b</private>c</private>`` removes ``c`` too.
* A closing tag ends the nearest open tag of its name, and with it any tag opened inside
  that is still open; a closing tag with no open tag of its name is text. Only
  ``</private>`` ends a private block: ``</system-reminder>`` inside one is part of it.
* An opening ``<private>`` that is never closed hides everything after it, to the end of
  the string; leaking the rest of a payload because someone forgot the closing tag would
  defeat the point of the tag. Other unclosed tags are left as text (they are not secrets).
* Removing a block joins the text around it, and the joined text is read as such: in
  ``<pri<private>x</private>vate>secret</private>`` the join makes ``<private>``, which
  opens a block that hides ``secret``. So the result never contains a tag of these names
  that would remove anything: no ``<private>`` tag at all, whether it was sent whole or
  assembled from pieces, and stripping a result again changes nothing.

One pass, linear in the length of the text (a text built so that every removal creates a
new tag is handled in one pass too): a request body cannot make this quadratic.
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


def _prefix_alternatives() -> str:
    prefixes = {name[:size] for name in STRIPPED_TAGS for size in range(len(name) + 1)}
    return "|".join(re.escape(prefix) for prefix in sorted(prefixes, key=len, reverse=True))


# An unfinished tag at the end of the kept text: ``<``, ``</``, ``<pri``, ``<private`` (a tag
# name could still follow) or ``<private x=`` (only ``>`` is missing).
_PENDING_NAME = re.compile(rf"</?(?:{_prefix_alternatives()})", re.IGNORECASE)
_PENDING_ATTRS = re.compile(rf"</?(?:{_NAMES})[\s/]", re.IGNORECASE)
# ``</`` and the longest name, then one more character: enough to tell the two apart.
_PENDING_HEAD = 2 + max(len(name) for name in STRIPPED_TAGS) + 1


class _Stripper:
    """The single pass behind :func:`strip_tags` (see the module docstring for the rules).

    The kept text is a list of ranges of the input (never copied until the end), so cutting
    a region out is O(1) whatever its size. For each range the position of the last ``<`` or
    ``>`` in the kept text up to and including it is kept too, which is what the check for
    a tag rejoined across a cut needs. Python work is done per tag of a stripped name, not
    per character; every scan of the input covers text not scanned for the same purpose
    before, so the whole pass is linear in the length of the text.
    """

    __slots__ = (
        "ends",
        "last_range",
        "last_special",
        "open_at",
        "removed",
        "stack",
        "starts",
        "text",
    )

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts: list[int] = []
        self.ends: list[int] = []
        # Input index of the last "<" or ">" kept up to and including range i (-1: none),
        # and the index of the range holding it.
        self.last_special: list[int] = []
        self.last_range: list[int] = []
        # Open tags, innermost last: (name, range index, input index of its "<").
        self.stack: list[tuple[str, int, int]] = []
        self.open_at: dict[str, list[int]] = {name: [] for name in STRIPPED_TAGS}
        self.removed: Counter[str] = Counter()

    def run(self) -> str:
        text = self.text
        position = 0
        while True:
            match = _TAG_RE.search(text, position)
            if match is None:
                self._keep(position, len(text))
                break
            self._keep(position, match.end())
            position = match.end()
            cut = self._tag(
                closing=match.group(1) == "/",
                name=match.group(2).lower(),
                attributes=match.group(3),
                where=(len(self.starts) - 1, match.start()),
            )
            if cut:
                position = self._rejoin(position)
        private = self.open_at[PRIVATE_TAG]
        if private:  # an unclosed <private> hides everything after it
            self._close_from(private[0])
        return "".join(text[start:end] for start, end in zip(self.starts, self.ends, strict=True))

    # -- tags ------------------------------------------------------------------------------

    def _tag(self, *, closing: bool, name: str, attributes: str, where: tuple[int, int]) -> bool:
        """Apply one tag whose text is already kept; True if it cut a region out."""
        if closing:
            same = self.open_at[name]
            if not same:
                return False  # a stray closing tag hides nothing
            private = self.open_at[PRIVATE_TAG]
            if name != PRIVATE_TAG and private and private[-1] > same[-1]:
                return False  # only </private> ends a private region
            self._close_from(same[-1])
            return True
        if attributes.rstrip().endswith("/"):  # self-closing
            self.removed[name] += 1
            self._cut(*where)
            return True
        self.open_at[name].append(len(self.stack))
        self.stack.append((name, *where))
        return False

    def _close_from(self, index: int) -> None:
        """Remove the open tag at ``index`` of the stack, everything opened after it, and
        all the text from its ``<`` on."""
        _, range_index, start = self.stack[index]
        while len(self.stack) > index:
            name, _, _ = self.stack.pop()
            self.open_at[name].pop()
            self.removed[name] += 1
        self._cut(range_index, start)

    def _rejoin(self, position: int) -> int:
        """After a cut: if the kept text ends in an unfinished tag that the input from
        ``position`` completes (``<pri`` + ``vate>``), apply that tag too, as often as it
        happens. Returns where the input continues."""
        text = self.text
        while self.starts:
            start = self.last_special[-1]
            if start < 0 or text[start] != "<":
                return position
            range_index = self.last_range[-1]
            head, whole = self._kept_from(range_index, start, _PENDING_HEAD)
            pending = _PENDING_ATTRS.match(head) or (whole and _PENDING_NAME.fullmatch(head))
            if not pending:
                return position
            end = text.find(">", position)
            if end < 0 or text.find("<", position, end) >= 0:
                return position
            tail, _ = self._kept_from(range_index, start, None)
            match = _TAG_RE.fullmatch(tail + text[position : end + 1])
            if match is None:
                return position
            self._keep(position, end + 1)
            position = end + 1
            cut = self._tag(
                closing=match.group(1) == "/",
                name=match.group(2).lower(),
                attributes=match.group(3),
                where=(range_index, start),
            )
            if not cut:
                return position
        return position

    # -- the kept text ---------------------------------------------------------------------

    def _last_special_in(self, start: int, end: int) -> int:
        text = self.text
        less = text.rfind("<", start, end)
        return max(less, text.rfind(">", max(less, start), end))

    def _keep(self, start: int, end: int) -> None:
        if start >= end:
            return
        special = self._last_special_in(start, end)
        if self.ends and self.ends[-1] == start:  # continues the last range
            self.ends[-1] = end
            if special >= 0:
                self.last_special[-1] = special
                self.last_range[-1] = len(self.ends) - 1
            return
        self.starts.append(start)
        self.ends.append(end)
        if special >= 0:
            self.last_special.append(special)
            self.last_range.append(len(self.ends) - 1)
        elif self.last_special:
            self.last_special.append(self.last_special[-1])
            self.last_range.append(self.last_range[-1])
        else:
            self.last_special.append(-1)
            self.last_range.append(-1)

    def _cut(self, range_index: int, start: int) -> None:
        """Drop the kept text from input index ``start`` (in range ``range_index``) on."""
        keep = range_index if start <= self.starts[range_index] else range_index + 1
        del self.starts[keep:], self.ends[keep:]
        del self.last_special[keep:], self.last_range[keep:]
        if keep == range_index:
            return
        self.ends[range_index] = start
        special = self._last_special_in(self.starts[range_index], start)
        if special >= 0:
            self.last_special[range_index] = special
            self.last_range[range_index] = range_index
        elif range_index:
            self.last_special[range_index] = self.last_special[range_index - 1]
            self.last_range[range_index] = self.last_range[range_index - 1]
        else:
            self.last_special[range_index] = -1
            self.last_range[range_index] = -1

    def _kept_from(self, range_index: int, start: int, limit: int | None) -> tuple[str, bool]:
        """The kept text from input index ``start`` to the end (at most ``limit``
        characters), and whether that is all of it."""
        text = self.text
        end = self.ends[range_index]
        if limit is not None:
            end = min(end, start + limit + 1)
        pieces = [text[start:end]]
        size = len(pieces[0])
        index, count = range_index + 1, len(self.starts)
        while index < count and (limit is None or size <= limit):
            piece = text[self.starts[index] : self.ends[index]]
            pieces.append(piece)
            size += len(piece)
            index += 1
        joined = "".join(pieces)
        if limit is not None and size > limit:
            return joined[:limit], False
        return joined, index >= count


def _strip_untrimmed(text: str) -> tuple[str, Counter[str]]:
    # Most text holds no tag of a stripped name at all.
    if _TAG_RE.search(text) is None:
        return text, Counter()
    stripper = _Stripper(text)
    return stripper.run(), stripper.removed


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
