"""The ``claude-mem`` command registry, and the commands other packages add to it through
the ``claude_mem.cli`` entry-point group.

Core adds its own commands (:mod:`claude_mem_core.cli.admin`) and imports no other
package: every other command comes from an entry point in the group, named after the
command, whose object is ``register(commands: Commands) -> None``::

    [project.entry-points."claude_mem.cli"]
    serve = "claude_mem_http.server.cli:register [http]"

The extras in brackets name what the command needs installed. When loading an entry point
fails with ``ImportError`` (an extra is not installed), the command is still listed and,
when run, says which extra to install and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from importlib import metadata
from typing import TYPE_CHECKING

from claude_mem_core.cli.kit import (
    ACCEPTS_ANY_ARGUMENTS,
    EXIT_FAILED,
    EXIT_USAGE,
    Handler,
    Parser,
)
from claude_mem_core.distribution import DISTRIBUTION

if TYPE_CHECKING:
    from typing import TypeAlias

    SubParsers: TypeAlias = argparse._SubParsersAction[Parser]

ENTRY_POINT_GROUP = "claude_mem.cli"
ROOT = ""
"""The group of ``claude-mem <command>``; ``under="server"`` is ``claude-mem server …``."""


class Commands:
    """The commands of ``claude-mem``, as a package's ``register`` function sees them."""

    def __init__(self, root: SubParsers) -> None:
        self._groups: dict[str, SubParsers] = {ROOT: root}
        self._after: dict[str, dict[str, str]] = {ROOT: {}}

    def add(self, name: str, *, help: str, after: str | None = None, under: str = ROOT) -> Parser:
        """Add ``claude-mem NAME`` (``claude-mem UNDER NAME`` with ``under``) and return its
        parser; set its handler with ``parser.set_defaults(handler=...)``. ``--help`` lists
        it right after the command ``after`` when there is one, else in the order added."""
        if under not in self._groups:
            raise KeyError(f"no command group {under!r} (known: {sorted(self._groups)})")
        parser = self._groups[under].add_parser(name, help=help)
        if after is not None:
            self._after[under][name] = after
        return parser

    def add_group(self, name: str, parser: Parser, *, dest: str) -> SubParsers:
        """Give the command ``parser`` (added as ``name``) subcommands, which other packages
        can add to with ``add(..., under=name)``."""
        sub = parser.add_subparsers(dest=dest, required=True, parser_class=Parser)
        self._groups[name] = sub
        self._after[name] = {}
        return sub

    def __contains__(self, name: object) -> bool:
        return name in self._groups[ROOT]._name_parser_map

    def arrange(self) -> None:
        """Put each command asked to come after another right after it (``--help``, the
        usage line and the "invalid choice" message all list commands in this order)."""
        for under, after in self._after.items():
            if after:
                sub = self._groups[under]
                _reorder(sub, _ordered(list(sub._name_parser_map), after))

    def add_unavailable(self, name: str, reason: str, code: int) -> None:
        """Add ``claude-mem NAME`` that only prints ``reason`` and exits ``code``, whatever
        follows it (``--help`` included): a command whose package could not be loaded."""
        if name in self:  # it was added before loading failed
            return
        parser = self._groups[ROOT].add_parser(name, help=f"unavailable: {reason}", add_help=False)
        parser.set_defaults(handler=_explain(reason, code), **{ACCEPTS_ANY_ARGUMENTS: True})


def _ordered(names: list[str], after: dict[str, str]) -> list[str]:
    placed = [n for n in names if n not in after or after[n] not in names]
    pending = [n for n in names if n not in placed]
    while pending:
        ready = [n for n in pending if after[n] in placed]
        if not ready:  # commands asking to follow each other: leave them where they were
            placed += pending
            break
        for name in ready:
            anchor = after[name]
            at = placed.index(anchor) + 1
            while at < len(placed) and after.get(placed[at]) == anchor:
                at += 1  # after the commands already placed behind the same one
            placed.insert(at, name)
            pending.remove(name)
    return placed


def _reorder(sub: SubParsers, names: list[str]) -> None:
    # argparse keeps the order commands were added in two places: the name -> parser map
    # (the usage line, "invalid choice") and the help lines (--help). Both are reordered.
    parsers = dict(sub._name_parser_map)
    sub._name_parser_map.clear()
    sub._name_parser_map.update((n, parsers[n]) for n in names)
    lines = {action.dest: action for action in sub._choices_actions}
    sub._choices_actions[:] = [lines[n] for n in names if n in lines]


# -- entry points ---------------------------------------------------------------------------


def find_entry_points() -> list[metadata.EntryPoint]:
    """The installed entry points of the ``claude_mem.cli`` group."""
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def load_entry_points(
    commands: Commands, entries: Iterable[metadata.EntryPoint] | None = None
) -> None:
    """Let each entry point of the group add its command; one that cannot be loaded leaves
    a command that says why (and, for a missing extra, what to install)."""
    for entry in find_entry_points() if entries is None else entries:
        try:
            register = entry.load()
            register(commands)
        except ImportError as exc:
            commands.add_unavailable(entry.name, _missing_extra(entry, exc), EXIT_USAGE)
        except Exception as exc:
            reason = f"`claude-mem {entry.name}` cannot be loaded: {type(exc).__name__}: {exc}"
            commands.add_unavailable(entry.name, reason, EXIT_FAILED)


def _missing_extra(entry: metadata.EntryPoint, exc: ImportError) -> str:
    distribution = entry.dist.name if entry.dist is not None else DISTRIBUTION
    extras = list(entry.extras)
    what = f"`claude-mem {entry.name}`"
    if not extras:
        return f"{what} cannot be loaded ({exc}): reinstall {distribution}"
    needs = (
        f"the '{extras[0]}' extra"
        if len(extras) == 1
        else "the extras " + ", ".join(f"'{e}'" for e in extras)
    )
    return f"{what} needs {needs}: pip install '{distribution}[{','.join(extras)}]' ({exc})"


def _explain(reason: str, code: int) -> Handler:
    async def explain(args: argparse.Namespace) -> int:
        print(f"error: {reason}", file=sys.stderr)
        return code

    return explain


__all__ = ["ENTRY_POINT_GROUP", "ROOT", "Commands", "find_entry_points", "load_entry_points"]
