"""Developer entry points: ``nox -s tests``, ``lint``, ``typecheck``, ``migrations``, ``bench``.

CI (``.ci/run``) calls the same tools directly in one venv, which is faster than nox's
per-session venvs; keep the two in step. See docs/development.md.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

HERE = Path(__file__).parent


def _install_dev(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite: ``nox -s tests -- -k search -x`` passes arguments to pytest."""
    _install_dev(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check over the whole tree (fix with ``ruff check --fix``)."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the packages listed in pyproject's [tool.mypy]."""
    _install_dev(session)
    session.run("mypy", "--strict", *session.posargs)


@nox.session
def migrations(session: nox.Session) -> None:
    """Alembic upgrade -> downgrade -> upgrade on SQLite and PostgreSQL, plus autogenerate diff."""
    if not (HERE / "tests" / "migrations").is_dir():
        session.skip("tests/migrations does not exist yet")
    _install_dev(session)
    session.run("python", "-m", "pytest", "tests/migrations", "-q", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: ``python -m bench``."""
    if not (HERE / "bench" / "__main__.py").is_file():
        session.skip("bench/__main__.py does not exist yet")
    _install_dev(session)
    session.run("python", "-m", "bench", *session.posargs)
