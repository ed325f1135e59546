"""Use case: import a project export (``domain/export_format.py``) into a project.

Two passes, so that nothing of an import is written unless all of it can be:

1. **Check.** Every line, first to last: the header and its version, each record's fields,
   the order of the types, no id defined twice, no id that is a row of another project,
   and every reference (an event's or observation's session, a source's event or session)
   to a line of the stream or a row of the target project. The checked lines go to a
   temporary file (:mod:`import_spool`), so memory holds one batch whatever the size. The
   first problem stops the import, naming its line and field (:class:`BadExportLine`, or
   :class:`ImportConflict` for an id of another project); nothing has been written.
2. **Write**, in batches of at most :data:`BATCH_ROWS` rows, one transaction each, through
   the repositories every writer uses: sessions, events, then observations with their
   source links and their search passages, built as the pipeline builds them
   (``domain.passages.passages_for``: an observation's own passage and the text of the
   events it was made from), so search finds imported observations as it finds generated
   ones. A failure here (the database went away) leaves the batches before it written;
   importing again completes the import.

Ids are kept; rows are attributed to the target team and project. Importing is
idempotent: a row whose id is already in the target project is skipped, so importing the
same export twice adds nothing. A session or event the target already holds under another
id (the same external session id, the same ``sourceEventId``) is not stored twice: the
stored one stands for it, and the records that named it are linked to the stored one.
No generation job is created unless ``generate`` is set, which queues one per imported
event as ingest would.

Who may import: a caller that may write events, sessions and memories (``*`` or
``memories:write``).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any

import attrs
from attrs import define, field, frozen

from claude_mem_core.domain import export_format as fmt
from claude_mem_core.domain.models import (
    AgentEvent,
    GenerationJob,
    ObservationSource,
    ObservationSourceType,
    ServerSession,
)
from claude_mem_core.domain.passages import passages_for
from claude_mem_core.domain.scopes import Need, require
from claude_mem_core.errors import Conflict
from claude_mem_core.services import outbox
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.import_spool import Definition, DuplicateId, ImportSpool, Reference
from claude_mem_core.services.tenancy import audit_entry, require_project

BATCH_ROWS = 500
"""Records per write transaction (and per check of ids against the database)."""

MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest line read (an event of megabytes fits; a runaway stream does not)."""

IMPORT_NEEDS = (Need.WRITE_EVENTS, Need.WRITE_SESSIONS, Need.WRITE_MEMORIES)

Progress = Callable[[str, int, int], None]
"""Called with the phase (``checking``, ``writing``), records done, records expected
(the header's counts; 0 when it has none)."""


class ImportConflict(Conflict):
    """A line defines an id that is a row of another project (ids are global keys)."""

    def __init__(self, line: int, kind: str, row_id: str) -> None:
        super().__init__(
            f"line {line}: id: {kind} {row_id} is stored in another project; "
            "an export is imported into the project it came from or into another database"
        )
        self.line = line
        self.field = "id"


@frozen(kw_only=True)
class ImportReport:
    """What an import did: the lines read, the rows it added by kind, the records it
    skipped because the project held them already, and the generation jobs it queued."""

    project_id: str
    lines: int
    sessions: int = 0
    events: int = 0
    observations: int = 0
    sources: int = 0
    skipped: int = 0
    jobs: int = 0

    def as_dict(self) -> dict[str, int | str]:
        return {
            "projectId": self.project_id,
            "lines": self.lines,
            "sessions": self.sessions,
            "events": self.events,
            "observations": self.observations,
            "sources": self.sources,
            "skipped": self.skipped,
            "jobs": self.jobs,
        }


async def split_lines(
    chunks: AsyncIterable[bytes], *, max_line_bytes: int = MAX_LINE_BYTES
) -> AsyncIterator[bytes]:
    """The lines of a byte stream (without their newline), holding at most one line."""
    pending = bytearray()
    number = 0
    async for chunk in chunks:
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) != -1:
            number += 1
            yield bytes(pending[start:end])
            start = end + 1
        del pending[:start]
        if len(pending) > max_line_bytes:
            raise fmt.BadExportLine(number + 1, "", f"is longer than {max_line_bytes} bytes")
    if pending:
        yield bytes(pending)


