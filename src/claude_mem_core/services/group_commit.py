"""Group commit for single events: concurrent ``ingest_event`` calls share one transaction.

A coding agent's hooks send one event per request, and many agents send at once. Written one
transaction each, an event costs a project check, four inserts and a commit: seven round
trips, which bound a Python server long before PostgreSQL is busy. While a group is being
written, the events that arrive queue up; the next group writes them all with the batch
path's multi-row inserts (one statement per table) and one commit. Nothing waits on a timer:
under no load a group is one event, written at once.

Each call still gets exactly what :func:`ingest.ingest_event` gives: its own event, job,
``created`` flag and transport, an ``event.received`` audit row carrying its own caller and
request id, and a reply only after its rows are committed. An event that fails its checks
(unknown project or session) fails alone, before the group's write. If the group's write
itself fails (a value the database refuses, a lost race), every event of the group is
written again on its own, so one bad event never fails its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from attrs import define, field

from claude_mem_core.domain.models import AgentEvent, GenerationJob, JobEventType
from claude_mem_core.domain.scopes import Need, require
from claude_mem_core.errors import ClaudeMemError, InvalidInput, NotFound
from claude_mem_core.ports.storage import UnitOfWork
from claude_mem_core.services import ingest, outbox
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.tenancy import audit_entry, project_visible

log = logging.getLogger(__name__)

DEFAULT_MAX_GROUP = 64
DEFAULT_MAX_IN_FLIGHT = 2


@define(kw_only=True, eq=False)
class _Pending:
    caller: Caller
    item: ingest.EventInput
    generate: bool
    job_source: str
    reply: asyncio.Future[ingest.IngestedEvent]


@define(kw_only=True, eq=False)
class _Written:
    pending: _Pending
    event: AgentEvent
    job: GenerationJob | None
    created: bool


@define(eq=False)
class GroupCommitIngest:
    """Writes concurrent single events in groups (see the module docstring).

    ``max_group`` bounds the events of one transaction; ``max_in_flight`` the groups being
    written at once (two keep the database busy while the next group gathers).
    """

    deps: Deps
    max_group: int = DEFAULT_MAX_GROUP
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    _waiting: list[_Pending] = field(factory=list, init=False)
    _in_flight: int = field(default=0, init=False)
    _tasks: set[asyncio.Task[None]] = field(factory=set, init=False)

    async def ingest(
        self,
        caller: Caller,
        item: ingest.EventInput,
        *,
        generate: bool = True,
        job_source: str = "http_post_v1_events",
    ) -> ingest.IngestedEvent:
        """Store one event (idempotently) and its job, as :func:`ingest.ingest_event`."""
        # Everything that needs no database fails here, before joining a group.
        require(caller.scopes, Need.WRITE_EVENTS)
        issues = ingest.validate(item)
        if issues:
            raise InvalidInput(issues)
        if not project_visible(caller, item.project_id):
            raise NotFound("Project not found")
        reply: asyncio.Future[ingest.IngestedEvent] = asyncio.get_running_loop().create_future()
        # A caller gone before its reply must not leave an unretrieved-exception warning.
        reply.add_done_callback(_retrieve)
        self._waiting.append(
            _Pending(
                caller=caller, item=item, generate=generate, job_source=job_source, reply=reply
            )
        )
        self._start_writers()
        # shield: a caller that goes away must not cancel its neighbours' transaction; its
        # own event is then stored, as it would be had the commit won the race.
        return await asyncio.shield(reply)

    async def drain(self) -> None:
        """Wait until every accepted event is written (for shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _start_writers(self) -> None:
        while self._waiting and self._in_flight < self.max_in_flight:
            group, self._waiting = (
                self._waiting[: self.max_group],
                self._waiting[self.max_group :],
            )
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._write(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _write(self, group: list[_Pending]) -> None:
        try:
            await self._write_group(group)
        except BaseException as e:  # never leave a caller waiting forever
            for pending in group:
                if not pending.reply.done():
                    pending.reply.set_exception(e)
            if not isinstance(e, Exception):
                raise
        finally:
            self._in_flight -= 1
            if self._waiting:
                self._start_writers()

    async def _write_group(self, group: list[_Pending]) -> None:
        if len(group) == 1:
            await self._write_alone(group[0])
            return
        try:
            written = await self._write_together(group)
        except ClaudeMemError as e:
            log.info("group of %d events failed (%s); writing each on its own", len(group), e)
            for pending in group:
                if not pending.reply.done():
                    await self._write_alone(pending)
            return
        jobs = [w.job for w in written if w.job is not None]
        outcome = await outbox.publish_for_policy(self.deps, jobs) if jobs else {}
        for w in written:
            transport: outbox.Transport = outcome[w.job.id] if w.job is not None else "skipped"
            _settle(
                w.pending,
                ingest.IngestedEvent(
                    event=w.event, job=w.job, created=w.created, transport=transport
                ),
            )

    async def _write_alone(self, pending: _Pending) -> None:
        try:
            result = await ingest.ingest_event(
                self.deps,
                pending.caller,
                pending.item,
                generate=pending.generate,
                job_source=pending.job_source,
            )
        except Exception as e:
            if not pending.reply.done():
                pending.reply.set_exception(e)
        else:
            _settle(pending, result)

    async def _write_together(self, group: list[_Pending]) -> list[_Written]:
        """One transaction for the group; events failing their checks are answered at once
        and left out (a failure raised from here fails the whole group instead)."""
        async with self.deps.storage.unit_of_work() as uow:
            accepted = await _checked(uow, group)
            if not accepted:
                return []
            stored = await uow.events.add_many(
                [ingest.candidate(self.deps, p.caller, p.item) for p in accepted]
            )
            makers = [(n, p) for n, p in enumerate(accepted) if p.generate]  # get a job
            jobs: list[GenerationJob | None] = [None] * len(accepted)
            if makers:
                made = await uow.jobs.add_many(
                    [outbox.new_event_job(self.deps, p.caller, stored[n][0]) for n, p in makers]
                )
                queued = []
                for (n, p), (job, created) in zip(makers, made, strict=True):
                    jobs[n] = job
                    if created:
                        queued.append(
                            outbox.job_event(
                                self.deps, job, JobEventType.QUEUED, {"source": p.job_source}
                            )
                        )
                await uow.job_events.add_many(queued)
            written = [
                _Written(pending=p, event=event, job=job, created=created)
                for p, (event, created), job in zip(accepted, stored, jobs, strict=True)
            ]
            await uow.audit.add_many(
                [
                    audit_entry(
                        self.deps,
                        w.pending.caller,
                        "event.received",
                        project_id=w.event.project_id,
                        resource_id=w.event.id,
                        details=ingest.received_details(w.event, w.job, w.created),
                    )
                    for w in written
                ]
            )
        return written


async def _checked(uow: UnitOfWork, group: Sequence[_Pending]) -> list[_Pending]:
    """The events whose project and session exist in their caller's team; the others are
    answered "not found" now, as ``ingest_event`` would answer them."""
    projects: dict[tuple[str, str], bool] = {}
    sessions: dict[tuple[str, str], str | None] = {}
    accepted: list[_Pending] = []
    for p in group:
        team_id, item = p.caller.team_id, p.item
        if (team_id, item.project_id) not in projects:
            found = await uow.projects.get(team_id, item.project_id)
            projects[(team_id, item.project_id)] = found is not None
        if not projects[(team_id, item.project_id)]:
            _fail(p, NotFound("Project not found"))
            continue
        if item.server_session_id is not None:
            key = (team_id, item.server_session_id)
            if key not in sessions:
                session = await uow.sessions.get(team_id, item.server_session_id)
                sessions[key] = session.project_id if session is not None else None
            if sessions[key] != item.project_id:
                _fail(p, NotFound("Session not found"))
                continue
        accepted.append(p)
    return accepted


def _retrieve(reply: asyncio.Future[ingest.IngestedEvent]) -> None:
    if not reply.cancelled():
        reply.exception()


def _settle(pending: _Pending, result: ingest.IngestedEvent) -> None:
    if not pending.reply.done():
        pending.reply.set_result(result)


def _fail(pending: _Pending, error: Exception) -> None:
    if not pending.reply.done():
        pending.reply.set_exception(error)
