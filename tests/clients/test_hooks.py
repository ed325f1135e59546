"""The Claude Code hook client: mapping, delivery to the real server, spool, timeout,
embedded mode."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from clientkit import (
    ServerFactory,
    Tenant,
    base_url,
    count,
    db_path,
    embedded_env,
    hook_payload,
    rows,
)

from claude_mem_http.client import hook_mapping as hm
from claude_mem_http.client.hook_config import HookConfig
from claude_mem_http.client.hooks import hook_main, run_hook
from claude_mem_http.client.spool import Spool

SID = "0f6a3c2e-5b7d-4e61-9a51-2d8c1f3e7b90"
TURN = ("SessionStart", "UserPromptSubmit", "PostToolUse", "Stop", "SessionEnd")


def remote_env(data_dir: Path, url: str, tenant: Tenant, **extra: str) -> dict[str, str]:
    return {
        "CLAUDE_MEM_DATA_DIR": str(data_dir),
        "CLAUDE_MEM_SERVER_BETA_URL": url,
        "CLAUDE_MEM_SERVER_BETA_API_KEY": tenant.hook_key,
        "CLAUDE_MEM_SERVER_BETA_PROJECT_ID": tenant.project,
        **extra,
    }


async def fire(
    event: str, env: dict[str, str], payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    out = io.StringIO()
    code = await hook_main(
        event,
        stdin=io.StringIO(json.dumps(hook_payload(event) if payload is None else payload)),
        stdout=out,
        env=env,
    )
    assert code == 0
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


# -- mapping ---------------------------------------------------------------------------------


def test_mapping_of_each_recorded_payload() -> None:
    opts = hm.MappingOptions(project_id="p1")
    plans = {e: hm.plan_hook(e, hook_payload(e), opts, now_ms=1000) for e in TURN}
    assert (
        plans["SessionStart"].wants_context and plans["SessionStart"].records[0]["op"] == "session"
    )
    prompt = plans["UserPromptSubmit"].records[0]["event"]
    assert prompt["eventType"] == "user_prompt" and prompt["sourceEventId"].startswith("cc:prompt:")
    tool = plans["PostToolUse"].records[0]["event"]
    assert tool["sourceEventId"] == "cc:tool:toolu_01HbQk3m6V9yQ2c8X4aZ7pLd"
    assert tool["payload"]["tool_name"] == "Edit" and tool["occurredAtEpoch"] == 1000
    stop = plans["Stop"].records[0]["event"]["payload"]["last_assistant_message"]
    assert "abc123" not in stop and "internal note" not in stop and "redirect loop" in stop
    assert plans["SessionEnd"].records[0]["op"] == "end"
    for plan in plans.values():
        for record in plan.records:
            assert record["project"] == "webapp" and record["projectId"] == "p1"
            assert record["session"]["contentSessionId"] == SID


def test_mapping_skips() -> None:
    opts = hm.MappingOptions()
    assert hm.plan_hook("Stop", hook_payload("Stop.subagent"), opts, now_ms=0).skipped == "subagent"
    active = {**hook_payload("Stop"), "stop_hook_active": True}
    assert hm.plan_hook("Stop", active, opts, now_ms=0).skipped == "stop_hook_active"
    note = {
        **hook_payload("UserPromptSubmit"),
        "prompt": "<task-notification>x</task-notification>",
    }
    assert hm.plan_hook("UserPromptSubmit", note, opts, now_ms=0).skipped == "task_notification"
    blank = {**hook_payload("UserPromptSubmit"), "prompt": "  "}
    media = hm.plan_hook("UserPromptSubmit", blank, opts, now_ms=0).records[0]
    assert media["event"]["payload"]["prompt"] == "[media prompt]"
    no_tool = {k: v for k, v in hook_payload("PostToolUse").items() if k != "tool_name"}
    assert hm.plan_hook("PostToolUse", no_tool, opts, now_ms=0).skipped == "no_tool_name"
    excluded = hm.MappingOptions(excluded_projects=("web*",))
    assert hm.plan_hook("PostToolUse", hook_payload("PostToolUse"), excluded, now_ms=0).skipped
    internal = hm.MappingOptions(internal=True)
    assert hm.plan_hook("PostToolUse", hook_payload("PostToolUse"), internal, now_ms=0).skipped
    assert hm.plan_hook("Bogus", {}, opts, now_ms=0).skipped == "unknown_event"


def test_stop_reads_the_transcript_when_the_message_is_absent(tmp_path: Path) -> None:
    transcript = Path(__file__).parent / "fixtures" / "transcript.jsonl"
    payload = {**hook_payload("Stop"), "transcript_path": str(transcript)}
    del payload["last_assistant_message"]
    plan = hm.plan_hook("Stop", payload, hm.MappingOptions(), now_ms=0)
    text = plan.records[0]["event"]["payload"]["last_assistant_message"]
    assert text.startswith("Added tests/test_auth.py")
    missing = {**payload, "transcript_path": str(tmp_path / "gone.jsonl")}
    assert hm.plan_hook("Stop", missing, hm.MappingOptions(), now_ms=0).skipped


# -- remote delivery -----------------------------------------------------------------------------


async def test_a_whole_session_reaches_the_server_linked_to_one_session(
    server: TestServer, tenant: Tenant, data_dir: Path, db_url: str
) -> None:
    env = remote_env(data_dir, base_url(server), tenant)
    outputs = [await fire(event, env) for event in TURN]
    assert all(o["continue"] is True and o["suppressOutput"] is True for o in outputs)
    sessions = rows(db_url, "SELECT id, external_session_id, ended_at FROM server_sessions")
    assert len(sessions) == 1 and sessions[0][1] == SID and sessions[0][2] is not None
    events = rows(
        db_url,
        "SELECT event_type, server_session_id, source_event_id FROM agent_events "
        "ORDER BY occurred_at",
    )
    assert [e[0] for e in events] == ["user_prompt", "tool_use", "assistant_message"]
    assert {e[1] for e in events} == {sessions[0][0]}
    assert events[1][2] == "cc:tool:toolu_01HbQk3m6V9yQ2c8X4aZ7pLd"
    stored = rows(db_url, "SELECT payload FROM agent_events WHERE event_type='user_prompt'")[0][0]
    assert "hunter2" not in stored
    assert count(db_url, "observation_generation_jobs", "source_type='session_summary'") == 1
    assert Spool(data_dir / "spool.jsonl").read() == []
    # Claude fires the same PostToolUse again (a retry): still one event.
    await fire("PostToolUse", env)
    assert count(db_url, "agent_events") == 3


async def test_session_start_injects_context_within_the_token_budget(
    server: TestServer, tenant: Tenant, data_dir: Path, memory: Any
) -> None:
    from claude_mem_core.domain.models import Scope

    scope = Scope(team_id=tenant.team, project_id=tenant.project)
    for n in range(30):
        await memory.add_memory(scope, f"webapp note {n}: " + "the login flow uses OAuth " * 10)
    env = remote_env(data_dir, base_url(server), tenant, CLAUDE_MEM_CONTEXT_TOKENS="300")
    output = await fire("SessionStart", env)
    context = output["hookSpecificOutput"]["additionalContext"]
    assert output["hookSpecificOutput"]["hookEventName"] == "SessionStart"
    assert context.startswith("<claude-mem-context>") and "webapp note" in context
    assert len(context) <= 300 * 4


async def test_session_start_context_is_the_newest_observations(
    server: TestServer, tenant: Tenant, data_dir: Path, memory: Any, db_url: str
) -> None:
    from claude_mem_core.domain.models import Scope

    scope = Scope(team_id=tenant.team, project_id=tenant.project)
    # Nothing here mentions the project's name: a search for it would find none of them.
    for n in range(5):
        await memory.add_memory(scope, f"decision {n}: deploys are blue-green")
        await asyncio.sleep(0.002)
    env = remote_env(data_dir, base_url(server), tenant, CLAUDE_MEM_CONTEXT_OBSERVATIONS="3")
    output = await fire("SessionStart", env)
    context = output["hookSpecificOutput"]["additionalContext"]
    assert context.startswith("<claude-mem-context>")
    assert "# Memory from earlier sessions in webapp" in context
    lines = [line for line in context.splitlines() if line.startswith("- [")]
    assert [line.split(":")[0] for line in lines] == [
        "- [manual] decision 4",
        "- [manual] decision 3",
        "- [manual] decision 2",
    ]
    modes = rows(db_url, "SELECT details FROM audit_log WHERE action='observation.read'")
    assert ['"recent"' in str(m[0]) for m in modes] == [True]


async def test_session_start_against_an_older_server_searches_the_project_name(
    start_server: ServerFactory,
    tenant: Tenant,
    data_dir: Path,
    memory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from claude_mem_core.domain.models import Scope
    from claude_mem_http.server import routes

    older = [r for r in routes.ROUTES if not r[1].startswith("/v1/memories/")]
    monkeypatch.setattr(routes, "ROUTES", older)
    srv = await start_server()
    scope = Scope(team_id=tenant.team, project_id=tenant.project)
    await memory.add_memory(scope, "the webapp login flow uses OAuth")
    await memory.add_memory(scope, "unrelated: deploys are blue-green")
    output = await fire("SessionStart", remote_env(data_dir, base_url(srv), tenant))
    context = output["hookSpecificOutput"]["additionalContext"]
    assert "webapp login flow uses OAuth" in context and "blue-green" not in context


async def test_session_start_without_a_project_id_has_no_context(
    server: TestServer, tenant: Tenant, data_dir: Path, memory: Any
) -> None:
    from claude_mem_core.domain.models import Scope

    await memory.add_memory(Scope(team_id=tenant.team, project_id=tenant.project), "a note")
    env = remote_env(data_dir, base_url(server), tenant, CLAUDE_MEM_SERVER_BETA_PROJECT_ID="")
    output = await fire("SessionStart", env)
    assert output == {"continue": True, "suppressOutput": True}


async def test_down_server_spools_then_delivers_once_in_order(
    start_server: ServerFactory, tenant: Tenant, data_dir: Path, db_url: str, unused_tcp_port: int
) -> None:
    env = remote_env(data_dir, f"http://127.0.0.1:{unused_tcp_port}", tenant)
    for event in ("UserPromptSubmit", "PostToolUse"):
        assert (await fire(event, env))["continue"] is True
    spool = Spool(data_dir / "spool.jsonl")
    assert [r["op"] for r in spool.read()] == ["event", "event"]
    assert count(db_url, "agent_events") == 0

    await start_server(port=unused_tcp_port)
    await fire("Stop", env)  # the next hook call flushes the backlog first
    assert spool.read() == []
    events = rows(db_url, "SELECT event_type FROM agent_events ORDER BY occurred_at")
    assert [e[0] for e in events] == ["user_prompt", "tool_use", "assistant_message"]
    # A record delivered but not removed (crash between the two) is stored only once.
    replayed = hm.plan_hook(
        "PostToolUse",
        hook_payload("PostToolUse"),
        hm.MappingOptions(project_id=tenant.project),
        now_ms=5,
    )
    spool.append([{**replayed.records[0], "id": n} for n in ("copy-1", "copy-2")])
    out = io.StringIO()
    code = await hook_main("flush", stdin=io.StringIO(""), stdout=out, env=env)
    assert code == 0, out.getvalue()
    assert json.loads(out.getvalue())["delivered"] == 2
    assert count(db_url, "agent_events") == 3


async def test_refused_key_keeps_the_spool_and_bad_records_are_set_aside(
    server: TestServer, tenant: Tenant, data_dir: Path, db_url: str
) -> None:
    env = remote_env(data_dir, base_url(server), tenant, CLAUDE_MEM_SERVER_BETA_API_KEY="cmem_bad")
    await fire("PostToolUse", env)
    spool = Spool(data_dir / "spool.jsonl")
    assert len(spool.read()) == 1  # kept: fixing the key delivers it
    env = remote_env(data_dir, base_url(server), tenant)
    broken = hm.plan_hook("PostToolUse", hook_payload("PostToolUse"), hm.MappingOptions(), now_ms=1)
    broken.records[0]["event"]["eventType"] = ""  # the server refuses this one for good
    spool.append(broken.records)
    await fire("SessionEnd", env)
    assert spool.read() == []
    assert len(spool.rejected_path.read_text().splitlines()) == 1
    assert count(db_url, "agent_events") == 1


@pytest.fixture
async def sleepy(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    async def sleep(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", sleep)
    return await aiohttp_server(app)


async def test_a_hanging_server_never_blocks_the_hook(
    sleepy: TestServer, tenant: Tenant, data_dir: Path
) -> None:
    env = remote_env(data_dir, base_url(sleepy), tenant, CLAUDE_MEM_HOOK_TIMEOUT_MS="800")
    started = time.monotonic()
    output = await run_hook(
        "PostToolUse", json.dumps(hook_payload("PostToolUse")), HookConfig.load(env)
    )
    assert time.monotonic() - started < 0.8 + 0.5
    assert output == {"continue": True, "suppressOutput": True}
    assert len(Spool(data_dir / "spool.jsonl").read()) == 1

    # The real command, as Claude Code runs it: exit 0, JSON on stdout, nothing on stderr.
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "claude_mem_http.client.hooks",
        "SessionStart",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    stdout, stderr = await proc.communicate(json.dumps(hook_payload("SessionStart")).encode())
    elapsed = time.monotonic() - started
    assert proc.returncode == 0 and stderr == b""
    assert json.loads(stdout) == {"continue": True, "suppressOutput": True}
    assert elapsed < 0.8 + 0.5 + 1.0  # + interpreter start-up and imports
    assert len(Spool(data_dir / "spool.jsonl").read()) == 2


async def test_garbage_stdin_and_bad_settings_still_exit_zero(data_dir: Path) -> None:
    (data_dir / "settings.json").write_text("{not json")
    env = {"CLAUDE_MEM_DATA_DIR": str(data_dir), "CLAUDE_MEM_SERVER_BETA_URL": "http://127.0.0.1:9"}
    out = io.StringIO()
    assert await hook_main("PostToolUse", stdin=io.StringIO("]]]"), stdout=out, env=env) == 0
    assert json.loads(out.getvalue())["continue"] is True


# -- embedded ----------------------------------------------------------------------------------


async def test_embedded_mode_writes_the_local_memory(embedded_data_dir: Path) -> None:
    env = embedded_env(embedded_data_dir)
    for event in TURN:
        await fire(event, env)
    url = "sqlite:///" + str(embedded_data_dir / "claude-mem.db")
    assert [r[0] for r in rows(url, "SELECT name FROM projects")] == ["webapp"]
    assert count(url, "agent_events") == 3
    assert count(url, "server_sessions", "ended_at IS NOT NULL") == 1
    assert Spool(embedded_data_dir / "spool.jsonl").read() == []
    assert db_path(url).exists()


async def test_embedded_session_start_injects_the_newest_observations(
    embedded_data_dir: Path,
) -> None:
    from claude_mem_core.config import Settings
    from claude_mem_core.facade import open_memory_from_settings
    from claude_mem_http.client.backends import LocalBackend

    env = embedded_env(embedded_data_dir, CLAUDE_MEM_CONTEXT_OBSERVATIONS="2")
    async with open_memory_from_settings(Settings.from_env(env), queue=False) as memory:
        local = await LocalBackend.embedded(memory, default_project="webapp")
        for n in range(3):
            await local.add_memory(None, f"embedded fact {n}")
            await asyncio.sleep(0.002)
    output = await fire("SessionStart", env)
    context = output["hookSpecificOutput"]["additionalContext"]
    assert "embedded fact 2" in context and "embedded fact 1" in context
    assert "embedded fact 0" not in context
    assert context.index("embedded fact 2") < context.index("embedded fact 1")


async def test_a_misspelled_event_names_the_valid_ones_and_exits_1(data_dir: Path) -> None:
    env = {"CLAUDE_MEM_DATA_DIR": str(data_dir)}
    out, err = io.StringIO(), io.StringIO()
    payload = io.StringIO(json.dumps(hook_payload("PostToolUse")))
    code = await hook_main("PostTooluse", stdin=payload, stdout=out, env=env, stderr=err)
    assert code == 1  # Claude Code shows stderr and goes on (2 would block the agent)
    message = err.getvalue()
    assert "unknown event 'PostTooluse'" in message and "did you mean PostToolUse?" in message
    for event in hm.HOOK_EVENTS:
        assert event in message
    assert out.getvalue() == ""
    assert not (data_dir / "spool.jsonl").exists() or Spool(data_dir / "spool.jsonl").read() == []


def test_a_misspelled_event_exits_1_from_the_command_line(data_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "claude_mem_http.client.hooks", "SesionStart"],
        input="{}",
        capture_output=True,
        text=True,
        env={**os.environ, "CLAUDE_MEM_DATA_DIR": str(data_dir)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "valid events: SessionStart, UserPromptSubmit" in done.stderr
    assert done.stdout == ""
