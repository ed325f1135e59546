"""domain.fusion: cosine, reciprocal rank fusion and vector packing, by example and by property."""

from __future__ import annotations

import itertools
import math
import random
import struct

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from claude_mem_core.domain.fusion import (
    cosine,
    pack_vector,
    reciprocal_rank_fusion,
    unpack_vector,
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
ids = st.text(alphabet="abcdefghij", min_size=1, max_size=2)
ranking = st.lists(ids, max_size=12)
unique_ranking = st.lists(ids, max_size=12, unique=True)
rankings = st.lists(ranking, max_size=5)


# ------------------------------------------------------------------------------------ cosine


def test_cosine_examples() -> None:
    assert cosine([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert cosine([1.0, 2.0], [-1.0, -2.0]) == pytest.approx(-1.0)
    assert cosine([1.0, 0.0], [0.0, 5.0]) == 0.0
    assert cosine([1.0, 0.0], [1.0, 1.0]) == pytest.approx(1 / math.sqrt(2))
    assert cosine([3, 4], [6, 8]) == pytest.approx(1.0)  # ints are numbers too


def test_cosine_of_a_zero_vector_is_zero() -> None:
    assert cosine([0.0, 0.0], [1.0, 2.0]) == 0.0
    assert cosine([1.0, 2.0], [0.0, 0.0]) == 0.0
    assert cosine([0.0], [0.0]) == 0.0
    assert cosine([], []) == 0.0


@pytest.mark.parametrize("scale", [1e-160, 1e-300, 1e150, 1e300])
def test_cosine_survives_extreme_magnitudes(scale: float) -> None:
    assert cosine([0.0, scale], [0.0, scale]) == pytest.approx(1.0)
    assert cosine([scale, scale], [scale, 0.0]) == pytest.approx(1 / math.sqrt(2))
    assert cosine([scale, 0.0], [1.0, 1.0]) == pytest.approx(1 / math.sqrt(2))


def test_cosine_refuses_different_lengths() -> None:
    with pytest.raises(ValueError, match="different lengths \\(2 and 3\\)"):
        cosine([1.0, 2.0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_cosine_refuses_non_finite_values(bad: float) -> None:
    with pytest.raises(ValueError, match="nan or infinite"):
        cosine([1.0, bad], [1.0, 2.0])
    with pytest.raises(ValueError, match="nan or infinite"):
        cosine([1.0, 2.0], [bad, 2.0])


vector_pairs = st.integers(min_value=1, max_value=16).flatmap(
    lambda n: st.tuples(
        st.lists(finite, min_size=n, max_size=n), st.lists(finite, min_size=n, max_size=n)
    )
)


@given(vector_pairs)
def test_cosine_is_bounded_and_symmetric(pair: tuple[list[float], list[float]]) -> None:
    a, b = pair
    value = cosine(a, b)
    assert -1.0 <= value <= 1.0
    assert value == cosine(b, a)


@given(vector_pairs, st.floats(min_value=1e-3, max_value=1e3))
def test_cosine_ignores_positive_scale(pair: tuple[list[float], list[float]], scale: float) -> None:
    a, b = pair
    assume(math.hypot(*a) > 1e-3 and math.hypot(*b) > 1e-3)
    assert cosine([x * scale for x in a], b) == pytest.approx(cosine(a, b), abs=1e-9)


@given(st.lists(finite, min_size=1, max_size=16))
def test_cosine_with_itself_is_one(a: list[float]) -> None:
    assume(math.hypot(*a) > 1e-6)
    assert cosine(a, a) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------ RRF


def test_rrf_scores_follow_the_formula() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "b", "d"]], k=60)

    assert [item for item, _ in fused] == ["c", "b", "a", "d"]
    scores = dict(fused)
    assert scores["a"] == 1 / 61
    assert scores["b"] == 1 / 62 + 1 / 62
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["d"] == 1 / 63


def test_rrf_weights_scale_each_ranking() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b"], ["b", "a"]], k=0, weights=[1.0, 3.0]))

    assert fused == {"a": pytest.approx(1 + 3 / 2), "b": pytest.approx(1 / 2 + 3)}


def test_rrf_zero_weight_keeps_ids_with_score_zero() -> None:
    fused = reciprocal_rank_fusion([["a"], ["b"]], weights=[1.0, 0.0])

    assert fused == [("a", 1 / 61), ("b", 0.0)]


def test_rrf_ties_keep_first_appearance_order() -> None:
    assert [i for i, _ in reciprocal_rank_fusion([["a", "b"], ["b", "a"]])] == ["a", "b"]
    assert [i for i, _ in reciprocal_rank_fusion([["b", "a"], ["a", "b"]])] == ["b", "a"]
    # x and y each appear once at rank 1: tied, x was seen first.
    assert [i for i, _ in reciprocal_rank_fusion([["x"], ["y"]])] == ["x", "y"]


def test_rrf_counts_a_repeated_id_once_at_its_best_rank() -> None:
    assert reciprocal_rank_fusion([["a", "b", "a"]]) == [("a", 1 / 61), ("b", 1 / 62)]


def test_rrf_of_nothing_is_empty() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": -1}, "k must be at least 0"),
        ({"weights": [1.0]}, "got 1 weights for 2 rankings"),
        ({"weights": [1.0, -0.5]}, "non-negative"),
        ({"weights": [1.0, math.nan]}, "finite"),
        ({"weights": [math.inf, 1.0]}, "finite"),
    ],
)
def test_rrf_refuses_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reciprocal_rank_fusion([["a"], ["b"]], **kwargs)  # type: ignore[arg-type]


