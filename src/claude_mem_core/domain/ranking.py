"""The ranking model: BM25F over passages, grouped by observation. One model, every backend.

For a query (terms from :func:`claude_mem_core.domain.tokens.parse_query`), within one
project:

* ``N`` is the number of passages of the project and ``df(s)`` the number of passages
  holding the string ``s``. Backends keep these statistics as passages are written (no
  scan at query time).
* ``idf(s) = ln(1 + (N - df + 0.5) / (df + 0.5))`` (always positive: a term in every passage
  still counts a little).
* A passage **matches** a query term when it holds the term, or all of its parts (an
  identifier such as ``redirect_uri`` is found whole or by ``redirect`` and ``uri``
  together, never by one part alone).
* Its score sums, over the distinct strings of the query terms it matches (the term and its
  parts), ``idf(s)`` times the **term factor** ``f * (K1 + 1) / (f + K1 * (1 - B + B * len /
  PIVOT_LENGTH))``, where ``f`` is the weighted frequency of ``s`` in the passage (field
  weights in :mod:`claude_mem_core.domain.passages`) and ``len`` its length: term frequency
  saturates, and long passages are normalised, so a long summary does not win by size.
  Lengths are normalised against a fixed pivot (:data:`PIVOT_LENGTH`, about a passage's
  mean length), not the project's running mean: a term's factor in a passage then never
  changes as the project grows, so a backend can index passages by it (PostgreSQL keeps
  the terms whose factor reaches :data:`HIGH_IMPACT` apart, to find the top without
  reading every match). On the retrieval eval the fixed pivot scores within 0.01 of the
  running mean.
* An event passage's score is multiplied by :data:`EVENT_FACTOR`: raw text is evidence that
  lifts its observation, and an observation's own words count a little more.
* An observation scores its best passage's score plus :data:`SUPPORT_WEIGHT` times each of
  its next best (at most :data:`EVIDENCE_PASSAGES` passages count): an observation whose own
  words and whose events both answer is better evidenced than one lucky passage, and
  counting so few passages keeps a long session from winning by size. A superseded
  observation's passages count :data:`SUPERSEDED_WEIGHT` of their score (a passage's
  ``weight``): current facts first. Observations rank by
  score, then newer ``updated_at``, then id in byte order. The passages that counted are
  the hit's evidence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from claude_mem_core.domain.tokens import Query

# Term-frequency saturation. Frequencies here are field-weighted (a title counts 3, facts
# 2: domain/passages.py), so a term said twice in a title is already 6; with the usual 1.2
# it saturates before the second mention matters. 2.0, the top of BM25's usual range:
# hit@1 0.605 -> 0.658 and MRR 0.711 -> 0.741 on the retrieval eval (SQLite; every k1 from
# 1.5 to 2.2 beats 1.2). PostgreSQL's high-impact terms depend on it (revision 0018).
K1 = 2.0
B = 0.75
# The length passage lengths are normalised against (in terms): near the mean length of
# real sessions (140-162 on the retrieval eval's projects).
PIVOT_LENGTH = 150.0
# A term whose factor in a passage reaches this is one of the passage's high-impact terms:
# said more than once, or in a title, or in a short passage.
HIGH_IMPACT = 1.5
EVENT_FACTOR = 0.8
# Passages of one observation returned as its evidence (the best first): an observation's
# own words and the lines of its events that answer the question are often not the same.
EVIDENCE_PASSAGES = 3
# The share of its second and third best passages' scores an observation adds to its best.
SUPPORT_WEIGHT = 0.3
# A superseded observation's passages' scores are multiplied by this (``domain/
# supersession.py``): history stays findable, the current fact ranks first. Below 1, so
# the bounds PostgreSQL prunes with (computed unweighted) still hold.
# 0.98: on the retrieval eval every lower factor tried (0.5-0.95) ranks at least one
# question's answer lower; at 0.98 no metric gets worse (docs/performance.md).
SUPERSEDED_WEIGHT = 0.98


def idf(total: int | float, df: int | float) -> float:
    return math.log(1.0 + (total - df + 0.5) / (df + 0.5))


def query_strings(query: Query) -> list[str]:
    """Every distinct string a query looks up (terms and parts), in first order."""
    return list(query.all_terms)


def matched_strings(query: Query, tf: Mapping[str, float]) -> set[str]:
    """The strings that count for a passage: those of the query terms it matches."""
    counted: set[str] = set()
    for term in query.terms:
        if term.term in tf or (term.parts and all(p in tf for p in term.parts)):
            counted.add(term.term)
            counted.update(term.parts)
    return {s for s in counted if s in tf}


def _norm(length: int | float) -> float:
    return K1 * (1.0 - B + B * length / PIVOT_LENGTH)


def term_factor(f: float, length: int | float) -> float:
    """A string's BM25 factor in a passage of ``length`` terms where its weighted frequency
    is ``f``, computed as the SQL adapters compute it."""
    return f * (K1 + 1.0) / (f + _norm(length))


def high_impact_terms(tf: Mapping[str, float], length: int) -> list[str]:
    """The terms of a passage whose factor reaches :data:`HIGH_IMPACT`, sorted (the
    factor computed as :func:`term_factor` does, with the passage's norm computed once)."""
    norm = _norm(length)
    k1_plus = K1 + 1.0
    return sorted(s for s, f in tf.items() if f * k1_plus / (f + norm) >= HIGH_IMPACT)


def passage_score(
    query: Query,
    tf: Mapping[str, float],
    length: int,
    *,
    idfs: Mapping[str, float],
    event: bool,
    weight: float = 1.0,
) -> float:
    """The passage's score (0 when it matches no query term), as every backend computes it:
    ``weight`` is the passage's ranking weight (:data:`SUPERSEDED_WEIGHT` for a superseded
    observation's), multiplied last."""
    norm = _norm(length)
    counted = matched_strings(query, tf)
    score = 0.0
    for s in query_strings(query):  # in query order, so every backend adds in one order
        if s in counted:
            f = tf[s]
            score += idfs[s] * f * (K1 + 1.0) / (f + norm)
    return (score * EVENT_FACTOR if event else score) * weight


def observation_score(passage_scores: Iterable[float]) -> float:
    """An observation's score from the scores of its matching passages (see above). Added
    best first, one at a time, as the SQL adapters add them, so every backend agrees."""
    best = sorted(passage_scores, reverse=True)[:EVIDENCE_PASSAGES]
    if not best:
        return 0.0
    score = best[0]
    for support in best[1:]:
        score += SUPPORT_WEIGHT * support
    return score


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_micros(at: datetime) -> int:
    """``at`` in microseconds since the epoch: the precision databases store, and the tie
    order of :func:`score_order`."""
    return (at - _EPOCH) // timedelta(microseconds=1)


def score_order(score: float, updated_at: datetime, observation_id: str) -> tuple[float, int, str]:
    """Sort key: score descending, newer first (to the microsecond, as databases store it),
    then id (code points = UTF-8 byte order)."""
    return (-score, -epoch_micros(updated_at), observation_id)
