"""``claude-mem hook <event>``: the Claude Code hook client, and its spool.

Contract with Claude Code: read the hook's JSON from stdin, print one JSON object on stdout,
exit 0 — always, within the hook timeout (``CLAUDE_MEM_HOOK_TIMEOUT_MS``, default 2000),
never a traceback. Problems go to ``<data dir>/logs/hooks.log``. The one exception is an
event name that is not a hook event (a typo in the hook configuration): the valid names go
to stderr and the exit status is 1, which Claude Code shows without blocking the agent.

Where events go (decided per process from the settings):

* **remote** — ``CLAUDE_MEM_SERVER_BETA_URL`` is set: the claude-mem server, with
  ``CLAUDE_MEM_SERVER_BETA_API_KEY`` and ``CLAUDE_MEM_SERVER_BETA_PROJECT_ID``.
* **embedded** — no server URL (or ``CLAUDE_MEM_RUNTIME=embedded``): straight into the
  local SQLite memory of the data directory, in the team ``local`` and a project named after
  the working directory (``CLAUDE_MEM_PROJECT`` overrides). After Stop and SessionEnd a
  detached ``hook drain`` process runs generation for what was queued
  (``CLAUDE_MEM_HOOK_BACKGROUND_DRAIN=0`` turns that off).

Settings (``hook_config.py``) come from ``<data dir>/settings.json`` (flat JSON; a nested
``{"env": {…}}`` is read too), overridden by the environment.

The spool (``<data dir>/spool.jsonl``, :mod:`~claude_mem_http.client.spool`): every record
of a hook is appended first (under an ``fcntl`` lock, fsync'ed, mode 0600), then the spool
is flushed in order, oldest first, by whichever hook holds the flush lock, until it is
empty, the memory is unreachable, or the time is up. A record leaves the spool only once the
memory acknowledged it; one that was delivered but not yet removed (a crash, a timeout at
the wrong moment) is sent again and deduplicated by its ``sourceEventId`` (sessions by their
external id; ending twice returns the same summary job), so each is stored exactly once.
Records the memory refuses for good (400/404/409) move to ``spool.rejected.jsonl``; 401/403
keep the spool intact and stop, so a fixed key delivers everything later. ``claude-mem hook
flush`` drains it without a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, TextIO

from attrs import frozen

from claude_mem_core.cli.commands import Commands
from claude_mem_core.errors import (
    ClaudeMemError,
    ConfigurationError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    StorageError,
    Unauthorized,
)
from claude_mem_http.client import hook_mapping
from claude_mem_http.client.backends import Backend, LocalBackend, RemoteBackend
from claude_mem_http.client.hook_config import HookConfig
from claude_mem_http.client.http_client import (
    ClaudeMemClient,
    InvalidResponse,
    RequestRejected,
    RouteUnsupported,
    ServerUnavailable,
    now_epoch_ms,
)
from claude_mem_http.client.spool import LockBusy, Spool, flocked

log = logging.getLogger("claude_mem.hooks")

FLUSH_COMMAND_TIMEOUT_S = 300.0
REMOVE_EVERY = 25
CHARS_PER_TOKEN = 4
CONTEXT_SHARE = 0.6  # of the budget, at most, for SessionStart's context before flushing
CONTEXT_TAG = "claude-mem-context"

# -- delivery -------------------------------------------------------------------------------


@frozen(kw_only=True)
class FlushReport:
    delivered: int = 0
    rejected: int = 0
    remaining: int = 0
    blocked: str | None = None
    busy: bool = False


class Delivery:
    """Sends records to a backend, remembering server session ids within the process."""

    def __init__(self, backend: Backend, config: HookConfig) -> None:
        self.backend = backend
        self.config = config
        self._sessions: dict[tuple[str, str], str] = {}

    def _project(self, record: Mapping[str, Any]) -> str | None:
        if self.config.mode == "remote":
            chosen = record.get("projectId") or self.config.project_id
            if not chosen:
                raise ConfigurationError(
                    "CLAUDE_MEM_SERVER_BETA_PROJECT_ID is not set (run `claude-mem install "
                    "claude-code` or add it to the settings file)"
                )
            return str(chosen)
        return str(record.get("project") or "default")

    async def session_id(self, record: Mapping[str, Any]) -> str:
        session = record.get("session") or {}
        content_id = str(session.get("contentSessionId") or "")
        project = self._project(record)
        key = (str(project), content_id)
        if key not in self._sessions:
            started = await self.backend.start_session(
                project,
                external_session_id=content_id,
                content_session_id=content_id,
                platform_source=session.get("platformSource"),
                metadata=session.get("metadata") or {},
            )
            self._sessions[key] = str(started["session"]["id"])
        return self._sessions[key]

    async def deliver(self, record: Mapping[str, Any]) -> None:
        op = record.get("op")
        server_session = await self.session_id(record)
        if op == "event":
            event = {**record["event"], "serverSessionId": server_session}
            await self.backend.record_event(self._project(record), event)
        elif op == "end":
            await self.backend.end_session(server_session)
        elif op != "session":
            raise InvalidInput.field("op", f"unknown spool record op {op!r}")


PERMANENT = (InvalidInput, NotFound, Conflict, RequestRejected, InvalidResponse)
BLOCKING = (Unauthorized, Forbidden, ConfigurationError)


async def flush(
    spool: Spool, delivery: Delivery, *, lock_wait_s: float = 0.0, drop_unknown: bool = True
) -> FlushReport:
    """Deliver the spool oldest first. Stops at the first transient failure (the order is
    kept) or on cancellation; acknowledged records are removed even then."""
    with spool.flusher(wait_s=lock_wait_s) as mine:
        if not mine:
            return FlushReport(busy=True, remaining=len(spool))
        records = spool.read()
        done: set[str] = set()
        refused: list[Mapping[str, Any]] = []
        totals = [0, 0]  # delivered, rejected

        def settle() -> None:
            if refused:
                spool.reject(refused)
            spool.remove(done)
            totals[0] += len(done) - len(refused)
            totals[1] += len(refused)
            done.clear()
            refused.clear()

        blocked: str | None = None
        try:
            for record in records:
                try:
                    await delivery.deliver(record)
                except (ServerUnavailable, StorageError) as exc:
                    blocked = f"unavailable: {exc}"
                    break
                except BLOCKING as exc:
                    blocked = f"refused: {exc}"
                    log.error("hook: the memory refused the hook's credentials: %s", exc)
                    break
                except PERMANENT as exc:
                    log.warning("hook: record %s rejected for good: %s", record.get("id"), exc)
                    refused.append({**record, "error": str(exc)})
                except Exception as exc:
                    if not drop_unknown:
                        raise
                    log.exception("hook: record %s failed unexpectedly", record.get("id"))
                    refused.append({**record, "error": f"{type(exc).__name__}: {exc}"})
                done.add(record["id"])
                if len(done) >= REMOVE_EVERY:
                    settle()
        finally:
            # Runs on cancellation (timeout) too: what was acknowledged leaves the spool.
            settle()
        return FlushReport(
            delivered=totals[0],
            rejected=totals[1],
            remaining=len(records) - totals[0] - totals[1],
            blocked=blocked,
        )


# -- backends for the hook process -----------------------------------------------------------


@contextlib.asynccontextmanager
async def open_backend(
    config: HookConfig, *, timeout_s: float | None = None
) -> AsyncIterator[Backend]:
    """The remote or embedded backend the settings select; closed on exit."""
    if config.mode == "remote":
        client = ClaudeMemClient(
            config.server_url or "",
            config.api_key,
            timeout=timeout_s or config.timeout_s,
            retries=0,
        )
        backend: Backend = RemoteBackend(client, config.project_id)
        try:
            yield backend
        finally:
            await backend.close()
        return
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import open_memory_from_settings

    settings = Settings.from_env(config.env)
    async with open_memory_from_settings(settings, queue=False) as memory:
        yield await LocalBackend.embedded(memory, default_project=None)


# -- context for SessionStart ------------------------------------------------------------------


def format_context(project: str, observations: Sequence[Mapping[str, Any]], tokens: int) -> str:
    """Newest-first observations as a compact block, cut to about ``tokens`` tokens."""
    if tokens <= 0 or not observations:
        return ""
    budget = tokens * CHARS_PER_TOKEN
    header = f"<{CONTEXT_TAG}>\n# Memory from earlier sessions in {project}\n"
    footer = f"</{CONTEXT_TAG}>"
    used = len(header) + len(footer)
    lines: list[str] = []
    for obs in observations:
        content = " ".join(str(obs.get("content") or "").split())
        if not content:
            continue
        title = str(obs.get("title") or "").strip()
        kind = str(obs.get("type") or obs.get("kind") or "note")
        line = f"- [{kind}] {title + ': ' if title and title not in content else ''}{content}\n"
        if used + len(line) > budget:
            room = budget - used - len(f"- [{kind}] …\n")
            if room > 80 and not lines:
                lines.append(f"- [{kind}] {content[:room]}…\n")
            break
        lines.append(line)
        used += len(line)
    if not lines:
        return ""
    return header + "".join(lines) + footer


async def fetch_context(backend: Backend, config: HookConfig, project: str) -> str:
    """The project's newest observations (remote: the configured project id; embedded:
    the project named ``project``), cut to the token budget. A server that predates GET
    /v1/memories/recent gets the older query instead: a search for the project's name."""
    limit = config.context_observations
    remote = config.mode == "remote"
    try:
        observations = await backend.recent(None if remote else project, min(limit, 100))
    except RouteUnsupported as exc:
        log.info("context: %s; searching for the project name instead", exc)
        found = await backend.context(None, project, min(limit, 50))
        observations = list(found.get("observations") or [])
    return format_context(project, observations, config.context_tokens)


