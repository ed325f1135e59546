"""Plumbing for the fault-injection tests: private PostgreSQL and Redis instances that a
test may stop, the server and worker as real processes, and direct-SQL checks.

Private instances, because stopping the shared ones would break every other test run on
the machine. PostgreSQL refuses to run as root, so when the tests run as root the cluster is
created and run as the ``postgres`` OS user (``runuser -u postgres``); otherwise as the
current user. Its data directory lives under ``/tmp`` (not pytest's ``tmp_path``, whose
parents are private to the current user and closed to ``postgres``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")
DROPPED_ENV = ("CLAUDE_MEM_", "ANTHROPIC_", "OPENAI_", "OPENROUTER_", "GEMINI_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    within: float = 10.0,
    what: str = "condition",
    every: float = 0.05,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(every)


def _wait_port(port: int, *, up: bool, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            listening = sock.connect_ex(("127.0.0.1", port)) == 0
        if listening == up:
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not {'open' if up else 'close'} within {within}s")


# -- PostgreSQL ---------------------------------------------------------------------------


def pg_bin_dir() -> Path | None:
    for candidate in PG_BIN_DIRS:
        if (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port.

    ``fsync=off`` is safe for what the tests do (the server process dies, the OS does not);
    commits stay synchronous, so an acknowledged commit survives ``pg_ctl stop -m immediate``.
    """

    def __init__(self) -> None:
        bin_dir = pg_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.bin = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cm-faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.os_user: str | None = None
        if os.geteuid() == 0:
            self.os_user = "postgres"
            entry = pwd.getpwnam(self.os_user)  # KeyError: no such user
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the maintenance database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / tool), *args]
        if self.os_user is not None:
            command = ["runuser", "-u", self.os_user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def start(self) -> None:
        if self.running():
            return
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# -- Redis --------------------------------------------------------------------------------


class PrivateRedis:
    """``redis-server`` on a free port, nothing persisted: a restart loses every key."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found on PATH")
        self.binary = binary
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cm-faults-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running():
            return
        with (self.root / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.root),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_port(self.port, up=True, within=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # like a crash: nothing is saved anyway
            self.proc.wait(10)
        _wait_port(self.port, up=False, within=10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# -- processes ----------------------------------------------------------------------------


def base_env(
    *, database_url: str, redis_url: str, prefix: str, data_dir: Path, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_ENV)}
    env.update(
        CLAUDE_MEM_DATA_DIR=str(data_dir),
        CLAUDE_MEM_SERVER_DATABASE_URL=database_url,
        CLAUDE_MEM_QUEUE_ENGINE="redis",
        CLAUDE_MEM_REDIS_URL=redis_url,
        CLAUDE_MEM_QUEUE_REDIS_PREFIX=prefix,
        CLAUDE_MEM_DOCKER="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Process:
    """A ``claude-mem`` subprocess with its own log file (``group``: in a process group of
    its own, killed together, as a container's processes are)."""

    def __init__(
        self, args: list[str], env: dict[str, str], log_path: Path, *, group: bool = False
    ) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.group = group
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.group,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            _wait_group_gone(self.proc.pid, within=10)
        elif self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    async def terminate(self, within: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, within)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.args} ignored SIGTERM:\n{self.log()[-3000:]}") from None


class ServerProcess(Process):
    """``claude-mem serve`` on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        env = {
            **env,
            "CLAUDE_MEM_SERVER_HOST": "127.0.0.1",
            "CLAUDE_MEM_SERVER_PORT": str(self.port),
            "CLAUDE_MEM_GENERATION_DISABLED": "true",
        }
        super().__init__(["claude_mem_core.cli", "serve"], env, log_path)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def ready(self, within: float = 30.0) -> None:
        import aiohttp

        async def probe() -> bool:
            if not self.alive():
                raise AssertionError(f"claude-mem serve exited:\n{self.log()[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"{self.base}/healthz") as response,
                ):
                    return response.status == 200
            return False

        await until(probe, within=within, what="the server's /healthz", every=0.1)


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def _wait_group_gone(pgid: int, *, within: float) -> None:
    deadline = time.monotonic() + within
    while _group_members(pgid):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes of group {pgid} still alive: {_group_members(pgid)}")
        time.sleep(0.05)


WORKER_RUNNERS = ("claude-mem", "taskiq")


class WorkerProcess(Process):
    """A worker process: ``python -m claude_mem_worker`` (runner ``claude-mem``, the same as
    ``claude-mem worker``), or taskiq's own ``taskiq worker claude_mem_worker:broker`` with
    one worker process under taskiq's process manager (runner ``taskiq``). Both take
    their settings from the same environment."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        concurrency: int = 4,
        runner: str = "claude-mem",
    ) -> None:
        if runner == "taskiq":
            grace = env.get("CLAUDE_MEM_WORKER_SHUTDOWN_GRACE_SECONDS", "10")
            args = [
                "taskiq",
                "worker",
                "claude_mem_worker:broker",
                "--workers",
                "1",
                "--wait-tasks-timeout",
                grace,
                "--shutdown-timeout",
                "20",
            ]
            env = {**env, "CLAUDE_MEM_WORKER_CONCURRENCY": str(concurrency)}
            super().__init__(args, env, log_path, group=True)
        else:
            args = ["claude_mem_worker", "--concurrency", str(concurrency)]
            super().__init__(args, env, log_path)
        self.runner = runner
        self._starts = 0

    async def terminate(self, within: float = 15.0) -> int:
        code = await super().terminate(within)
        if self.group and self.proc is not None:
            # taskiq's process manager exits once its worker process has: nothing is left.
            assert not _group_members(self.proc.pid), self.log()[-3000:]
        return code

    async def started(self, within: float = 20.0) -> None:
        self._starts += 1

        async def probe() -> bool:
            if not self.alive():
                raise AssertionError(f"worker exited:\n{self.log()[-3000:]}")
            return self.log().count(" starting: ") >= self._starts

        await until(probe, within=within, what="the worker to start")


