"""``claude-mem``: the operator's command line.

Readable tables by default, ``--json`` for scripts. Bad arguments exit 2 with a message;
a failed operation (not found, conflict, unreachable database) exits 1 with a message that
says what to do. Never a traceback.

Core's own commands are in :mod:`~claude_mem_core.cli.admin`,
:mod:`~claude_mem_core.cli.erase`, :mod:`~claude_mem_core.cli.retention` and
:mod:`~claude_mem_core.cli.usage`; the others (``serve``, ``worker``, ``hook``,
``install``, ``mcp``, ``import`` …) are added by their packages through the
``claude_mem.cli`` entry-point group (:mod:`~claude_mem_core.cli.commands`), so core
imports none of them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from claude_mem_core.cli import admin, budget, erase, retention, usage
from claude_mem_core.cli.commands import Commands, load_entry_points
from claude_mem_core.cli.kit import Parser, run


def build_parser() -> argparse.ArgumentParser:
    """The ``claude-mem`` parser: core's commands, then those of the installed entry points."""
    parser = Parser(prog="claude-mem", description="Memory engine for coding agents.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    commands = Commands(parser.add_subparsers(dest="command", required=True, parser_class=Parser))
    admin.register(commands)
    erase.register(commands)
    retention.register(commands)
    usage.register(commands)
    budget.register(commands)
    load_entry_points(commands)
    commands.arrange()
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``claude-mem`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    return run(build_parser(), argv)


__all__ = ["build_parser", "main"]
