"""Observations (memories), the links to their sources, and the audit log of the in-memory
storage."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

import attrs

from claude_mem_core.adapters import memory_supersession as supersession
from claude_mem_core.adapters.memory_state import (
    Repo,
    in_scope,
    is_deleted,
    paged,
    require_project,
    require_session,
)
from claude_mem_core.domain.models import AuditEntry, Observation, ObservationSource
from claude_mem_core.errors import NotFound
from claude_mem_core.ports.storage import Page


class MemoryObservations(Repo):
    async def add(self, observation: Observation) -> tuple[Observation, bool]:
        require_project(self._tx, observation.team_id, observation.project_id)
        o = observation
        require_session(self._tx, o.team_id, o.project_id, o.server_session_id)
        if observation.created_by_job_id is not None:
            job = self._tx.read("jobs").get(observation.created_by_job_id)
            if (
                job is None
                or job.team_id != observation.team_id
                or job.project_id != observation.project_id
            ):
                raise NotFound("Generation job not found")
        scoped = self._scoped(o.team_id, o.project_id)
        # A replay (same generation key) first, then the same fact (same fingerprint).
        for name in ("generation_key", "fingerprint"):
            value = getattr(o, name)
            stored = [e for e in scoped if value is not None and getattr(e, name) == value]
            if stored:
                return stored[0], False
        self._tx.write("observations")[observation.id] = observation
        return observation, True

    async def add_occurrences(
        self, team_id: str, project_id: str, counts: Mapping[str, int]
    ) -> None:
        table = self._tx.read("observations")
        for observation_id, n in counts.items():
            o = table.get(observation_id)
            if o is not None and in_scope(o, team_id, project_id):
                self._tx.write("observations")[o.id] = attrs.evolve(
                    o, occurrences=o.occurrences + n
                )

    async def add_many(
        self, observations: Sequence[Observation]
    ) -> Sequence[tuple[Observation, bool]]:
        return [await self.add(observation) for observation in observations]

    async def supersede(
        self, team_id: str, project_id: str, subjects: Collection[str], *, at: datetime
    ) -> Sequence[tuple[str, str]]:
        return supersession.supersede(self._tx, team_id, project_id, subjects, at=at)

    async def lock_subjects(self, team_id: str, project_id: str, subjects: Collection[str]) -> None:
        return None  # units of work are serial here

    async def weigh(self, team_id: str, project_id: str, observation_ids: Sequence[str]) -> None:
        return None  # a passage's weight is read from its observation (memory_supersession)

    def _scoped(self, team_id: str, project_id: str) -> list[Observation]:
        return [
            o for o in self._tx.read("observations").values() if in_scope(o, team_id, project_id)
        ]

    async def get(self, team_id: str, project_id: str, observation_id: str) -> Observation | None:
        obs: Observation | None = self._tx.read("observations").get(observation_id)
        if obs is None or not in_scope(obs, team_id, project_id):
            return None
        return None if is_deleted(self._tx, project_id) else obs

    async def get_in_team(self, team_id: str, observation_id: str) -> Observation | None:
        obs: Observation | None = self._tx.read("observations").get(observation_id)
        if obs is None or not in_scope(obs, team_id):
            return None
        return None if is_deleted(self._tx, obs.project_id) else obs

    async def list(
        self, team_id: str, project_id: str, page: Page, *, kind: str | None = None
    ) -> tuple[Sequence[Observation], int]:
        # Newest first, ties by id ascending, as the SQL adapter orders them (a stable sort).
        scoped = self._scoped(team_id, project_id)
        rows = sorted((o for o in scoped if kind is None or o.kind == kind), key=lambda o: o.id)
        rows.sort(key=lambda o: o.created_at, reverse=True)
        return paged(rows, page)

    async def list_for_source(
        self, team_id: str, project_id: str, source_type: str, source_id: str
    ) -> Sequence[tuple[Observation, ObservationSource]]:
        table = self._tx.read("observations")
        pairs = []
        for link in self._tx.read("sources").values():
            if link.source_type.value != source_type or link.source_id != source_id:
                continue
            obs = table.get(link.observation_id)
            if obs is not None and in_scope(obs, team_id, project_id):
                pairs.append((obs, link))
        pairs.sort(key=lambda p: (p[0].created_at, p[0].id))
        return pairs

    async def list_for_job(
        self, team_id: str, project_id: str, job_id: str
    ) -> Sequence[Observation]:
        rows = [o for o in self._scoped(team_id, project_id) if o.created_by_job_id == job_id]
        rows.sort(key=lambda o: (o.created_at, o.id))
        return rows


class MemorySources(Repo):
    async def add(self, source: ObservationSource) -> ObservationSource:
        obs = self._tx.read("observations").get(source.observation_id)
        if obs is None or obs.team_id != source.team_id or obs.project_id != source.project_id:
            raise NotFound("Observation not found")
        for existing in self._tx.read("sources").values():
            if (
                existing.observation_id == source.observation_id
                and existing.source_type is source.source_type
                and existing.source_id == source.source_id
            ):
                merged: ObservationSource = attrs.evolve(
                    existing, metadata={**existing.metadata, **source.metadata}
                )
                self._tx.write("sources")[existing.id] = merged
                return merged
        self._tx.write("sources")[source.id] = source
        return source

    async def add_many(self, sources: Sequence[ObservationSource]) -> Sequence[ObservationSource]:
        return [await self.add(source) for source in sources]


class MemoryAudit(Repo):
    async def add(self, entry: AuditEntry) -> None:
        self._tx.write("audit")[entry.id] = entry

    async def add_read(self, entry: AuditEntry) -> bool:
        if entry.project_id is not None:  # as the SQL schema's project-scope key does
            require_project(self._tx, entry.team_id or "", entry.project_id)
        if entry.api_key_id is not None:
            key = self._tx.read("api_keys").get(entry.api_key_id)
            if key is None or not key.is_usable(self._tx.now()):
                return False
        await self.add(entry)
        return True

    async def add_many(self, entries: Sequence[AuditEntry]) -> None:
        table = self._tx.write("audit")
        for entry in entries:
            table[entry.id] = entry

    async def list(
        self, team_id: str, *, action: str | None = None, page: Page = Page()
    ) -> tuple[Sequence[AuditEntry], int]:
        table = self._tx.read("audit")
        order = {eid: n for n, eid in enumerate(table)}
        rows = [
            a
            for a in table.values()
            if in_scope(a, team_id) and (action is None or a.action == action)
        ]
        rows.sort(key=lambda a: (a.created_at, order[a.id]), reverse=True)
        return paged(rows, page)
