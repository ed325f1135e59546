"""What every ``claude-mem`` command shares, whichever package adds it: exit codes, the
parser that turns bad arguments into exit 2, argument types, output helpers, and
:func:`run`, which parses a command line and runs its handler with the CLI's error
handling (a message, never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

from claude_mem_core.errors import ClaudeMemError, Conflict, InvalidInput, NotFound

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
"""What a command runs: ``async def handler(args) -> exit code``, set with
``parser.set_defaults(handler=...)``."""

ACCEPTS_ANY_ARGUMENTS = "_accepts_any_arguments"
"""A parser default: the command takes whatever follows it (a command that could not be
loaded, which only explains why)."""


class UsageError(Exception):
    """Bad command-line arguments (exit 2)."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`UsageError` (exit 2), not ``SystemExit``."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def positive(value: str) -> int:
    """An argument type: a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return number


def non_negative(value: str) -> int:
    """An argument type: a whole number of 0 or more."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be 0 or more")
    return number


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def render_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    """A plain aligned table; ``-`` for empty cells."""
    cells = [[("-" if r.get(c) in (None, "") else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print(
        "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
        file=out,
    )
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=out)


def emit(
    args: argparse.Namespace,
    payload: Any,
    *,
    table: Callable[[], None] | None = None,
    text: str | None = None,
) -> None:
    """Print ``payload`` as JSON with ``--json`` (or when there is nothing else to show),
    else the table or the text."""
    if args.json or (table is None and text is None):
        print(json.dumps(payload, indent=2, default=str))
    elif table is not None:
        table()
    else:
        print(text)


def _json_flag(argv: list[str]) -> tuple[list[str], bool]:
    # --json is accepted anywhere on the line, not only before the subcommand.
    return [a for a in argv if a != "--json"], "--json" in argv


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the chosen handler and return the exit
    code: 2 for bad arguments, 1 for a failed operation, each with a message on stderr."""
    raw, as_json = _json_flag(list(sys.argv[1:] if argv is None else argv))
    try:
        args, unknown = parser.parse_known_args(raw)
        if unknown and not getattr(args, ACCEPTS_ANY_ARGUMENTS, False):
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.json = as_json
        handler: Handler = args.handler
        return asyncio.run(handler(args))
    except UsageError as exc:
        print(f"{exc}\nRun `claude-mem --help` for usage.", file=sys.stderr)
        return EXIT_USAGE
    except InvalidInput as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except (NotFound, Conflict) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except ClaudeMemError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: a message, never a traceback
        if os.environ.get("CLAUDE_MEM_DEBUG"):
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {exc}\n"
            "Set CLAUDE_MEM_DEBUG=1 to see the traceback.",
            file=sys.stderr,
        )
        return EXIT_FAILED


__all__ = [
    "ACCEPTS_ANY_ARGUMENTS",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Handler",
    "Parser",
    "UsageError",
    "emit",
    "iso",
    "non_negative",
    "positive",
    "render_table",
    "run",
]
