"""Tenancy checks of a new row's parents within one unit of work: the session or job a row
names must be of the row's own team and project, which a single-column foreign key cannot
say. Each parent is checked once per unit of work (``_Db.scoped``); ``_by_scope`` groups
records by (team, project) so a batch costs one read per scope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from claude_mem_core import errors
from claude_mem_core.adapters.sqlalchemy.connection import _Db


def _by_scope(items: Sequence[Any]) -> dict[tuple[str, str], list[Any]]:
    """Group records by their (team, project), first appearance first."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for item in items:
        groups.setdefault((item.team_id, item.project_id), []).append(item)
    return groups


_SESSION_SCOPE_ERROR = "server_session_id must belong to project_id and team_id"


async def _check_session_scopes(db: _Db, items: Sequence[Any]) -> None:
    """:func:`_check_session_scope` for each distinct (session, team, project) of ``items``."""
    seen = dict.fromkeys(
        (i.server_session_id, i.team_id, i.project_id) for i in items if i.server_session_id
    )
    for session_id, team, project in seen:
        await _check_session_scope(db, session_id, team, project)


async def _check_session_scope(db: _Db, session_id: str | None, team: str, project: str) -> None:
    # A single-column FK keeps SET NULL on session deletion; the scope is checked here.
    if session_id is None or ("session", session_id, team, project) in db.scoped:
        return
    params = {"id": session_id, "team_id": team, "project_id": project}
    if (await db.run(db.sql.session_in_scope, params)).first() is None:
        raise errors.NotFound(_SESSION_SCOPE_ERROR)
    db.scoped.add(("session", session_id, team, project))


async def _check_job_scope(db: _Db, job_id: str | None, team: str, project: str) -> None:
    if job_id is None or ("job", job_id, team, project) in db.scoped:
        return
    params = {"id": job_id, "team_id": team, "project_id": project}
    if (await db.run(db.sql.job_in_scope, params)).first() is None:
        raise errors.NotFound("created_by_job_id must belong to project_id and team_id")
    db.scoped.add(("job", job_id, team, project))
