"""``claude-mem export --project P > p.jsonl`` and ``claude-mem import jsonl p.jsonl --project
Q``: take a project's data with you, and bring it in (docs/your-data.md).

Both work on the local (embedded) memory by default, or on a claude-mem server with
``--server-url`` (or ``--remote``, the configured one) and an API key. The export goes to
stdout (or ``--output``), the progress bar to stderr. Locally, ``--project`` and ``--team``
are ids or names (team default: the local team); an import creates its project when no
project has that id or name. On a server the project is an id and the key names the team.

Exit codes: 0 done; 2 for a bad line or an export of a newer version (the line, the field
and the reason on stderr), or bad arguments; 1 for anything else that failed (a project
not found, an id of another project).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO, cast

from claude_mem_core.cli.commands import Commands
from claude_mem_core.cli.kit import EXIT_OK, Parser
from claude_mem_core.domain import export_format as fmt
from claude_mem_core.errors import (
    ClaudeMemError,
    ConfigurationError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
)
from claude_mem_http.client.backends import LOCAL_TEAM
from claude_mem_http.client.errors import InvalidResponse
from claude_mem_http.client.hook_config import HookConfig
from claude_mem_http.client.hooks import spawn_drain
from claude_mem_http.client.transcript_import import Progress
from claude_mem_http.wire.bodies import ImportedBody
from claude_mem_http.wire.converter import WireMismatch, from_wire, to_wire

CHUNK_BYTES = 64 * 1024


# -- the local memory -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _local_memory(config: HookConfig) -> AsyncIterator[Any]:
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import open_memory_from_settings

    async with open_memory_from_settings(Settings.from_env(config.env), queue=False) as memory:
        yield memory


async def _local_scope(memory: Any, team: str | None, project: str, *, create: bool) -> Any:
    """The scope of ``project`` (id or name) in ``team`` (id or name; default the local
    team); with ``create``, made when missing."""
    from claude_mem_core.domain.models import Scope
    from claude_mem_core.services import admin

    deps = memory.deps
    team_ref = team or LOCAL_TEAM
    async with deps.storage.unit_of_work() as uow:
        found = await uow.teams.get(team_ref) or await uow.teams.find_by_name(team_ref)
        chosen = None
        if found is not None:
            chosen = await uow.projects.get(found.id, project) or await uow.projects.find_by_name(
                found.id, project
            )
    if chosen is None and not create:
        raise NotFound(f"no project {project} in team {team_ref}")
    if found is None:
        found = await admin.ensure_team(deps, team_ref)
    if chosen is None:
        chosen = await admin.create_project(deps, found.id, project)
    return Scope(team_id=found.id, project_id=chosen.id)


# -- a server ----------------------------------------------------------------------------------


def _server(args: argparse.Namespace, config: HookConfig) -> tuple[str, str] | None:
    url = args.server_url or (config.server_url if args.remote else None)
    if not url:
        return None
    key = args.api_key or config.api_key
    if not key:
        raise ConfigurationError("a server needs an API key: --api-key or the configured key")
    return url.rstrip("/"), key


async def _refusal(response: Any) -> ClaudeMemError:
    """The server's answer as the error the CLI reports (never the key)."""
    try:
        body = await response.json(content_type=None)
    except (ValueError, UnicodeDecodeError):
        body = {}
    message = str(body.get("message") or f"the server answered {response.status}")
    if response.status == 400 and "line" in body:
        return fmt.BadExportLine(int(body["line"]), str(body.get("field", "")), message)
    if response.status == 400:
        return InvalidInput(message)
    if response.status in (401, 403):
        return Forbidden(message)
    if response.status == 404:
        return NotFound(message)
    if response.status == 409:
        return Conflict(message)
    return ClaudeMemError(message)


# -- export ------------------------------------------------------------------------------------


async def cmd_export(args: argparse.Namespace) -> int:
    config = HookConfig.load()
    with _output(args.output) as out:
        server = _server(args, config)
        if server is not None:
            await _export_from_server(server, args.project, out)
            return EXIT_OK
        async with _local_memory(config) as memory:
            scope = await _local_scope(memory, args.team, args.project, create=False)
            progress: Progress | None = None
            pending: list[bytes] = []
            size = 0
            async for line in memory.export_project(scope):
                if progress is None:
                    total = fmt.decode(1, line).get("counts", {})
                    progress = Progress(sum(total.values()) or 1, sys.stderr, label="exporting")
                else:
                    progress.advance()
                pending.append(line.encode("utf-8"))
                size += len(pending[-1])
                if size >= CHUNK_BYTES:
                    out.write(b"".join(pending))
                    pending, size = [], 0
            out.write(b"".join(pending))
            if progress is not None:
                progress.finish()
    return EXIT_OK


async def _export_from_server(server: tuple[str, str], project: str, out: BinaryIO) -> None:
    import aiohttp

    from claude_mem_core.services.project_import import split_lines

    url, key = server
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"{url}/v1/projects/{project}/export", headers=headers) as resp,
    ):
        if resp.status != 200:
            raise await _refusal(resp)
        progress: Progress | None = None
        async for line in split_lines(resp.content.iter_chunked(CHUNK_BYTES)):
            out.write(line + b"\n")
            if progress is None:
                total = fmt.decode(1, line).get("counts", {})
                progress = Progress(sum(total.values()) or 1, sys.stderr, label="exporting")
            else:
                progress.advance()
        if progress is not None:
            progress.finish()


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[BinaryIO]:
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with Path(path).expanduser().open("wb") as handle:
        yield handle


