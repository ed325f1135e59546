"""The observation repository (adds idempotent by generation key and deduplicated by
fingerprint, occurrence counts, scoped reads, the
observations of a source or a job) and the observation-source links (``SourceRepo``), whose
repeats merge their metadata into the stored link's."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from claude_mem_core import errors
from claude_mem_core.adapters.sqlalchemy import supersession
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.bulk import BULK_OBSERVATIONS, BULK_SOURCES
from claude_mem_core.adapters.sqlalchemy.connection import _Db, _page
from claude_mem_core.adapters.sqlalchemy.rows import (
    _columns,
    _merge,
    _observation,
    _observation_values,
    _source,
    _source_values,
)
from claude_mem_core.adapters.sqlalchemy.scopes import (
    _by_scope,
    _check_job_scope,
    _check_session_scope,
    _check_session_scopes,
)
from claude_mem_core.adapters.sqlalchemy.tenant_filter import admitted, of_tenant
from claude_mem_core.domain.models import Observation, ObservationSource
from claude_mem_core.domain.tenancy import TenantScope
from claude_mem_core.ports.storage import Page


class ObservationRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add_many(
        self, observations: Sequence[Observation]
    ) -> Sequence[tuple[Observation, bool]]:
        """One multi-row insert; rows it did not insert (same generation key, or same
        fingerprint, as a stored row or an earlier row of ``observations``) are answered
        with the stored row."""
        if len(observations) <= 1:
            return [await self.add(observation) for observation in observations]
        db = self._db
        await _check_session_scopes(db, observations)
        for job_id, team, project in dict.fromkeys(
            (o.created_by_job_id, o.team_id, o.project_id) for o in observations
        ):
            await _check_job_scope(db, job_id, team, project)
        inserted = await db.inserted_ids(
            db.sql.observation_insert_ignore,
            [_observation_values(o) for o in observations],
            bulk=BULK_OBSERVATIONS,
            not_found="project_id must belong to team_id",
        )
        stored = await self._stored([o for o in observations if o.id not in inserted])
        return [
            (observation, True) if observation.id in inserted else (stored[observation.id], False)
            for observation in observations
        ]

    async def add(self, observation: Observation) -> tuple[Observation, bool]:
        db = self._db
        team, project = observation.team_id, observation.project_id
        await _check_session_scope(db, observation.server_session_id, team, project)
        await _check_job_scope(db, observation.created_by_job_id, team, project)
        values = _observation_values(observation)
        not_found = "project_id must belong to team_id"
        if observation.generation_key is None and observation.fingerprint is None:
            await db.run(db.sql.observation_insert, values, not_found=not_found)
            return observation, True
        result = await db.run(db.sql.observation_insert_ignore, values, not_found=not_found)
        if result.first() is not None:
            return observation, True
        return (await self._stored([observation]))[observation.id], False

    async def _stored(self, pending: Sequence[Observation]) -> dict[str, Observation]:
        """The stored row each of ``pending`` (not inserted) clashed with, by id: the one
        with its generation key (a replay), else the one with its fingerprint."""
        db = self._db
        found: dict[str, Observation] = {}
        for (team, project), group in _by_scope(pending).items():
            scope = {"team_id": team, "project_id": project}
            keys = list({o.generation_key for o in group if o.generation_key is not None})
            by_key = {
                row["generation_key"]: _observation(row)
                for row in (
                    await db.rows(db.sql.observations_by_keys, {**scope, "keys": keys})
                    if keys
                    else ()
                )
            }
            rest = [o for o in group if o.generation_key not in by_key]
            prints = list({o.fingerprint for o in rest if o.fingerprint is not None})
            by_print = {
                row["fingerprint"]: _observation(row)
                for row in (
                    await db.rows(
                        db.sql.observations_by_fingerprints, {**scope, "fingerprints": prints}
                    )
                    if prints
                    else ()
                )
            }
            for o in group:
                existing = by_key.get(o.generation_key) or by_print.get(o.fingerprint)
                if existing is None:  # pragma: no cover - a unique index guarantees a row
                    raise errors.Conflict(f"observation {o.id} conflicts with a stored one")
                found[o.id] = existing
        return found

    async def add_occurrences(
        self, team_id: str, project_id: str, counts: Mapping[str, int]
    ) -> None:
        o = t.observations
        for observation_id, n in sorted(counts.items()):
            await self._db.execute(
                sa.update(o)
                .where(
                    o.c.id == observation_id,
                    of_tenant(team_id, project_id, o.c),
                )
                .values(occurrences=o.c.occurrences + n)
            )

    async def supersede(
        self, team_id: str, project_id: str, subjects: Collection[str], *, at: datetime
    ) -> Sequence[tuple[str, str]]:
        return await supersession.supersede(self._db, team_id, project_id, subjects, at=at)

    async def lock_subjects(self, team_id: str, project_id: str, subjects: Collection[str]) -> None:
        await supersession.lock(self._db, team_id, project_id, subjects)

    async def weigh(self, team_id: str, project_id: str, observation_ids: Sequence[str]) -> None:
        await supersession.weigh(self._db, team_id, project_id, observation_ids)

    async def get(self, team_id: str, project_id: str, observation_id: str) -> Observation | None:
        c = t.observations.c
        stmt = self._db.select(t.observations).where(
            c.id == observation_id,
            of_tenant(team_id, project_id, c),
            t.live_project(t.observations),
        )
        row = await self._db.one_or_none(stmt)
        return _observation(row) if row else None

    async def get_in_team(self, team_id: str, observation_id: str) -> Observation | None:
        c = t.observations.c
        stmt = self._db.select(t.observations).where(
            c.id == observation_id,
            admitted(TenantScope(team_id), c),
            t.live_project(t.observations),
        )
        row = await self._db.one_or_none(stmt)
        return _observation(row) if row else None

    async def list(
        self, team_id: str, project_id: str, page: Page, *, kind: str | None = None
    ) -> tuple[Sequence[Observation], int]:
        c = t.observations.c
        where = [of_tenant(team_id, project_id, c)]
        if kind is not None:
            where.append(c.kind == kind)
        stmt = self._db.select(t.observations).where(*where).order_by(c.created_at.desc(), c.id)
        rows = await self._db.all(_page(stmt, page))
        return [_observation(r) for r in rows], await self._db.count(t.observations, *where)

    async def list_for_source(
        self, team_id: str, project_id: str, source_type: str, source_id: str
    ) -> Sequence[tuple[Observation, ObservationSource]]:
        o, s = t.observations, t.observation_sources
        source_cols = [c.label(f"source__{c.key}") for c in s.columns]
        stmt = (
            sa.select(*_columns(o), *source_cols)
            .select_from(o.join(s, s.c.observation_id == o.c.id))
            .where(
                of_tenant(team_id, project_id, o.c),
                of_tenant(team_id, project_id, s.c),
                s.c.source_type == source_type,
                s.c.source_id == source_id,
            )
            .order_by(o.c.created_at, o.c.id)
        )
        out: list[tuple[Observation, ObservationSource]] = []
        for r in await self._db.all(stmt):
            source_row = {c.key: r[f"source__{c.key}"] for c in s.columns}
            out.append((_observation(r), _source(source_row)))  # type: ignore[arg-type]
        return out

    async def list_for_job(
        self, team_id: str, project_id: str, job_id: str
    ) -> Sequence[Observation]:
        c = t.observations.c
        stmt = (
            self._db.select(t.observations)
            .where(of_tenant(team_id, project_id, c), c.created_by_job_id == job_id)
            .order_by(c.created_at, c.id)
        )
        return [_observation(r) for r in await self._db.all(stmt)]


_SOURCE_NOT_FOUND = "observation and agent event must belong to project_id and team_id"


class SourceRepo:
    def __init__(self, db: _Db) -> None:
        self._db = db

    async def add_many(self, sources: Sequence[ObservationSource]) -> Sequence[ObservationSource]:
        """One multi-row insert; a link that already existed (rare: a link is made once)
        has its metadata merged row by row, in input order, as ``add`` would."""
        if len(sources) <= 1:
            return [await self.add(source) for source in sources]
        values = [_source_values(source) for source in sources]
        inserted = await self._db.inserted_ids(
            self._db.sql.source_insert, values, bulk=BULK_SOURCES, not_found=_SOURCE_NOT_FOUND
        )
        return [
            source if source.id in inserted else await self._merge_into_stored(source, row)
            for source, row in zip(sources, values, strict=True)
        ]

    async def add(self, source: ObservationSource) -> ObservationSource:
        values = _source_values(source)
        result = await self._db.run(self._db.sql.source_insert, values, not_found=_SOURCE_NOT_FOUND)
        if result.first() is not None:
            return source
        return await self._merge_into_stored(source, values)

    async def _merge_into_stored(
        self, source: ObservationSource, values: dict[str, Any]
    ) -> ObservationSource:
        s = t.observation_sources
        keys = ("observation_id", "source_type", "source_id", "team_id", "project_id")
        row = await self._db.row(self._db.sql.source_locked, {k: values[k] for k in keys})
        if row is None:
            raise errors.NotFound("observation must belong to project_id and team_id")
        stored = _source(row)
        merged = _merge(stored.metadata, source.metadata)
        if merged != stored.metadata:
            await self._db.execute(sa.update(s).where(s.c.id == stored.id).values(metadata=merged))
            stored = _source({**row, "metadata": merged})  # type: ignore[arg-type]
        return stored
