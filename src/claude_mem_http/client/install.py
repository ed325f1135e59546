"""``claude-mem install claude-code`` and ``claude-mem uninstall claude-code``.

Install does two things, both idempotent:

1. Registers the hooks in Claude Code's settings (``~/.claude/settings.json`` for
   ``--scope user``, ``./.claude/settings.json`` for ``--scope project``). The file is
   merged, never replaced: other keys and other hooks stay as they are; an entry of ours
   that is already there is updated in place, not duplicated. Our entries are recognised by
   their command (``-m claude_mem_http.client.hooks`` or ``claude-mem hook``).
2. Issues an API key with the hook scopes (events:write, sessions:write, observations:read,
   jobs:read) for the configured database (the one ``claude-mem serve`` uses), bound to one
   team and project, and stores it in ``<data dir>/settings.json`` with the project id (and
   the server URL when given). The file is written atomically and created 0600 — the key
   never exists on disk with broader permissions. A key that is already stored and still
   valid is kept; ``--rotate-key`` replaces it (the old one is revoked).

Uninstall removes exactly our hook entries (and, with ``--revoke-key``, revokes the stored
key and removes it from the settings file).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from claude_mem_core.cli.commands import Commands
from claude_mem_core.domain.scopes import HOOK_SCOPES
from claude_mem_core.errors import ClaudeMemError, ConfigurationError, Forbidden, NotFound
from claude_mem_http.client.hook_config import data_dir_from
from claude_mem_http.client.hook_mapping import HOOK_EVENTS

HOOK_MODULE = "claude_mem_http.client.hooks"
# Where the hook runner lived before the package was split into server/wire/client/mcp:
# entries an older install wrote still count as ours, so installing again replaces them and
# uninstalling removes them.
FORMER_HOOK_MODULE = "claude_mem_http.hooks"
OUR_MARKERS = (f"-m {HOOK_MODULE} ", f"-m {FORMER_HOOK_MODULE} ", "claude-mem hook ")
CLAUDE_HOOK_TIMEOUT_S = 10  # Claude Code's own kill timer; ours (2 s) is well inside it
MATCHERS: dict[str, str | None] = {
    "SessionStart": "startup|resume|clear|compact",
    "UserPromptSubmit": None,
    "PostToolUse": "*",
    "Stop": None,
    "SessionEnd": None,
}
KEY_SETTINGS = (
    "CLAUDE_MEM_SERVER_BETA_API_KEY",
    "CLAUDE_MEM_SERVER_BETA_API_KEY_ID",
    "CLAUDE_MEM_SERVER_BETA_PROJECT_ID",
)
DEFAULT_TEAM = "local"
DEFAULT_PROJECT = "claude-code"


# -- files ---------------------------------------------------------------------------------


def claude_settings_path(scope: str, *, cwd: Path | None = None) -> Path:
    if scope == "project":
        return (cwd or Path.cwd()) / ".claude" / "settings.json"
    return Path.home() / ".claude" / "settings.json"


def read_json_object(path: Path) -> dict[str, Any]:
    """The file's JSON object; a missing file is ``{}``. Malformed JSON is an error (we
    never overwrite a file we could not understand)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{path} is not valid JSON ({exc}); fix or move it first"
        ) from None
    if not isinstance(loaded, dict):
        raise ConfigurationError(f"{path} must hold a JSON object")
    return loaded