# -- direct SQL ---------------------------------------------------------------------------


def libpq(url: str) -> str:
    from claude_mem_core.testing.databases import _libpq

    return _libpq(url)


async def sql_rows(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(libpq(url), connect_timeout=5) as conn:
        cursor = await conn.execute(query.encode(), params)
        return list(await cursor.fetchall())


async def sql_value(url: str, query: str, params: Any = None) -> Any:
    rows = await sql_rows(url, query, params)
    return rows[0][0]


async def half_written_events(url: str) -> list[tuple[Any, ...]]:
    """Events without their generation job, and jobs without any job event."""
    return await sql_rows(
        url,
        "SELECT 'event without job', e.id FROM agent_events e "
        "WHERE NOT EXISTS (SELECT 1 FROM observation_generation_jobs j "
        "                  WHERE j.agent_event_id = e.id) "
        "UNION ALL "
        "SELECT 'job without job event', j.id FROM observation_generation_jobs j "
        "WHERE NOT EXISTS (SELECT 1 FROM observation_generation_job_events je "
        "                  WHERE je.generation_job_id = j.id)",
    )


async def job_status_counts(url: str) -> dict[str, int]:
    rows = await sql_rows(
        url, "SELECT status, count(*) FROM observation_generation_jobs GROUP BY status"
    )
    return {str(status): int(count) for status, count in rows}


async def tenant(database_url: str) -> tuple[str, str, str]:
    """A team, a project and a read+write project key on ``database_url``: (team, project, key)."""
    from claude_mem_core.adapters import storage_from_url
    from claude_mem_core.facade import Memory
    from claude_mem_core.testing.fakes import ScriptedProvider

    memory = Memory(storage=storage_from_url(database_url), queue=None, provider=ScriptedProvider())
    try:
        team, project = await memory.ensure_project("faults", "main")
        issued = await memory.create_api_key(
            team_id=team.id, project_id=project.id, scopes=["memories:read", "memories:write"]
        )
        return team.id, project.id, issued.raw_key
    finally:
        await memory.close()


def event_body(project_id: str, run: str, n: int, *, padding: int = 0) -> dict[str, Any]:
    return {
        "projectId": project_id,
        "sourceType": "hook",
        "eventType": "tool_use",
        "occurredAtEpoch": 1_760_000_000_000 + n,
        "payload": {
            "tool_name": "Edit",
            "tool_input": {"file_path": f"src/module_{n % 97}.py", "pad": "x" * padding},
            "tool_response": f"patched the login redirect check {n}",
            "run": run,
            "n": n,
        },
    }