def _definitions_and_references(
    line: int, record: fmt.Record
) -> tuple[list[Definition], list[Reference]]:
    if isinstance(record, ServerSession):
        return [Definition(fmt.SESSION, record.id, line)], []
    if isinstance(record, AgentEvent):
        refs = []
        if record.server_session_id is not None:
            refs.append(Reference(line, "sessionId", fmt.SESSION, record.server_session_id))
        return [Definition(fmt.EVENT, record.id, line)], refs
    obs = record.observation
    defined = [Definition(fmt.OBSERVATION, obs.id, line)]
    refs = []
    if obs.server_session_id is not None:
        refs.append(Reference(line, "sessionId", fmt.SESSION, obs.server_session_id))
    for n, source in enumerate(record.sources):
        defined.append(Definition("source", source.id, line))
        field = f"sources.{n}.sourceId"
        if source.source_type is ObservationSourceType.AGENT_EVENT:
            refs.append(Reference(line, field, fmt.EVENT, source.source_id))
        elif source.source_type is ObservationSourceType.SESSION_SUMMARY:
            refs.append(Reference(line, field, fmt.SESSION, source.source_id))
    return defined, refs


@define
class _Checker:
    """Pass 1 (see the module docstring)."""

    deps: Deps
    team_id: str
    project_id: str
    spool: ImportSpool
    progress: Progress | None
    header: fmt.Header | None = None
    expected: int = 0
    records: int = 0
    last_type: int = -1
    batch: list[tuple[int, str, str]] = field(factory=list)
    definitions: list[Definition] = field(factory=list)
    references: list[Reference] = field(factory=list)

    async def line(self, n: int, raw: str | bytes) -> None:
        if not raw.strip():
            return
        value = fmt.decode(n, raw)
        if self.header is None:
            self.header = fmt.parse_header(n, value)
            self.expected = self.header.counts.total
            return
        kind = fmt.record_type(n, value)
        rank = fmt.RECORD_TYPES.index(kind)
        if rank < self.last_type:
            raise fmt.BadExportLine(
                n,
                "type",
                f"{kind} after {fmt.RECORD_TYPES[self.last_type]}: records come "
                f"in the order {', '.join(fmt.RECORD_TYPES)}",
            )
        self.last_type = rank
        record = fmt.parse_record(n, value, team_id=self.team_id, project_id=self.project_id)
        defined, named = _definitions_and_references(n, record)
        text = raw if isinstance(raw, str) else raw.decode("utf-8")
        self.batch.append((n, kind, text))
        self.definitions += defined
        self.references += named
        self.records += 1
        if len(self.batch) >= BATCH_ROWS:
            await self.flush()

    async def flush(self) -> None:
        if not self.batch:
            return
        batch, defined, named = self.batch, self.definitions, self.references
        self.batch, self.definitions, self.references = [], [], []
        try:
            await self.spool.call(lambda: self.spool.add(batch, defined, named))
        except DuplicateId as twice:
            d = twice.definition
            raise fmt.BadExportLine(
                d.line, "id", f"{d.kind} {d.id} is defined already on line {twice.first_line}"
            ) from None
        await self._check_owners(defined)
        if self.progress is not None:
            self.progress("checking", self.records, self.expected)

    async def _check_owners(self, defined: Sequence[Definition]) -> None:
        here = (self.team_id, self.project_id)
        by_kind: dict[str, list[Definition]] = {}
        for d in defined:
            by_kind.setdefault(d.kind, []).append(d)
        async with self.deps.storage.unit_of_work() as uow:
            for kind, items in by_kind.items():
                owners = await uow.exports.owners(kind, [d.id for d in items])
                for d in items:
                    owner = owners.get(d.id)
                    if owner is not None and owner != here:
                        raise ImportConflict(d.line, kind, d.id)

    async def finish(self) -> None:
        await self.flush()
        if self.header is None:
            raise fmt.BadExportLine(1, "", "the stream is empty: an export starts with its header")
        # References no line defines must be rows of the target project.
        here = (self.team_id, self.project_id)
        after: tuple[int, str, str] | None = None
        while True:
            refs = await self.spool.call(
                functools.partial(self.spool.unresolved, after=after, limit=BATCH_ROWS)
            )
            if not refs:
                return
            async with self.deps.storage.unit_of_work() as uow:
                for kind in {r.kind for r in refs}:
                    wanted = [r for r in refs if r.kind == kind]
                    owners = await uow.exports.owners(kind, [r.id for r in wanted])
                    missing = [r for r in wanted if owners.get(r.id) != here]
                    if missing:
                        first = min(missing, key=lambda r: (r.line, r.field))
                        raise fmt.BadExportLine(
                            first.line,
                            first.field,
                            f"names {kind} {first.id}, which is neither in the export nor "
                            "in the project",
                        )
            last = refs[-1]
            after = (last.line, last.field, last.id)


