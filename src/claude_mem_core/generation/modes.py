"""Modes: the vocabulary of observation types and concepts the model is asked to use.

The prompt builder and the parser take the same :class:`Mode`, so the list the model is
shown is the list its answer is checked against (the original's parser had no list at all
in the server process and failed every job).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from attrs import field, frozen


def _names(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _not_empty(_instance: Any, attribute: Any, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError(f"a mode needs at least one {attribute.name[:-1]}")


@frozen
class Mode:
    """A named set of observation types (the first is the fallback) and concept ids."""

    name: str
    types: tuple[str, ...] = field(converter=_names, validator=_not_empty)
    concepts: tuple[str, ...] = field(default=(), converter=_names)

    @property
    def default_type(self) -> str:
        return self.types[0]

    def resolve_type(self, raw: str | None) -> str | None:
        """The canonical type id for ``raw`` (trimmed, case-insensitive), or ``None``."""
        if raw is None:
            return None
        wanted = raw.strip().casefold()
        for candidate in self.types:
            if candidate.casefold() == wanted:
                return candidate
        return None


CODE_MODE = Mode(
    name="code",
    types=(
        "bugfix",
        "feature",
        "refactor",
        "change",
        "discovery",
        "decision",
        "security_alert",
        "security_note",
    ),
    concepts=(
        "how-it-works",
        "why-it-exists",
        "what-changed",
        "problem-solution",
        "gotcha",
        "pattern",
        "trade-off",
    ),
)
