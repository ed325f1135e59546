"""Search in the in-memory storage: the full-text passages ranked at query time, and the
vectors kept for them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from claude_mem_core.adapters import memory_supersession as supersession
from claude_mem_core.adapters.memory_observations import MemoryAudit
from claude_mem_core.adapters.memory_state import Repo, in_scope, is_deleted
from claude_mem_core.domain import ranking
from claude_mem_core.domain.fusion import pack_vector, unpack_vector
from claude_mem_core.domain.models import AuditEntry
from claude_mem_core.domain.passages import Origin, Passage
from claude_mem_core.domain.tokens import Query
from claude_mem_core.errors import Forbidden, NotFound
from claude_mem_core.ports.search import Evidence, PassageText, SearchHit


class MemorySearchIndex(Repo):
    """Passages in a list per project; statistics counted at query time (this is a fake:
    the SQL adapters keep them as passages are written)."""

    async def add(self, passages: Sequence[Passage]) -> None:
        observations = self._tx.read("observations")
        table = self._tx.write("passages")
        # Keys ascend (a passage's id is its key plus one): erased passages leave gaps.
        next_key = max((int(k) for k in table), default=-1) + 1
        for passage in passages:
            obs = observations.get(passage.observation_id)
            if obs is None or (obs.team_id, obs.project_id) != (
                passage.team_id,
                passage.project_id,
            ):
                raise NotFound("Observation not found")
            table[f"{next_key}"] = passage
            next_key += 1

    async def search(
        self,
        team_id: str,
        project_id: str,
        query: Query,
        *,
        limit: int,
        audit: AuditEntry | None = None,
        kind: str | None = None,
    ) -> Sequence[SearchHit]:
        # A project being erased finds nothing (as on SQL, where its statistics are gone).
        deleted = is_deleted(self._tx, project_id)
        hits = [] if deleted else self._ranked(team_id, project_id, query, limit, kind)
        if audit is not None:
            project = self._tx.read("projects").get(project_id)
            if project is None or project.team_id != team_id:
                raise NotFound("Project not found")
            details = {
                **audit.details,
                "resultCount": len(hits),
                "observationIds": [h.observation.id for h in hits],
            }
            if not await MemoryAudit(self._tx).add_read(attrs.evolve(audit, details=details)):
                raise Forbidden("Invalid API key or insufficient scope")
        return hits

    def _ranked(
        self, team_id: str, project_id: str, query: Query, limit: int, kind: str | None
    ) -> list[SearchHit]:
        if query.is_empty or limit <= 0:
            return []
        observations = self._tx.read("observations")
        scoped = [
            p
            for p in self._tx.read("passages").values()
            if in_scope(p, team_id, project_id) and p.observation_id in observations
        ]
        if not scoped:
            return []
        strings = ranking.query_strings(query)
        idfs = {s: ranking.idf(len(scoped), sum(1 for p in scoped if s in p.tf)) for s in strings}
        matched: dict[str, list[tuple[float, int, Passage]]] = {}
        for n, passage in enumerate(scoped):
            score = ranking.passage_score(
                query,
                passage.tf,
                passage.length,
                idfs=idfs,
                event=passage.origin is Origin.EVENT,
                weight=supersession.weight(observations[passage.observation_id]),
            )
            if score > 0:
                matched.setdefault(passage.observation_id, []).append((score, n, passage))
        hits = []
        for oid, found in matched.items():
            found.sort(key=lambda entry: (-entry[0], entry[1]))  # ties: written first
            hits.append(
                SearchHit(
                    observation=observations[oid],
                    score=ranking.observation_score(score for score, _, _ in found),
                    evidence=tuple(
                        Evidence(text=p.text, event_id=p.event_id, score=score)
                        for score, _, p in found[: ranking.EVIDENCE_PASSAGES]
                    ),
                )
            )
        if kind is not None:  # statistics stay the project's: only the hits are filtered
            hits = [h for h in hits if h.observation.kind == kind]
        hits.sort(
            key=lambda h: ranking.score_order(h.score, h.observation.updated_at, h.observation.id)
        )
        return hits[:limit]


class MemorySearchVectors(Repo):
    """Vectors keyed ``"<passage id>:<model>"``, packed as the SQL adapters store them (so
    values round to float32 alike). A passage's id is its place in ``passages`` plus one."""

    def _passages(
        self, team_id: str | None, project_id: str | None, after: int
    ) -> list[tuple[int, Passage]]:
        found = []
        for key, passage in self._tx.read("passages").items():
            passage_id = int(key) + 1
            if passage_id <= after:
                continue
            if not in_scope(passage, team_id, project_id):
                continue
            if is_deleted(self._tx, passage.project_id):
                continue  # a project being erased sends nothing more to an embedder
            found.append((passage_id, passage))
        return found

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
        stored = self._tx.read("vectors")
        observations = self._tx.read("observations")
        wanted = None if observation_ids is None else set(observation_ids)
        found: list[PassageText] = []
        for passage_id, passage in self._passages(team_id, project_id, after):
            if len(found) >= limit:
                break
            if f"{passage_id}:{model}" in stored:
                continue
            if wanted is not None and passage.observation_id not in wanted:
                continue
            text = passage.text
            if text is None:
                text = observations[passage.observation_id].content
            found.append(
                PassageText(
                    id=passage_id,
                    team_id=passage.team_id,
                    project_id=passage.project_id,
                    observation_id=passage.observation_id,
                    text=text,
                )
            )
        return found

    async def count_missing(
        self, model: str, *, team_id: str | None = None, project_id: str | None = None
    ) -> int:
        stored = self._tx.read("vectors")
        return sum(
            1
            for passage_id, _ in self._passages(team_id, project_id, 0)
            if f"{passage_id}:{model}" not in stored
        )

    async def add(self, model: str, vectors: Mapping[int, Sequence[float]]) -> int:
        passages = self._tx.read("passages")
        packed = {int(pid): pack_vector(vector) for pid, vector in vectors.items()}
        table = self._tx.write("vectors")
        added = 0
        for passage_id, data in packed.items():
            passage = passages.get(f"{passage_id - 1}")
            key = f"{passage_id}:{model}"
            if passage is None or key in table:
                continue
            table[key] = (passage.team_id, passage.project_id, passage.observation_id, data)
            added += 1
        return added

    async def for_observations(
        self, team_id: str, project_id: str, model: str, observation_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Sequence[float]]]:
        wanted = set(observation_ids)
        found: dict[str, list[list[float]]] = {}
        for key, (team, project, observation_id, data) in self._tx.read("vectors").items():
            if key.split(":", 1)[1] != model or (team, project) != (team_id, project_id):
                continue
            if observation_id in wanted:
                found.setdefault(observation_id, []).append(unpack_vector(data))
        return found