def write_json_atomic(path: Path, data: Mapping[str, Any], *, mode: int | None = None) -> None:
    """Write via a temporary file and rename. ``mode`` (e.g. 0o600) is applied at creation,
    so the content is never readable with broader permissions; otherwise an existing
    file's mode is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


# -- hook entries ---------------------------------------------------------------------------


def hook_command(event: str, prefix: str | None = None) -> str:
    base = prefix or f"{shlex.quote(sys.executable)} -m {HOOK_MODULE}"
    return f"{base} {event}"


def is_ours(hook: Any) -> bool:
    if not isinstance(hook, dict):
        return False
    command = hook.get("command")
    return isinstance(command, str) and any(m in command + " " for m in OUR_MARKERS)


def merge_hooks(settings: dict[str, Any], *, prefix: str | None = None) -> list[str]:
    """Add or update our entry for each event in a Claude Code settings object (in place).
    Returns the events whose entry changed."""
    hooks = settings.get("hooks")
    if hooks is None:
        hooks = settings["hooks"] = {}
    if not isinstance(hooks, dict):
        raise ConfigurationError('"hooks" in the Claude Code settings is not an object')
    changed: list[str] = []
    for event in HOOK_EVENTS:
        wanted = {
            "type": "command",
            "command": hook_command(event, prefix),
            "timeout": CLAUDE_HOOK_TIMEOUT_S,
        }
        groups = hooks.setdefault(event, [])
        if not isinstance(groups, list):
            raise ConfigurationError(f'"hooks.{event}" in the Claude Code settings is not a list')
        existing = [
            (group, i)
            for group in groups
            if isinstance(group, dict) and isinstance(group.get("hooks"), list)
            for i, hook in enumerate(group["hooks"])
            if is_ours(hook)
        ]
        if existing:
            group, index = existing[0]
            if group["hooks"][index] != wanted:
                group["hooks"][index] = wanted
                changed.append(event)
            matcher = MATCHERS[event]
            if matcher is not None and group.get("matcher") != matcher:
                group["matcher"] = matcher
                changed.append(event)
            for extra_group, extra_index in reversed(existing[1:]):
                del extra_group["hooks"][extra_index]
            continue
        entry: dict[str, Any] = {"hooks": [wanted]}
        if MATCHERS[event] is not None:
            entry = {"matcher": MATCHERS[event], **entry}
        groups.append(entry)
        changed.append(event)
    _prune(hooks)
    return sorted(set(changed))


def remove_hooks(settings: dict[str, Any]) -> list[str]:
    """Remove our hook entries (only ours) from a Claude Code settings object."""
    hooks = settings.get("hooks")
    if not isinstance(hooks, dict):
        return []
    removed: list[str] = []
    for event, groups in list(hooks.items()):
        if not isinstance(groups, list):
            continue
        for group in groups:
            if isinstance(group, dict) and isinstance(group.get("hooks"), list):
                kept = [h for h in group["hooks"] if not is_ours(h)]
                if len(kept) != len(group["hooks"]):
                    removed.append(event)
                    group["hooks"] = kept
    _prune(hooks)
    if not hooks:
        del settings["hooks"]
    return sorted(set(removed))


def _prune(hooks: dict[str, Any]) -> None:
    """Drop matcher groups we emptied, and events left with no group."""
    for event, groups in list(hooks.items()):
        if not isinstance(groups, list):
            continue
        groups[:] = [g for g in groups if not (isinstance(g, dict) and g.get("hooks") == [])]
        if not groups:
            del hooks[event]


# -- the key --------------------------------------------------------------------------------


async def ensure_hook_key(
    data_dir: Path,
    *,
    team_name: str,
    project_name: str,
    rotate: bool,
    env: Mapping[str, str],
) -> dict[str, Any]:
    """Issue (or keep) the hook key and return the settings to store."""
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import open_memory_from_settings

    stored = read_json_object(data_dir / "settings.json")
    settings = Settings.from_env(env)
    async with open_memory_from_settings(settings, queue=False) as memory:
        team, project = await memory.ensure_project(team_name, project_name)
        raw = stored.get("CLAUDE_MEM_SERVER_BETA_API_KEY")
        key_id = stored.get("CLAUDE_MEM_SERVER_BETA_API_KEY_ID")
        if isinstance(raw, str) and raw and not rotate:
            try:
                caller = await memory.verify_api_key(raw)
            except Forbidden:
                caller = None
            if caller is not None and caller.project_id == project.id:
                return {
                    "key_id": caller.api_key_id,
                    "created": False,
                    "team_id": team.id,
                    "project_id": project.id,
                    "raw_key": raw,
                }
        if isinstance(key_id, str) and key_id:
            with contextlib.suppress(NotFound):
                await memory.revoke_api_key(key_id)
        issued = await memory.create_api_key(
            team_id=team.id,
            project_id=project.id,
            scopes=sorted(HOOK_SCOPES),
            name="claude-code hooks",
            actor_id="system:install-claude-code",
        )
    return {
        "key_id": issued.key.id,
        "created": True,
        "team_id": team.id,
        "project_id": project.id,
        "raw_key": issued.raw_key,
    }


def store_key(data_dir: Path, key: Mapping[str, Any], *, server_url: str | None) -> Path:
    path = data_dir / "settings.json"
    current = read_json_object(path)
    nested = current.get("env")
    if isinstance(nested, dict):  # the legacy nested shape is flattened on write
        current = {**nested, **{k: v for k, v in current.items() if k != "env"}}
    current["CLAUDE_MEM_SERVER_BETA_API_KEY"] = key["raw_key"]
    current["CLAUDE_MEM_SERVER_BETA_API_KEY_ID"] = key["key_id"]
    current["CLAUDE_MEM_SERVER_BETA_PROJECT_ID"] = key["project_id"]
    if server_url:
        current["CLAUDE_MEM_SERVER_BETA_URL"] = server_url.rstrip("/")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_json_atomic(path, current, mode=0o600)
    return path


# -- commands -------------------------------------------------------------------------------


def _emit(args: argparse.Namespace, payload: Mapping[str, Any], text: str) -> None:
    print(json.dumps(payload, indent=2) if getattr(args, "json", False) else text)


async def cmd_install(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    data_dir = data_dir_from(env)
    target = claude_settings_path(args.scope)
    claude = read_json_object(target)
    changed = merge_hooks(claude, prefix=args.hook_command)
    key: dict[str, Any] | None = None
    if not args.no_key:
        try:
            key = await ensure_hook_key(
                data_dir,
                team_name=args.team,
                project_name=args.project,
                rotate=args.rotate_key,
                env=env,
            )
        except ClaudeMemError as exc:
            raise ConfigurationError(f"could not issue the hook API key: {exc.message}") from exc
        store_key(data_dir, key, server_url=args.server_url)
    write_json_atomic(target, claude)
    payload = {
        "claudeSettings": str(target),
        "events": list(HOOK_EVENTS),
        "changed": changed,
        "settingsFile": str(data_dir / "settings.json") if key else None,
        "apiKeyId": key["key_id"] if key else None,
        "apiKeyCreated": key["created"] if key else False,
        "projectId": key["project_id"] if key else None,
    }
    lines = [
        f"Claude Code hooks {'registered' if changed else 'already registered'} in {target}",
    ]
    if key:
        lines.append(
            f"Hook API key {key['key_id']} ({'new' if key['created'] else 'kept'}) stored in "
            f"{data_dir / 'settings.json'} (mode 0600), project {key['project_id']}"
        )
    _emit(args, payload, "\n".join(lines))
    return 0


async def cmd_uninstall(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    data_dir = data_dir_from(env)
    target = claude_settings_path(args.scope)
    claude = read_json_object(target)
    removed = remove_hooks(claude)
    if removed:
        write_json_atomic(target, claude)
    revoked: str | None = None
    if args.revoke_key:
        path = data_dir / "settings.json"
        stored = read_json_object(path)
        key_id = stored.get("CLAUDE_MEM_SERVER_BETA_API_KEY_ID")
        if isinstance(key_id, str) and key_id:
            from claude_mem_core.config import Settings
            from claude_mem_core.facade import open_memory_from_settings

            async with open_memory_from_settings(Settings.from_env(env), queue=False) as memory:
                try:
                    await memory.revoke_api_key(key_id)
                    revoked = key_id
                except NotFound:
                    pass
        for name in KEY_SETTINGS:
            stored.pop(name, None)
        if path.exists():
            write_json_atomic(path, stored, mode=0o600)
    payload = {"claudeSettings": str(target), "removed": removed, "revokedKeyId": revoked}
    text = (
        f"Removed claude-mem hooks ({', '.join(removed)}) from {target}"
        if removed
        else f"No claude-mem hooks in {target}"
    )
    if revoked:
        text += f"\nRevoked hook API key {revoked}"
    _emit(args, payload, text)
    return 0


def register_install(commands: Commands) -> None:
    """Add ``claude-mem install claude-code`` (entry point ``install`` of the
    ``claude_mem.cli`` group)."""
    install = commands.add("install", help="connect an agent to claude-mem", after="hook")
    targets = install.add_subparsers(dest="target", required=True)
    cc = targets.add_parser("claude-code", help="register the Claude Code hooks and a hook key")
    cc.add_argument("--scope", choices=("user", "project"), default="user")
    cc.add_argument("--server-url", help="store CLAUDE_MEM_SERVER_BETA_URL (remote mode)")
    cc.add_argument("--team", default=DEFAULT_TEAM, help=f"team name (default {DEFAULT_TEAM})")
    cc.add_argument(
        "--project", default=DEFAULT_PROJECT, help=f"project name (default {DEFAULT_PROJECT})"
    )
    cc.add_argument("--rotate-key", action="store_true", help="replace the stored hook key")
    cc.add_argument("--no-key", action="store_true", help="only register the hooks")
    cc.add_argument(
        "--hook-command",
        help=f"command prefix the hooks run (default: this Python with -m {HOOK_MODULE})",
    )
    cc.set_defaults(handler=cmd_install)


def register_uninstall(commands: Commands) -> None:
    """Add ``claude-mem uninstall claude-code`` (entry point ``uninstall``)."""
    uninstall = commands.add(
        "uninstall", help="disconnect an agent from claude-mem", after="install"
    )
    targets = uninstall.add_subparsers(dest="target", required=True)
    cc = targets.add_parser("claude-code", help="remove our Claude Code hooks")
    cc.add_argument("--scope", choices=("user", "project"), default="user")
    cc.add_argument("--revoke-key", action="store_true", help="also revoke and forget the hook key")
    cc.set_defaults(handler=cmd_uninstall)


__all__ = ["merge_hooks", "register_install", "register_uninstall", "remove_hooks"]
