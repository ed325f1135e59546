"""Parsing a model's XML-ish answer into observations or a session summary.

Models do not write clean XML, so this is a tolerant scanner, not an XML parser:

* Blocks are found wherever they are, so a fenced ```xml block or prose around the answer
  needs no unwrapping.
* Tag names match case-insensitively and may carry attributes (``<Observation id="1">``).
* Field text is trimmed; empty scalars become ``None`` and empty list items are dropped.
* The five XML entities and numeric character references are decoded (the prompt escapes
  the events, so models answer in escaped form; keeping ``&lt;`` literally would store it).
  Other named entities (``&nbsp;``) are left as written, since XML does not define them.
* An unknown or missing type becomes the mode's first type; concepts equal to the type are
  removed; a block with no title, narrative, facts or concepts is dropped but still uses up
  its index, so indexes stay stable for idempotency keys.
* ``<skip_summary reason="…"/>`` means "nothing to record". Real observations (or a real
  summary) win over it, because a model that wrote both did find something.
* Blank output is a failure, not a skip: a silent empty answer usually means the call went
  wrong (truncation, refusal), and a skip has its own explicit marker.

Every entry point returns a result or a :class:`ParseFailure` for any input; it never raises.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Iterator

from attrs import field, frozen

from claude_mem_core.generation.modes import CODE_MODE, Mode

logger = logging.getLogger(__name__)


def _tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@frozen(kw_only=True)
class ParsedObservation:
    """One observation block; ``index`` is its position among all blocks of the answer."""

    type: str
    title: str | None = None
    subtitle: str | None = None
    facts: tuple[str, ...] = field(default=(), converter=_tuple)
    narrative: str | None = None
    concepts: tuple[str, ...] = field(default=(), converter=_tuple)
    files_read: tuple[str, ...] = field(default=(), converter=_tuple)
    files_modified: tuple[str, ...] = field(default=(), converter=_tuple)
    index: int = 0


def _observation_tuple(values: Iterable[ParsedObservation]) -> tuple[ParsedObservation, ...]:
    return tuple(values)


@frozen(kw_only=True)
class ParsedObservations:
    observations: tuple[ParsedObservation, ...] = field(default=(), converter=_observation_tuple)
    skipped: bool = False
    skip_reason: str | None = None

    def indexed(self) -> Iterator[tuple[int, ParsedObservation]]:
        """``(index, observation)`` pairs; the index is the block's position in the answer."""
        return ((observation.index, observation) for observation in self.observations)


@frozen(kw_only=True)
class ParsedSummary:
    request: str | None = None
    investigated: str | None = None
    learned: str | None = None
    completed: str | None = None
    next_steps: str | None = None
    notes: str | None = None
    skipped: bool = False
    skip_reason: str | None = None


@frozen
class ParseFailure:
    reason: str


SUMMARY_FIELDS: tuple[str, ...] = (
    "request",
    "investigated",
    "learned",
    "completed",
    "next_steps",
    "notes",
)
# ``notes`` alone does not make a summary.
_SUBSTANTIVE_SUMMARY_FIELDS = SUMMARY_FIELDS[:-1]