@define
class _Writer:
    """Pass 2 (see the module docstring)."""

    deps: Deps
    caller: Caller
    team_id: str
    project_id: str
    generate: bool
    # Records the target held under another id (same identity): old id -> stored id.
    stored_as: dict[str, str] = field(factory=dict)
    sessions: int = 0
    events: int = 0
    observations: int = 0
    sources: int = 0
    skipped: int = 0
    jobs: int = 0

    def _as_stored(self, row_id: str | None) -> str | None:
        return None if row_id is None else self.stored_as.get(row_id, row_id)

    async def write(self, kind: str, records: Sequence[fmt.Record]) -> list[GenerationJob]:
        here = (self.team_id, self.project_id)
        ids = [
            r.observation.id if isinstance(r, fmt.ImportedObservation) else r.id for r in records
        ]
        queued: list[GenerationJob] = []
        async with self.deps.storage.unit_of_work() as uow:
            owners = await uow.exports.owners(kind, ids)
            fresh = [r for r, i in zip(records, ids, strict=True) if owners.get(i) != here]
            self.skipped += len(records) - len(fresh)
            if kind == fmt.SESSION:
                for session in fresh:
                    assert isinstance(session, ServerSession)
                    stored, created = await uow.sessions.add(session)
                    self._note(session.id, stored.id, created, "sessions")
            elif kind == fmt.EVENT:
                events = [
                    _evolve(e, server_session_id=self._as_stored(e.server_session_id))
                    for e in fresh
                    if isinstance(e, AgentEvent)
                ]
                for event, (stored_event, created) in zip(
                    events, await uow.events.add_many(events), strict=True
                ):
                    self._note(event.id, stored_event.id, created, "events")
                    if created and self.generate:
                        made = await outbox.create_event_job(
                            uow, self.deps, self.caller, stored_event, source="import"
                        )
                        queued.append(made.job)
            else:
                await self._observations(
                    uow, [r for r in fresh if isinstance(r, fmt.ImportedObservation)]
                )
        return queued

    async def _observations(self, uow: Any, records: Sequence[fmt.ImportedObservation]) -> None:
        observations = [
            _evolve(
                r.observation, server_session_id=self._as_stored(r.observation.server_session_id)
            )
            for r in records
        ]
        added = await uow.observations.add_many(observations)
        links: list[ObservationSource] = []
        new: list[tuple[Any, list[ObservationSource]]] = []
        repeated: dict[str, int] = {}
        for record, observation, (stored, created) in zip(
            records, observations, added, strict=True
        ):
            self._note(record.observation.id, stored.id, created, "observations")
            # The same fact as a stored observation (its fingerprint; not a replay of
            # this row): its sources link to that one, and its occurrences add up.
            merged = not created and stored.generation_key != observation.generation_key
            if not created and not merged:
                continue
            sources = [
                _evolve(
                    s,
                    observation_id=stored.id,
                    source_id=self._as_stored(s.source_id),
                    agent_event_id=self._as_stored(s.agent_event_id),
                )
                for s in record.sources
            ]
            links += sources
            if merged:
                repeated[stored.id] = repeated.get(stored.id, 0) + observation.occurrences
            else:
                new.append((stored, sources))
        if repeated:
            await uow.observations.add_occurrences(self.team_id, self.project_id, repeated)
        event_ids = list(
            dict.fromkeys(s.agent_event_id for s in links if s.agent_event_id is not None)
        )
        events = {
            e.id: e for e in await uow.events.get_many(self.team_id, self.project_id, event_ids)
        }
        passages = []
        for observation, sources in new:
            made_from = [
                events[s.agent_event_id]
                for s in sources
                if s.agent_event_id is not None and s.agent_event_id in events
            ]
            passages += passages_for([observation], made_from)
        await uow.search.add(passages)
        # A superseded observation's passages rank lower (domain/supersession.py).
        superseded = [o.id for o, _ in new if o.superseded_by is not None]
        if superseded:
            await uow.observations.weigh(self.team_id, self.project_id, superseded)
        await uow.sources.add_many(links)
        self.sources += len(links)

    def _note(self, given: str, stored: str, created: bool, counter: str) -> None:
        if created:
            setattr(self, counter, getattr(self, counter) + 1)
            return
        self.skipped += 1
        if stored != given:
            self.stored_as[given] = stored


