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

from attrs import define

from claude_mem_core.domain.models import AgentEvent, JobEventType
from claude_mem_core.domain.scopes import Need, require
from claude_mem_core.errors import ClaudeMemError, InvalidInput, NotFound
from claude_mem_core.ports.storage import FreshEvent
from claude_mem_core.services import ingest, outbox
from claude_mem_core.services.context import Caller
from claude_mem_core.services.grouping import GroupWriter, fail, settle
from claude_mem_core.services.tenancy import audit_entry, project_visible

log = logging.getLogger(__name__)


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
class GroupCommitIngest(GroupWriter[_Pending, ingest.IngestedEvent]):
    """Writes concurrent single events in groups (see the module docstring).

    ``max_group`` bounds the events of one write; ``max_in_flight`` the groups being written
    at once (one is best: see ``services/grouping.py``).
    """

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
        fresh = self._fresh(caller, event, generate, job_source, large=item.is_large)
        reply: asyncio.Future[ingest.IngestedEvent] = asyncio.get_running_loop().create_future()
        return await self._join(
            _Pending(
                caller=caller,
                item=item,
                generate=generate,
                job_source=job_source,
                reply=reply,
                fresh=fresh,
            )
        )

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
            settle(
                pending,
                ingest.IngestedEvent(
                    event=fresh.event, job=fresh.job, created=True, transport=transport
                ),
            )
        for pending, fresh in items:
            if fresh.event.id not in written and not pending.reply.done():
                await self._write_alone(pending)

    def _fresh(
        self, caller: Caller, event: AgentEvent, generate: bool, job_source: str, *, large: bool
    ) -> FreshEvent:
        """The rows of the event if it is new, as ``ingest_event`` writes them."""
        deps = self.deps
        job = outbox.new_event_job(deps, caller, event) if generate else None
        return FreshEvent(
            event=event,
            key_id=caller.api_key_id,
            large=large,
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
            fail(pending, e)
        else:
            settle(pending, result)
