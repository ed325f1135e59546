"""Use cases: erase what should never have been stored (an event, a session, a project).

Each erase removes the rows and everything derived from them, and keeps a content-free
tombstone: an audit row saying who (actor and API key), what (kind and id), when, and how
many rows of each kind went (never a payload, a text or a title).

* :func:`erase_event`, in one transaction: the event; the observations derived from it (an
  observation made from several events goes when any one of them is erased, and every
  summary of the event's session goes too, since a summary is made from all of the
  session's events); their source links, search passages (the search statistics are
  decremented exactly) and embeddings; the event's generation jobs with their logs. A job
  of the same session that a worker holds right now (a batch that may have read the event,
  the session's summary) is put back in the queue (or cancelled, when it has no attempt
  left), so the worker's compare-and-set fails and it writes nothing; its next run reads
  what is left. Audited as ``event.erased``.
* :func:`erase_session`, in one transaction: the session, its events as above, every
  observation of the session (memories written into it too) and every job of it. Audited
  as ``session.erased``.
* :func:`erase_project`: first one short transaction marks the project deleted (from its
  commit on, it is missing to every read and refuses every write), revokes its project
  keys and cancels its queued and running jobs, audited as ``project.erased``; then its rows
  are purged in batches of at most ``batch_size`` rows of one table, each its own
  transaction (a SQLite writer waits at most one batch), audited as ``project.purged`` when
  done. The project row stays, marked, with its audit trail and its revoked keys. A purge
  cut short (the process stopped) is finished by calling it again, or by
  :func:`purge_pending`.

A replay of an erased event's ``sourceEventId`` is refused with :class:`errors.Gone`
(HTTP 410) and stores nothing: the erased event's idempotency key is remembered
(``erased_events``, no content), and ingest checks it (``services/ingest.py``). Events sent
without a ``sourceEventId`` have no identity to remember; sending one again stores it again.

Who may erase: a caller holding :data:`Need.ERASE` (the ``erase`` scope, ``*``, ``admin``
or ``memories:admin``; see ``domain/scopes.py``), within its team and, for a project key,
its project; anything else is ``NotFound``, as for every read by id. Library callers
(``Memory``) hold every scope.

What is not touched: audit rows (they hold ids and counts, never content); API keys (an
erased project's are revoked, not deleted); physical copies the databases keep until they
reuse or vacuum their pages, and backups (docs/your-data.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Literal

import attrs
from attrs import field, frozen

from claude_mem_core.domain import jobs as machine
from claude_mem_core.domain.models import GenerationJob, JobEventType, JobStatus, Project
from claude_mem_core.domain.scopes import Need, require
from claude_mem_core.errors import NotFound
from claude_mem_core.ports.erasure import ErasedRows
from claude_mem_core.ports.storage import JobFilter, Page, UnitOfWork
from claude_mem_core.services import outbox
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.tenancy import audit_entry, project_visible

ErasedKind = Literal["event", "session", "project"]

PurgeProgress = Callable[[int, ErasedRows], None]
"""Called after each purge batch with its number (from 1) and the rows it removed."""

# Rows of one table per purge transaction (each batch is short for SQLite's one writer).
PURGE_BATCH = 500

log = logging.getLogger("claude_mem.erase")


@frozen(kw_only=True)
class Erasure:
    """What one erase did. ``kind`` and ``id``: what was erased, in ``project_id`` of
    ``team_id``, at ``erased_at``. ``removed``: the rows removed, by kind
    (``removed.as_dict()``, ``removed.total``). ``requeued_jobs``: jobs of the same session
    that were running on the erased content and went back to the queue (their results are
    discarded); ``cancelled_jobs``: those cancelled instead (no attempt left). For a
    project: ``revoked_keys``, and ``complete`` is False while its rows are still being
    purged (``purge=False``, or a bounded ``max_batches``)."""

    kind: ErasedKind
    id: str
    team_id: str
    project_id: str
    erased_at: datetime
    removed: ErasedRows = field(factory=ErasedRows)
    requeued_jobs: int = 0
    cancelled_jobs: int = 0
    revoked_keys: int = 0
    complete: bool = True

    @property
    def counts(self) -> dict[str, int]:
        """The rows removed, by kind (the tombstone's ``removed``)."""
        return self.removed.as_dict()


def _tombstone(erasure: Erasure, **more: object) -> dict[str, object]:
    """The details of an erase's audit row: kind, id and counts, never content."""
    return {
        "kind": erasure.kind,
        "removed": erasure.counts,
        "requeuedJobs": erasure.requeued_jobs,
        "cancelledJobs": erasure.cancelled_jobs,
        **more,
    }


async def _hold_back(
    uow: UnitOfWork,
    deps: Deps,
    team_id: str,
    project_id: str,
    session_id: str,
    *,
    erased_event_id: str,
) -> tuple[list[GenerationJob], int]:
    """Put back in the queue (or cancel, with no attempt left) every job of the session
    that a worker holds now, but the erased event's own (it goes with the event): the
    worker may have read the erased event (a batch, the session's summary), and its
    compare-and-set now fails, so it stores nothing. Returns the requeued jobs and how
    many were cancelled."""
    now = deps.clock.now()
    held: list[GenerationJob] = []
    offset = 0
    while True:
        page, total = await uow.jobs.list(
            JobFilter(team_id=team_id, project_id=project_id, status=JobStatus.PROCESSING),
            Page(limit=100, offset=offset),
        )
        held.extend(
            j
            for j in page
            if j.server_session_id == session_id and j.agent_event_id != erased_event_id
        )
        offset += len(page)
        if not page or offset >= total:
            break
    requeued: list[GenerationJob] = []
    cancelled = 0
    error = {"reason": "a source event was erased", "classification": "erased"}
    for job in held:
        if machine.can_transition(job, JobStatus.QUEUED):
            new = machine.transition(
                job, JobStatus.QUEUED, now=now, next_attempt_at=now, last_error=error
            )
            logged = JobEventType.QUEUED
        else:
            new = machine.transition(job, JobStatus.CANCELLED, now=now, last_error=error)
            logged = JobEventType.CANCELLED
        event = outbox.job_event(deps, new, logged, {"source": "erase"})
        if not await uow.jobs.compare_and_set(job, new, event=event):
            continue  # it just finished or moved on: its results are erased below anyway
        if new.status is JobStatus.QUEUED:
            requeued.append(new)
        else:
            cancelled += 1
    return requeued, cancelled


async def erase_event(deps: Deps, caller: Caller, event_id: str) -> Erasure:
    """Erase one event and everything derived from it (see the module docstring).
    ``NotFound`` when the event is not the caller's to see; ``Forbidden`` without
    :data:`Need.ERASE`."""
    require(caller.scopes, Need.ERASE)
    now = deps.clock.now()
    async with deps.storage.unit_of_work() as uow:
        event = await uow.events.get(caller.team_id, event_id)
        if event is None or not caller.scope.admits(event.team_id, event.project_id):
            raise NotFound("Event not found")
        requeued: list[GenerationJob] = []
        cancelled = 0
        if event.server_session_id is not None:
            requeued, cancelled = await _hold_back(
                uow,
                deps,
                event.team_id,
                event.project_id,
                event.server_session_id,
                erased_event_id=event.id,
            )
        removed = await uow.erasure.erase_events(
            event.team_id, event.project_id, [event.id], at=now
        )
        erasure = Erasure(
            kind="event",
            id=event.id,
            team_id=event.team_id,
            project_id=event.project_id,
            erased_at=now,
            removed=removed,
            requeued_jobs=len(requeued),
            cancelled_jobs=cancelled,
        )
        await uow.audit.add(
            audit_entry(
                deps,
                caller,
                "event.erased",
                project_id=event.project_id,
                resource_id=event.id,
                details=_tombstone(erasure, sessionId=event.server_session_id),
                at=now,
            )
        )
    if requeued:
        await outbox.publish_for_policy(deps, requeued)
    return erasure


async def erase_session(deps: Deps, caller: Caller, session_id: str) -> Erasure:
    """Erase one session, its events and everything derived from them (see the module
    docstring). ``NotFound`` when the session is not the caller's to see; ``Forbidden``
    without :data:`Need.ERASE`."""
    require(caller.scopes, Need.ERASE)
    now = deps.clock.now()
    async with deps.storage.unit_of_work() as uow:
        session = await uow.sessions.get(caller.team_id, session_id)
        if session is None or not caller.scope.admits(session.team_id, session.project_id):
            raise NotFound("Session not found")
        # Every job of the session goes with it: a worker holding one loses its claim.
        removed = await uow.erasure.erase_session(
            session.team_id, session.project_id, session.id, at=now
        )
        erasure = Erasure(
            kind="session",
            id=session.id,
            team_id=session.team_id,
            project_id=session.project_id,
            erased_at=now,
            removed=removed,
        )
        await uow.audit.add(
            audit_entry(
                deps,
                caller,
                "session.erased",
                project_id=session.project_id,
                resource_id=session.id,
                details=_tombstone(erasure),
                at=now,
            )
        )
    return erasure


async def _revoke_project_keys(uow: UnitOfWork, team_id: str, project_id: str, at: datetime) -> int:
    revoked = 0
    offset = 0
    while True:
        keys, total = await uow.api_keys.list(team_id, project_id, Page(limit=100, offset=offset))
        for key in keys:
            if key.revoked_at is None:
                await uow.api_keys.save(attrs.evolve(key, revoked_at=at, updated_at=at))
                revoked += 1
        offset += len(keys)
        if not keys or offset >= total:
            return revoked


async def erase_project(
    deps: Deps,
    caller: Caller,
    project_id: str,
    *,
    purge: bool = True,
    batch_size: int = PURGE_BATCH,
    max_batches: int | None = None,
    progress: PurgeProgress | None = None,
) -> Erasure:
    """Erase a whole project (see the module docstring): mark it deleted, revoke its
    keys and cancel its jobs in one short transaction, then (``purge``) purge its rows in
    batches of at most ``batch_size`` rows, at most ``max_batches`` of them (None: until
    done). A project already marked (an erase cut short) is purged on from where it was.
    ``NotFound`` when the project is not the caller's; ``Forbidden`` without
    :data:`Need.ERASE`. A route that answers before the purge ends calls it with
    ``purge=False`` and then :func:`purge_project` in the background. ``progress`` is
    called after each purge batch."""
    require(caller.scopes, Need.ERASE)
    now = deps.clock.now()
    if not isinstance(project_id, str) or not project_visible(caller, project_id):
        raise NotFound("Project not found")
    revoked = 0
    async with deps.storage.unit_of_work() as uow:
        project: Project | None = await uow.projects.get(caller.team_id, project_id)
        marked = project is not None and await uow.erasure.mark_project_deleted(
            caller.team_id, project_id, at=now
        )
        if not marked:  # marked before (an erase cut short, or a concurrent one): purge on
            marked_at = await uow.erasure.project_deleted_at(caller.team_id, project_id)
            if marked_at is None:
                raise NotFound("Project not found")
            erased_at = marked_at
        else:
            erased_at = now
            revoked = await _revoke_project_keys(uow, caller.team_id, project_id, now)
            await uow.audit.add(
                audit_entry(
                    deps,
                    caller,
                    "project.erased",
                    project_id=project_id,
                    resource_id=project_id,
                    details={"kind": "project", "revokedKeys": revoked, "purge": "started"},
                    at=now,
                )
            )
    erasure = Erasure(
        kind="project",
        id=project_id,
        team_id=caller.team_id,
        project_id=project_id,
        erased_at=erased_at,
        revoked_keys=revoked,
        complete=False,
    )
    if not purge:
        return erasure
    purged = await purge_project(
        deps,
        caller.team_id,
        project_id,
        caller=caller,
        batch_size=batch_size,
        max_batches=max_batches,
        progress=progress,
    )
    return attrs.evolve(erasure, removed=purged.removed, complete=purged.complete)


async def purge_project(
    deps: Deps,
    team_id: str,
    project_id: str,
    *,
    caller: Caller | None = None,
    batch_size: int = PURGE_BATCH,
    max_batches: int | None = None,
    progress: PurgeProgress | None = None,
) -> Erasure:
    """Purge the rows of a project marked deleted, ``batch_size`` rows of one table per
    transaction, until none is left (or ``max_batches`` ran); then audit
    ``project.purged`` with the counts (as ``caller``, the system when None). Does nothing
    for a project that is not marked deleted. Trusted: the caller checked the scope.
    ``progress`` is called after each batch."""
    removed = ErasedRows()
    batches = 0
    complete = False
    marked: datetime | None = None
    while max_batches is None or batches < max_batches:
        async with deps.storage.unit_of_work() as uow:
            if marked is None:
                marked = await uow.erasure.project_deleted_at(team_id, project_id)
                if marked is None:
                    break
            step = await uow.erasure.purge_project(
                team_id, project_id, limit=batch_size, at=deps.clock.now()
            )
        batches += 1
        removed += step
        if progress is not None:
            progress(batches, step)
        if step.total == 0:
            complete = True
            break
    erasure = Erasure(
        kind="project",
        id=project_id,
        team_id=team_id,
        project_id=project_id,
        erased_at=marked or deps.clock.now(),
        removed=removed,
        complete=complete,
    )
    if complete or removed.total:
        async with deps.storage.unit_of_work() as uow:
            await uow.audit.add(
                audit_entry(
                    deps,
                    caller or Caller(team_id=team_id, actor_id="system:erase"),
                    "project.purged" if complete else "project.purging",
                    team_id=team_id,
                    project_id=project_id,
                    resource_id=project_id,
                    details=_tombstone(erasure, batches=batches),
                )
            )
    return erasure


# Purge batches one upkeep round (a worker's, the embedded server's) runs for each erased
# project whose purge was cut short; the rest waits for the next round.
PURGE_BATCHES_PER_ROUND = 20


async def continue_purges(deps: Deps, *, max_batches: int = PURGE_BATCHES_PER_ROUND) -> int:
    """One upkeep round of :func:`purge_pending`, bounded, logged when it purged something.
    Returns the rows purged; errors are the caller's (its next round tries again)."""
    purged = await purge_pending(deps, max_batches=max_batches)
    rows = sum(p.removed.total for p in purged)
    if rows:
        log.info(
            "purged %d row(s) of %d erased project(s); %d finished",
            rows,
            len(purged),
            sum(1 for p in purged if p.complete),
        )
    return rows


async def purge_pending(
    deps: Deps, *, batch_size: int = PURGE_BATCH, max_batches: int | None = None
) -> Sequence[Erasure]:
    """Finish the purges that were cut short (projects marked deleted, not purged yet),
    oldest first: for a worker's upkeep or an operator's command."""
    async with deps.storage.unit_of_work() as uow:
        pending = await uow.erasure.projects_to_purge(limit=100)
    return [
        await purge_project(deps, team, project, batch_size=batch_size, max_batches=max_batches)
        for team, project in pending
    ]


__all__ = [
    "PURGE_BATCH",
    "PURGE_BATCHES_PER_ROUND",
    "ErasedKind",
    "Erasure",
    "PurgeProgress",
    "continue_purges",
    "erase_event",
    "erase_project",
    "erase_session",
    "purge_pending",
    "purge_project",
]
