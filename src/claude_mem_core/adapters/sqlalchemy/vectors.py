"""The search-vector repository: passage embeddings stored per (passage, model) for optional
semantic recall, the passages still without one, and the vectors of a set of observations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.connection import _Db
from claude_mem_core.adapters.sqlalchemy.tenant_filter import admitted, of_tenant
from claude_mem_core.domain.fusion import pack_vector, unpack_vector
from claude_mem_core.domain.tenancy import TenantScope
from claude_mem_core.ports.search import PassageText


class SearchVectorRepo:
    """Passage embeddings (``search_vectors``), for optional semantic recall."""

    def __init__(self, db: _Db) -> None:
        self._db = db

    @staticmethod
    def _unembedded(
        model: str, team_id: str | None, project_id: str | None
    ) -> list[sa.ColumnElement[bool]]:
        p, v = t.search_passages.c, t.search_vectors.c
        return [
            ~sa.exists().where(v.passage_id == p.id, v.model == model),
            # A project being erased sends nothing more to an embedder.
            t.live_project(t.search_passages),
            admitted(TenantScope(team_id, project_id), p),
        ]

    async def missing(
        self,
        model: str,
        *,
        team_id: str | None = None,
        project_id: str | None = None,
        observation_ids: Sequence[str] | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> Sequence[PassageText]:
        if limit <= 0 or (observation_ids is not None and not observation_ids):
            return []
        p, o = t.search_passages.c, t.observations.c
        where = self._unembedded(model, team_id, project_id)
        where.append(p.id > after)
        if observation_ids is not None:
            where.append(p.observation_id.in_(list(observation_ids)))
        stmt = (
            sa.select(
                p.id,
                p.team_id,
                p.project_id,
                p.observation_id,
                sa.func.coalesce(p.text, o.content).label("text"),
            )
            .select_from(
                t.search_passages.join(
                    t.observations,
                    sa.and_(
                        o.id == p.observation_id,
                        o.team_id == p.team_id,
                        o.project_id == p.project_id,
                    ),
                )
            )
            .where(*where)
            .order_by(p.id)
            .limit(limit)
        )
        return [
            PassageText(
                id=int(r["id"]),
                team_id=r["team_id"],
                project_id=r["project_id"],
                observation_id=r["observation_id"],
                text=r["text"] or "",
            )
            for r in await self._db.all(stmt)
        ]

    async def count_missing(
        self, model: str, *, team_id: str | None = None, project_id: str | None = None
    ) -> int:
        return await self._db.count(
            t.search_passages, *self._unembedded(model, team_id, project_id)
        )

    async def add(self, model: str, vectors: Mapping[int, Sequence[float]]) -> int:
        if not vectors:
            return 0
        packed = {int(pid): pack_vector(vector) for pid, vector in vectors.items()}
        p, v = t.search_passages.c, t.search_vectors.c
        # The scope comes from the passage itself; an id that names none is skipped.
        passages = await self._db.all(
            sa.select(p.id, p.team_id, p.project_id, p.observation_id).where(p.id.in_(list(packed)))
        )
        if not passages:
            return 0
        insert = dialects.insert(self._db.dialect, t.search_vectors)
        stmt = insert.on_conflict_do_nothing(index_elements=["passage_id", "model"]).returning(
            v.passage_id
        )
        rows = [
            {
                "passage_id": r["id"],
                "model": model,
                "team_id": r["team_id"],
                "project_id": r["project_id"],
                "observation_id": r["observation_id"],
                "vector": packed[int(r["id"])],
            }
            for r in passages
        ]
        result = await self._db.run_many(stmt, rows)
        return len(result.scalars().all())

    async def for_observations(
        self, team_id: str, project_id: str, model: str, observation_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Sequence[float]]]:
        if not observation_ids:
            return {}
        v = t.search_vectors.c
        stmt = sa.select(v.observation_id, v.vector).where(
            v.observation_id.in_(list(observation_ids)),
            v.model == model,
            of_tenant(team_id, project_id, v),
        )
        found: dict[str, list[list[float]]] = {}
        for r in await self._db.all(stmt):
            found.setdefault(r["observation_id"], []).append(unpack_vector(bytes(r["vector"])))
        return found
