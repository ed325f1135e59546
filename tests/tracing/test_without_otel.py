"""Without OpenTelemetry configured, tracing costs nothing: the no-op tracer is chosen and
no module of OpenTelemetry is loaded, through a whole request and its job.

Each case runs in a fresh interpreter, since this test process loads OpenTelemetry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import asyncio, json, sys
from aiohttp.test_utils import TestClient, TestServer
from claude_mem_core.facade import open_memory
from claude_mem_http.server.app import create_app

async def main():
    url = "sqlite+aiosqlite:///" + sys.argv[1]
    async with open_memory(url, provider="offline") as memory:
        team, project = await memory.ensure_project("acme", "webapp")
        issued = await memory.create_api_key(
            team_id=team.id, project_id=project.id, scopes=["memories:write"]
        )
        client = TestClient(TestServer(create_app(memory, background_generation=False)))
        await client.start_server()
        body = {
            "projectId": project.id, "sourceType": "hook", "eventType": "tool_use",
            "occurredAtEpoch": 1760000000000,
            "payload": {"tool_name": "Bash", "tool_input": {"command": "pytest -x"},
                        "tool_response": {"stdout": "3 passed"}},
        }
        response = await client.post(
            "/v1/events", json=body, headers={"Authorization": "Bearer " + issued.raw_key}
        )
        status = response.status
        await client.close()
        processed = await memory.drain()
        print(json.dumps({
            "status": status,
            "processed": processed,
            "tracer": type(memory.deps.tracer).__name__,
            "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
        }))

asyncio.run(main())
"""


def _run(tmp_path: Path, **otel: str) -> tuple[dict[str, object], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(otel)
    env["CLAUDE_MEM_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "mem.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # The console exporter prints spans at exit: our line is the one of the script.
    [line] = [x for x in done.stdout.splitlines() if x.startswith('{"status"')]
    result: dict[str, object] = json.loads(line)
    return result, done.stdout


@pytest.mark.sqlite
@pytest.mark.parametrize(
    "otel",
    [
        pytest.param({}, id="no-OTEL-variables"),
        pytest.param({"OTEL_TRACES_EXPORTER": "none"}, id="exporter-none"),
        pytest.param(
            {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, id="sdk-disabled"
        ),
        pytest.param({"OTEL_SERVICE_NAME": "claude-mem"}, id="only-a-service-name"),
    ],
)
def test_a_request_and_its_job_load_no_opentelemetry(tmp_path: Path, otel: dict[str, str]) -> None:
    result, _ = _run(tmp_path, **otel)
    assert result["status"] == 201
    assert result["processed"] == 1  # the job ran: the provider call and the insert too
    assert result["tracer"] == "NoopTracer"
    assert result["otel"] == []


@pytest.mark.sqlite
def test_the_same_run_with_an_exporter_configured_is_traced(tmp_path: Path) -> None:
    """The control: the script does load OpenTelemetry once the environment asks."""
    result, printed = _run(tmp_path, OTEL_TRACES_EXPORTER="console")
    assert result["status"] == 201 and result["processed"] == 1
    assert result["tracer"] == "OtelTracer"
    assert "opentelemetry.sdk.trace" in result["otel"]  # type: ignore[operator]
    for name in ("POST /v1/events", "publish server_beta_generate_event", "chat offline"):
        assert f'"name": "{name}"' in printed, printed[-2000:]
