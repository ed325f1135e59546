"""install / uninstall claude-code on a temporary HOME."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from clientkit import db_path, embedded_env

from claude_mem_core.config import Settings
from claude_mem_core.domain.scopes import HOOK_SCOPES
from claude_mem_core.facade import open_memory_from_settings
from claude_mem_http.client import install

THEIRS = {
    "model": "opus",
    "hooks": {
        "PostToolUse": [
            {"matcher": "Write|Edit", "hooks": [{"type": "command", "command": "prettier --write"}]}
        ],
        "Notification": [{"hooks": [{"type": "command", "command": "notify-send hi"}]}],
    },
}


@pytest.fixture
def home(embedded_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    env = embedded_env(embedded_data_dir)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    home = Path(env["HOME"])
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_text(json.dumps(THEIRS))
    return home


def args(**kw: Any) -> argparse.Namespace:
    base = {
        "scope": "user",
        "server_url": None,
        "team": "local",
        "project": "claude-code",
        "rotate_key": False,
        "no_key": False,
        "hook_command": None,
        "json": True,
        "revoke_key": False,
    }
    return argparse.Namespace(**{**base, **kw})


def claude_settings(home: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((home / ".claude" / "settings.json").read_text())
    return loaded


async def test_install_merges_is_idempotent_and_uninstall_removes_only_ours(
    home: Path, embedded_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await install.cmd_install(args(server_url="http://127.0.0.1:37877/")) == 0
    first = json.loads(capsys.readouterr().out)
    settings = claude_settings(home)
    assert settings["model"] == "opus"
    hooks = settings["hooks"]
    assert set(hooks) == {*install.HOOK_EVENTS, "Notification"}
    assert hooks["PostToolUse"][0] == THEIRS["hooks"]["PostToolUse"][0]
    ours = hooks["PostToolUse"][1]
    assert ours["matcher"] == "*"
    assert ours["hooks"][0]["command"].endswith("-m claude_mem_http.client.hooks PostToolUse")
    assert hooks["SessionStart"][0]["matcher"] == "startup|resume|clear|compact"

    stored_path = embedded_data_dir / "settings.json"
    assert stat.S_IMODE(stored_path.stat().st_mode) == 0o600
    stored = json.loads(stored_path.read_text())
    assert stored["CLAUDE_MEM_SERVER_BETA_URL"] == "http://127.0.0.1:37877"
    assert stored["CLAUDE_MEM_SERVER_BETA_PROJECT_ID"] == first["projectId"]
    async with open_memory_from_settings(Settings.from_env(), queue=False) as memory:
        caller = await memory.verify_api_key(stored["CLAUDE_MEM_SERVER_BETA_API_KEY"])
    assert caller.scopes == HOOK_SCOPES and caller.project_id == first["projectId"]

    # Again: nothing changes, the valid key is kept, nothing is duplicated.
    assert await install.cmd_install(args()) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["changed"] == [] and second["apiKeyCreated"] is False
    assert claude_settings(home) == settings
    assert json.loads(stored_path.read_text()) == stored

    # Rotation revokes the old key.
    assert await install.cmd_install(args(rotate_key=True)) == 0
    rotated = json.loads(stored_path.read_text())
    assert rotated["CLAUDE_MEM_SERVER_BETA_API_KEY"] != stored["CLAUDE_MEM_SERVER_BETA_API_KEY"]
    capsys.readouterr()

    assert await install.cmd_uninstall(args(revoke_key=True)) == 0
    removed = json.loads(capsys.readouterr().out)
    assert removed["removed"] == sorted(install.HOOK_EVENTS)
    assert claude_settings(home) == THEIRS
    assert "CLAUDE_MEM_SERVER_BETA_API_KEY" not in json.loads(stored_path.read_text())
    assert db_path("sqlite:///" + str(embedded_data_dir / "claude-mem.db")).exists()


async def test_project_scope_and_no_existing_file(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project_dir = tmp_path / "repo"
    project_dir.mkdir()
    monkeypatch.chdir(project_dir)
    assert await install.cmd_install(args(scope="project", no_key=True)) == 0
    created = json.loads((project_dir / ".claude" / "settings.json").read_text())
    assert set(created["hooks"]) == set(install.HOOK_EVENTS)
    assert await install.cmd_uninstall(args(scope="project")) == 0
    assert json.loads((project_dir / ".claude" / "settings.json").read_text()) == {}
    assert claude_settings(home) == THEIRS


def test_merge_updates_a_stale_entry_in_place() -> None:
    settings: dict[str, Any] = {
        "hooks": {
            "Stop": [{"hooks": [{"type": "command", "command": "claude-mem hook Stop"}]}],
        }
    }
    changed = install.merge_hooks(settings, prefix="/opt/cm/bin/claude-mem hook")
    assert "Stop" in changed
    assert settings["hooks"]["Stop"] == [
        {
            "hooks": [
                {"type": "command", "command": "/opt/cm/bin/claude-mem hook Stop", "timeout": 10}
            ]
        }
    ]
    assert install.merge_hooks(settings, prefix="/opt/cm/bin/claude-mem hook") == []


def test_entries_of_the_former_hook_module_are_replaced_and_removed() -> None:
    """Hooks installed before the runner moved (``-m claude_mem_http.hooks``) keep running
    (test below); installing again rewrites them to the new path, uninstalling removes
    them."""
    former = "/usr/bin/python3 -m claude_mem_http.hooks PostToolUse"
    settings: dict[str, Any] = {
        "hooks": {"PostToolUse": [{"hooks": [{"type": "command", "command": former}]}]}
    }
    assert install.is_ours({"type": "command", "command": former})
    assert not install.is_ours({"type": "command", "command": "python -m claude_mem_http.hooksx"})
    assert "PostToolUse" in install.merge_hooks(settings)
    (entry,) = settings["hooks"]["PostToolUse"]
    assert entry["hooks"][0]["command"].endswith("-m claude_mem_http.client.hooks PostToolUse")
    settings = {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": former}]}]}}
    assert install.remove_hooks(settings) == ["Stop"]


def test_malformed_claude_settings_are_never_overwritten(tmp_path: Path) -> None:
    from claude_mem_core.errors import ConfigurationError

    bad = tmp_path / "settings.json"
    bad.write_text("{oops")
    with pytest.raises(ConfigurationError):
        install.read_json_object(bad)


def test_the_former_hook_module_path_still_runs_the_hook() -> None:
    """Settings written by an earlier install run ``python -m claude_mem_http.hooks``: it
    must answer exactly as the runner does, or the agent's events would be dropped."""
    import subprocess
    import sys

    def run(module: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", module, "NoSuchEvent"],
            input="{}",
            capture_output=True,
            text=True,
            timeout=60,
        )

    former, current = run("claude_mem_http.hooks"), run("claude_mem_http.client.hooks")
    assert current.returncode == 1 and "SessionStart" in current.stderr
    assert (former.returncode, former.stdout, former.stderr) == (
        current.returncode,
        current.stdout,
        current.stderr,
    )
