"""The Docker stack, checked without a Docker engine.

* ``docker-compose.yml`` is parsed and held against the settings the code reads: every
  ``CLAUDE_MEM_*`` variable it sets is one the code knows, secrets are required (``:?``)
  and never defaulted, the server does not generate, Redis keeps jobs (AOF, noeviction),
  workers are scalable, migrations run first, and the environment it gives each claude-mem
  service passes ``Settings.validate()`` as a Postgres + Redis deployment.
* ``docker/entrypoint.sh`` is run for real with a stub ``claude-mem`` on ``PATH``.
* The ``Dockerfile``: non-root user, ``.[all]`` without dev dependencies, an entrypoint that
  is the script above, and a HEALTHCHECK command that passes against the real app's
  ``/healthz`` and fails when nothing answers.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from claude_mem_core.adapters import providers
from claude_mem_core.adapters.memory import InMemoryStorage
from claude_mem_core.config import DEFAULT_PORT, Settings
from claude_mem_core.errors import ConfigurationError
from claude_mem_core.facade import Memory
from claude_mem_core.testing.fakes import ScriptedProvider

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"

CLAUDE_MEM_SERVICES = ("migrate", "server", "worker")
SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD")
PLACEHOLDERS = {"POSTGRES_PASSWORD": "pg-placeholder-0123", "REDIS_PASSWORD": "redis-placeholder"}
# Compose-file knobs (interpolation only, never a container variable).
COMPOSE_ONLY = {"CLAUDE_MEM_IMAGE"}

_VAR = re.compile(r'"(CLAUDE_MEM_[A-Z0-9_]+)"')


# -- helpers ------------------------------------------------------------------------------


def known_variables() -> set[str]:
    """``CLAUDE_MEM_*`` names the code reads: settings, providers, worker, entrypoint."""
    sources = [
        ROOT / "src/claude_mem_core/config.py",
        ROOT / "src/claude_mem_core/adapters/providers.py",
        ROOT / "src/claude_mem_worker/cli.py",
    ]
    names = {m for path in sources for m in _VAR.findall(path.read_text(encoding="utf-8"))}
    names |= set(re.findall(r"\bCLAUDE_MEM_[A-Z0-9_]+", ENTRYPOINT.read_text(encoding="utf-8")))
    return names


def provider_key_variables() -> set[str]:
    return {name for names in providers._KEY_VARS.values() for name in names}


_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


class MissingVariable(Exception):
    pass


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?msg}``, ``$$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg") or ""
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and unset:
            return arg
        return current or ""

    return _INTERPOLATION.sub(replace, value)


def container_env(service: dict[str, Any], host_env: Mapping[str, str]) -> dict[str, str]:
    """The environment compose gives a service's container (mapping form, as used here)."""
    raw = service.get("environment") or {}
    assert isinstance(raw, dict), "use the mapping form for environment"
    resolved: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:  # pass-through: the host's value when set, else unset
            if key in host_env:
                resolved[key] = host_env[key]
            continue
        resolved[key] = interpolate(str(value), host_env)
    return resolved


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    loaded = yaml.safe_load(compose_text)
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


# -- docker-compose.yml -------------------------------------------------------------------


def test_compose_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= {"postgres", "redis", "migrate", "server", "worker"}
    for name in CLAUDE_MEM_SERVICES:
        assert services[name]["build"]["context"] == "."
        assert services[name]["image"] == services["server"]["image"], name


def test_every_claude_mem_variable_is_read_by_the_code(
    services: dict[str, dict[str, Any]], compose_text: str
) -> None:
    known = known_variables()
    assert {"CLAUDE_MEM_SERVER_DATABASE_URL", "CLAUDE_MEM_REDIS_URL"} <= known  # sanity
    used: set[str] = set()
    for name in CLAUDE_MEM_SERVICES:
        used |= {k for k in services[name]["environment"] if k.startswith("CLAUDE_MEM_")}
    unknown = used - known
    assert not unknown, f"compose sets variables no code reads: {sorted(unknown)}"
    mentioned = set(re.findall(r"\bCLAUDE_MEM_[A-Z0-9_]+", compose_text))
    assert not (mentioned - known - COMPOSE_ONLY), sorted(mentioned - known - COMPOSE_ONLY)
    other = {
        k
        for name in CLAUDE_MEM_SERVICES
        for k in services[name]["environment"]
        if not k.startswith("CLAUDE_MEM_")
    }
    assert other <= provider_key_variables(), sorted(other - provider_key_variables())


