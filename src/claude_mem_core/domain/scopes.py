"""API-key scopes: both vocabularies the reference's clients use, and who may do what.

Route-level needs are ``read``, ``write`` and ``admin``. Keys carry either the coarse
``memories:*`` scopes or the fine hook scopes; each need accepts both, so a key issued for
hooks can do everything a hook does.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from claude_mem_core.errors import Forbidden, InvalidInput


class Need(enum.StrEnum):
    READ = "read"
    WRITE_EVENTS = "write_events"
    WRITE_SESSIONS = "write_sessions"
    WRITE_MEMORIES = "write_memories"
    OPERATE_JOBS = "operate_jobs"
    ADMIN = "admin"


ALL = "*"
ADMIN_SCOPES = frozenset({ALL, "admin", "memories:admin"})

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
    }
)

HOOK_SCOPES = frozenset({"events:write", "sessions:write", "observations:read", "jobs:read"})
DEFAULT_SCOPES = frozenset({"memories:read", "memories:write"})

_SATISFIED_BY: dict[Need, frozenset[str]] = {
    Need.READ: frozenset({"memories:read", "observations:read", "jobs:read"}),
    Need.WRITE_EVENTS: frozenset({"memories:write", "events:write"}),
    Need.WRITE_SESSIONS: frozenset({"memories:write", "sessions:write", "events:write"}),
    Need.WRITE_MEMORIES: frozenset({"memories:write", "events:write"}),
    Need.OPERATE_JOBS: frozenset({"memories:write", "jobs:write"}),
    Need.ADMIN: frozenset(),
}


def allows(scopes: Iterable[str], need: Need) -> bool:
    held = frozenset(scopes)
    if held & ADMIN_SCOPES:
        return True
    return bool(held & _SATISFIED_BY[need])


def require(scopes: Iterable[str], need: Need) -> None:
    if not allows(scopes, need):
        raise Forbidden("Invalid API key or insufficient scope")


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
