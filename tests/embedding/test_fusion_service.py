"""The query-time half of semantic recall, without storage: fusion, candidates, the query
vector's cache and cooldown."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_mem_core.domain.models import Observation
from claude_mem_core.errors import ProviderError
from claude_mem_core.ports.search import SearchHit
from claude_mem_core.services import embedding
from claude_mem_core.services.memories import MAX_CONTEXT_LIMIT, MAX_SEARCH_LIMIT

AT = datetime(2026, 12, 7, tzinfo=UTC)


def _hits(count: int) -> list[SearchHit]:
    return [
        SearchHit(
            observation=Observation(
                id=f"o{n}",
                team_id="t",
                project_id="p",
                content=f"text {n}",
                created_at=AT,
                updated_at=AT,
            ),
            score=float(count - n),
        )
        for n in range(count)
    ]


def _ids(fused: Sequence[embedding.Fused]) -> list[str]:
    return [f.hit.observation.id for f in fused]


def test_candidates_are_three_pages_at_least_thirty_at_most_the_maximum() -> None:
    assert embedding.candidate_count(1, MAX_SEARCH_LIMIT) == 30
    assert embedding.candidate_count(20, MAX_SEARCH_LIMIT) == 60
    assert embedding.candidate_count(50, MAX_SEARCH_LIMIT) == MAX_SEARCH_LIMIT
    assert embedding.candidate_count(MAX_SEARCH_LIMIT, MAX_SEARCH_LIMIT) == MAX_SEARCH_LIMIT
    assert embedding.candidate_count(MAX_CONTEXT_LIMIT, MAX_SEARCH_LIMIT) == MAX_SEARCH_LIMIT


def test_the_semantic_best_climbs_when_bm25_has_it_close_behind() -> None:
    hits = _hits(6)
    query = [1.0, 0.0]
    vectors = {
        "o0": [[-1.0, 0.2]],  # BM25's best points away from the query
        "o1": [[0.0, 1.0], [1.0, 0.05]],  # the best of its passages counts
        **{f"o{n}": [[0.3, 1.0]] for n in range(2, 6)},
    }

    fused = embedding.fuse(hits, vectors, query, 3)

    # o1: 1/62 + 1/61; o2: 1/63 + 1/62; o0: 1/61 + 1/66 (last by similarity).
    assert _ids(fused) == ["o1", "o2", "o0"]
    assert fused[0].similarity == pytest.approx(1.0 / (1.0 + 0.05**2) ** 0.5)
    assert fused[2].similarity is not None and fused[2].similarity < 0


def test_a_candidate_without_vectors_keeps_its_bm25_rank() -> None:
    hits = _hits(4)
    # o0 has no vector yet (a memory the backfill has not reached): not sunk below the
    # others although they all have vectors close to the query.
    vectors = {f"o{n}": [[1.0, 0.0]] for n in range(1, 4)}

    fused = embedding.fuse(hits, vectors, [1.0, 0.0], 4)

    assert _ids(fused) == ["o0", "o1", "o2", "o3"]
    assert fused[0].similarity is None


def test_vectors_of_another_length_or_not_finite_are_not_compared() -> None:
    hits = _hits(2)
    vectors = {"o0": [[1.0, 0.0, 0.0], [float("nan"), 1.0]], "o1": [[0.0, 1.0]]}

    fused = embedding.fuse(hits, vectors, [0.0, 1.0], 2)

    assert [f.similarity for f in fused] == [None, 1.0]
    assert _ids(fused) == ["o0", "o1"]  # o0 keeps rank 1 in both rankings


similarities = st.lists(
    st.one_of(st.none(), st.floats(min_value=-1.0, max_value=1.0)), min_size=0, max_size=40
)


@given(similarities, st.integers(1, 40))
def test_fusion_returns_distinct_candidates_and_equal_similarities_keep_bm25_order(
    values: list[float | None], limit: int
) -> None:
    hits = _hits(len(values))
    vectors = {
        f"o{n}": [[value, (1 - value * value) ** 0.5]]
        for n, value in enumerate(values)
        if value is not None
    }

    fused = embedding.fuse(hits, vectors, [1.0, 0.0], limit)
    flat = embedding.fuse(hits, {oid: [[1.0, 0.0]] for oid in vectors}, [1.0, 0.0], limit)

    ids = _ids(fused)
    assert len(ids) == min(limit, len(hits)) == len(set(ids))
    assert set(ids) <= {h.observation.id for h in hits}
    # Nothing to tell candidates apart semantically: BM25's order.
    assert _ids(flat) == [h.observation.id for h in hits[:limit]]


@given(similarities.filter(lambda v: len(v) > 1), st.integers(1, 40))
def test_the_first_in_both_rankings_is_first(values: list[float | None], limit: int) -> None:
    values = [1.0, *values[1:]]  # BM25's best is also the closest to the query
    hits = _hits(len(values))
    vectors = {
        f"o{n}": [[value, (1 - value * value) ** 0.5]]
        for n, value in enumerate(values)
        if value is not None
    }

    assert _ids(embedding.fuse(hits, vectors, [1.0, 0.0], limit))[0] == "o0"


class CountingEmbedder:
    name = "counting"
    dimensions: int | None = 2

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.fail = False

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        if self.fail:
            raise ProviderError("embeddings unavailable (transient)", kind="transient")
        return [[float(len(text)), 1.0] for text in texts]

    async def aclose(self) -> None:
        return None


async def test_query_vectors_are_cached_least_recently_used_first_out() -> None:
    embedder = CountingEmbedder()
    semantic = embedding.SemanticRecall(embedder, model="m", cache_size=2)

    for query in ("a", "bb", "a", "ccc", "a", "bb"):
        assert await semantic.query_vector(query) == [float(len(query)), 1.0]

    # "bb" was evicted by "ccc" (the least recently used then); "a" never was.
    assert embedder.calls == [["a"], ["bb"], ["ccc"], ["bb"]]


async def test_after_a_failure_search_leaves_the_embedder_alone_for_the_cooldown() -> None:
    now = [100.0]
    embedder = CountingEmbedder()
    semantic = embedding.SemanticRecall(embedder, model="m", cooldown=30.0, clock=lambda: now[0])
    embedder.fail = True

    assert await semantic.query_vector("login") is None
    now[0] += 29.0
    assert await semantic.query_vector("login") is None
    assert len(embedder.calls) == 1
    embedder.fail = False
    now[0] += 2.0
    assert await semantic.query_vector("login") == [5.0, 1.0]
    assert len(embedder.calls) == 2


def test_the_model_name_defaults_to_the_embedders() -> None:
    embedder = CountingEmbedder()
    assert embedding.SemanticRecall(embedder).model == "counting"
    assert embedding.SemanticRecall(embedder, model=" nomic-embed-text ").model == (
        "nomic-embed-text"
    )