# -- import ------------------------------------------------------------------------------------


def _file_lines(path: Path) -> AsyncIterator[bytes]:
    async def lines() -> AsyncIterator[bytes]:
        with path.open("rb") as handle:
            for line in handle:
                yield line.rstrip(b"\r\n")

    return lines()


def _input_file(raw: str) -> tuple[Path, int]:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise InvalidInput.field("path", f"{path} is not a readable file")
    return path, path.stat().st_size


def _read_counts(path: Path) -> int:
    with path.open("rb") as handle:
        first = handle.readline()
    try:
        counts = json.loads(first).get("counts", {})
        return sum(int(v) for v in counts.values())
    except (ValueError, AttributeError, TypeError):
        return 0


class _Bar:
    """The import's progress on stderr: checking, then writing."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = total
        self.out = out
        self.bar: Progress | None = None
        self.phase = ""

    def __call__(self, phase: str, done: int, expected: int) -> None:
        if phase != self.phase:
            if self.bar is not None:
                self.bar.finish()
            self.phase = phase
            self.bar = Progress(expected or self.total or 1, self.out, label=phase)
        assert self.bar is not None
        self.bar.advance(done - self.bar.done)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.finish()


async def cmd_import_jsonl(args: argparse.Namespace) -> int:
    config = HookConfig.load()
    path, size = _input_file(args.path)
    server = _server(args, config)
    if server is not None:
        result = await _import_to_server(server, args.project, path, size, generate=args.generate)
        target = "server"
    else:
        bar = _Bar(_read_counts(path), sys.stderr)
        async with _local_memory(config) as memory:
            scope = await _local_scope(memory, args.team, args.project, create=True)
            report = await memory.import_project(
                scope, _file_lines(path), generate=args.generate, progress=bar
            )
        bar.finish()
        result = report.as_dict()
        target = "local"
        if args.generate and report.jobs:
            spawn_drain(config)
    if getattr(args, "json", False):
        print(json.dumps({**result, "target": target}, indent=2))
    else:
        print(
            f"Imported into {target} project {result['projectId']}: {result['sessions']} "
            f"sessions, {result['events']} events, {result['observations']} observations "
            f"({result['skipped']} already there)."
        )
    return EXIT_OK


async def _import_to_server(
    server: tuple[str, str], project: str, path: Path, size: int, *, generate: bool
) -> dict[str, Any]:
    import aiohttp

    url, key = server
    progress = Progress(size or 1, sys.stderr, label="sending")

    async def body() -> AsyncIterator[bytes]:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                progress.advance(len(chunk))
                yield chunk

    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
    params = {"generate": "true" if generate else "false"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(
            f"{url}/v1/projects/{project}/import", data=body(), headers=headers, params=params
        ) as resp,
    ):
        progress.finish()
        if resp.status != 200:
            raise await _refusal(resp)
        # Checked against the server's wire class; handed on as the JSON it is.
        try:
            answer = from_wire(await resp.json(), ImportedBody)
        except WireMismatch as exc:
            raise InvalidResponse(f"POST /v1/projects/{project}/import: {exc}") from exc
        return cast(dict[str, Any], to_wire(answer.imported))


# -- registration ------------------------------------------------------------------------------


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server-url", help="a claude-mem server instead of the local memory")
    parser.add_argument("--api-key", default=os.environ.get("CLAUDE_MEM_SERVER_BETA_API_KEY"))
    parser.add_argument(
        "--remote", action="store_true", help="the server configured in the settings"
    )


def register_export(commands: Commands) -> None:
    """``claude-mem export`` (entry point ``export`` of the ``claude_mem.cli`` group)."""
    parser = commands.add("export", help="export a project as NDJSON", after="import")
    parser.add_argument("--project", required=True, help="project id (or, locally, name)")
    parser.add_argument("--team", help="team id or name (local memory; default: local)")
    parser.add_argument("--output", "-o", help="write here instead of stdout")
    _target_arguments(parser)
    parser.set_defaults(handler=cmd_export)


def add_import_jsonl(targets: Any) -> None:
    """``claude-mem import jsonl PATH``, beside ``import claude-code``."""
    sub: Parser = targets.add_parser("jsonl", help="import a project export (NDJSON)")
    sub.add_argument("path", help="a file written by `claude-mem export`")
    sub.add_argument(
        "--project",
        required=True,
        help="project id or name (local memory: created when missing) or id (server)",
    )
    sub.add_argument("--team", help="team id or name (local memory; default: local)")
    sub.add_argument(
        "--generate", action="store_true", help="queue generation for the imported events"
    )
    _target_arguments(sub)
    sub.set_defaults(handler=cmd_import_jsonl)


__all__ = ["add_import_jsonl", "cmd_export", "cmd_import_jsonl", "register_export"]
