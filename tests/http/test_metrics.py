"""``GET /metrics``: Prometheus text, on by default, off or behind a key when configured."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from httpkit import Api, AppFactory, World, event_body

from claude_mem_core import Memory
from claude_mem_core.adapters.observed_provider import ProviderCall
from claude_mem_core.errors import ConfigurationError
from claude_mem_http.server.metrics import HttpMetrics, MetricsMode

pytestmark = pytest.mark.sqlite


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the exposition ``text``, or None when absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(4))
    return None


async def scrape(api: Api, key: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = await api.client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return await response.text()


def event(world: World, n: int) -> dict[str, object]:
    return event_body(world.project, sourceEventId=f"metrics-{n}")


async def test_metrics_are_served_by_default_and_count_requests_by_route_template(
    make_api: AppFactory, world: World
) -> None:
    api = await make_api()
    for n in range(3):
        created = await api.post("/v1/events", event(world, n), key=world.key)
        assert created.status == 201, created.body
    stored = created.body["event"]["id"]
    assert (await api.get(f"/v1/events/{stored}", key=world.key)).status == 200
    assert (await api.client.get("/no/such/path")).status == 404
    searched = await api.post(
        "/v1/search", {"projectId": world.project, "query": "middleware"}, key=world.key
    )
    assert searched.status == 200, searched.body

    text = await scrape(api)
    assert (
        sample(
            text, "claude_mem_http_requests_total", route="/v1/events", method="POST", status="201"
        )
        == 3
    )
    # The template, never the id: one series however many events are read.
    assert (
        sample(text, "claude_mem_http_requests_total", route="/v1/events/{id}", method="GET") == 1
    )
    assert stored not in text
    assert sample(text, "claude_mem_http_requests_total", route="unmatched", status="404") == 1
    assert sample(text, "claude_mem_events_ingested_total") == 3
    assert sample(text, "claude_mem_search_duration_seconds_count", route="/v1/search") == 1
    assert (
        sample(
            text,
            "claude_mem_http_request_duration_seconds_count",
            route="/v1/events",
            method="POST",
        )
        == 3
    )
    # Scrape time: the outbox's jobs by status, the queue's waiting messages by lane.
    assert sample(text, "claude_mem_jobs", status="queued") == 3
    assert sample(text, "claude_mem_jobs", status="completed") == 0
    assert sample(text, "claude_mem_queue_depth") is not None


async def test_a_batch_counts_the_events_it_stored_and_a_replay_counts_none(
    make_api: AppFactory, world: World
) -> None:
    api = await make_api()
    batch = [event(world, n) for n in range(5)]
    stored = await api.post("/v1/events/batch", batch, key=world.key)
    assert stored.status in (200, 201), stored.body
    replayed = await api.post("/v1/events", event(world, 0), key=world.key)
    assert replayed.status in (200, 201), replayed.body
    assert sample(await scrape(api), "claude_mem_events_ingested_total") == 5


async def test_metrics_off_leaves_no_route(make_api: AppFactory) -> None:
    api = await make_api(metrics=MetricsMode.OFF)
    response = await api.client.get("/metrics")
    assert response.status == 404
    assert (await response.json())["error"]


async def test_metrics_behind_a_key_need_the_metrics_scope(
    make_api: AppFactory, world: World, memory: Memory
) -> None:
    api = await make_api(metrics=MetricsMode.KEY)
    assert (await api.client.get("/metrics")).status == 401
    refused = await api.client.get("/metrics", headers={"Authorization": f"Bearer {world.key}"})
    assert refused.status == 403
    assert "metrics:read" in (await refused.json())["message"]
    issued = await memory.create_api_key(
        team_id=world.team, project_id=None, scopes=["metrics:read"]
    )
    assert "claude_mem_http_requests_total" in await scrape(api, issued.raw_key)
    assert "claude_mem_http_requests_total" in await scrape(api, world.admin_key)
    # The scope opens nothing else.
    listed = await api.get("/v1/projects", key=issued.raw_key)
    assert listed.status == 403


def test_the_mode_is_read_from_the_environment() -> None:
    assert MetricsMode.from_env({}) is MetricsMode.ON
    assert MetricsMode.from_env({"CLAUDE_MEM_METRICS": " Key "}) is MetricsMode.KEY
    with pytest.raises(ConfigurationError, match="CLAUDE_MEM_METRICS"):
        MetricsMode.from_env({"CLAUDE_MEM_METRICS": "maybe"})


def test_processes_sharing_a_multiprocess_directory_add_up(tmp_path: Path) -> None:
    """Two server processes with one PROMETHEUS_MULTIPROC_DIR: either answers for both."""
    directory = tmp_path / "prom"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    count = textwrap.dedent(
        """
        import sys
        from claude_mem_http.server.metrics import HttpMetrics
        metrics = HttpMetrics.from_env()
        metrics.ingested(int(sys.argv[1]))
        if len(sys.argv) > 2:
            sys.stdout.write(metrics.exposition().decode())
        """
    )
    subprocess.run([sys.executable, "-c", count, "2"], env=env, check=True)
    done = subprocess.run(
        [sys.executable, "-c", count, "3", "print"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert sample(done.stdout, "claude_mem_events_ingested_total") == 5


def test_a_provider_call_is_exposed_with_the_workers_families() -> None:
    metrics = HttpMetrics()
    metrics.provider_call(
        ProviderCall(
            provider="anthropic",
            model="claude-test",
            purpose="summary",
            seconds=0.2,
            input_tokens=50,
            output_tokens=7,
        )
    )
    text = metrics.exposition().decode()
    labels = {"provider": "anthropic", "model": "claude-test"}
    assert (
        sample(text, "claude_mem_generation_duration_seconds_count", **labels, purpose="summary")
        == 1
    )
    assert sample(text, "claude_mem_generation_tokens_total", **labels, direction="input") == 50


async def test_the_embedded_server_reports_its_provider_calls(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    """``claude-mem serve`` on the embedded default generates in process: its provider
    calls show on /metrics, as a worker's do on its own."""
    from claude_mem_core.config import Settings
    from claude_mem_http.server.app import create_app

    env = {
        "CLAUDE_MEM_DATA_DIR": str(tmp_path / "data"),
        "HOME": str(tmp_path),
        "CLAUDE_MEM_AUTH_MODE": "local-dev",
        "CLAUDE_MEM_ALLOW_LOCAL_DEV_BYPASS": "1",
        "CLAUDE_MEM_DOCKER": "0",
        "CLAUDE_MEM_SERVER_PROVIDER": "offline",
    }
    settings = Settings.from_env(env, dockerenv=tmp_path / "no-dockerenv")
    client = await aiohttp_client(create_app(settings))
    projects = await (await client.get("/v1/projects")).json()
    stored = await client.post(
        "/v1/events",
        json={
            "projectId": projects["projects"][0]["id"],
            "sourceType": "hook",
            "eventType": "tool_use",
            "occurredAtEpoch": 1_760_000_000_000,
            "payload": {"tool_name": "Edit", "tool_input": {"file_path": "auth.py"}},
        },
    )
    assert stored.status == 201, await stored.text()
    text = ""
    for _ in range(200):
        text = await (await client.get("/metrics")).text()
        if sample(text, "claude_mem_generation_duration_seconds_count", provider="offline"):
            break
        await asyncio.sleep(0.05)
    assert (
        sample(
            text,
            "claude_mem_generation_duration_seconds_count",
            provider="offline",
            purpose="observations",
        )
        == 1
    ), text
