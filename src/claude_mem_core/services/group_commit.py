"""Group commit for single events: concurrent ``ingest_event`` calls share one write.

A coding agent's hooks send one event per request, and many agents send at once. Written one
transaction each, an event costs a project check, four inserts and a commit: seven round
trips, which bound a Python server long before PostgreSQL is busy. While a group is being
written, the events that arrive queue up; the next group writes them all in one call of
:meth:`Storage.add_fresh_events` (on PostgreSQL one statement, its own transaction: one
round trip for the whole group). Nothing waits on a timer: under no load a group is one
event, written at once.

Each call still gets exactly what :func:`ingest.ingest_event` gives: its own event, job,
``created`` flag and transport, an ``event.received`` audit row carrying its own caller and
request id, and a reply only after its rows are committed. The storage leaves out events
that are replays or out of scope (unknown project, foreign session); those are written on
their own through ``ingest_event``, which answers each as it always does. The statement
also refuses events whose API key no longer works; those are answered "forbidden". If the group's
write fails (a value the database refuses), every event of the group is written on its own,
so one bad event never fails its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from attrs import define, field

from claude_mem_core.domain.models import UNKNOWN_KEY, AgentEvent, JobEventType
from claude_mem_core.domain.scopes import Need, require
from claude_mem_core.errors import ClaudeMemError, Forbidden, InvalidInput, NotFound
from claude_mem_core.ports.storage import FreshEvent
from claude_mem_core.services import ingest, outbox
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.tenancy import audit_entry, project_visible

log = logging.getLogger(__name__)

DEFAULT_MAX_GROUP = 64
DEFAULT_MAX_IN_FLIGHT = 1


@define(kw_only=True, eq=False)
class _Pending:
    caller: Caller
    item: ingest.EventInput
    generate: bool
    job_source: str
    reply: asyncio.Future[ingest.IngestedEvent]
    # Its rows, built on arrival: that work overlaps the group being written, instead of
    # delaying the next one.
    fresh: FreshEvent


@define(eq=False)
class GroupCommitIngest:
    """Writes concurrent single events in groups (see the module docstring).

    ``max_group`` bounds the events of one write; ``max_in_flight`` the groups being written
    at once. One is best: a second writer mostly starts with a single event, paying a round
    trip per event again, while with one the events that arrive during a write (a group's
    publish and replies overlap the next write) all share the next.
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
        event = await ingest.prepared(self.deps, caller, item)  # an unusable value raises
        fresh = self._fresh(caller, event, generate, job_source)
        reply: asyncio.Future[ingest.IngestedEvent] = asyncio.get_running_loop().create_future()
        # A caller gone before its reply must not leave an unretrieved-exception warning.
        reply.add_done_callback(_retrieve)
        self._waiting.append(
            _Pending(
                caller=caller,
                item=item,
                generate=generate,
                job_source=job_source,
                reply=reply,
                fresh=fresh,
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
        released = False

        def release() -> None:
            # The slot is given back as soon as the group's write is done: publishing and
            # the replies overlap the next group's write.
            nonlocal released
            if not released:
                released = True
                self._in_flight -= 1
                if self._waiting:
                    self._start_writers()

        try:
            await self._write_group(group, release)
        except BaseException as e:  # never leave a caller waiting forever
            for pending in group:
                if not pending.reply.done():
                    pending.reply.set_exception(e)
            if not isinstance(e, Exception):
                raise
        finally:
            release()

    async def _write_group(self, group: list[_Pending], release: Callable[[], None]) -> None:
        # New events, the common case, go in whole in one storage call (one statement on
        # PostgreSQL); the storage leaves out replays and events out of scope, which take
        # the ordinary path one by one and get its answers (stored row, "not found").
        items = [(p, p.fresh) for p in group]
        written: set[str] = set()
        if items:
            try:
                written = await self.deps.storage.add_fresh_events([f for _, f in items])
            except ClaudeMemError as e:
                log.info("group of %d events failed (%s); writing each on its own", len(items), e)
        release()
        done = [(p, f) for p, f in items if f.event.id in written]
        jobs = [f.job for _, f in done if f.job is not None]
        outcome = await outbox.publish_for_policy(self.deps, jobs) if jobs else {}
        for pending, fresh in done:
            transport: outbox.Transport = (
                outcome[fresh.job.id] if fresh.job is not None else "skipped"
            )
            _settle(
                pending,
                ingest.IngestedEvent(
                    event=fresh.event, job=fresh.job, created=True, transport=transport
                ),
            )
        for pending, fresh in items:
            if fresh.event.id not in written and not pending.reply.done():
                await self._write_alone(pending)

    def _fresh(
        self, caller: Caller, event: AgentEvent, generate: bool, job_source: str
    ) -> FreshEvent:
        """The rows of the event if it is new, as ``ingest_event`` writes them."""
        deps = self.deps
        job = outbox.new_event_job(deps, caller, event) if generate else None
        return FreshEvent(
            event=event,
            key_id=caller.api_key_id,
            job=job,
            job_event=(
                outbox.job_event(deps, job, JobEventType.QUEUED, {"source": job_source})
                if job is not None
                else None
            ),
            audit=audit_entry(
                deps,
                caller,
                "event.received",
                project_id=event.project_id,
                resource_id=event.id,
                details=ingest.received_details(event, job, True),
            ),
        )

    async def _check_key(self, caller: Caller) -> None:
        """Refuse a caller whose key stopped working: it may have been taken from memory
        (``CoalescedKeyLookup.verify_known``), and ``ingest_event`` does not look at keys."""
        if caller.api_key_id is None:
            return
        async with self.deps.storage.unit_of_work() as uow:
            key = await uow.api_keys.get_unscoped(caller.api_key_id)
        refusal = UNKNOWN_KEY if key is None else key.refusal(self.deps.clock.now())
        if refusal is not None:
            raise Forbidden(refusal)

    async def _write_alone(self, pending: _Pending) -> None:
        try:
            await self._check_key(pending.caller)
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


def _retrieve(reply: asyncio.Future[ingest.IngestedEvent]) -> None:
    if not reply.cancelled():
        reply.exception()


def _settle(pending: _Pending, result: ingest.IngestedEvent) -> None:
    if not pending.reply.done():
        pending.reply.set_result(result)