@given(unique_ranking, st.integers(min_value=0, max_value=100))
def test_rrf_of_one_ranking_keeps_its_order(single: list[str], k: int) -> None:
    fused = reciprocal_rank_fusion([single], k=k)

    assert [item for item, _ in fused] == single
    assert [score for _, score in fused] == [1 / (k + r) for r in range(1, len(single) + 1)]


@given(rankings, st.integers(min_value=0, max_value=100))
def test_rrf_lists_every_id_once(many: list[list[str]], k: int) -> None:
    fused = reciprocal_rank_fusion(many, k=k)
    items = [item for item, _ in fused]

    assert len(items) == len(set(items))
    assert set(items) == {item for ranked in many for item in ranked}


@given(rankings, st.data())
def test_rrf_scores_never_increase(many: list[list[str]], data: st.DataObject) -> None:
    weights = data.draw(st.lists(st.floats(0, 10), min_size=len(many), max_size=len(many)))
    scores = [score for _, score in reciprocal_rank_fusion(many, weights=weights)]

    assert all(a >= b for a, b in itertools.pairwise(scores))
    assert all(score >= 0 for score in scores)


@given(rankings, st.randoms(use_true_random=False), st.floats(min_value=0.1, max_value=5))
def test_rrf_with_equal_weights_ignores_the_order_of_rankings(
    many: list[list[str]], rng: random.Random, weight: float
) -> None:
    shuffled = list(many)
    rng.shuffle(shuffled)

    before = reciprocal_rank_fusion(many, weights=[weight] * len(many))
    after = reciprocal_rank_fusion(shuffled, weights=[weight] * len(shuffled))

    assert dict(before) == dict(after)  # exactly: sums are exactly rounded
    assert [s for _, s in before] == [s for _, s in after]  # only tied ids may swap


@given(rankings)
def test_rrf_is_deterministic(many: list[list[str]]) -> None:
    assert reciprocal_rank_fusion(many) == reciprocal_rank_fusion([list(r) for r in many])


@given(rankings, st.integers(min_value=0, max_value=100))
def test_rrf_matches_a_naive_sum(many: list[list[str]], k: int) -> None:
    expected: dict[str, float] = {}
    for ranked in many:
        best: dict[str, int] = {}
        for rank, item in enumerate(ranked, start=1):
            best.setdefault(item, rank)
        for item, rank in best.items():
            expected[item] = expected.get(item, 0.0) + 1 / (k + rank)

    fused = dict(reciprocal_rank_fusion(many, k=k))

    assert fused.keys() == expected.keys()
    for item, score in fused.items():
        assert score == pytest.approx(expected[item], rel=1e-12)


# ------------------------------------------------------------------------------------ packing


def test_pack_is_little_endian_float32() -> None:
    assert pack_vector([1.0, -2.5]) == struct.pack("<ff", 1.0, -2.5)
    assert pack_vector([1.0]) == b"\x00\x00\x80\x3f"
    assert pack_vector([]) == b""
    assert unpack_vector(b"") == []


def test_pack_keeps_nan_and_infinities() -> None:
    nan, inf, minus_inf = unpack_vector(pack_vector([math.nan, math.inf, -math.inf]))

    assert math.isnan(nan) and inf == math.inf and minus_inf == -math.inf


def test_pack_refuses_values_beyond_float32() -> None:
    with pytest.raises(ValueError, match="does not fit in a float32"):
        pack_vector([1.0, 1e39])
    assert unpack_vector(pack_vector([3.4028235e38])) == [3.4028234663852886e38]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_unpack_refuses_partial_floats(size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        unpack_vector(b"\x00" * size)


@given(st.lists(st.floats(width=32, allow_nan=False), max_size=64))
def test_float32_values_round_trip_exactly(vector: list[float]) -> None:
    packed = pack_vector(vector)

    assert len(packed) == 4 * len(vector)
    assert unpack_vector(packed) == vector


float32_range = st.floats(
    min_value=-3.4e38, max_value=3.4e38, allow_nan=False, allow_infinity=False
)


@given(st.lists(float32_range, max_size=64))
def test_float64_values_round_trip_within_float32_precision(vector: list[float]) -> None:
    restored = unpack_vector(pack_vector(vector))

    assert len(restored) == len(vector)
    for original, value in zip(vector, restored, strict=True):
        assert math.isclose(value, original, rel_tol=2**-23, abs_tol=2**-149)


@given(st.lists(st.floats(width=32, allow_nan=False), max_size=16))
def test_packing_is_idempotent_after_one_round(vector: list[float]) -> None:
    once = unpack_vector(pack_vector(vector))
    assert pack_vector(once) == pack_vector(vector)
