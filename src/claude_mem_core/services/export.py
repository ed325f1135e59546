"""Use case: export a whole project as versioned NDJSON (``domain/export_format.py``).

:func:`open_export` checks the caller and the project, counts the rows and audits the
read (``project.exported``, ids and counts only) before anything is sent, so an HTTP
handler can still answer an error; :meth:`ProjectExport.lines` then streams the lines,
reading each kind in keyset pages of :data:`PAGE_ROWS` rows, one short read each, so
memory stays bounded by a page whatever the project's size and no transaction is held
open while a slow reader consumes the stream.

An export is not a snapshot: a row written while it runs is in it if its place in the
order is still ahead of the reader. Rows of an erased project are gone (the project is
missing to every read); erased events and what was derived from them were removed from
the tables, so they are not in any export made after the erase.

Who may export: a caller that can read everything of the project (events and sessions
as well as observations): ``*`` or ``memories:read`` (docs/security.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from attrs import frozen

from claude_mem_core.domain import export_format as fmt
from claude_mem_core.domain.models import AgentEvent, Observation, Project, ServerSession
from claude_mem_core.domain.scopes import Need, require
from claude_mem_core.errors import Forbidden
from claude_mem_core.ports.export_reads import Cursor
from claude_mem_core.ports.storage import UnitOfWork
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.tenancy import audit_entry, require_project

PAGE_ROWS = 500
"""Rows of one kind per read."""

EXPORT_NEEDS = (Need.READ, Need.READ_EVENTS, Need.READ_SESSIONS)

Row = TypeVar("Row", ServerSession, AgentEvent, Observation)


@frozen(kw_only=True)
class ProjectExport:
    """An export ready to stream: its project, its counts and its header line."""

    deps: Deps
    project: Project
    counts: fmt.Counts
    header: str
    page_rows: int = PAGE_ROWS

    async def lines(self) -> AsyncIterator[str]:
        """The header, then every record, each a line ending in a newline."""
        yield self.header
        team_id, project_id = self.project.team_id, self.project.id
        async for session in self._pages(
            lambda uow, after: uow.exports.sessions_page(
                team_id, project_id, after=after, limit=self.page_rows
            ),
            lambda s: (s.created_at, s.id),
        ):
            yield fmt.encode(fmt.session_record(session))
        async for event in self._pages(
            lambda uow, after: uow.exports.events_page(
                team_id, project_id, after=after, limit=self.page_rows
            ),
            lambda e: (e.occurred_at, e.id),
        ):
            yield fmt.encode(fmt.event_record(event))
        after: Cursor | None = None
        while True:
            async with self.deps.storage.unit_of_work() as uow:
                page = await uow.exports.observations_page(
                    team_id, project_id, after=after, limit=self.page_rows
                )
                links = await uow.exports.sources_of(team_id, project_id, [o.id for o in page])
            by_observation: dict[str, list[Any]] = {}
            for link in links:
                by_observation.setdefault(link.observation_id, []).append(link)
            for observation in page:
                record = fmt.observation_record(observation, by_observation.get(observation.id, []))
                yield fmt.encode(record)
            if len(page) < self.page_rows:
                return
            after = (page[-1].created_at, page[-1].id)

    async def _pages(
        self,
        read: Callable[[UnitOfWork, Cursor | None], Awaitable[Sequence[Row]]],
        cursor: Callable[[Row], Cursor],
    ) -> AsyncIterator[Row]:
        after: Cursor | None = None
        while True:
            async with self.deps.storage.unit_of_work() as uow:
                page = await read(uow, after)
            for row in page:
                yield row
            if len(page) < self.page_rows:
                return
            after = cursor(page[-1])


async def open_export(
    deps: Deps, caller: Caller, project_id: str, *, page_rows: int = PAGE_ROWS
) -> ProjectExport:
    """Check that ``caller`` may export ``project_id`` (``NotFound`` when it is not its
    to see, ``Forbidden`` without the scopes) and audit the read."""
    for need in EXPORT_NEEDS:
        require(caller.scopes, need)
    async with deps.storage.unit_of_work() as uow:
        project = await require_project(uow, caller, project_id)
        counts = await uow.exports.counts(caller.team_id, project_id)
        entry = audit_entry(
            deps,
            caller,
            "project.exported",
            project_id=project_id,
            resource_id=project_id,
            details={
                "sessions": counts.sessions,
                "events": counts.events,
                "observations": counts.observations,
            },
        )
        if not await uow.audit.add_read(entry):
            raise Forbidden("Invalid API key or insufficient scope")
    header = fmt.header(
        team_id=project.team_id,
        project_id=project.id,
        project_name=project.name,
        exported_at=deps.clock.now(),
        counts=counts,
    )
    return ProjectExport(
        deps=deps, project=project, counts=counts, header=fmt.encode(header), page_rows=page_rows
    )


async def export_project(deps: Deps, caller: Caller, project_id: str) -> AsyncIterator[str]:
    """:func:`open_export` and its lines, as one stream (checked at the first line)."""
    export = await open_export(deps, caller, project_id)
    async for line in export.lines():
        yield line


__all__ = ["EXPORT_NEEDS", "PAGE_ROWS", "ProjectExport", "export_project", "open_export"]