# -- one hook invocation ------------------------------------------------------------------------

_logging_ready = False


def setup_logging(data_dir: Path) -> None:
    """Hook diagnostics go to a small rotating file, never to stdout/stderr."""
    global _logging_ready
    if _logging_ready:
        return
    _logging_ready = True
    logger = logging.getLogger("claude_mem")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logs = data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler: logging.Handler = RotatingFileHandler(
            logs / "hooks.log", maxBytes=1_000_000, backupCount=2, encoding="utf-8"
        )
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    logger.addHandler(handler)


def hook_output(event: str, context: str | None = None) -> dict[str, Any]:
    output: dict[str, Any] = {"continue": True, "suppressOutput": True}
    if context:
        output["hookSpecificOutput"] = {"hookEventName": event, "additionalContext": context}
    return output


def _parse_stdin(raw: str) -> dict[str, Any]:
    try:
        loaded = json.loads(raw) if raw.strip() else {}
    except ValueError:
        log.warning("hook: stdin is not JSON; ignoring it")
        return {}
    return loaded if isinstance(loaded, dict) else {}


async def run_hook(event: str, raw_stdin: str, config: HookConfig) -> dict[str, Any]:
    """Everything one hook does; returns the JSON to print. Never raises (except
    ``KeyboardInterrupt``-like base exceptions), never runs past ``config.timeout_s``."""
    started = time.monotonic()
    deadline = started + config.timeout_s
    context: str | None = None
    try:
        payload = _parse_stdin(raw_stdin)
        plan = hook_mapping.plan_hook(
            event, payload, config.mapping_options(), now_ms=now_epoch_ms()
        )
        if plan.skipped:
            log.info("hook %s: skipped (%s)", event, plan.skipped)
        spool = Spool(config.spool_path, lock_wait_s=min(1.0, config.timeout_s / 2))
        spool.append(plan.records)
        async with (
            asyncio.timeout(max(0.01, deadline - time.monotonic())),
            open_backend(config) as backend,
        ):
            if plan.wants_context and plan.project:
                try:
                    async with asyncio.timeout(config.timeout_s * CONTEXT_SHARE):
                        context = await fetch_context(backend, config, plan.project)
                except TimeoutError:
                    log.warning("hook %s: context fetch timed out", event)
                except ClaudeMemError as exc:
                    log.warning("hook %s: no context: %s", event, exc)
            report = await flush(spool, Delivery(backend, config))
            if report.blocked or report.remaining:
                log.info(
                    "hook %s: %d delivered, %d waiting (%s)",
                    event,
                    report.delivered,
                    report.remaining,
                    report.blocked or "busy",
                )
        if config.mode == "embedded" and event in ("Stop", "SessionEnd") and plan.records:
            spawn_drain(config)
    except TimeoutError:
        log.warning(
            "hook %s: timed out after %.2f s; undelivered records stay spooled",
            event,
            time.monotonic() - started,
        )
    except Exception:
        log.exception("hook %s failed; undelivered records stay spooled", event)
    return hook_output(event, context)


