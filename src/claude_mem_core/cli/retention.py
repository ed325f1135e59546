"""``claude-mem retention set|run``: how long a project keeps its agents' data, and the
sweep that erases what is older (``services/retention.py``, docs/your-data.md).

* ``claude-mem retention set PROJECT --team TEAM --days N`` (or ``--keep`` to keep until
  erased by hand);
* ``claude-mem retention run [--team TEAM] [--project PROJECT]``: one sweep now, rather
  than waiting for a worker's or the embedded server's (every few minutes), with a table of
  what each project erased.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from claude_mem_core.cli.commands import Commands
from claude_mem_core.cli.kit import EXIT_OK, Parser, UsageError, emit, iso, render_table
from claude_mem_core.errors import NotFound


def _days(value: str) -> int:
    from claude_mem_core.services.retention import MAX_RETAIN_DAYS

    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of days") from None
    if not 1 <= days <= MAX_RETAIN_DAYS:
        raise argparse.ArgumentTypeError(f"days must be between 1 and {MAX_RETAIN_DAYS}")
    return days


async def cmd_set(args: argparse.Namespace) -> int:
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import open_memory_from_settings
    from claude_mem_core.services import retention
    from claude_mem_core.services.context import Caller

    if args.days is None and not args.keep:
        raise UsageError("retention set: give --days N, or --keep to keep until erased")
    caller = Caller(team_id=args.team, actor_id="system:cli")
    async with open_memory_from_settings(Settings.from_env(), queue=False) as memory:
        try:
            project = await retention.set_retention(memory.deps, caller, args.project, args.days)
        except NotFound:
            raise NotFound(f"no project {args.project} in team {args.team}") from None
    payload = {"projectId": project.id, "teamId": project.team_id, "retainDays": args.days}

    def show() -> None:
        kept = f"{args.days} day(s) after their last activity" if args.days else "until erased"
        print(f"Project {project.name} ({project.id}) keeps its sessions and events {kept}.")

    emit(args, payload, table=show)
    return EXIT_OK


async def cmd_run(args: argparse.Namespace) -> int:
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import open_memory_from_settings
    from claude_mem_core.services import retention

    async with open_memory_from_settings(Settings.from_env(), queue=False) as memory:
        swept = await retention.sweep(memory.deps, team_id=args.team, project_id=args.project)
    rows: list[dict[str, Any]] = [
        {
            "projectId": s.project_id,
            "teamId": s.team_id,
            "retainDays": s.retain_days,
            "before": iso(s.cutoff),
            "sessions": s.sessions,
            "events": s.events,
            "rows": s.rows,
        }
        for s in swept
    ]

    def show() -> None:
        if not rows:
            print("No project has a retention: nothing to sweep.")
            return
        table = [
            {
                "project": r["projectId"],
                "days": r["retainDays"],
                "erased before": r["before"],
                "sessions": r["sessions"],
                "events": r["events"],
                "rows": r["rows"],
            }
            for r in rows
        ]
        render_table(table, list(table[0]), sys.stdout)
        if any(s.sessions >= retention.SESSIONS_PER_ROUND for s in swept):
            print("More is due than one round erases: run it again, or let a worker go on.")

    emit(args, {"projects": rows}, table=show)
    return EXIT_OK


def register(commands: Commands) -> None:
    """``claude-mem retention set|run``."""
    parser = commands.add(
        "retention",
        help="keep a project's sessions and events for N days, and sweep what is older",
        after="erase",
    )
    actions = parser.add_subparsers(dest="action", required=True, parser_class=Parser)
    set_parser = actions.add_parser("set", help="set or remove a project's retention")
    set_parser.add_argument("project", help="the project's id")
    set_parser.add_argument("--team", required=True, help="the team the project belongs to")
    how_long = set_parser.add_mutually_exclusive_group()
    how_long.add_argument(
        "--days", type=_days, help="days kept after a session's or event's last activity"
    )
    how_long.add_argument("--keep", action="store_true", help="keep until erased by hand")
    set_parser.set_defaults(handler=cmd_set)
    run_parser = actions.add_parser("run", help="erase what is older than retention now")
    run_parser.add_argument("--team", help="only this team's projects")
    run_parser.add_argument("--project", help="only this project")
    run_parser.set_defaults(handler=cmd_run)


__all__ = ["cmd_run", "cmd_set", "register"]
