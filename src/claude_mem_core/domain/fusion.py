"""Pure building blocks of semantic recall: vector similarity, rank fusion, vector storage.

* :func:`cosine` compares two embeddings.
* :func:`reciprocal_rank_fusion` merges several rankings of ids (say BM25 and cosine) into one
  without having to make their scores comparable: an id earns ``w / (k + rank)`` from every
  ranking it appears in (ranks start at 1), and ids are ordered by the sum.
* :func:`pack_vector` / :func:`unpack_vector` turn a vector into compact bytes and back
  (little-endian float32, 4 bytes a dimension) for a BLOB / bytea column.

Misuse (vectors of different lengths, a weight per ranking missing, a byte string that is not
a whole number of floats) raises :class:`ValueError`: these are programming errors, not
invalid user input.
"""

from __future__ import annotations

import math
import operator
import sys
from array import array
from collections.abc import Iterable, Sequence

DEFAULT_RRF_K = 60
FLOAT32_MAX = 3.4028234663852886e38
_LITTLE_ENDIAN = sys.byteorder == "little"
_SAFE_LOW, _SAFE_HIGH = 1e-200, 1e200


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """The cosine similarity of ``a`` and ``b``, in ``[-1, 1]``; 0.0 if either is all zeros.

    Raises ``ValueError`` when the lengths differ or a value is ``nan`` or infinite.
    """
    if len(a) != len(b):
        raise ValueError(f"cannot compare vectors of different lengths ({len(a)} and {len(b)})")
    norm_a = math.hypot(*a)
    norm_b = math.hypot(*b)
    if not (math.isfinite(norm_a) and math.isfinite(norm_b)):
        raise ValueError("cannot compare vectors holding nan or infinite values")
    if norm_a == 0.0 or norm_b == 0.0:
        return 0.0
    denominator = norm_a * norm_b
    if _SAFE_LOW <= denominator <= _SAFE_HIGH:  # no product can overflow or lose precision
        value = math.fsum(map(operator.mul, a, b)) / denominator
    else:  # tiny or huge magnitudes: scale to unit length first
        value = math.fsum((x / norm_a) * (y / norm_b) for x, y in zip(a, b, strict=True))
    return max(-1.0, min(1.0, value))


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]],
    *,
    k: int = DEFAULT_RRF_K,
    weights: Sequence[float] | None = None,
) -> list[tuple[str, float]]:
    """Fuse ``rankings`` (each best first) into ``(id, score)`` pairs, best first.

    ``score(id) = Σ weights[i] / (k + rank_i(id))`` over the rankings containing the id, with
    ``rank`` starting at 1; weights default to 1. An id repeated within one ranking counts
    there only at its best rank. Equal scores keep the order in which the ids first appear
    (reading the rankings in the order given, each from its top), so the result is
    deterministic. Sums are exactly rounded (``math.fsum``): scores do not depend on the
    order of the rankings.

    Raises ``ValueError`` for a negative ``k``, or for weights that are not one finite,
    non-negative number per ranking.
    """
    if k < 0:
        raise ValueError(f"k must be at least 0 (got {k})")
    if weights is None:
        weights = [1.0] * len(rankings)
    elif len(weights) != len(rankings):
        raise ValueError(f"got {len(weights)} weights for {len(rankings)} rankings")
    for weight in weights:
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"weights must be finite and non-negative (got {weight})")
    contributions: dict[str, list[float]] = {}  # insertion order = first appearance
    for ranking, weight in zip(rankings, weights, strict=True):
        seen: set[str] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            contributions.setdefault(item, []).append(weight / (k + rank))
    fused = [(item, math.fsum(parts)) for item, parts in contributions.items()]
    fused.sort(key=lambda pair: -pair[1])  # stable: ties stay in first-appearance order
    return fused


def pack_vector(vector: Iterable[float]) -> bytes:
    """``vector`` as little-endian float32 bytes (4 per dimension), for a BLOB / bytea column.

    Values are rounded to float32; ``nan`` and infinities are kept. Raises ``ValueError`` for
    a finite value too large for float32, which would otherwise silently become infinite.
    """
    values = array("f")
    for value in vector:
        number = float(value)
        if math.isfinite(number) and abs(number) > FLOAT32_MAX:
            rounded = array("f", [number])[0]
            if math.isinf(rounded):
                raise ValueError(f"{number!r} does not fit in a float32")
        values.append(number)
    if not _LITTLE_ENDIAN:  # pragma: no cover - big-endian hosts
        values.byteswap()
    return values.tobytes()


def unpack_vector(data: bytes) -> list[float]:
    """The vector stored by :func:`pack_vector`; raises ``ValueError`` unless ``len(data)`` is a
    multiple of 4."""
    if len(data) % 4:
        raise ValueError(f"a packed vector is a multiple of 4 bytes long (got {len(data)})")
    values = array("f")
    values.frombytes(data)
    if not _LITTLE_ENDIAN:  # pragma: no cover - big-endian hosts
        values.byteswap()
    return values.tolist()


__all__ = [
    "DEFAULT_RRF_K",
    "cosine",
    "pack_vector",
    "reciprocal_rank_fusion",
    "unpack_vector",
]
