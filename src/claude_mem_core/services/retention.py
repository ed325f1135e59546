"""Use cases: keep a project's agent data for a number of days, then erase it.

A project may have a retention (``retain_days``, set with :func:`set_retention`). The
sweep (:func:`sweep`, run every five minutes by the upkeep of the worker and of the
embedded server, ``services/upkeep.py``, or by ``claude-mem retention run``) erases,
through the erase use cases of ``services/erase.py`` and so with their tombstones and
cascades:

* each **session** of the project with no activity for that many days (not updated since,
  and no event of it received since) with its events, observations, summaries and jobs;
* each **event without a session** received before that.

Memories written outside any session are not swept: nobody's agent sent them, a person
chose to keep them (erase them by hand). A session that is still in use is never touched,
however old its first event: retention counts from the last activity.

The sweep is bounded (:data:`SESSIONS_PER_ROUND` sessions and events per project and
round, each erased in its own short transaction, so SQLite's one writer never waits long)
and resumable: what a round leaves, the next one finds. Each erase is audited as the erase
routes audit theirs, by the actor ``system:retention``; each round that erased something
adds one ``retention.swept`` row per project, with counts.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from attrs import frozen

from claude_mem_core.domain.models import Project
from claude_mem_core.domain.scopes import ERASE_SCOPE, Need, require
from claude_mem_core.errors import InvalidInput, NotFound
from claude_mem_core.services import erase
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.tenancy import audit_entry, project_visible

RETENTION_ACTOR = "system:retention"
# The longest retention accepted (a century): beyond it, "keep forever" is what is meant.
MAX_RETAIN_DAYS = 36_500
SESSIONS_PER_ROUND = 50

log = logging.getLogger("claude_mem.retention")


def parse_retain_days(value: object) -> int | None:
    """``retainDays`` as given (None: keep until erased); InvalidInput naming it if not a
    whole number of days from 1 to :data:`MAX_RETAIN_DAYS`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput.field("retainDays", "must be a whole number of days, or null")
    if not 1 <= value <= MAX_RETAIN_DAYS:
        raise InvalidInput.field("retainDays", f"must be between 1 and {MAX_RETAIN_DAYS}")
    return value


async def set_retention(
    deps: Deps, caller: Caller, project_id: str, retain_days: object
) -> Project:
    """Set (or, with None, remove) the project's retention. A retention leads to erasure,
    so it needs :data:`Need.ERASE`; audited as ``project.retention_set``."""
    require(caller.scopes, Need.ERASE)
    days = parse_retain_days(retain_days)
    if not project_visible(caller, project_id):
        raise NotFound("Project not found")
    now = deps.clock.now()
    async with deps.storage.unit_of_work() as uow:
        project = await uow.projects.set_retention(caller.team_id, project_id, days, at=now)
        if project is None:
            raise NotFound("Project not found")
        await uow.audit.add(
            audit_entry(
                deps,
                caller,
                "project.retention_set",
                project_id=project_id,
                resource_id=project_id,
                details={"retainDays": days},
                at=now,
            )
        )
    return project


@frozen(kw_only=True)
class ProjectSweep:
    """What one round erased in one project: sessions and loose events, and their rows."""

    team_id: str
    project_id: str
    retain_days: int
    cutoff: datetime
    sessions: int = 0
    events: int = 0
    rows: int = 0


async def sweep(
    deps: Deps,
    *,
    team_id: str | None = None,
    project_id: str | None = None,
    per_project: int = SESSIONS_PER_ROUND,
) -> list[ProjectSweep]:
    """One bounded round over every project with a retention (or only ``team_id`` /
    ``project_id``): see the module docstring. Returns what each project's round erased
    (projects where nothing was due included)."""
    async with deps.storage.unit_of_work() as uow:
        retained = await uow.erasure.retained_projects()
    done: list[ProjectSweep] = []
    for team, project, days in retained:
        if (team_id is not None and team != team_id) or (
            project_id is not None and project != project_id
        ):
            continue
        done.append(await _sweep_project(deps, team, project, days, per_project))
    return done


async def _sweep_project(
    deps: Deps, team_id: str, project_id: str, days: int, limit: int
) -> ProjectSweep:
    cutoff = deps.clock.now() - timedelta(days=days)
    caller = Caller(
        team_id=team_id,
        project_id=project_id,
        actor_id=RETENTION_ACTOR,
        scopes=frozenset({ERASE_SCOPE}),
    )
    async with deps.storage.unit_of_work() as uow:
        sessions = await uow.erasure.expired_sessions(
            team_id, project_id, before=cutoff, limit=limit
        )
        events = await uow.erasure.expired_loose_events(
            team_id, project_id, before=cutoff, limit=limit
        )
    rows = 0
    erased_sessions = erased_events = 0
    for session_id in sessions:
        try:
            rows += (await erase.erase_session(deps, caller, session_id)).removed.total
            erased_sessions += 1
        except NotFound:  # erased meanwhile
            continue
    for event_id in events:
        try:
            rows += (await erase.erase_event(deps, caller, event_id)).removed.total
            erased_events += 1
        except NotFound:
            continue
    result = ProjectSweep(
        team_id=team_id,
        project_id=project_id,
        retain_days=days,
        cutoff=cutoff,
        sessions=erased_sessions,
        events=erased_events,
        rows=rows,
    )
    if erased_sessions or erased_events:
        async with deps.storage.unit_of_work() as uow:
            await uow.audit.add(
                audit_entry(
                    deps,
                    caller,
                    "retention.swept",
                    project_id=project_id,
                    resource_id=project_id,
                    details={
                        "retainDays": days,
                        "sessions": erased_sessions,
                        "events": erased_events,
                        "rows": rows,
                    },
                )
            )
    return result


async def sweep_all(deps: Deps) -> int:
    """One bounded round over every project with a retention, logged when it erased
    something (the upkeep's step, ``services/upkeep.py``); rows erased."""
    swept = await sweep(deps)
    rows = sum(s.rows for s in swept)
    if rows:
        log.info(
            "retention erased %d session(s), %d event(s) (%d rows) in %d project(s)",
            sum(s.sessions for s in swept),
            sum(s.events for s in swept),
            rows,
            sum(1 for s in swept if s.sessions or s.events),
        )
    return rows


__all__ = [
    "MAX_RETAIN_DAYS",
    "RETENTION_ACTOR",
    "SESSIONS_PER_ROUND",
    "ProjectSweep",
    "parse_retain_days",
    "set_retention",
    "sweep",
    "sweep_all",
]