def spawn_drain(config: HookConfig) -> None:
    """Start ``hook drain`` detached: generation for the embedded memory, off the hook's
    clock."""
    if not config.background_drain:
        return
    try:
        subprocess.Popen(
            [sys.executable, "-m", "claude_mem_http.client.hooks", "drain"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "CLAUDE_MEM_DATA_DIR": str(config.data_dir)},
        )
    except OSError:
        log.exception("hook: could not start the background drain")


async def drain(config: HookConfig) -> int:
    """Run queued generation of the embedded memory, one drainer at a time."""
    if config.mode != "embedded":
        return 0
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import open_memory_from_settings

    try:
        with flocked(config.data_dir / "drain.lock", blocking_s=0):
            async with open_memory_from_settings(Settings.from_env(config.env)) as memory:
                return await memory.drain()
    except LockBusy:
        return 0


async def flush_command(config: HookConfig, out: TextIO) -> int:
    """``claude-mem hook flush``: deliver the whole spool now, waiting for the flush lock."""
    spool = Spool(config.spool_path)
    async with (
        asyncio.timeout(FLUSH_COMMAND_TIMEOUT_S),
        open_backend(config, timeout_s=max(config.timeout_s, 10.0)) as backend,
    ):
        report = await flush(spool, Delivery(backend, config), lock_wait_s=30.0)
    print(
        json.dumps(
            {
                "delivered": report.delivered,
                "rejected": report.rejected,
                "remaining": report.remaining,
                "blocked": report.blocked,
                "busy": report.busy,
            }
        ),
        file=out,
    )
    return 0 if not report.remaining else 1


