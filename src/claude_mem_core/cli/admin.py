"""The commands core runs by itself: ``migrate``, ``teams``, ``projects``, ``api-key``,
``jobs``, ``embeddings``, and ``server`` (the reference's spellings ``server api-key …``,
``server jobs …``; the worker package adds ``server worker start``).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from claude_mem_core.cli.commands import ROOT, Commands
from claude_mem_core.cli.kit import (
    EXIT_FAILED,
    EXIT_OK,
    Parser,
    UsageError,
    emit,
    iso,
    non_negative,
    positive,
    render_table,
)
from claude_mem_core.errors import ClaudeMemError

# -- command implementations --------------------------------------------------------------


def _settings() -> Any:
    from claude_mem_core.config import Settings

    return Settings.from_env()


def _open(*, queue: bool = False) -> Any:
    from claude_mem_core.facade import open_memory_from_settings

    return open_memory_from_settings(_settings(), queue=queue)


async def cmd_migrate(args: argparse.Namespace) -> int:
    from claude_mem_core.migrations import HEAD_REVISION, current_revision, upgrade

    settings = _settings()
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    before = await current_revision(settings.database_url)
    await upgrade(settings.database_url)
    after = await current_revision(settings.database_url)
    emit(
        args,
        {
            "database": _redact(settings.database_url),
            "from": before,
            "to": after,
            "head": HEAD_REVISION,
        },
        text=f"Database {_redact(settings.database_url)} migrated: {before or 'empty'} -> {after}",
    )
    return EXIT_OK


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
    return url


async def cmd_teams(args: argparse.Namespace) -> int:
    async with _open() as mem:
        if args.action == "create":
            team = await mem.create_team(args.name)
            row = {"id": team.id, "name": team.name, "createdAt": iso(team.created_at)}
            emit(args, row, text=f"Created team {team.name} ({team.id})")
            return EXIT_OK
        teams, total = await mem.list_teams(limit=args.limit, offset=args.offset)
        rows = [{"id": t.id, "name": t.name, "createdAt": iso(t.created_at)} for t in teams]
    emit(
        args,
        {"teams": rows, "total": total, "limit": args.limit, "offset": args.offset},
        table=lambda: _paged_table(rows, ["id", "name", "createdAt"], total, args),
    )
    return EXIT_OK


async def cmd_projects(args: argparse.Namespace) -> int:
    async with _open() as mem:
        if args.action == "create":
            project = await mem.create_project(args.team, args.name)
            row = {
                "id": project.id,
                "teamId": project.team_id,
                "name": project.name,
                "createdAt": iso(project.created_at),
            }
            emit(args, row, text=f"Created project {project.name} ({project.id})")
            return EXIT_OK
        projects, total = await mem.list_projects(args.team, limit=args.limit, offset=args.offset)
        rows = [
            {"id": p.id, "teamId": p.team_id, "name": p.name, "createdAt": iso(p.created_at)}
            for p in projects
        ]
    emit(
        args,
        {"projects": rows, "total": total, "limit": args.limit, "offset": args.offset},
        table=lambda: _paged_table(rows, ["id", "name", "createdAt"], total, args),
    )
    return EXIT_OK


def _paged_table(
    rows: list[dict[str, Any]], columns: list[str], total: int, args: argparse.Namespace
) -> None:
    render_table(rows, columns, sys.stdout)
    shown_to = args.offset + len(rows)
    print(f"\n{len(rows)} shown ({args.offset + 1 if rows else 0}-{shown_to} of {total})")


def _key_row(key: Any) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "teamId": key.team_id,
        "projectId": key.project_id,
        "scopes": sorted(key.scopes),
        "status": "revoked" if key.revoked_at else "active",
        "expiresAt": iso(key.expires_at),
        "lastUsedAt": iso(key.last_used_at),
        "createdAt": iso(key.created_at),
    }


def _parse_expires(value: str | None) -> datetime | None:
    if value is None:
        return None
    text = value.strip()
    units = {"d": 86400, "h": 3600, "m": 60}
    if text[:-1].isdigit() and text[-1:] in units:
        from datetime import timedelta

        return datetime.now(UTC) + timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--expires {value!r}: use an ISO date/time or a duration like 30d, 12h"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def cmd_api_key(args: argparse.Namespace) -> int:
    async with _open() as mem:
        if args.action == "create":
            scopes = [
                s
                for part in (args.scopes or ["memories:read,memories:write"])
                for s in part.split(",")
                if s.strip()
            ]
            issued = await mem.create_api_key(
                team_id=args.team,
                project_id=args.project,
                scopes=scopes,
                name=args.name,
                expires_at=_parse_expires(args.expires),
                actor_id="system:cli",
            )
            row = {**_key_row(issued.key), "key": issued.raw_key}
            emit(
                args,
                row,
                text=(
                    f"Created API key {issued.key.id} ({', '.join(row['scopes'])})\n\n"
                    f"  {issued.raw_key}\n\n"
                    "Store it now: it is shown once and cannot be recovered."
                ),
            )
            return EXIT_OK
        if args.action == "list":
            keys, total = await mem.list_api_keys(
                team_id=args.team, project_id=args.project, limit=args.limit, offset=args.offset
            )
            rows = [_key_row(k) for k in keys]
            for r in rows:
                r["scopes"] = ",".join(r["scopes"])
            emit(
                args,
                {
                    "keys": rows,
                    "total": total,
                    "count": len(rows),
                    "limit": args.limit,
                    "offset": args.offset,
                    "teamId": args.team,
                },
                table=lambda: _paged_table(
                    rows,
                    ["id", "name", "teamId", "projectId", "scopes", "status", "expiresAt"],
                    total,
                    args,
                ),
            )
            return EXIT_OK
        if args.action == "revoke":
            key = await mem.revoke_api_key(args.key_id)
            emit(
                args,
                {"id": key.id, "status": "revoked", "revokedAt": iso(key.revoked_at)},
                text=f"Revoked API key {key.id}; requests using it are refused from now on.",
            )
            return EXIT_OK
        issued = await mem.rotate_api_key(args.key_id)
        row = {**_key_row(issued.key), "key": issued.raw_key, "replaces": args.key_id}
        emit(
            args,
            row,
            text=(
                f"Rotated {args.key_id} -> {issued.key.id} (old key revoked)\n\n"
                f"  {issued.raw_key}\n\nStore it now: it is shown once."
            ),
        )
    return EXIT_OK


async def cmd_jobs(args: argparse.Namespace) -> int:
    from claude_mem_core.domain.models import JobStatus
    from claude_mem_core.services import jobs
    from claude_mem_core.services.context import Caller

    if not args.team:
        raise UsageError("jobs: --team is required (the jobs of which team?)")
    caller = Caller(team_id=args.team, project_id=args.project, actor_id="system:cli")
    async with _open(queue=True) as mem:
        deps = mem.deps
        if args.action == "status":
            counts = await jobs.job_counts(deps, args.team)
            try:
                depth = await deps.queue.depth() if deps.queue else {}
                queue_error = None
            except ClaudeMemError as exc:
                depth, queue_error = {}, str(exc)
            waiting = sum(depth.values())
            queued = counts.get(JobStatus.QUEUED, 0)
            divergence: dict[str, Any] = {}
            if queue_error:
                divergence["reason"] = f"queue unavailable: {queue_error}"
            elif deps.queue is not None and deps.queue.name != "memory" and queued != waiting:
                divergence["queuedMismatch"] = {"database": queued, "queue": waiting}
            payload = {
                "team": args.team,
                "project": args.project,
                "database": {s.value: n for s, n in counts.items()},
                "queue": {"engine": deps.queue.name if deps.queue else None, "lanes": depth},
                "divergence": divergence,
            }

            def show() -> None:
                render_table(
                    [{"status": s.value, "jobs": n} for s, n in counts.items()],
                    ["status", "jobs"],
                    sys.stdout,
                )
                print(f"\nqueue ({payload['queue']['engine']}): {waiting} waiting")
                if divergence:
                    print(
                        f"DIVERGENCE: {json.dumps(divergence)} -- reconciliation in the "
                        "worker republishes queued rows; check that a worker is running."
                    )

            emit(args, payload, table=show)
            return EXIT_OK
        if args.action == "failed":
            page = await jobs.list_jobs(
                deps,
                caller,
                project_id=args.project,
                status=JobStatus.FAILED,
                limit=args.limit,
            )
            rows = [
                {
                    "id": j.id,
                    "sourceType": j.source_type.value,
                    "attempts": j.attempts,
                    "failedAt": iso(j.failed_at),
                    "lastError": (j.last_error or {}).get("reason"),
                }
                for j in page.jobs
            ]
            emit(
                args,
                {"failed": rows, "count": len(rows), "total": page.total},
                table=lambda: render_table(
                    rows, ["id", "sourceType", "attempts", "failedAt", "lastError"], sys.stdout
                ),
            )
            return EXIT_OK
        if args.action == "retry":
            outcome = await jobs.retry_job(deps, caller, args.job_id, source="cli_operator_retry")
            result = {
                "id": outcome.job.id,
                "action": "retry",
                "outcome": "noop_already_queued" if outcome.already_queued else "requeued",
                "retriedCount": outcome.retried_count,
                "status": outcome.job.status.value,
                "attempts": outcome.job.attempts,
            }
            emit(args, result, text=f"Job {outcome.job.id}: {result['outcome']}")
            return EXIT_OK
        cancelled = await jobs.cancel_job(deps, caller, args.job_id, source="cli_operator_cancel")
        result = {
            "id": cancelled.job.id,
            "action": "cancel",
            "outcome": "noop_already_cancelled" if cancelled.already_cancelled else "cancelled",
            "status": cancelled.job.status.value,
        }
        emit(args, result, text=f"Job {cancelled.job.id}: {result['outcome']}")
    return EXIT_OK


async def cmd_embeddings(args: argparse.Namespace) -> int:
    """``embeddings backfill``: embed every passage still without a vector of the configured
    model; progress on stderr, the summary on stdout."""
    if args.project and not args.team:
        raise UsageError("embeddings backfill: --project needs --team")
    settings = _settings()
    if not settings.embeddings_enabled:
        raise ClaudeMemError(
            "semantic recall is off: set CLAUDE_MEM_EMBEDDINGS_URL (an OpenAI-compatible "
            "/v1 endpoint, e.g. http://127.0.0.1:11434/v1 for Ollama) and "
            "CLAUDE_MEM_EMBEDDINGS_MODEL, then run this again"
        )
    shown = {"at": -1}

    def progress(done: int, total: int) -> None:
        if args.json or done == shown["at"]:
            return
        shown["at"] = done
        print(f"embedded {done}/{total} passages", file=sys.stderr, flush=True)

    from claude_mem_core.facade import open_memory_from_settings

    async with open_memory_from_settings(settings, queue=False) as mem:
        semantic = mem.semantic_recall
        model = semantic.model if semantic is not None else settings.embeddings_model
        report = await mem.backfill_embeddings(
            team_id=args.team, project_id=args.project, max_passages=args.limit, progress=progress
        )
    payload = {
        "model": model,
        "embedded": report.embedded,
        "failed": report.failed,
        "more": report.more,
        "interrupted": report.interrupted,
    }
    text = f"Embedded {report.embedded} passage(s) with {model}"
    if report.failed:
        text += f"; {report.failed} left without a vector (see the log; run again later)"
    if report.more:
        text += "; more are waiting (run again, or without --limit)"
    emit(args, payload, text=text)
    return EXIT_FAILED if report.interrupted else EXIT_OK


# -- parser -----------------------------------------------------------------------------


def _add_api_key(commands: Commands, under: str) -> None:
    keys = commands.add("api-key", help="create, list, revoke and rotate API keys", under=under)
    acts = keys.add_subparsers(dest="action", required=True, parser_class=Parser)
    create = acts.add_parser("create", help="create a key (the raw key is shown once)")
    create.add_argument("--team", required=True, help="team id the key is bound to")
    create.add_argument("--project", help="restrict the key to one project")
    create.add_argument(
        "--scopes",
        "--scope",
        action="append",
        help="comma-separated scopes (default memories:read,memories:write)",
    )
    create.add_argument("--name", help="a label to recognise the key by")
    create.add_argument("--expires", help="ISO date/time or duration (30d, 12h, 90m)")
    listing = acts.add_parser("list", help="list keys (hashes are never shown)")
    listing.add_argument("--team")
    listing.add_argument("--project")
    listing.add_argument("--limit", type=positive, default=50)
    listing.add_argument("--offset", type=non_negative, default=0)
    for name, text in (("revoke", "revoke a key"), ("rotate", "replace a key with a new one")):
        act = acts.add_parser(name, help=text)
        act.add_argument("key_id")
    keys.set_defaults(handler=cmd_api_key)


def _add_jobs(commands: Commands, under: str) -> None:
    jobs_p = commands.add("jobs", help="see, retry and cancel generation jobs", under=under)
    acts = jobs_p.add_subparsers(dest="action", required=True, parser_class=Parser)
    for name in ("status", "failed", "retry", "cancel"):
        act = acts.add_parser(name)
        act.add_argument("--team", help="team id (required)")
        act.add_argument("--project")
        if name in ("retry", "cancel"):
            act.add_argument("job_id")
        if name == "failed":
            act.add_argument("--limit", type=positive, default=20)
    jobs_p.set_defaults(handler=cmd_jobs)


def register(commands: Commands) -> None:
    """Add core's commands, in the order ``--help`` lists them."""
    migrate = commands.add("migrate", help="create or upgrade the database schema")
    migrate.set_defaults(handler=cmd_migrate)

    teams = commands.add("teams", help="create and list teams")
    acts = teams.add_subparsers(dest="action", required=True, parser_class=Parser)
    create = acts.add_parser("create")
    create.add_argument("name")
    listing = acts.add_parser("list")
    listing.add_argument("--limit", type=positive, default=50)
    listing.add_argument("--offset", type=non_negative, default=0)
    teams.set_defaults(handler=cmd_teams)

    projects = commands.add("projects", help="create and list projects")
    acts = projects.add_subparsers(dest="action", required=True, parser_class=Parser)
    create = acts.add_parser("create")
    create.add_argument("--team", required=True)
    create.add_argument("name")
    listing = acts.add_parser("list")
    listing.add_argument("--team", required=True)
    listing.add_argument("--limit", type=positive, default=50)
    listing.add_argument("--offset", type=non_negative, default=0)
    projects.set_defaults(handler=cmd_projects)

    _add_api_key(commands, ROOT)
    _add_jobs(commands, ROOT)

    embeddings = commands.add(
        "embeddings", help="semantic recall: embed passages (CLAUDE_MEM_EMBEDDINGS_URL)"
    )
    acts = embeddings.add_subparsers(dest="action", required=True, parser_class=Parser)
    backfill = acts.add_parser("backfill", help="embed the passages that have no vector yet")
    backfill.add_argument("--team", help="only this team's passages")
    backfill.add_argument("--project", help="only this project's passages (with --team)")
    backfill.add_argument("--limit", type=positive, default=None, help="at most N passages")
    embeddings.set_defaults(handler=cmd_embeddings)

    # The reference's spellings: `server api-key …`, `server jobs …`, `server worker start`
    # (the last added by the worker package).
    server = commands.add("server", help="aliases: server api-key|jobs|worker start")
    commands.add_group("server", server, dest="server_command")
    _add_api_key(commands, "server")
    _add_jobs(commands, "server")
