"""``claude-mem erase event|session|project ID --team TEAM``: erase what should never have
been stored, with everything derived from it (``services/erase.py``, docs/your-data.md).

It asks for confirmation unless ``--yes`` is given; without a terminal to ask on, it
refuses (exit 2) rather than guess. An id that is not in the team (or not in ``--project``)
is not found (exit 1). A project's rows are purged in batches, each reported on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from claude_mem_core.cli.commands import Commands
from claude_mem_core.cli.kit import (
    EXIT_FAILED,
    EXIT_OK,
    Parser,
    UsageError,
    emit,
    iso,
    positive,
    render_table,
)
from claude_mem_core.errors import NotFound

KINDS = ("event", "session", "project")


def _confirm(args: argparse.Namespace) -> bool:
    """True to go on: ``--yes``, or a ``y`` typed at the terminal."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            f"erase {args.kind}: stdin is not a terminal, so there is no one to confirm; "
            "pass --yes to erase without asking"
        )
    what = f"{args.kind} {args.id} of team {args.team}"
    print(
        f"Erase {what} and everything derived from it? This cannot be undone.",
        file=sys.stderr,
    )
    try:
        answer = input("Type y to erase: ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def _payload(erased: Any) -> dict[str, Any]:
    return {
        "kind": erased.kind,
        "id": erased.id,
        "teamId": erased.team_id,
        "projectId": erased.project_id,
        "erasedAt": iso(erased.erased_at),
        "removed": erased.counts,
        "requeuedJobs": erased.requeued_jobs,
        "cancelledJobs": erased.cancelled_jobs,
        "revokedKeys": erased.revoked_keys,
        "complete": erased.complete,
    }


def _show(erased: Any) -> None:
    print(
        f"Erased {erased.kind} {erased.id} (project {erased.project_id}, team "
        f"{erased.team_id}) at {iso(erased.erased_at)}"
    )
    rows = [{"removed": kind, "rows": n} for kind, n in erased.counts.items() if n]
    rows.append({"removed": "total", "rows": erased.removed.total})
    render_table(rows, ["removed", "rows"], sys.stdout)
    more = [
        ("jobs sent back to the queue", erased.requeued_jobs),
        ("jobs cancelled", erased.cancelled_jobs),
        ("API keys revoked", erased.revoked_keys),
    ]
    for label, n in more:
        if n:
            print(f"{label}: {n}")
    if not erased.complete:
        print("The purge is not finished: run the same command again, or let a worker finish it.")


async def cmd_erase(args: argparse.Namespace) -> int:
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import open_memory_from_settings
    from claude_mem_core.ports.erasure import ErasedRows
    from claude_mem_core.services import erase
    from claude_mem_core.services.context import Caller

    if not _confirm(args):
        print("Nothing erased.", file=sys.stderr)
        return EXIT_FAILED
    project = getattr(args, "project", None)
    caller = Caller(team_id=args.team, project_id=project, actor_id="system:cli")

    def progress(batch: int, step: ErasedRows) -> None:
        parts = ", ".join(f"{kind} {n}" for kind, n in step.as_dict().items() if n)
        print(
            f"batch {batch}: {step.total} row(s) purged ({parts or 'nothing left'})",
            file=sys.stderr,
        )

    async with open_memory_from_settings(Settings.from_env(), queue=False) as memory:
        deps = memory.deps
        try:
            if args.kind == "event":
                erased = await erase.erase_event(deps, caller, args.id)
            elif args.kind == "session":
                erased = await erase.erase_session(deps, caller, args.id)
            else:
                erased = await erase.erase_project(
                    deps, caller, args.id, batch_size=args.batch_size, progress=progress
                )
        except NotFound:
            where = f"project {project} of team {args.team}" if project else f"team {args.team}"
            raise NotFound(f"no {args.kind} {args.id} in {where}") from None
    emit(args, _payload(erased), table=lambda: _show(erased))
    return EXIT_OK


def register(commands: Commands) -> None:
    """``claude-mem erase event|session|project``."""
    parser = commands.add(
        "erase",
        help="erase an event, a session or a project and everything derived from it",
        after="embeddings",
    )
    kinds = parser.add_subparsers(dest="kind", required=True, parser_class=Parser)
    helps = {
        "event": "an event, its observations, search passages and jobs",
        "session": "a session, its events and every observation of it",
        "project": "a whole project: gone at once, its rows purged in batches",
    }
    for kind in KINDS:
        sub = kinds.add_parser(kind, help=helps[kind])
        sub.add_argument("id", help=f"the {kind}'s id")
        sub.add_argument("--team", required=True, help=f"the team the {kind} belongs to")
        if kind != "project":
            sub.add_argument("--project", help=f"the project the {kind} belongs to (optional)")
        else:
            sub.add_argument(
                "--batch-size",
                type=positive,
                default=500,
                help="rows of one table per purge transaction (default 500)",
            )
        sub.add_argument("--yes", action="store_true", help="erase without asking")
    parser.set_defaults(handler=cmd_erase)


__all__ = ["cmd_erase", "register"]
