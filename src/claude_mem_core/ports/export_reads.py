"""The reads of a whole project that export and import need (a repository of the unit
of work, ``uow.exports``): keyset pages in a fixed order, and id lookups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from claude_mem_core.domain.export_format import Counts
from claude_mem_core.domain.models import AgentEvent, Observation, ObservationSource, ServerSession

Cursor = tuple[datetime, str]
"""A keyset position: the ordering time and the id of the last row read."""


class ExportReadRepository(Protocol):
    """Keyset-paged reads of a whole project (``services/export.py``) and the id lookups
    an import needs (``services/project_import.py``). Each page is at most ``limit`` rows
    after the ``after`` cursor (exclusive), in a fixed order, so a reader holds one page at
    a time and never skips nor repeats a row however many pages it reads."""

    async def counts(self, team_id: str, project_id: str) -> Counts:
        """How many sessions, events and observations the project holds."""

    async def sessions_page(
        self, team_id: str, project_id: str, *, after: Cursor | None, limit: int
    ) -> Sequence[ServerSession]:
        """By ``(created_at, id)``."""

    async def events_page(
        self, team_id: str, project_id: str, *, after: Cursor | None, limit: int
    ) -> Sequence[AgentEvent]:
        """By ``(occurred_at, id)`` (indexed: the time the event happened)."""

    async def observations_page(
        self, team_id: str, project_id: str, *, after: Cursor | None, limit: int
    ) -> Sequence[Observation]:
        """By ``(created_at, id)``."""

    async def sources_of(
        self, team_id: str, project_id: str, observation_ids: Sequence[str]
    ) -> Sequence[ObservationSource]:
        """The source links of these observations of the project, in any order."""

    async def owners(self, kind: str, ids: Sequence[str]) -> Mapping[str, tuple[str, str]]:
        """Unscoped by design (ids are global keys: an import must tell "already in this
        project" from "taken elsewhere"): the (team id, project id) of each id of
        ``kind`` (``session``, ``event``, ``observation`` or ``source``) that is stored,
        in any project, deleted ones included. Ids not stored are left out."""


__all__ = ["Cursor", "ExportReadRepository"]
