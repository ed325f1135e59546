"""``claude-mem usage --team TEAM [--project P] [--days N] [--by day|model|project]``: what
generation cost, from the token ledger (``services/usage.py``): calls, tokens and the
estimated US dollars, as a table (``--json`` for scripts)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from claude_mem_core.cli.budget import describe, status_payload
from claude_mem_core.cli.commands import Commands
from claude_mem_core.cli.kit import EXIT_OK, emit, iso, positive, render_table


def _row(group: str, r: Any) -> dict[str, Any]:
    return {
        group: r.group,
        "calls": r.calls,
        "input tokens": r.input_tokens,
        "output tokens": r.output_tokens,
        "cost (USD)": f"{r.cost_usd:.4f}" + ("+" if r.unpriced_calls else ""),
        "unpriced calls": r.unpriced_calls,
    }


async def cmd_usage(args: argparse.Namespace) -> int:
    from claude_mem_core.config import Settings
    from claude_mem_core.domain.prices import PRICES_AS_OF
    from claude_mem_core.facade import open_memory_from_settings
    from claude_mem_core.services import budgets, usage
    from claude_mem_core.services.context import Caller

    caller = Caller(team_id=args.team, actor_id="system:cli")
    async with open_memory_from_settings(Settings.from_env(), queue=False) as memory:
        report = await usage.report(
            memory.deps, caller, project_id=args.project, days=args.days, group_by=args.by
        )
        status = None
        if report.project_id is not None:
            status = await budgets.status(memory.deps, caller, report.project_id)
    payload = {
        "teamId": report.team_id,
        "projectId": report.project_id,
        "since": iso(report.since),
        "until": iso(report.until),
        "groupBy": report.group_by,
        "rows": [
            {
                "group": r.group,
                "calls": r.calls,
                "inputTokens": r.input_tokens,
                "outputTokens": r.output_tokens,
                "costUsd": r.cost_usd,
                "unpricedCalls": r.unpriced_calls,
            }
            for r in (*report.rows, report.total)
        ],
        "pricesAsOf": PRICES_AS_OF,
        "budget": status_payload(status),
    }

    def show() -> None:
        if status is not None:
            print(describe(status))
        if not report.rows:
            print(f"No provider calls in the last {args.days} day(s).")
            return
        rows = [_row(args.by, r) for r in (*report.rows, report.total)]
        render_table(rows, list(rows[0]), sys.stdout)
        print(f"Costs are estimates from list prices as of {PRICES_AS_OF}", end="")
        if report.total.unpriced_calls:
            print("; + marks calls of models without a known price (CLAUDE_MEM_PRICES)", end="")
        print(".")

    emit(args, payload, table=show)
    return EXIT_OK


def register(commands: Commands) -> None:
    """``claude-mem usage``."""
    parser = commands.add(
        "usage", help="what generation cost: provider calls, tokens, dollars", after="retention"
    )
    parser.add_argument("--team", required=True, help="the team whose usage to show")
    parser.add_argument("--project", help="only this project")
    parser.add_argument("--days", type=positive, default=30, help="the last N days (default 30)")
    parser.add_argument(
        "--by", choices=("day", "model", "project"), default="day", help="group by (default day)"
    )
    parser.set_defaults(handler=cmd_usage)


__all__ = ["cmd_usage", "register"]
