"""``claude-mem retention set|run`` on the embedded SQLite default: setting a retention,
a sweep now with a table of what went, and bad arguments that exit 2 saying what to do."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from claude_mem_core.cli import main
from claude_mem_core.config import Settings
from claude_mem_core.domain.models import Scope
from claude_mem_core.errors import NotFound
from claude_mem_core.facade import open_memory
from claude_mem_core.testing.fakes import FixedClock


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def _seed_old_session() -> tuple[str, str, str]:
    """A session whose only event came ten days ago: team, project and session ids."""
    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    past = FixedClock(datetime.now(UTC) - timedelta(days=10))
    async with open_memory(settings.database_url, provider="offline", env={}, clock=past) as memory:
        team, project = await memory.ensure_project("acme", "webapp")
        scope = Scope(team_id=team.id, project_id=project.id)
        session = (await memory.start_session(scope, external_session_id="cs-1")).session
        await memory.ingest(
            scope, event_type="tool_use", payload={"tool_name": "Edit"}, session_id=session.id
        )
    return team.id, project.id, session.id


async def _session_exists(team: str, project: str, session_id: str) -> bool:
    settings = Settings.from_env()
    async with open_memory(settings.database_url, provider="offline", env={}) as memory:
        try:
            await memory.get_session(Scope(team_id=team, project_id=project), session_id)
        except NotFound:
            return False
        return True


def test_set_then_run_erases_what_is_older(capsys: pytest.CaptureFixture[str]) -> None:
    team, project, session = asyncio.run(_seed_old_session())

    code, out, _ = run(capsys, "retention", "set", project, "--team", team, "--days", "7")
    assert code == 0, out
    assert "keeps its sessions and events 7 day(s)" in out

    code, out, _ = run(capsys, "retention", "run")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["PROJECT", "DAYS", "ERASED", "BEFORE", "SESSIONS", "EVENTS", "ROWS"]
    row = lines[1].split()
    assert row[:2] == [project, "7"] and row[3:5] == ["1", "0"] and int(row[5]) > 0
    assert not asyncio.run(_session_exists(team, project, session))

    code, out, _ = run(capsys, "--json", "retention", "run", "--project", project)
    assert code == 0
    assert json.loads(out)["projects"][0]["sessions"] == 0


def test_keep_removes_the_retention(capsys: pytest.CaptureFixture[str]) -> None:
    team, project, session = asyncio.run(_seed_old_session())
    assert run(capsys, "retention", "set", project, "--team", team, "--days", "3")[0] == 0
    code, out, _ = run(capsys, "retention", "set", project, "--team", team, "--keep")
    assert code == 0 and "until erased" in out
    code, out, _ = run(capsys, "retention", "run")
    assert code == 0 and "No project has a retention" in out
    assert asyncio.run(_session_exists(team, project, session))


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["retention", "set", "p", "--team", "t"], "give --days N, or --keep"),
        (["retention", "set", "p", "--team", "t", "--days", "0"], "between 1 and"),
        (["retention", "set", "p", "--team", "t", "--days", "soon"], "whole number of days"),
        (["retention", "set", "p", "--team", "t", "--days", "3", "--keep"], "not allowed"),
    ],
)
def test_bad_arguments_exit_2_saying_what_to_do(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert says in err
    assert "Traceback" not in out + err


def test_an_unknown_project_is_not_found(capsys: pytest.CaptureFixture[str]) -> None:
    team, _, _ = asyncio.run(_seed_old_session())
    code, _, err = run(capsys, "retention", "set", "nope", "--team", team, "--days", "3")
    assert code == 1
    assert "no project nope" in err
