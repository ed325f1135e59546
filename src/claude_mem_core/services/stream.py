"""The live stream's use case: who may follow which changes, and reading them in order.

A stream follows the change feed (``ports/change_feed.py``) of one team, narrowed to a
project (a project key's own, always) and to the kinds asked for. Each kind is scoped like
its read route: events need ``Need.READ_EVENTS``, observations and summaries ``Need.READ``,
jobs ``Need.READ_JOBS``; a stream that names a kind its key cannot read is refused, one
that names none gets the kinds its key can read.

A page is read from the database after a position, with each change's row as it is now: a
row erased since (or of a project marked deleted) is skipped, but the page still ends past
it, so a reader's position moves on and never returns to it.

The feed is pruned (``prune_feed``, a step of ``services/upkeep.py``) of entries older than
``PipelineOptions.stream_retain_seconds`` (``CLAUDE_MEM_STREAM_RETAIN_HOURS``, a week by
default); a cursor below what was pruned is refused (``CursorExpired``, HTTP 410), never
resumed with a silent gap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta

from attrs import frozen

from claude_mem_core.domain.scopes import Need, allows, missing_scope_message
from claude_mem_core.domain.tenancy import TenantScope
from claude_mem_core.errors import CursorExpired, Forbidden, InvalidInput
from claude_mem_core.ports.change_feed import ALL_KINDS, Change, ChangeKind, FeedPosition
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.tenancy import audit, require_project

# The scope each kind is read with elsewhere.
KIND_NEEDS: dict[ChangeKind, Need] = {
    ChangeKind.EVENT: Need.READ_EVENTS,
    ChangeKind.OBSERVATION: Need.READ,
    ChangeKind.SUMMARY: Need.READ,
    ChangeKind.JOB: Need.READ_JOBS,
}
KINDS_RULE = "must be a comma-separated list of: " + ", ".join(k.value for k in ChangeKind)
PAGE_LIMIT = 200
# The feed's upkeep removes at most this many entries a round.
PRUNE_BATCH = 10_000

log = logging.getLogger("claude_mem.stream")


@frozen(kw_only=True)
class StreamFilter:
    """What one stream receives: changes of ``team_id`` (of ``project_id`` when set) of
    ``kinds``."""

    team_id: str
    project_id: str | None
    kinds: frozenset[ChangeKind]

    def admits(self, change: Change) -> bool:
        scope = TenantScope(self.team_id, self.project_id)
        return scope.admits(change.team_id, change.project_id) and change.kind in self.kinds


@frozen(kw_only=True)
class StreamPage:
    """The changes found after a position (rows gone already left out) and the position
    after the last entry read: where the next page starts."""

    changes: Sequence[Change]
    end: FeedPosition


def parse_kinds(raw: str | None) -> frozenset[ChangeKind] | None:
    """``event,observation,…`` (None when not given); ``InvalidInput`` naming ``kinds``."""
    if raw is None:
        return None
    names = [part.strip() for part in raw.split(",")]
    if not all(names) or any(name not in ALL_KINDS for name in names):
        raise InvalidInput.field("kinds", KINDS_RULE)
    return frozenset(ChangeKind(name) for name in names)


async def open_stream(
    deps: Deps,
    caller: Caller,
    *,
    project_id: str | None = None,
    kinds: Iterable[ChangeKind] | None = None,
) -> StreamFilter:
    """Check that ``caller`` may follow these changes and say which it will receive.

    ``Forbidden`` for a kind (or, none named, every kind) the caller's scopes cannot read;
    ``NotFound`` for a project the caller cannot read. Audited once (``stream.open``),
    which also refuses a key revoked or expired meanwhile."""
    if kinds is None:
        wanted = frozenset(k for k in ChangeKind if allows(caller.scopes, KIND_NEEDS[k]))
        if not wanted:
            raise Forbidden(missing_scope_message(Need.READ))
    else:
        wanted = frozenset(kinds)
        if not wanted:
            raise InvalidInput.field("kinds", KINDS_RULE)
        for kind in sorted(wanted):
            if not allows(caller.scopes, KIND_NEEDS[kind]):
                raise Forbidden(missing_scope_message(KIND_NEEDS[kind]))
    if project_id is not None and not project_id.strip():
        raise InvalidInput.field("project_id", "must be a non-empty string")
    scope_project = project_id if project_id is not None else caller.project_id
    async with deps.storage.unit_of_work() as uow:
        if scope_project is not None:
            await require_project(uow, caller, scope_project)
        await audit(
            uow,
            deps,
            caller,
            "stream.open",
            project_id=scope_project,
            read=True,
            details={"kinds": sorted(k.value for k in wanted)},
        )
    return StreamFilter(team_id=caller.team_id, project_id=scope_project, kinds=wanted)


async def check_resumable(deps: Deps, after: FeedPosition, *, field: str) -> None:
    """Refuse a cursor below the feed's horizon (entries after it may have been pruned:
    resuming there could skip changes): ``CursorExpired`` naming ``field``."""
    horizon = await deps.storage.change_feed().horizon()
    if after < horizon:
        raise CursorExpired(
            field,
            f"{field} is older than the live stream keeps (its changes were pruned after "
            f"{deps.options.stream_retain_seconds / 3600:g} hours): reconnect without a "
            "cursor, and reload what you show",
        )


async def prune_feed(deps: Deps) -> int:
    """Remove feed entries older than the options' retention (at most
    :data:`PRUNE_BATCH`; the upkeep's step, ``services/upkeep.py``); how many went."""
    before = deps.clock.now() - timedelta(seconds=deps.options.stream_retain_seconds)
    pruned = await deps.storage.change_feed().prune(before=before, limit=PRUNE_BATCH)
    if pruned:
        log.info("pruned %d change feed entries older than %s", pruned, before.isoformat())
    return pruned


async def start_position(deps: Deps) -> FeedPosition:
    """Where a stream without a cursor starts: only what commits from now on."""
    return await deps.storage.change_feed().head()


async def read_page(
    deps: Deps, where: StreamFilter, after: FeedPosition, *, limit: int = PAGE_LIMIT
) -> StreamPage:
    """The next changes for ``where`` after ``after``, from the database (a reconnecting
    client's replay: the same whichever process or restart it reconnects to)."""
    read = await deps.storage.change_feed().read(
        after,
        team_id=where.team_id,
        project_id=where.project_id,
        kinds=where.kinds,
        limit=limit,
    )
    end = read[-1].position if read else after
    return StreamPage(changes=[c for c in read if c.record is not None], end=end)


__all__ = [
    "KIND_NEEDS",
    "PAGE_LIMIT",
    "PRUNE_BATCH",
    "StreamFilter",
    "StreamPage",
    "check_resumable",
    "open_stream",
    "parse_kinds",
    "prune_feed",
    "read_page",
    "start_position",
]
