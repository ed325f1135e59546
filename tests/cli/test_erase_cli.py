"""``claude-mem erase event|session|project``, on the embedded SQLite default: a table of
what went, per-batch progress for a project, confirmation unless ``--yes`` (and never a
guess without a terminal), and an unknown id that is not found (exit 1)."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from claude_mem_core.cli import main
from claude_mem_core.config import Settings
from claude_mem_core.domain.models import Scope
from claude_mem_core.errors import NotFound
from claude_mem_core.facade import open_memory_from_settings


class Terminal(io.StringIO):
    """A stdin that says it is a terminal, with the answer already typed."""

    def isatty(self) -> bool:
        return True


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def _seed(events: int = 2) -> tuple[str, str, str, list[str]]:
    """A team, a project, a session and ``events`` events of it: their ids."""
    async with open_memory_from_settings(Settings.from_env(), queue=False) as memory:
        team, project = await memory.ensure_project("acme", "webapp")
        scope = Scope(team_id=team.id, project_id=project.id)
        session = (await memory.start_session(scope, external_session_id="cs-1")).session
        ids = []
        for n in range(events):
            ingested = await memory.ingest(
                scope,
                event_type="tool_use",
                payload={"tool_name": "Edit", "n": n},
                session_id=session.id,
                source_event_id=f"tool-{n}",
            )
            ids.append(ingested.event.id)
    return team.id, project.id, session.id, ids


async def _event_exists(team: str, project: str, event_id: str) -> bool:
    async with open_memory_from_settings(Settings.from_env(), queue=False) as memory:
        try:
            await memory.get_event(Scope(team_id=team, project_id=project), event_id)
        except NotFound:
            return False
        return True


def test_erase_event_prints_what_went(capsys: pytest.CaptureFixture[str]) -> None:
    team, project, _, ids = asyncio.run(_seed())

    code, out, err = run(capsys, "erase", "event", ids[0], "--team", team, "--yes")

    assert code == 0, err
    assert f"Erased event {ids[0]} (project {project}, team {team})" in out
    lines = out.splitlines()
    assert lines[1].split() == ["REMOVED", "ROWS"]
    assert ["events", "1"] in [line.split() for line in lines]
    assert not asyncio.run(_event_exists(team, project, ids[0]))
    assert asyncio.run(_event_exists(team, project, ids[1]))


def test_erase_session_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    team, _, session, _ = asyncio.run(_seed())

    code, out, err = run(capsys, "--json", "erase", "session", session, "--team", team, "--yes")

    assert code == 0, err
    body = json.loads(out)
    assert (body["kind"], body["id"], body["complete"]) == ("session", session, True)
    assert body["removed"]["sessions"] == 1 and body["removed"]["events"] == 2


def test_erase_project_reports_each_batch_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    team, project, _, ids = asyncio.run(_seed(events=3))

    code, out, err = run(
        capsys, "erase", "project", project, "--team", team, "--yes", "--batch-size", "1"
    )

    assert code == 0, err
    batches = [line for line in err.splitlines() if line.startswith("batch ")]
    assert len(batches) > 3 and batches[-1].endswith("(nothing left)")
    assert f"Erased project {project}" in out and "API keys revoked" not in out
    assert ["events", "3"] in [line.split() for line in out.splitlines()]
    assert not asyncio.run(_event_exists(team, project, ids[0]))


def test_without_a_terminal_it_needs_yes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    team, project, _, ids = asyncio.run(_seed())
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))

    code, out, err = run(capsys, "erase", "event", ids[0], "--team", team)

    assert code == 2 and out == ""
    assert "--yes" in err
    assert asyncio.run(_event_exists(team, project, ids[0]))


def test_at_a_terminal_it_asks_first(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    team, project, _, ids = asyncio.run(_seed())

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    code, _, err = run(capsys, "erase", "event", ids[0], "--team", team)
    assert code == 1 and "cannot be undone" in err and "Nothing erased" in err
    assert asyncio.run(_event_exists(team, project, ids[0]))

    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    code, _, err = run(capsys, "erase", "event", ids[0], "--team", team)
    assert code == 0, err
    assert not asyncio.run(_event_exists(team, project, ids[0]))


def test_an_unknown_id_is_not_found(capsys: pytest.CaptureFixture[str]) -> None:
    team, _, _, _ = asyncio.run(_seed(events=1))

    for kind in ("event", "session", "project"):
        code, out, err = run(capsys, "erase", kind, "no-such-id", "--team", team, "--yes")
        assert code == 1 and out == "", kind
        assert f"error: no {kind} no-such-id in team {team}" in err
        assert "Traceback" not in err


def test_the_team_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "erase", "event", "evt_1", "--yes")
    assert code == 2 and "--team" in err
