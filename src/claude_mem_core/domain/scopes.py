"""API-key scopes: both vocabularies the reference's clients use, and who may do what.

A route asks for one :class:`Need`. The coarse scopes keep exactly what the wire gives
them: ``memories:read`` opens every read, ``memories:write`` every write, ``*`` everything.
The fine scopes a hook key carries only narrow: each opens its own routes and nothing
else (``observations:read``: observations, search and context; ``jobs:read``: job status;
``jobs:write``: retry and cancel; ``events:write``: event ingest; ``sessions:write``:
session start, end and summarize). ``admin`` and ``memories:admin`` open no read or write
route by themselves; with a scope that lists jobs they add the stored payloads
(``include=payload``). docs/security.md has the table, route by route.

Erasing (``services/erase.py``: an event, a session, a whole project) is :data:`Need.ERASE`,
opened by the ``erase`` scope, by ``*`` (which the wire treats as every scope) and by the
two operator scopes ``admin`` and ``memories:admin`` (erasing is an operator's act, as
reading stored job payloads is). ``memories:write`` does not open it: a key that can write
history (a hook key, a client's) must not be able to destroy it. A key without any of them
gets the refusal every missing scope gets (:func:`require`, ``Forbidden``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from claude_mem_core.errors import Forbidden, InvalidInput


class Need(enum.StrEnum):
    READ = "read"  # observations (memories): by id, recent, search, context, of an event
    READ_EVENTS = "read_events"
    READ_SESSIONS = "read_sessions"
    READ_JOBS = "read_jobs"
    READ_PROJECTS = "read_projects"
    WRITE_EVENTS = "write_events"
    WRITE_SESSIONS = "write_sessions"
    WRITE_MEMORIES = "write_memories"
    OPERATE_JOBS = "operate_jobs"
    ADMIN = "admin"
    MCP = "mcp"  # the /mcp endpoint: a key that can use one of its (read) tools
    ERASE = "erase"  # erase an event, a session or a project with what was derived from it
    READ_METRICS = "read_metrics"  # GET /metrics when the server asks a key for it


ALL = "*"
ADMIN_SCOPES = frozenset({ALL, "admin", "memories:admin"})
ERASE_SCOPE = "erase"
METRICS_SCOPE = "metrics:read"

KNOWN_SCOPES = frozenset(
    {
        ALL,
        "admin",
        "memories:admin",
        "memories:read",
        "memories:write",
        "events:write",
        "sessions:write",
        "observations:read",
        "jobs:read",
        "jobs:write",
        ERASE_SCOPE,
        METRICS_SCOPE,
    }
)

HOOK_SCOPES = frozenset({"events:write", "sessions:write", "observations:read", "jobs:read"})
DEFAULT_SCOPES = frozenset({"memories:read", "memories:write"})

# The scopes that satisfy each need, ``*`` first; any one of them is enough.
SATISFIED_BY: dict[Need, tuple[str, ...]] = {
    Need.READ: (ALL, "memories:read", "observations:read"),
    Need.READ_EVENTS: (ALL, "memories:read"),
    Need.READ_SESSIONS: (ALL, "memories:read"),
    Need.READ_JOBS: (ALL, "memories:read", "jobs:read"),
    Need.READ_PROJECTS: (ALL, "memories:read"),
    Need.WRITE_EVENTS: (ALL, "memories:write", "events:write"),
    Need.WRITE_SESSIONS: (ALL, "memories:write", "sessions:write"),
    Need.WRITE_MEMORIES: (ALL, "memories:write"),
    Need.OPERATE_JOBS: (ALL, "memories:write", "jobs:write"),
    Need.ADMIN: (ALL, "admin", "memories:admin"),
    Need.MCP: (ALL, "memories:read", "observations:read", "jobs:read"),
    Need.ERASE: (ALL, ERASE_SCOPE, "admin", "memories:admin"),
    # Operators scrape; the scope opens nothing else, so a Prometheus key reads no memory.
    Need.READ_METRICS: (ALL, METRICS_SCOPE, "admin", "memories:admin"),
}


def allows(scopes: Iterable[str], need: Need) -> bool:
    return not frozenset(scopes).isdisjoint(SATISFIED_BY[need])


def missing_scope_message(need: Need) -> str:
    """The refusal of a key that lacks ``need``, naming the scopes that would do."""
    names = [s for s in SATISFIED_BY[need] if s != ALL]
    wanted = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f"API key lacks the scope this needs: {wanted}"


def require(scopes: Iterable[str], need: Need) -> None:
    if not allows(scopes, need):
        raise Forbidden(missing_scope_message(need))


def validate_scopes(scopes: Iterable[str], *, field: str = "scopes") -> frozenset[str]:
    held = frozenset(s.strip() for s in scopes)
    unknown = sorted(held - KNOWN_SCOPES)
    if unknown:
        raise InvalidInput.field(
            field,
            f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_SCOPES))}",
        )
    if not held:
        raise InvalidInput.field(field, "at least one scope is required")
    return held
