"""``claude_mem_worker:broker``: what taskiq's CLI finds there, built from the environment.

Building connects to nothing, so these run without Redis or a database.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from taskiq import TaskiqEvents

from claude_mem_core.adapters.redis_stream_broker import JobStreamBroker
from claude_mem_core.config import Settings
from claude_mem_core.errors import ConfigurationError, MissingExtra
from claude_mem_worker.app import build_broker, build_worker, middlewares_from_env


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "CLAUDE_MEM_DATA_DIR": str(tmp_path),
        "CLAUDE_MEM_SERVER_DATABASE_URL": "memory://",
        "CLAUDE_MEM_QUEUE_ENGINE": "redis",
        "CLAUDE_MEM_REDIS_URL": "redis://127.0.0.1:6379/0",
        "CLAUDE_MEM_QUEUE_REDIS_PREFIX": "cm_workers_a",
        "CLAUDE_MEM_WORKER_CONCURRENCY": "3",
        "CLAUDE_MEM_DOCKER": "0",
        **extra,
    }


def test_the_broker_has_the_task_the_events_and_the_settings(tmp_path: Path) -> None:
    env = _env(tmp_path)
    broker = build_broker(Settings.from_env(env), env=env)
    assert isinstance(broker, JobStreamBroker)
    assert broker.find_task("claude_mem.generate") is not None
    assert len(broker.event_handlers[TaskiqEvents.WORKER_STARTUP]) == 1
    assert len(broker.event_handlers[TaskiqEvents.WORKER_SHUTDOWN]) == 1
    assert broker.streams == [
        "cm_workers_a:server_beta_generate_event",
        "cm_workers_a:server_beta_generate_summary",
    ]
    assert broker.consumer_group_name == "cm_workers_a:workers"
    assert broker.capacity == 3
    assert broker.middlewares == []  # no retry middleware: retries are job states


def test_concurrency_from_the_command_line_wins(tmp_path: Path) -> None:
    env = _env(tmp_path)
    runtime = build_worker(Settings.from_env(env), concurrency=5, env=env)
    assert runtime.broker.capacity == 5
    assert runtime.options.concurrency == 5
    assert runtime.broker.consumer_name == runtime.worker_id


def test_the_package_builds_its_broker_from_the_environment_when_looked_up(
    tmp_path: Path,
) -> None:
    # What `taskiq worker claude_mem_worker:broker` does, in a fresh interpreter.
    code = (
        "import sys, claude_mem_worker\n"
        "print('taskiq' in sys.modules)\n"
        "from taskiq.cli.utils import import_object\n"
        "broker = import_object('claude_mem_worker:broker')\n"
        "print(type(broker).__name__, broker.streams[0], broker.capacity)\n"
        "print(broker is claude_mem_worker.broker)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**_env(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == [
        "False",  # importing the package builds nothing
        "JobStreamBroker cm_workers_a:server_beta_generate_event 3",
        "True",
    ]


def test_a_worker_needs_the_redis_queue(tmp_path: Path) -> None:
    env = _env(tmp_path, CLAUDE_MEM_QUEUE_ENGINE="memory")
    with pytest.raises(ConfigurationError, match="CLAUDE_MEM_QUEUE_ENGINE=redis"):
        build_broker(Settings.from_env(env), env=env)


def test_metrics_are_off_unless_a_port_is_set() -> None:
    assert middlewares_from_env({}, in_container=False) == []
    with pytest.raises(ConfigurationError, match="CLAUDE_MEM_WORKER_METRICS_PORT"):
        middlewares_from_env({"CLAUDE_MEM_WORKER_METRICS_PORT": "nine"}, in_container=False)


def test_metrics_without_prometheus_client_name_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes the package look not installed.
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingExtra, match=r"claude-mem-py\[metrics\]"):
        middlewares_from_env({"CLAUDE_MEM_WORKER_METRICS_PORT": "9100"}, in_container=False)


def test_metrics_middleware_is_taskiqs_prometheus_middleware(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("prometheus_client")  # the ``metrics`` extra
    from taskiq.middlewares.prometheus_middleware import PrometheusMiddleware

    # The middleware exports its directory to the environment: restored after the test.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    [middleware] = middlewares_from_env(
        {"CLAUDE_MEM_WORKER_METRICS_PORT": "9100", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        in_container=True,
    )
    assert isinstance(middleware, PrometheusMiddleware)
    assert (middleware.server_port, middleware.server_addr) == (9100, "0.0.0.0")
