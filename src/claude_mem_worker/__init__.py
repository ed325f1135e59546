"""The generation worker: a taskiq worker on the Redis queue.

Run it with ``claude-mem worker`` or with taskiq's own command, which behave the same::

    taskiq worker claude_mem_worker:broker --workers 1 --wait-tasks-timeout 10

``broker`` is built from the environment (see :mod:`claude_mem_worker.app`) the first
time it is looked up, so importing this package configures and connects to nothing.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "broker":
        from claude_mem_worker.app import build_broker

        built = build_broker()
        globals()["broker"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