# -- command line -------------------------------------------------------------------------------


COMMANDS = ("flush", "drain")


def unknown_event_message(event: str) -> str:
    """What ``claude-mem hook <event>`` says about an event name it does not know."""
    valid = hook_mapping.HOOK_EVENTS
    close = difflib.get_close_matches(event, valid, n=1, cutoff=0.6) or [
        name for name in valid if name.lower() == event.lower()
    ]
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (
        f"claude-mem hook: unknown event {event!r}{hint}; valid events: "
        f"{', '.join(valid)} (and `flush` to send the spool now)"
    )


async def cmd_hook(args: argparse.Namespace) -> int:
    return await hook_main(args.event, stdin=sys.stdin, stdout=sys.stdout)


async def hook_main(
    event: str,
    *,
    stdin: TextIO,
    stdout: TextIO,
    env: Mapping[str, str] | None = None,
    stderr: TextIO | None = None,
) -> int:
    """The whole hook command; returns the exit status (0 for hook events; 1, with the
    valid events on stderr, for a name that is none of them: Claude Code shows that and
    goes on, where 2 would block the agent)."""
    if event not in (*hook_mapping.HOOK_EVENTS, *COMMANDS):
        print(unknown_event_message(event), file=stderr or sys.stderr)
        return 1
    try:
        config = HookConfig.load(env)
        setup_logging(config.data_dir)
    except Exception:
        stdout.write(json.dumps(hook_output(event)) + "\n")
        return 0
    if event == "flush":
        try:
            return await flush_command(config, stdout)
        except Exception as exc:
            print(f"error: flush failed: {exc}", file=sys.stderr)
            return 1
    if event == "drain":
        try:
            await drain(config)
        except Exception:
            log.exception("hook drain failed")
        return 0
    try:
        raw = stdin.read()
    except Exception:
        raw = ""
    output = await run_hook(event, raw, config)
    stdout.write(json.dumps(output) + "\n")
    stdout.flush()
    return 0


def register(commands: Commands) -> None:
    """Add ``claude-mem hook <event>`` (SessionStart, UserPromptSubmit, PostToolUse, Stop,
    SessionEnd, flush): entry point ``hook`` of the ``claude_mem.cli`` group."""
    hook = commands.add(
        "hook",
        help="Claude Code hook entry point (reads the hook JSON on stdin); "
        "`hook flush` sends the spool now",
        after="server",
    )
    hook.add_argument(
        "event",
        help="SessionStart | UserPromptSubmit | PostToolUse | Stop | SessionEnd | flush",
    )
    hook.set_defaults(handler=cmd_hook)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m claude_mem_http.client.hooks <event>``: what ``install claude-code``
    registers."""
    args = list(sys.argv[1:] if argv is None else argv)
    event = args[0] if args else ""
    try:
        return asyncio.run(hook_main(event, stdin=sys.stdin, stdout=sys.stdout))
    except BaseException:  # the hook never fails the agent's session
        if event in ("flush",):
            return 1
        sys.stdout.write(json.dumps(hook_output(event)) + "\n")
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
