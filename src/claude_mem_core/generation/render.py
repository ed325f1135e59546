"""Rendering parsed results: back to the XML a model returns, and to stored content text.

``render_observations`` / ``render_summary`` produce exactly what the parser accepts, so the
offline provider and tests can go render → parse and get the same values back (for values
that are already normalised: trimmed, no empty strings or list items).
"""

from __future__ import annotations

from collections.abc import Iterable

from claude_mem_core.generation.parser import ParsedObservation, ParsedSummary
from claude_mem_core.generation.privacy import strip_tags

_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&apos;"))

SUMMARY_LABELS: tuple[tuple[str, str], ...] = (
    ("request", "Request"),
    ("investigated", "Investigated"),
    ("learned", "Learned"),
    ("completed", "Completed"),
    ("next_steps", "Next steps"),
    ("notes", "Notes"),
)


def escape_xml(text: str) -> str:
    """Escape the five XML specials; ampersand first so nothing is escaped twice."""
    for raw, entity in _ESCAPES:
        text = text.replace(raw, entity)
    return text


def render_skip(reason: str | None = None) -> str:
    if reason is None:
        return "<skip_summary />"
    return f'<skip_summary reason="{escape_xml(reason)}" />'


def _scalar(lines: list[str], name: str, value: str | None) -> None:
    if value is not None:
        lines.append(f"  <{name}>{escape_xml(value)}</{name}>")


def _list(lines: list[str], container: str, item: str, values: Iterable[str]) -> None:
    values = tuple(values)
    if not values:
        return
    lines.append(f"  <{container}>")
    lines.extend(f"    <{item}>{escape_xml(value)}</{item}>" for value in values)
    lines.append(f"  </{container}>")


def render_observation(observation: ParsedObservation) -> str:
    lines = ["<observation>"]
    _scalar(lines, "type", observation.type)
    _scalar(lines, "title", observation.title)
    _scalar(lines, "subtitle", observation.subtitle)
    _list(lines, "facts", "fact", observation.facts)
    _scalar(lines, "narrative", observation.narrative)
    _list(lines, "concepts", "concept", observation.concepts)
    _list(lines, "files_read", "file", observation.files_read)
    _list(lines, "files_modified", "file", observation.files_modified)
    lines.append("</observation>")
    return "\n".join(lines)


def render_observations(observations: Iterable[ParsedObservation]) -> str:
    """Observation blocks separated by newlines; empty input gives an empty string."""
    return "\n".join(render_observation(observation) for observation in observations)


def render_summary(summary: ParsedSummary) -> str:
    """A summary block, or the skip marker when the summary is a skip."""
    if summary.skipped:
        return render_skip(summary.skip_reason)
    lines = ["<summary>"]
    for name, _label in SUMMARY_LABELS:
        _scalar(lines, name, getattr(summary, name))
    lines.append("</summary>")
    return "\n".join(lines)


def _stripped_parts(values: Iterable[str | None]) -> list[str]:
    return [text for value in values if value and (text := strip_tags(value).text)]


def observation_content(parsed: ParsedObservation) -> str:
    """The searchable text stored for an observation; empty means "do not store".

    Title, subtitle, narrative and the facts as ``- fact`` lines, joined by blank lines.
    Each part is privacy-stripped on its own (so an unclosed tag in one field does not eat
    the others), then the whole once more, since joining parts could form a new tag.
    """
    parts = _stripped_parts((parsed.title, parsed.subtitle, parsed.narrative))
    facts = _stripped_parts(parsed.facts)
    if facts:
        parts.append("\n".join(f"- {fact}" for fact in facts))
    return strip_tags("\n\n".join(parts)).text


def summary_content(parsed: ParsedSummary) -> str:
    """Labelled ``Request: …`` lines joined by blank lines, privacy-stripped; empty for skips.

    A field that is empty after stripping is left out, like a missing one.
    """
    if parsed.skipped:
        return ""
    parts = [
        f"{label}: {text}"
        for name, label in SUMMARY_LABELS
        for text in _stripped_parts([getattr(parsed, name)])
    ]
    return strip_tags("\n\n".join(parts)).text
