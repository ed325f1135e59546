"""``claude-mem``: the operator's command line.

Readable tables by default, ``--json`` for scripts. Bad arguments exit 2 with a message;
a failed operation (not found, conflict, unreachable database) exits 1 with a message that
says what to do. Never a traceback.

The reference's spellings work too: ``server api-key …``, ``server jobs …``,
``server worker start``.
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


class UsageError(Exception):
    """Bad command-line arguments (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


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
    if args.json or (table is None and text is None):
        print(json.dumps(payload, indent=2, default=str))
    elif table is not None:
        table()
    else:
        print(text)


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


async def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from claude_mem_http.cli import serve
    except ImportError as exc:  # pragma: no cover - depends on installed extras
        raise ClaudeMemError(
            f"the HTTP server needs the 'http' extra: pip install 'claude-mem[http]' ({exc})"
        ) from exc
    result: int = await serve(args)
    return result


async def cmd_worker(args: argparse.Namespace) -> int:
    try:
        from claude_mem_worker.cli import run_worker
    except ImportError as exc:  # pragma: no cover - depends on installed extras
        raise ClaudeMemError(
            f"the worker needs the 'redis' extra: pip install 'claude-mem[redis]' ({exc})"
        ) from exc
    result: int = await run_worker(args)
    return result


# -- parser -----------------------------------------------------------------------------


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return number


def _non_negative(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be 0 or more")
    return number


Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _add_api_key(sub: Any) -> None:
    keys = sub.add_parser("api-key", help="create, list, revoke and rotate API keys")
    acts = keys.add_subparsers(dest="action", required=True, parser_class=_Parser)
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
    listing.add_argument("--limit", type=_positive, default=50)
    listing.add_argument("--offset", type=_non_negative, default=0)
    for name, text in (("revoke", "revoke a key"), ("rotate", "replace a key with a new one")):
        act = acts.add_parser(name, help=text)
        act.add_argument("key_id")
    keys.set_defaults(handler=cmd_api_key)


def _add_jobs(sub: Any) -> None:
    jobs_p = sub.add_parser("jobs", help="see, retry and cancel generation jobs")
    acts = jobs_p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    for name in ("status", "failed", "retry", "cancel"):
        act = acts.add_parser(name)
        act.add_argument("--team", help="team id (required)")
        act.add_argument("--project")
        if name in ("retry", "cancel"):
            act.add_argument("job_id")
        if name == "failed":
            act.add_argument("--limit", type=_positive, default=20)
    jobs_p.set_defaults(handler=cmd_jobs)


def _add_worker(sub: Any, name: str = "worker") -> Any:
    worker = sub.add_parser(name, help="run the generation worker in the foreground")
    worker.add_argument(
        "--concurrency",
        type=_positive,
        default=None,
        help="jobs processed at once (default CLAUDE_MEM_WORKER_CONCURRENCY or 8)",
    )
    worker.set_defaults(handler=cmd_worker)
    return worker


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="claude-mem", description="Memory engine for coding agents.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate.set_defaults(handler=cmd_migrate)

    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="bind address (default CLAUDE_MEM_SERVER_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=_positive, help="port (default CLAUDE_MEM_SERVER_PORT)")
    serve.set_defaults(handler=cmd_serve)
    _add_worker(sub)

    teams = sub.add_parser("teams", help="create and list teams")
    acts = teams.add_subparsers(dest="action", required=True, parser_class=_Parser)
    create = acts.add_parser("create")
    create.add_argument("name")
    listing = acts.add_parser("list")
    listing.add_argument("--limit", type=_positive, default=50)
    listing.add_argument("--offset", type=_non_negative, default=0)
    teams.set_defaults(handler=cmd_teams)

    projects = sub.add_parser("projects", help="create and list projects")
    acts = projects.add_subparsers(dest="action", required=True, parser_class=_Parser)
    create = acts.add_parser("create")
    create.add_argument("--team", required=True)
    create.add_argument("name")
    listing = acts.add_parser("list")
    listing.add_argument("--team", required=True)
    listing.add_argument("--limit", type=_positive, default=50)
    listing.add_argument("--offset", type=_non_negative, default=0)
    projects.set_defaults(handler=cmd_projects)

    _add_api_key(sub)
    _add_jobs(sub)

    embeddings = sub.add_parser(
        "embeddings", help="semantic recall: embed passages (CLAUDE_MEM_EMBEDDINGS_URL)"
    )
    acts = embeddings.add_subparsers(dest="action", required=True, parser_class=_Parser)
    backfill = acts.add_parser("backfill", help="embed the passages that have no vector yet")
    backfill.add_argument("--team", help="only this team's passages")
    backfill.add_argument("--project", help="only this project's passages (with --team)")
    backfill.add_argument("--limit", type=_positive, default=None, help="at most N passages")
    embeddings.set_defaults(handler=cmd_embeddings)

    # The reference's spellings: `server api-key …`, `server jobs …`, `server worker start`.
    server = sub.add_parser("server", help="aliases: server api-key|jobs|worker start")
    server_sub = server.add_subparsers(dest="server_command", required=True, parser_class=_Parser)
    _add_api_key(server_sub)
    _add_jobs(server_sub)
    worker_alias = server_sub.add_parser("worker", help="server worker start")
    worker_acts = worker_alias.add_subparsers(
        dest="worker_action", required=True, parser_class=_Parser
    )
    start = worker_acts.add_parser("start")
    start.add_argument("--concurrency", type=_positive, default=None)
    start.set_defaults(handler=cmd_worker)
    _add_client_commands(sub)
    return parser


def _add_client_commands(sub: Any) -> None:
    """hook, install/uninstall, mcp and import live with the HTTP client (the 'http' extra)."""
    try:
        from claude_mem_http import hooks, install, mcp_server, transcript_import
    except ImportError:  # pragma: no cover - without the extra these commands do not exist
        return
    hooks.register(sub)
    install.register(sub)
    mcp_server.register(sub)
    transcript_import.register(sub)


def _json_flag(argv: list[str]) -> tuple[list[str], bool]:
    # --json is accepted anywhere on the line, not only before the subcommand.
    return [a for a in argv if a != "--json"], "--json" in argv


def main(argv: Sequence[str] | None = None) -> int:
    raw, as_json = _json_flag(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    try:
        args = parser.parse_args(raw)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
