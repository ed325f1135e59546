"""Transcript import: parsing, replay into the local memory and into a server, idempotency."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from clientkit import FIXTURES, Tenant, base_url, count, embedded_env, hook_payload, rows

from claude_mem_http.client import hook_mapping as hm
from claude_mem_http.client.hooks import hook_main
from claude_mem_http.client.transcript_import import cmd_import, parse_transcript

TRANSCRIPT = FIXTURES / "transcript.jsonl"
SID = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"


def test_parse_a_realistic_transcript() -> None:
    parsed = parse_transcript(TRANSCRIPT)
    assert parsed.session_id == SID and parsed.cwd == "/home/dev/webapp"
    assert parsed.skipped_lines == 1
    kinds = [(e.event_type, e.payload.get("tool_name")) for e in parsed.events]
    assert kinds == [
        ("conversation_summary", None),
        ("user_prompt", None),
        ("tool_use", "Read"),
        ("tool_use", "Edit"),
        ("assistant_message", None),
        ("user_prompt", None),
        ("tool_use", "Bash"),
        ("assistant_message", None),
    ]
    read = parsed.events[2]
    assert read.source_event_id == "cc:tool:toolu_01Read"
    assert read.payload["tool_response"]["file"]["startLine"] == 41
    assert "secret" not in parsed.events[4].payload["last_assistant_message"]
    assert parsed.events[1].occurred_at_epoch == 1772445600000


def import_args(**kw: Any) -> argparse.Namespace:
    base = {
        "path": str(TRANSCRIPT),
        "project": None,
        "server_url": None,
        "api_key": None,
        "remote": False,
        "no_generate": True,
        "json": True,
    }
    return argparse.Namespace(**{**base, **kw})


def local_url(data_dir: Path) -> str:
    return "sqlite:///" + str(data_dir / "claude-mem.db")


def snapshot(url: str) -> dict[str, int]:
    tables = ("agent_events", "server_sessions", "observation_generation_jobs", "observations")
    return {t: count(url, t) for t in tables}


async def test_import_twice_adds_nothing(
    embedded_data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in embedded_env(embedded_data_dir).items():
        monkeypatch.setenv(name, value)
    assert await cmd_import(import_args()) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["events"] == 8 and result["target"] == "local" and result["project"] == "webapp"
    assert "importing [" in captured.err and "9/9" in captured.err
    url = local_url(embedded_data_dir)
    first = snapshot(url)
    assert first["agent_events"] == 8 and first["server_sessions"] == 1
    assert count(url, "observation_generation_jobs", "source_type='session_summary'") == 1
    assert count(url, "observation_generation_jobs") == 7 + 1  # summary line: no generation

    assert await cmd_import(import_args()) == 0
    assert json.loads(capsys.readouterr().out)["summaryJobId"] == result["summaryJobId"]
    assert snapshot(url) == first


async def test_import_after_the_hooks_recorded_the_same_tool_use_adds_only_the_rest(
    embedded_data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    env = embedded_env(embedded_data_dir)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    payload = {
        **hook_payload("PostToolUse"),
        "session_id": SID,
        "tool_name": "Bash",
        "tool_use_id": "toolu_03Bash",
    }
    out = io.StringIO()
    await hook_main("PostToolUse", stdin=io.StringIO(json.dumps(payload)), stdout=out, env=env)
    url = local_url(embedded_data_dir)
    assert count(url, "agent_events") == 1
    assert await cmd_import(import_args()) == 0
    capsys.readouterr()
    assert count(url, "agent_events") == 8
    assert count(url, "server_sessions") == 1
    ids = rows(url, "SELECT source_event_id FROM agent_events WHERE event_type='tool_use'")
    assert sorted(i[0] for i in ids) == sorted(
        hm.tool_event_id(SID, t) for t in ("toolu_01Read", "toolu_02Edit", "toolu_03Bash")
    )


async def test_import_into_a_server(
    server: TestServer,
    tenant: Tenant,
    db_url: str,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_DATA_DIR", str(data_dir))
    remote = import_args(
        server_url=base_url(server), api_key=tenant.hook_key, project=tenant.project
    )
    assert await cmd_import(remote) == 0
    assert json.loads(capsys.readouterr().out)["target"] == "server"
    assert count(db_url, "agent_events") == 8
    assert await cmd_import(remote) == 0
    assert count(db_url, "agent_events") == 8
    assert count(db_url, "server_sessions", "ended_at IS NOT NULL") == 1
