"""Tenant checks shared by the use cases (the rule itself is ``domain/tenancy.py``).

Anything outside the caller's team, or outside a project key's project, is "not found":
the answer never reveals that the id exists elsewhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from claude_mem_core.domain.models import AuditEntry, Project
from claude_mem_core.errors import Forbidden, NotFound
from claude_mem_core.ports.storage import UnitOfWork
from claude_mem_core.services.context import Caller, Deps


def project_visible(caller: Caller, project_id: str) -> bool:
    """Whether the caller may see ``project_id`` of its own team (``TenantScope.admits``:
    the team is the caller's, since every read is by team already)."""
    return caller.scope.admits(caller.team_id, project_id)


async def require_project(uow: UnitOfWork, caller: Caller, project_id: str) -> Project:
    if not project_visible(caller, project_id):
        raise NotFound("Project not found")
    project = await uow.projects.get(caller.team_id, project_id)
    if project is None:
        raise NotFound("Project not found")
    return project


RESOURCE_TYPES = {
    "event": "agent_event",
    "session": "server_session",
    "memory": "observation",
    "observation": "observation",
    "generation_job": "observation_generation_job",
    "api_key": "api_key",
    "team": "team",
    "project": "project",
}


def audit_entry(
    deps: Deps,
    caller: Caller | None,
    action: str,
    *,
    team_id: str | None = None,
    project_id: str | None = None,
    resource_id: str | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """The audit row :func:`audit` writes, for a caller that writes several rows at once
    (``uow.audit.add_many``). ``at`` dates an action that happened earlier than now."""
    body: dict[str, Any] = {}
    if caller is not None and caller.request_id is not None:
        body["requestId"] = caller.request_id
    body.update(details or {})
    return AuditEntry(
        id=deps.ids.new_id(),
        team_id=team_id if team_id is not None else (caller.team_id if caller else None),
        project_id=project_id
        if project_id is not None
        else (caller.project_id if caller else None),
        actor_id=caller.actor_id if caller else None,
        api_key_id=caller.api_key_id if caller else None,
        action=action,
        resource_type=RESOURCE_TYPES.get(action.split(".", 1)[0], action.split(".", 1)[0]),
        resource_id=resource_id,
        details=body,
        created_at=at if at is not None else deps.clock.now(),
    )


async def audit(
    uow: UnitOfWork,
    deps: Deps,
    caller: Caller | None,
    action: str,
    *,
    team_id: str | None = None,
    project_id: str | None = None,
    resource_id: str | None = None,
    details: dict[str, Any] | None = None,
    read: bool = False,
) -> None:
    """Write an audit row in the caller's transaction, so an action and its audit commit
    (or vanish) together. ``read``: the audit of a read (``uow.audit.add_read``), which
    needs no transaction of its own and whose commit does not wait for the disk; it also
    checks that the caller's API key still works, and raises ``Forbidden`` if not."""
    entry = audit_entry(
        deps,
        caller,
        action,
        team_id=team_id,
        project_id=project_id,
        resource_id=resource_id,
        details=details,
    )
    if not read:
        await uow.audit.add(entry)
    elif not await uow.audit.add_read(entry):
        raise Forbidden("Invalid API key or insufficient scope")