_ENTITY_RE = re.compile(r"&(?:(lt|gt|amp|quot|apos)|#([0-9]{1,8})|#[xX]([0-9a-fA-F]{1,8}));")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
_SKIP_RE = re.compile(r"<skip_summary(?=[\s/>])([^<>]*)>", re.IGNORECASE)
_REASON_RE = re.compile(r"""reason\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)


def _entity(match: re.Match[str]) -> str:
    named, decimal, hexadecimal = match.groups()
    if named is not None:
        return _NAMED[named]
    code = int(decimal) if decimal is not None else int(hexadecimal, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return match.group(0)  # not a character XML allows; keep what the model wrote
    return chr(code)


def decode_entities(text: str) -> str:
    """Decode XML's five named entities and numeric references in one left-to-right pass."""
    return _ENTITY_RE.sub(_entity, text)


@functools.lru_cache(maxsize=64)
def _tag_patterns(name: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    # ``(?:\s[^<>]*)?`` allows attributes but not ``<name/>`` or a longer name like ``<facts>``
    # when looking for ``<fact>``; stopping at ``<`` keeps the scan linear on junk input.
    opening = re.compile(rf"<{re.escape(name)}(?:\s[^<>]*)?>", re.IGNORECASE)
    closing = re.compile(rf"</{re.escape(name)}\s*>", re.IGNORECASE)
    return opening, closing


def _elements(text: str, name: str) -> Iterator[str]:
    """Inner text of each ``<name>…</name>``, shortest match, left to right.

    A hand-rolled loop rather than one non-greedy regex: once an opening tag has no closing
    tag after it, no later one can have one either, so scanning stops (linear, not quadratic).
    """
    opening, closing = _tag_patterns(name)
    position = 0
    while True:
        start = opening.search(text, position)
        if start is None:
            return
        end = closing.search(text, start.end())
        if end is None:
            return
        yield text[start.end() : end.start()]
        position = end.end()


def _clean(raw: str) -> str | None:
    text = decode_entities(raw).strip()
    return text or None


def _scalar(block: str, name: str) -> str | None:
    for inner in _elements(block, name):
        return _clean(inner)
    return None


def _items(block: str, container: str, item: str) -> tuple[str, ...]:
    for inner in _elements(block, container):
        cleaned = (_clean(raw) for raw in _elements(inner, item))
        return tuple(text for text in cleaned if text is not None)
    return ()


def _skip_marker(text: str) -> tuple[bool, str | None]:
    marker = _SKIP_RE.search(text)
    if marker is None:
        return False, None
    reason = _REASON_RE.search(marker.group(1))
    if reason is None:
        return True, None
    raw = reason.group(1) if reason.group(1) is not None else reason.group(2)
    return True, _clean(raw)


def _observation(block: str, index: int, mode: Mode) -> ParsedObservation | None:
    raw_type = _scalar(block, "type")
    kind = mode.resolve_type(raw_type)
    if kind is None:
        logger.warning(
            "observation %d has type %r, not one of mode %r; using %r",
            index,
            raw_type,
            mode.name,
            mode.default_type,
        )
        kind = mode.default_type
    folded = kind.casefold()
    observation = ParsedObservation(
        type=kind,
        title=_scalar(block, "title"),
        subtitle=_scalar(block, "subtitle"),
        facts=_items(block, "facts", "fact"),
        narrative=_scalar(block, "narrative"),
        concepts=[c for c in _items(block, "concepts", "concept") if c.casefold() != folded],
        files_read=_items(block, "files_read", "file"),
        files_modified=_items(block, "files_modified", "file"),
        index=index,
    )
    if not (
        observation.title or observation.narrative or observation.facts or observation.concepts
    ):
        return None
    return observation


def parse_observations(text: object, mode: Mode = CODE_MODE) -> ParsedObservations | ParseFailure:
    """Observation blocks of a model answer, or a skip, or why neither was found."""
    if not isinstance(text, str) or not text.strip():
        return ParseFailure("empty response")
    found_block = False
    observations: list[ParsedObservation] = []
    for index, block in enumerate(_elements(text, "observation")):
        found_block = True
        parsed = _observation(block, index, mode)
        if parsed is not None:
            observations.append(parsed)
    if observations:
        return ParsedObservations(observations=observations)
    skipped, reason = _skip_marker(text)
    if skipped:
        return ParsedObservations(skipped=True, skip_reason=reason)
    if found_block:
        return ParseFailure("no observation block had a title, narrative, facts or concepts")
    return ParseFailure("no <observation> block or <skip_summary/> marker found")


def parse_summary(text: object) -> ParsedSummary | ParseFailure:
    """The first summary block of a model answer, or a skip, or why neither was found."""
    if not isinstance(text, str) or not text.strip():
        return ParseFailure("empty response")
    found_block = False
    for block in _elements(text, "summary"):
        found_block = True
        summary = ParsedSummary(
            request=_scalar(block, "request"),
            investigated=_scalar(block, "investigated"),
            learned=_scalar(block, "learned"),
            completed=_scalar(block, "completed"),
            next_steps=_scalar(block, "next_steps"),
            notes=_scalar(block, "notes"),
        )
        if any(getattr(summary, name) is not None for name in _SUBSTANTIVE_SUMMARY_FIELDS):
            return summary
        break  # only the first summary block counts
    skipped, reason = _skip_marker(text)
    if skipped:
        return ParsedSummary(skipped=True, skip_reason=reason)
    if found_block:
        return ParseFailure(
            "summary block has no request, investigated, learned, completed or next_steps"
        )
    return ParseFailure("no <summary> block or <skip_summary/> marker found")