def _evolve(record: Any, **changes: Any) -> Any:
    return attrs.evolve(record, **changes)


async def import_project(
    deps: Deps,
    caller: Caller,
    project_id: str,
    lines: AsyncIterable[str | bytes],
    *,
    generate: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Check the whole stream, then write it (see the module docstring). Raises
    :class:`BadExportLine` (and :class:`UnsupportedExportVersion`) or
    :class:`ImportConflict` with nothing written; ``NotFound`` when the project is not
    the caller's to see; ``Forbidden`` without the scopes."""
    for need in IMPORT_NEEDS:
        require(caller.scopes, need)
    async with deps.storage.unit_of_work() as uow:
        await require_project(uow, caller, project_id)
    spool = ImportSpool()
    try:
        checker = _Checker(deps, caller.team_id, project_id, spool, progress)
        count = 0
        async for raw in lines:
            count += 1
            await checker.line(count, raw)
        await checker.finish()
        writer = _Writer(deps, caller, caller.team_id, project_id, generate)
        done = 0
        after = 0
        while True:
            rows = await spool.call(functools.partial(spool.read, after=after, limit=BATCH_ROWS))
            if not rows:
                break
            after = rows[-1][0]
            for kind, group in _runs(rows):
                records = [
                    fmt.parse_record(
                        n, fmt.decode(n, text), team_id=caller.team_id, project_id=project_id
                    )
                    for n, _, text in group
                ]
                queued = await writer.write(kind, records)
                writer.jobs += len(queued)
                if queued:
                    await outbox.publish_for_policy(deps, queued)
                done += len(group)
                if progress is not None:
                    progress("writing", done, checker.expected)
    finally:
        spool.close()
    report = ImportReport(
        project_id=project_id,
        lines=count,
        sessions=writer.sessions,
        events=writer.events,
        observations=writer.observations,
        sources=writer.sources,
        skipped=writer.skipped,
        jobs=writer.jobs,
    )
    async with deps.storage.unit_of_work() as uow:
        details: dict[str, Any] = dict(report.as_dict())
        del details["projectId"]
        await uow.audit.add(
            audit_entry(
                deps,
                caller,
                "project.imported",
                project_id=project_id,
                resource_id=project_id,
                details=details,
            )
        )
    return report


def _runs(
    rows: Sequence[tuple[int, str, str]],
) -> list[tuple[str, list[tuple[int, str, str]]]]:
    """Consecutive rows of one kind."""
    runs: list[tuple[str, list[tuple[int, str, str]]]] = []
    for row in rows:
        if runs and runs[-1][0] == row[1]:
            runs[-1][1].append(row)
        else:
            runs.append((row[1], [row]))
    return runs


__all__ = [
    "BATCH_ROWS",
    "IMPORT_NEEDS",
    "ImportConflict",
    "ImportReport",
    "Progress",
    "import_project",
    "split_lines",
]
