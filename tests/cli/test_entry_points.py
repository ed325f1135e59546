"""Commands other packages add to ``claude-mem`` through the ``claude_mem.cli`` entry-point
group: the installed ones, a working fake one, and fake ones that cannot be loaded (an
extra not installed), which say what to install and exit 2 instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from claude_mem_core.cli import build_parser, commands, main
from claude_mem_core.cli.commands import ENTRY_POINT_GROUP

PACKAGE_COMMANDS = {"serve", "worker", "hook", "install", "uninstall", "mcp", "import", "export"}
HELP_ORDER = [
    "migrate",
    "serve",
    "worker",
    "teams",
    "projects",
    "api-key",
    "jobs",
    "embeddings",
    "erase",
    "retention",
    "usage",
    "budget",
    "server",
    "hook",
    "install",
    "uninstall",
    "mcp",
    "import",
    "export",
]


def fake(name: str, value: str) -> metadata.EntryPoint:
    return metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


@pytest.fixture
def extra_entry_points(monkeypatch: pytest.MonkeyPatch) -> list[metadata.EntryPoint]:
    """Entry points added to the installed ones for one test."""
    added: list[metadata.EntryPoint] = []
    installed = commands.find_entry_points()
    monkeypatch.setattr(commands, "find_entry_points", lambda: [*installed, *added])
    return added


@pytest.fixture
def fake_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("cmem_fake_ok", "cmem_fake_needs_sdk", "cmem_fake_broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    (tmp_path / "cmem_fake_ok.py").write_text(
        "async def hello(args):\n"
        "    print('hello', args.who)\n"
        "    return 0\n"
        "def register(commands):\n"
        "    parser = commands.add('hello', help='say hello', after='teams')\n"
        "    parser.add_argument('who')\n"
        "    parser.set_defaults(handler=hello)\n",
        encoding="utf-8",
    )
    (tmp_path / "cmem_fake_needs_sdk.py").write_text(
        "import cmem_sdk_that_is_not_installed\n"
        "def register(commands):\n"
        "    raise AssertionError('never reached')\n",
        encoding="utf-8",
    )
    (tmp_path / "cmem_fake_broken.py").write_text(
        "def register(commands):\n    raise RuntimeError('boom')\n", encoding="utf-8"
    )
    return tmp_path


def listed(capsys: pytest.CaptureFixture[str]) -> list[str]:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    choices = out.split("{", 1)[1].split("}", 1)[0]
    return choices.split(",")


def test_the_installed_packages_add_their_commands_in_the_usual_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    installed = {entry.name for entry in commands.find_entry_points()}
    assert installed >= PACKAGE_COMMANDS, "reinstall: pip install -e '.[dev]'"
    assert listed(capsys) == HELP_ORDER
    with pytest.raises(SystemExit):
        build_parser().parse_args(["server", "--help"])
    assert "{api-key,jobs,worker}" in capsys.readouterr().out


def test_a_package_adds_a_command_where_it_asks(
    capsys: pytest.CaptureFixture[str],
    extra_entry_points: list[metadata.EntryPoint],
    fake_modules: Path,
) -> None:
    extra_entry_points.append(fake("hello", "cmem_fake_ok:register"))
    assert listed(capsys) == [*HELP_ORDER[:4], "hello", *HELP_ORDER[4:]]
    assert main(["hello", "world"]) == 0
    assert capsys.readouterr().out == "hello world\n"
    assert main(["hello"]) == 2
    assert "the following arguments are required: who" in capsys.readouterr().err


@pytest.mark.parametrize(
    "value",
    [
        "cmem_fake_needs_sdk:register [fancy]",  # the module imports an SDK that is missing
        "cmem_no_such_package.cli:register [fancy]",  # the package itself is missing
    ],
)
def test_a_command_whose_extra_is_missing_says_what_to_install_and_exits_2(
    capsys: pytest.CaptureFixture[str],
    extra_entry_points: list[metadata.EntryPoint],
    fake_modules: Path,
    value: str,
) -> None:
    extra_entry_points.append(fake("fancy", value))
    assert "fancy" in listed(capsys)
    for argv in (
        ["fancy"],
        ["fancy", "--port", "1", "x"],
        ["fancy", "--help"],
        ["--json", "fancy"],
    ):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith(
            "error: `claude-mem fancy` needs the 'fancy' extra: pip install 'claude-mem-py[fancy]'"
        )
        assert "No module named" in err and "Traceback" not in err
    # The other commands still work.
    assert main(["teams", "list", "--limit", "0"]) == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_several_extras_are_named_together(
    capsys: pytest.CaptureFixture[str],
    extra_entry_points: list[metadata.EntryPoint],
    fake_modules: Path,
) -> None:
    extra_entry_points.append(fake("fancy", "cmem_fake_needs_sdk:register [http,mcp]"))
    assert main(["fancy"]) == 2
    assert "needs the extras 'http', 'mcp': pip install 'claude-mem-py[http,mcp]'" in (
        capsys.readouterr().err
    )


def test_a_command_that_fails_to_load_otherwise_is_a_message(
    capsys: pytest.CaptureFixture[str],
    extra_entry_points: list[metadata.EntryPoint],
    fake_modules: Path,
) -> None:
    extra_entry_points.append(fake("broken", "cmem_fake_broken:register"))
    extra_entry_points.append(fake("plain", "cmem_no_such_package:register"))
    assert main(["broken"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: `claude-mem broken` cannot be loaded: RuntimeError: boom")
    assert main(["plain"]) == 2
    assert "`claude-mem plain` cannot be loaded (No module named" in capsys.readouterr().err
    assert main(["migrate", "--bogus"]) == 2  # unknown arguments stay an error elsewhere
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_python_m_claude_mem_worker_is_the_worker_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "claude_mem_worker", "--concurrency", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("claude-mem worker: argument --concurrency: '0' must be")
    assert "Traceback" not in proc.stderr
