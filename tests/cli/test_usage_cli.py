"""``claude-mem usage`` on the embedded SQLite default: a readable table of calls, tokens
and estimated dollars by model (with the total), JSON for scripts, and an unknown team
that is not found (exit 1)."""

from __future__ import annotations

import asyncio
import json

import pytest

from claude_mem_core.cli import main
from claude_mem_core.config import Settings
from claude_mem_core.domain.models import Scope
from claude_mem_core.facade import Memory, open_memory_from_settings
from claude_mem_core.testing.fakes import ScriptedProvider

OBSERVATION = "<observation><type>change</type><title>Edited it</title></observation>"


class Anthropic(ScriptedProvider):
    name = "anthropic"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def _spend(calls: int) -> str:
    """``calls`` generation jobs answered by a priced provider: the team id."""
    async with open_memory_from_settings(Settings.from_env(), queue=False) as opened:
        memory = Memory(
            storage=opened.deps.storage,
            queue=None,
            provider=Anthropic(default=OBSERVATION, model="claude-haiku-4-5"),
        )
        team, project = await memory.ensure_project("acme", "webapp")
        scope = Scope(team_id=team.id, project_id=project.id)
        for n in range(calls):
            await memory.ingest(scope, event_type="tool_use", payload={"tool_name": "Edit", "n": n})
        await memory.drain()
    return team.id


def test_usage_by_model_as_a_table_and_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    team = asyncio.run(_spend(3))

    code, out, _ = run(capsys, "usage", "--team", team, "--by", "model")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["MODEL", "CALLS"]
    assert lines[1].split()[:2] == ["anthropic/claude-haiku-4-5", "3"]
    assert lines[2].split()[:2] == ["total", "3"]
    assert "list prices as of" in out

    code, out, _ = run(capsys, "--json", "usage", "--team", team, "--by", "model")
    assert code == 0
    rows = json.loads(out)["rows"]
    assert rows[-1]["group"] == "total" and rows[-1]["calls"] == 3
    assert rows[0]["costUsd"] > 0 and rows[0]["unpricedCalls"] == 0


def test_an_unknown_team_is_not_found(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "usage", "--team", "no-such-team")
    assert code == 1
    assert "not found" in err.lower()
    assert "Traceback" not in out + err


def test_bad_days_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "usage", "--team", "t", "--days", "0")
    assert code == 2 and "days" in err
