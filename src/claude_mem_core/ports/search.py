"""The search ports: the passage index that ranks a project's observations for a query,
what a search finds (an observation with the passages that matched), and the passage
embeddings of optional semantic recall. Reached through the unit of work
(``uow.search``, ``uow.vectors``: ``ports/storage.py``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from attrs import frozen

from claude_mem_core.domain.models import AuditEntry, Observation
from claude_mem_core.domain.passages import Passage
from claude_mem_core.domain.tokens import Query


@frozen(kw_only=True)
class Evidence:
    """A passage that matched: its text (``None`` for the observation's own passage, whose
    text is the observation), the event it came from, and its score."""

    text: str | None
    event_id: str | None
    score: float


@frozen(kw_only=True)
class SearchHit:
    """An observation found by a search: its score (its best passage's) and its best
    passages, best first (at most ``domain.ranking.EVIDENCE_PASSAGES``)."""

    observation: Observation
    score: float
    evidence: tuple[Evidence, ...] = ()


class SearchIndexRepository(Protocol):
    """Passages and their statistics (the ranking model: ``domain/ranking.py``)."""

    async def add(self, passages: Sequence[Passage]) -> None:
        """Index passages of observations stored in this unit of work (or before), and
        count them in their project's statistics."""

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
        """The best ``limit`` observations of the project for ``query``, best first, each
        once, with its best passages (``domain/ranking.py`` defines the order); with
        ``kind``, only observations of that kind (ranked as they would be among all).

        With ``audit``: the audit row of this read is written as well, its details extended
        with ``resultCount`` and ``observationIds`` (in result order), committed before the
        hits are returned; on PostgreSQL in the search's own statement (no extra round
        trip). Raises ``Forbidden``, with nothing written, when ``audit.api_key_id`` names
        a key that is missing, revoked or expired, and ``NotFound`` when the project is not
        the team's (an audit row always names a project of its team). A project marked
        deleted finds nothing (its statistics went with the mark)."""


@frozen(kw_only=True)
class PassageText:
    """A search passage to embed: its id, its scope and its text (an observation passage's
    text is its observation's content)."""

    id: int
    team_id: str
    project_id: str
    observation_id: str
    text: str


class SearchVectorRepository(Protocol):
    """Embeddings of search passages, one per passage and model (optional semantic recall;
    the vectors of different models are not comparable, so every method names one).

    Vectors come back as stored: float32 (``domain.fusion.pack_vector``), so a value reads
    back rounded to the nearest float32. A passage's vectors go when the passage goes."""

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
        """Passages without a vector of ``model``, by ascending id above ``after``, at most
        ``limit``: of the team's project (``team_id`` and ``project_id``), of the team's
        projects (``team_id`` alone) or of every project (neither: for the backfill); only
        those of ``observation_ids`` when given. Never those of a project marked deleted."""

    async def count_missing(
        self, model: str, *, team_id: str | None = None, project_id: str | None = None
    ) -> int:
        """How many passages ``missing`` would list without a limit (for progress)."""

    async def add(self, model: str, vectors: Mapping[int, Sequence[float]]) -> int:
        """Store a vector of ``model`` for each passage id, in the passage's scope. A passage
        that has a vector of ``model`` keeps it, and an id that names no passage is
        skipped; returns how many were stored."""

    async def for_observations(
        self, team_id: str, project_id: str, model: str, observation_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Sequence[float]]]:
        """The vectors of ``model`` of these observations' passages (in this project of
        this team), by observation id; observations without any are left out."""
