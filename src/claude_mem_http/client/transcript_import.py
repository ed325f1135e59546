"""``claude-mem import claude-code PATH.jsonl [--project P]``: replay a Claude Code session
transcript as the events of one session.

What a transcript line becomes (other line types — system, snapshots, meta messages — are
skipped):

* a user message with text → ``user_prompt`` (as UserPromptSubmit would have sent it);
* an assistant ``tool_use`` block, completed by the ``tool_result`` block with the same
  ``tool_use_id`` in a later user message → ``tool_use`` (as PostToolUse; the structured
  ``toolUseResult`` of the line is the tool response when present);
* the last assistant text of each turn → ``assistant_message`` (as Stop);
* a ``summary`` line → ``conversation_summary`` (stored, no generation);
* then the session is ended (its summary job).

The source event ids are the hooks' own (:mod:`hook_mapping`), so importing twice — or
importing a session the hooks already recorded — stores nothing new. Timestamps come from
the transcript. By default the events go to the local (embedded) memory; ``--server-url``
(or ``--remote``, using the configured server) sends them to a claude-mem server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from attrs import define, field

from claude_mem_core.cli.commands import Commands
from claude_mem_core.errors import ConfigurationError, Conflict, InvalidInput
from claude_mem_http.client import hook_mapping as hm
from claude_mem_http.client.backends import Backend, LocalBackend, RemoteBackend
from claude_mem_http.client.hook_config import HookConfig
from claude_mem_http.client.hooks import spawn_drain
from claude_mem_http.client.http_client import ClaudeMemClient

IMPORT_METADATA = {"via": "claude-code-transcript-import"}


@define
class ImportedEvent:
    event_type: str
    source_event_id: str
    occurred_at_epoch: int
    payload: dict[str, Any]
    generate: bool = True


@define
class Transcript:
    session_id: str
    cwd: str | None
    events: list[ImportedEvent] = field(factory=list)
    skipped_lines: int = 0


def _epoch_ms(value: Any, fallback: int) -> int:
    if isinstance(value, str) and value:
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return fallback
    return fallback


def _lines(path: Path) -> Iterator[dict[str, Any] | None]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                yield None
                continue
            yield entry if isinstance(entry, dict) else None


def parse_transcript(path: Path) -> Transcript:
    """Read a transcript into the events to replay, in order."""
    fallback_ms = int(path.stat().st_mtime * 1000)
    session_id: str | None = None
    cwd: str | None = None
    events: list[ImportedEvent] = []
    pending: dict[str, tuple[str, Any, int]] = {}
    last_text: tuple[str, int] | None = None
    skipped = 0
    entries = list(_lines(path))
    for entry in entries:
        if entry is None:
            continue
        session_id = session_id or hm.session_id_of(entry)
        cwd = cwd or (entry.get("cwd") if isinstance(entry.get("cwd"), str) else None)
    sid = session_id or path.stem

    def flush_turn() -> None:
        nonlocal last_text
        if last_text is not None:
            text, at = last_text
            cleaned = hm.clean_text(text)
            if cleaned:
                events.append(
                    ImportedEvent(
                        "assistant_message",
                        hm.assistant_event_id(sid, cleaned),
                        at,
                        {"last_assistant_message": cleaned, "platformSource": hm.PLATFORM_SOURCE},
                    )
                )
        last_text = None

    for entry in entries:
        if entry is None:
            skipped += 1
            continue
        kind = entry.get("type")
        at = _epoch_ms(entry.get("timestamp"), fallback_ms)
        message = entry.get("message")
        content = message.get("content") if isinstance(message, Mapping) else None
        if kind == "summary":
            summary = entry.get("summary")
            if isinstance(summary, str) and summary.strip():
                leaf = entry.get("leafUuid")
                events.append(
                    ImportedEvent(
                        "conversation_summary",
                        f"{hm.SOURCE_ID_PREFIX}:summary:{leaf or hm.prompt_event_id(sid, summary)}",
                        at,
                        {"summary": summary},
                        generate=False,
                    )
                )
            continue
        if kind == "assistant":
            for block in content if isinstance(content, list) else []:
                if not isinstance(block, Mapping):
                    continue
                if block.get("type") == "tool_use" and isinstance(block.get("id"), str):
                    pending[block["id"]] = (
                        str(block.get("name") or "unknown"),
                        block.get("input"),
                        at,
                    )
            text = hm.message_text(message)
            if text.strip():
                last_text = (text, at)
            continue
        if kind != "user" or entry.get("isMeta") is True:
            continue
        results = [
            b
            for b in (content if isinstance(content, list) else [])
            if isinstance(b, Mapping) and b.get("type") == "tool_result"
        ]
        for block in results:
            use_id = block.get("tool_use_id")
            if not isinstance(use_id, str):
                continue
            name, tool_input, _ = pending.pop(use_id, ("unknown", None, at))
            response = entry.get("toolUseResult")
            if response is None:
                response = block.get("content")
            events.append(_tool_event(sid, use_id, name, tool_input, response, at, cwd))
        if results:
            continue
        prompt = hm.message_text(message)
        if not prompt.strip():
            continue
        flush_turn()
        events.append(
            ImportedEvent(
                "user_prompt",
                hm.prompt_event_id(sid, hm.clean_text(prompt)),
                at,
                {"prompt": prompt, "cwd": cwd, "agentId": None, "agentType": None},
            )
        )
    flush_turn()
    for use_id, (name, tool_input, at) in pending.items():
        events.append(_tool_event(sid, use_id, name, tool_input, None, at, cwd))
    return Transcript(session_id=sid, cwd=cwd, events=events, skipped_lines=skipped)


def _tool_event(
    sid: str, use_id: str, name: str, tool_input: Any, response: Any, at: int, cwd: str | None
) -> ImportedEvent:
    return ImportedEvent(
        "tool_use",
        hm.tool_event_id(sid, use_id),
        at,
        {
            "tool_name": name,
            "tool_input": tool_input,
            "tool_response": response,
            "tool_use_id": use_id,
            "cwd": cwd,
            "agentId": None,
            "agentType": None,
            "platformSource": hm.PLATFORM_SOURCE,
        },
    )


# -- progress -------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on a stream, redrawn at most ten times a second."""

    def __init__(self, total: int, out: TextIO, *, label: str = "importing", width: int = 30):
        self.total = max(total, 1)
        self.out = out
        self.label = label
        self.width = width
        self.done = 0
        self._drawn = 0.0

    def advance(self, step: int = 1) -> None:
        self.done += step
        now = time.monotonic()
        if now - self._drawn >= 0.1 or self.done >= self.total:
            self._drawn = now
            self.draw()

    def draw(self) -> None:
        filled = int(self.width * min(self.done, self.total) / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        self.out.write(f"\r{self.label} [{bar}] {self.done}/{self.total}")
        self.out.flush()

    def finish(self) -> None:
        self.draw()
        self.out.write("\n")
        self.out.flush()


# -- replay ---------------------------------------------------------------------------------


async def replay(
    transcript: Transcript,
    backend: Backend,
    *,
    project: str | None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Send the transcript's events as one session, then end it."""
    metadata = {
        "project": hm.project_name(transcript.cwd),
        "cwd": transcript.cwd,
        **IMPORT_METADATA,
    }
    started = await backend.start_session(
        project,
        external_session_id=transcript.session_id,
        content_session_id=transcript.session_id,
        platform_source=hm.PLATFORM_SOURCE,
        metadata=metadata,
    )
    session_id = str(started["session"]["id"])
    recorded_elsewhere = 0
    for item in transcript.events:
        try:
            await backend.record_event(
                project,
                {
                    "sourceType": hm.SOURCE_TYPE,
                    "eventType": item.event_type,
                    "occurredAtEpoch": item.occurred_at_epoch,
                    "serverSessionId": session_id,
                    "sourceEventId": item.source_event_id,
                    "payload": item.payload,
                    "metadata": dict(IMPORT_METADATA),
                },
                generate=item.generate,
            )
        except Conflict:
            # The hooks recorded this tool use already (same id), as they saw it: the
            # transcript's rendering of it differs, and the stored event stays.
            recorded_elsewhere += 1
        if progress is not None:
            progress.advance()
    ended = await backend.end_session(session_id)
    if progress is not None:
        progress.advance()
    job = ended.get("generationJob") or {}
    return {
        "sessionId": transcript.session_id,
        "serverSessionId": session_id,
        "events": len(transcript.events),
        "summaryJobId": job.get("id"),
        "skippedLines": transcript.skipped_lines,
        "alreadyRecorded": recorded_elsewhere,
    }


@contextlib.asynccontextmanager
async def _backend(
    args: argparse.Namespace, config: HookConfig, project_name: str
) -> AsyncIterator[tuple[Backend, str | None]]:
    url = args.server_url or (config.server_url if args.remote else None)
    if url:
        key = args.api_key or config.api_key
        project_id = args.project or config.project_id
        if not project_id:
            raise ConfigurationError(
                "importing to a server needs --project (a project id) or "
                "CLAUDE_MEM_SERVER_BETA_PROJECT_ID"
            )
        backend = RemoteBackend(ClaudeMemClient(url, key), project_id)
        try:
            yield backend, project_id
        finally:
            await backend.close()
        return
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import open_memory_from_settings

    async with open_memory_from_settings(Settings.from_env(config.env), queue=False) as memory:
        local = await LocalBackend.embedded(memory, default_project=None)
        yield local, args.project or project_name


def load_transcript(raw_path: str) -> Transcript:
    path = Path(raw_path).expanduser()
    if not path.is_file():
        raise InvalidInput.field("path", f"{path} is not a readable file")
    return parse_transcript(path)


async def cmd_import(args: argparse.Namespace) -> int:
    config = HookConfig.load()
    transcript = load_transcript(args.path)
    progress = Progress(len(transcript.events) + 1, sys.stderr)
    async with _backend(args, config, hm.project_name(transcript.cwd)) as (backend, project):
        result = await replay(transcript, backend, project=project, progress=progress)
        mode = backend.name
    progress.finish()
    if mode == "local" and not args.no_generate:
        spawn_drain(config)
    result["project"] = project
    result["target"] = "server" if mode == "remote" else "local"
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        print(
            f"Imported {result['events']} events of session {result['sessionId']} into "
            f"{result['target']} project {project} (duplicates are ignored)."
        )
    return 0


def register(commands: Commands) -> None:
    """Add ``claude-mem import claude-code PATH.jsonl`` (entry point ``import`` of the
    ``claude_mem.cli`` group)."""
    parser = commands.add("import", help="import agent transcripts", after="mcp")
    targets = parser.add_subparsers(dest="target", required=True)
    cc = targets.add_parser("claude-code", help="replay a Claude Code transcript (JSONL)")
    cc.add_argument("path", help="the session transcript, e.g. ~/.claude/projects/…/<id>.jsonl")
    cc.add_argument(
        "--project",
        help="project name (local memory; default: the transcript's directory name) "
        "or project id (server)",
    )
    cc.add_argument("--server-url", help="send to this claude-mem server instead")
    cc.add_argument("--api-key", default=os.environ.get("CLAUDE_MEM_SERVER_BETA_API_KEY"))
    cc.add_argument(
        "--remote", action="store_true", help="send to the server configured in the settings"
    )
    cc.add_argument(
        "--no-generate",
        action="store_true",
        help="local memory: do not start background generation afterwards",
    )
    cc.set_defaults(handler=cmd_import)
    from claude_mem_http.client.project_transfer import add_import_jsonl  # it imports us

    add_import_jsonl(targets)  # claude-mem import jsonl: a project export


__all__ = ["Progress", "Transcript", "parse_transcript", "register", "replay"]
