"""``claude-mem export`` and ``claude-mem import jsonl`` on the embedded SQLite default: a
project taken to another machine (another data directory) is found by search there; a bad
line or a newer export exits 2 naming it, with nothing written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from claude_mem_core.cli import main
from claude_mem_core.config import Settings
from claude_mem_core.domain.models import Scope
from claude_mem_core.facade import open_memory_from_settings


async def _seed() -> None:
    async with open_memory_from_settings(Settings.from_env(), queue=False) as memory:
        team, project = await memory.ensure_project("local", "webapp")
        scope = Scope(team_id=team.id, project_id=project.id)
        session = (await memory.start_session(scope, external_session_id="cs-1")).session
        for n in range(3):
            await memory.ingest(
                scope,
                event_type="tool_use",
                session_id=session.id,
                source_event_id=f"tool-{n}",
                payload={
                    "tool_name": "Bash",
                    "tool_input": {"command": f"pytest tests/test_quux{n}.py"},
                    "tool_response": f"quux{n} passed",
                },
            )
        await memory.drain()
        await memory.add_memory(scope, "Releases are cut from the zebra branch.", title="Releases")


async def _search(project: str, query: str) -> list[str]:
    async with open_memory_from_settings(Settings.from_env(), queue=False) as memory:
        team, found = await memory.ensure_project("local", project)
        hits = await memory.search(Scope(team_id=team.id, project_id=found.id), query)
        return [h.observation.content for h in hits]


async def _lines(project: str) -> list[str]:
    async with open_memory_from_settings(Settings.from_env(), queue=False) as memory:
        team, found = await memory.ensure_project("local", project)
        scope = Scope(team_id=team.id, project_id=found.id)
        return [line async for line in memory.export_project(scope)]


def _move_to(monkeypatch: pytest.MonkeyPatch, place: Path) -> None:
    place.mkdir()
    monkeypatch.setenv("CLAUDE_MEM_DATA_DIR", str(place))


def test_export_then_import_elsewhere_is_found_by_search(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(_seed())
    exported = tmp_path / "webapp.jsonl"
    assert main(["export", "--project", "webapp", "--output", str(exported)]) == 0
    _, err = capsys.readouterr()
    assert "exporting" in err  # the progress bar, on stderr
    lines = exported.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["format"] == "claude-mem-export"

    _move_to(monkeypatch, tmp_path / "laptop")
    code = main(["import", "jsonl", str(exported), "--project", "copy", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert (report["sessions"], report["events"]) == (1, 3) and report["observations"] >= 2
    assert "writing" in err
    assert any("zebra" in content for content in asyncio.run(_search("copy", "zebra branch")))
    assert asyncio.run(_search("copy", "quux1"))  # by the words of the events, too
    assert [line.rstrip("\n") for line in asyncio.run(_lines("copy"))][1:] == lines[1:]

    assert main(["import", "jsonl", str(exported), "--project", "copy", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["skipped"] == len(lines) - 1 and again["events"] == 0


def test_export_to_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    asyncio.run(_seed())
    assert main(["export", "--project", "webapp"]) == 0
    out, err = capsysbinary.readouterr()
    first, *records = out.decode("utf-8").splitlines()
    assert json.loads(first)["counts"]["events"] == 3
    assert [json.loads(r)["type"] for r in records][:4] == ["session", "event", "event", "event"]
    assert b"exporting" in err and b"claude-mem-export" not in err


def test_a_bad_line_exits_2_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    asyncio.run(_seed())
    exported = tmp_path / "webapp.jsonl"
    assert main(["export", "--project", "webapp", "-o", str(exported)]) == 0
    lines = exported.read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "broken.jsonl"
    record = json.loads(lines[2])
    record["sourceAdapter"] = 42
    broken.write_text("\n".join([*lines[:2], json.dumps(record), *lines[3:]]) + "\n")
    capsys.readouterr()
    assert main(["import", "jsonl", str(broken), "--project", "other"]) == 2
    assert "line 3: sourceAdapter" in capsys.readouterr().err
    assert asyncio.run(_lines("other"))[1:] == []

    header = json.loads(lines[0])
    header["version"] = 99
    future = tmp_path / "future.jsonl"
    future.write_text(json.dumps(header) + "\n")
    assert main(["import", "jsonl", str(future), "--project", "other"]) == 2
    assert "version 99" in capsys.readouterr().err


def test_exporting_an_unknown_project_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--project", "nowhere"]) == 1
    assert "no project nowhere" in capsys.readouterr().err
