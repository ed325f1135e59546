"""The built wheel is the product: installed alone into a new virtualenv, it migrates and
serves (issue 14, packaging).

The wheel is built without isolation (hatchling comes from the dev extra), so building
needs no network; the new virtualenv gets its dependencies with uv (from its cache when
warm) or pip. Nothing of the checkout is importable from that virtualenv: the migrations
must come from inside the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from claude_mem_core.distribution import DISTRIBUTION

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(*argv: str | Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, ROOT)
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_is_named_after_the_distribution_and_carries_the_migrations(
    wheel: Path,
) -> None:
    assert wheel.name.startswith(DISTRIBUTION.replace("-", "_") + "-")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("claude_mem_core/_alembic/versions/0001_") for n in names)
    assert "claude_mem_core/py.typed" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "claude-mem = claude_mem_core.cli:main" in text
    assert "serve = claude_mem_http.server.cli:register" in text


def test_a_clean_virtualenv_with_the_wheel_migrates_and_serves(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    target = f"{wheel}[sqlite,http]"
    if Path(uv).exists():
        _run(uv, "venv", "--quiet", "--python", sys.executable, venv)
        _run(uv, "pip", "install", "--quiet", "--python", python, target)
    else:
        _run(sys.executable, "-m", "venv", venv)
        _run(python, "-m", "pip", "install", "--quiet", target)
    cli = venv / "bin" / "claude-mem"
    env = {
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "CLAUDE_MEM_DATA_DIR": str(tmp_path / "data"),
        "CLAUDE_MEM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'memory.db'}",
    }
    # Run from the temporary directory: the checkout's src/ is not on the path.
    origin = _run(python, "-c", "import claude_mem_core; print(claude_mem_core.__file__)", env=env)
    assert str(venv) in origin and str(ROOT / "src") not in origin

    migrated = json.loads(_run(cli, "--json", "migrate", env=env))
    assert migrated["from"] is None and migrated["to"] == migrated["head"], migrated

    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(cli), "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        body: dict[str, object] = {}
        while time.monotonic() < deadline:
            assert server.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.2)
        assert body.get("status") == "ok", (body, log.read_text())
        # The version is read from the installed distribution's metadata, by its new name.
        assert body.get("version") not in (None, "development"), body
    finally:
        server.terminate()
        server.wait(timeout=30)
