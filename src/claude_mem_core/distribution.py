"""The name this project is installed under, for messages that say what to install.

``claude-mem`` on PyPI is an unrelated package, so the distribution is ``claude-mem-py``;
the command (``claude-mem``) and the import packages keep their names.
"""

from __future__ import annotations

DISTRIBUTION = "claude-mem-py"


def install_hint(*extras: str) -> str:
    """``pip install 'claude-mem-py[a,b]'``: the command that brings ``extras``."""
    wanted = f"[{','.join(extras)}]" if extras else ""
    return f"pip install '{DISTRIBUTION}{wanted}'"


def installed_version() -> str:
    """This distribution's version, or ``development`` when run from a source tree that
    was never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "development"
