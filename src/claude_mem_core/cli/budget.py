"""``claude-mem budget set|show|clear``: what a project's generation may spend per UTC day
or month (``services/budgets.py``; jobs beyond it stay queued until the next period).

* ``claude-mem budget set PROJECT --team TEAM [--period day|month] [--tokens N] [--usd X]``
* ``claude-mem budget show PROJECT --team TEAM``: the limits, what this period spent,
  reserved and has left;
* ``claude-mem budget clear PROJECT --team TEAM``.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from claude_mem_core.cli.commands import Commands
from claude_mem_core.cli.kit import EXIT_OK, Parser, UsageError, emit, iso, positive
from claude_mem_core.errors import NotFound


def _usd(value: str) -> float:
    try:
        usd = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of US dollars") from None
    if not math.isfinite(usd) or usd <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be more than 0")
    return usd


def status_payload(status: Any) -> dict[str, Any] | None:
    """A budget's status (``services.budgets.BudgetStatus``) for ``--json``."""
    if status is None:
        return None
    b, p = status.budget, status.period
    return {
        "projectId": b.project_id,
        "teamId": b.team_id,
        "period": b.period,
        "tokenLimit": b.token_limit,
        "usdLimit": b.usd_limit,
        "periodStart": iso(p.start),
        "periodEnd": iso(status.period_end),
        "spentTokens": p.spent_tokens,
        "spentUsd": round(p.spent_usd, 6),
        "reservedTokens": p.reserved_tokens,
        "remainingTokens": status.remaining_tokens,
        "remainingUsd": None if status.remaining_usd is None else round(status.remaining_usd, 6),
        "exhausted": status.exhausted,
    }


def describe(status: Any) -> str:
    """One paragraph saying a budget's state, for people."""
    b, p = status.budget, status.period
    lines = [f"Budget per {b.period} (UTC), until {iso(status.period_end)}:"]
    if b.token_limit is not None:
        lines.append(
            f"  tokens: {p.spent_tokens} spent, {p.reserved_tokens} reserved, "
            f"{status.remaining_tokens} left of {b.token_limit}"
        )
    if b.usd_limit is not None:
        lines.append(
            f"  USD (estimated): {p.spent_usd:.4f} spent, {status.remaining_usd:.4f} left "
            f"of {b.usd_limit:.2f}"
        )
    if status.exhausted:
        lines.append("  Spent: jobs wait, queued, until the next period or a raised budget.")
    return "\n".join(lines)


async def _run(args: argparse.Namespace, action: str) -> int:
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import open_memory_from_settings
    from claude_mem_core.services import budgets
    from claude_mem_core.services.context import Caller

    caller = Caller(team_id=args.team, actor_id="system:cli")
    async with open_memory_from_settings(Settings.from_env(), queue=False) as memory:
        try:
            if action == "set":
                status = await budgets.set_budget(
                    memory.deps,
                    caller,
                    args.project,
                    period=args.period,
                    token_limit=args.tokens,
                    usd_limit=args.usd,
                )
            elif action == "clear":
                status = await budgets.set_budget(memory.deps, caller, args.project, period=None)
            else:
                status = await budgets.status(memory.deps, caller, args.project)
        except NotFound:
            raise NotFound(f"no project {args.project} in team {args.team}") from None

    def show() -> None:
        if status is None:
            print(f"Project {args.project} has no budget: its generation is not limited.")
        else:
            print(describe(status))

    emit(args, {"projectId": args.project, "budget": status_payload(status)}, table=show)
    return EXIT_OK


async def cmd_set(args: argparse.Namespace) -> int:
    if args.tokens is None and args.usd is None:
        raise UsageError("budget set: give --tokens N and/or --usd X (or use budget clear)")
    return await _run(args, "set")


async def cmd_show(args: argparse.Namespace) -> int:
    return await _run(args, "show")


async def cmd_clear(args: argparse.Namespace) -> int:
    return await _run(args, "clear")


def register(commands: Commands) -> None:
    """``claude-mem budget set|show|clear``."""
    parser = commands.add(
        "budget", help="limit what a project's generation spends per day or month", after="usage"
    )
    actions = parser.add_subparsers(dest="action", required=True, parser_class=Parser)
    for name, handler, text in (
        ("set", cmd_set, "set the project's budget"),
        ("show", cmd_show, "show the budget and what this period spent and has left"),
        ("clear", cmd_clear, "remove the budget (held jobs run at once)"),
    ):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("project", help="the project's id")
        sub.add_argument("--team", required=True, help="the team the project belongs to")
        sub.set_defaults(handler=handler)
        if name == "set":
            sub.add_argument(
                "--period", choices=["day", "month"], default="month", help="UTC (default month)"
            )
            sub.add_argument("--tokens", type=positive, help="tokens (input + output) per period")
            sub.add_argument("--usd", type=_usd, help="estimated US dollars per period")