def test_secrets_are_required_and_never_defaulted(
    compose_text: str, services: dict[str, dict[str, Any]]
) -> None:
    for secret in SECRETS:
        uses = re.findall(rf"\$\{{{secret}([^}}]*)\}}", compose_text)
        assert uses, f"{secret} is not used"
        assert all(u.startswith(":?") for u in uses), f"{secret} must be ${{{secret}:?…}}: {uses}"
        with pytest.raises(MissingVariable, match=secret):
            env = {k: v for k, v in PLACEHOLDERS.items() if k != secret}
            for name in CLAUDE_MEM_SERVICES:
                container_env(services[name], env)
    for service in services.values():
        for key, value in (service.get("environment") or {}).items():
            if key in SECRETS:
                assert re.fullmatch(rf"\$\{{{key}:\?[^}}]+\}}", str(value)), (key, value)
    # Provider keys are passed through, never given a value in the file.
    for name in CLAUDE_MEM_SERVICES:
        for key, value in services[name]["environment"].items():
            if key in provider_key_variables():
                assert value is None, f"{name}: {key} must be a bare pass-through"


def test_postgres_has_a_healthcheck_and_a_named_volume(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]


def test_redis_keeps_jobs(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert redis["volumes"][0].split(":")[0] in compose["volumes"]
    assert redis["volumes"][0].split(":")[1] == "/data"
    assert "ping" in " ".join(redis["healthcheck"]["test"])


def test_server_does_not_generate_and_publishes_the_default_port(
    services: dict[str, dict[str, Any]],
) -> None:
    server = services["server"]
    assert server["command"] == ["server"]
    assert server["environment"]["CLAUDE_MEM_GENERATION_DISABLED"] == "true"
    (port,) = server["ports"]
    assert port.endswith(f":{DEFAULT_PORT}:{DEFAULT_PORT}")
    assert server["depends_on"]["redis"]["condition"] == "service_healthy"


def test_worker_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert worker["command"] == ["worker"]
    assert "ports" not in worker
    assert "container_name" not in worker
    assert "CLAUDE_MEM_GENERATION_DISABLED" not in worker["environment"]
    assert worker["healthcheck"] == {"disable": True}  # no HTTP port to check


def test_migrate_runs_before_server_and_worker(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("server", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name


@pytest.mark.parametrize("name", CLAUDE_MEM_SERVICES)
def test_compose_environment_is_a_valid_postgres_redis_deployment(
    services: dict[str, dict[str, Any]], name: str, tmp_path: Path
) -> None:
    env = container_env(services[name], PLACEHOLDERS)
    env["CLAUDE_MEM_DATA_DIR"] = str(tmp_path)  # no stray settings.json from this machine
    settings = Settings.from_env(env).validate()
    assert not settings.embedded
    assert settings.database_configured
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert f":{PLACEHOLDERS['POSTGRES_PASSWORD']}@postgres:5432/" in settings.database_url
    assert settings.queue_engine == "redis"
    assert settings.redis_url == f"redis://:{PLACEHOLDERS['REDIS_PASSWORD']}@redis:6379/0"
    assert settings.in_container
    assert settings.auth_mode == "api-key"
    assert settings.generation_disabled is (name == "server")
    if name == "server":
        assert settings.host == "0.0.0.0"
        assert settings.port == DEFAULT_PORT
    if name == "worker":  # no provider configured: offline, not a startup error
        assert providers.provider_from_spec(settings.provider, env).name == "offline"
    # The same environment refuses local-dev auth: the container rules are in force.
    with pytest.raises(ConfigurationError, match="local-dev"):
        Settings.from_env({**env, "CLAUDE_MEM_AUTH_MODE": "local-dev"}).validate()


def test_worker_passes_provider_keys_through(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    host = {**PLACEHOLDERS, "OPENROUTER_API_KEY": "sk-or-test", "CLAUDE_MEM_SERVER_PROVIDER": ""}
    env = container_env(services["worker"], host)
    assert env["OPENROUTER_API_KEY"] == "sk-or-test"
    assert "ANTHROPIC_API_KEY" not in env  # unset on the host: unset in the container
    env["CLAUDE_MEM_DATA_DIR"] = str(tmp_path)
    settings = Settings.from_env(env).validate()
    assert settings.provider is None  # empty means "choose from the keys"


# -- docker/entrypoint.sh -----------------------------------------------------------------

STUB = """#!/bin/sh
for arg in "$@"; do printf '[%s]' "$arg"; done >> "$STUB_LOG"
echo >> "$STUB_LOG"
if [ "${1:-}" = migrate ] && [ -n "${STUB_MIGRATE_EXIT:-}" ]; then
    exit "$STUB_MIGRATE_EXIT"
fi
exit 0
"""


@pytest.fixture
def run_entrypoint(tmp_path: Path) -> Any:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "claude-mem"
    stub.write_text(STUB, encoding="utf-8")
    stub.chmod(0o755)
    log = tmp_path / "calls.log"

    def run(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
        log.write_text("", encoding="utf-8")
        full_env = {
            "PATH": f"{bin_dir}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
            "STUB_LOG": str(log),
            **env,
        }
        proc = subprocess.run(
            ["sh", str(ENTRYPOINT), *args],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        calls = [
            re.findall(r"\[([^\]]*)\]", line)
            for line in log.read_text(encoding="utf-8").splitlines()
        ]
        return proc, calls

    return run


SERVE = ["serve", "--host", "0.0.0.0"]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {}, [SERVE]),
        (("server",), {}, [SERVE]),
        (("server", "--port", "9000"), {}, [[*SERVE, "--port", "9000"]]),
        (("--port", "9000"), {}, [[*SERVE, "--port", "9000"]]),
        (("worker",), {}, [["worker"]]),
        (("worker", "--concurrency", "4"), {}, [["worker", "--concurrency", "4"]]),
        (("migrate",), {}, [["migrate"]]),
        ((), {"CLAUDE_MEM_CONTAINER_MODE": "worker"}, [["worker"]]),
        ((), {"CLAUDE_MEM_CONTAINER_MODE": "migrate"}, [["migrate"]]),
        (("server",), {"CLAUDE_MEM_CONTAINER_MODE": "worker"}, [SERVE]),  # argument wins
        ((), {"CLAUDE_MEM_SERVER_HOST": "127.0.0.1"}, [["serve", "--host", "127.0.0.1"]]),
        ((), {"CLAUDE_MEM_MIGRATE_ON_START": "1"}, [["migrate"], SERVE]),
        (("worker",), {"CLAUDE_MEM_MIGRATE_ON_START": "true"}, [["migrate"], ["worker"]]),
        (("migrate",), {"CLAUDE_MEM_MIGRATE_ON_START": "1"}, [["migrate"]]),  # only once
        (("worker",), {"CLAUDE_MEM_MIGRATE_ON_START": "0"}, [["worker"]]),
    ],
)
def test_entrypoint_modes(
    run_entrypoint: Any, args: tuple[str, ...], env: dict[str, str], expected: list[list[str]]
) -> None:
    proc, calls = run_entrypoint(*args, **env)
    assert proc.returncode == 0, proc.stderr
    assert calls == expected


def test_entrypoint_stops_when_migration_on_start_fails(run_entrypoint: Any) -> None:
    for mode in ("server", "worker"):
        proc, calls = run_entrypoint(mode, CLAUDE_MEM_MIGRATE_ON_START="1", STUB_MIGRATE_EXIT="3")
        assert proc.returncode == 3
        assert calls == [["migrate"]]  # the server/worker never started
        assert "migration failed" in proc.stderr


def test_entrypoint_shell_mode(run_entrypoint: Any) -> None:
    proc, calls = run_entrypoint("shell", "sh", "-c", "echo shell:$1", "x", "one")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "shell:one"
    assert calls == []
    proc, calls = run_entrypoint("shell", "claude-mem", "teams", "list")
    assert calls == [["teams", "list"]]
    proc, _ = run_entrypoint("shell")  # interactive shell; stdin is empty, so it exits
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("args", "env"),
    [(("bogus",), {}), (("teams", "list"), {}), ((), {"CLAUDE_MEM_CONTAINER_MODE": "nope"})],
)
def test_entrypoint_unknown_mode(
    run_entrypoint: Any, args: tuple[str, ...], env: dict[str, str]
) -> None:
    proc, calls = run_entrypoint(*args, **env)
    assert proc.returncode == 2
    assert "unknown mode" in proc.stderr
    assert "usage: entrypoint.sh [server|worker|migrate|shell]" in proc.stderr
    assert calls == []


def test_entrypoint_help(run_entrypoint: Any) -> None:
    proc, calls = run_entrypoint("--help")
    assert proc.returncode == 0
    assert "usage:" in proc.stderr
    assert calls == []


# -- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_image() -> None:
    stage = final_stage()
    assert stage[0] == ("FROM", "python:3.11-slim")
    users = [args for op, args in stage if op == "USER"]
    assert users, "the image must switch to an unprivileged user"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    installs = [args for op, args in dockerfile_instructions() if op == "RUN" and "pip" in args]
    assert any('".[all]"' in args for args in installs)
    assert not any("dev" in args for args in installs), "no dev dependencies in the image"
    entrypoint = next(args for op, args in stage if op == "ENTRYPOINT")
    copied = [args for op, args in stage if op == "COPY" and "docker/entrypoint.sh" in args]
    assert copied and copied[0].split()[-1] in entrypoint
    assert not [args for op, args in stage if op == "CMD"], (
        "a CMD would hide CLAUDE_MEM_CONTAINER_MODE"
    )
    assert ("EXPOSE", str(DEFAULT_PORT)) in stage
    env_names = set(
        re.findall(r"\b(CLAUDE_MEM_[A-Z0-9_]+)=", " ".join(a for o, a in stage if o == "ENV"))
    )
    assert env_names <= known_variables(), sorted(env_names - known_variables())


def test_dockerignore_keeps_what_the_build_copies() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", ".dockerignore is an allow-list"
    allowed = {line[1:] for line in lines if line.startswith("!")}
    for op, args in dockerfile_instructions():
        if op != "COPY" or "--from=" in args:
            continue
        sources = [a for a in args.split() if not a.startswith("--")][:-1]
        for source in sources:
            assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"
            assert (ROOT / source).exists(), source


def healthcheck_command() -> str:
    (args,) = [args for op, args in final_stage() if op == "HEALTHCHECK"]
    assert "--interval" in args
    return args.split(" CMD ", 1)[1]


def test_healthcheck_path_is_a_route() -> None:
    from claude_mem_http.server.app import create_app

    paths = set(re.findall(r"127\.0\.0\.1:\{port\}(/[\w/-]+)", healthcheck_command()))
    assert paths == {"/healthz"}
    app = create_app(Settings.from_env({"CLAUDE_MEM_DATA_DIR": "/nonexistent"}))
    routes = {r.canonical for r in app.router.resources()}
    assert paths <= routes


def _python_on_path(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "pybin"
    bin_dir.mkdir(exist_ok=True)
    link = bin_dir / "python"
    if not link.exists():
        link.symlink_to(sys.executable)
    return {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin"}


async def _run_healthcheck(env: dict[str, str]) -> int:
    proc = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        healthcheck_command(),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(proc.wait(), timeout=15)


async def test_healthcheck_command_against_the_app(aiohttp_server: Any, tmp_path: Path) -> None:
    from claude_mem_http.server.app import create_app

    memory = Memory(storage=InMemoryStorage(), queue=None, provider=ScriptedProvider())
    try:
        server = await aiohttp_server(create_app(memory, background_generation=False))
        env = {**_python_on_path(tmp_path), "CLAUDE_MEM_SERVER_PORT": str(server.port)}
        assert await _run_healthcheck(env) == 0
    finally:
        await memory.close()
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    env = {**_python_on_path(tmp_path), "CLAUDE_MEM_SERVER_PORT": str(free)}
    assert await _run_healthcheck(env) != 0


def test_entrypoint_is_shellcheck_clean() -> None:
    import shutil

    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    proc = subprocess.run(
        [shellcheck, str(ENTRYPOINT)], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_file_interpolation_helper() -> None:
    assert interpolate("a${X:-d}b$$c", {}) == "adb$c"
    assert interpolate("${X:-d}", {"X": ""}) == "d"
    assert interpolate("${X-d}", {"X": ""}) == ""
    with pytest.raises(MissingVariable, match="X: set X"):
        interpolate("${X:?set X}", {"X": ""})


def test_deploy_doc_lists_every_setting() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    sources = [
        ROOT / "src/claude_mem_core/config.py",
        ROOT / "src/claude_mem_worker/cli.py",
        ENTRYPOINT,
    ]
    names = {
        m
        for path in sources
        for m in re.findall(r"\bCLAUDE_MEM_[A-Z0-9_]+", path.read_text(encoding="utf-8"))
    }
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert not missing, f"docs/deploy.md does not document {missing}"
