"""One project's search statistics held in the server's memory, ranked with numpy.

PostgreSQL spends most of a search visiting postings inside one large statement (about
10 ms of its CPU a query at 20k memories, docs/performance.md). This is the same model
(:mod:`claude_mem_core.domain.ranking`) over arrays: each term's postings (passage
positions and weighted frequencies), each passage's length factor, event factor, weight
and observation, each observation's kind and ``updated_at``. Scores are computed with the
same operations in the same order as :func:`ranking.passage_score` and
:func:`ranking.observation_score`, so they equal the in-memory adapter's bit for bit, and
PostgreSQL's to rounding.

It holds numbers and ids only: no text. The rows and evidence a search returns are read
from the database by id (:mod:`claude_mem_core.adapters.sqlalchemy.resident_search`),
together with the project's change stamp, which says whether this snapshot is still the
project's state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
import numpy as np
import numpy.typing as npt

from claude_mem_core.domain import ranking
from claude_mem_core.domain.tokens import Query

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

# The project's change stamp: (sum of the statistics rows' change stamps, passages, rows).
Version = tuple[int, int, int]


@attrs.frozen
class Posting:
    """A term's passages (positions in the snapshot) and their weighted frequencies."""

    at: Ints
    frequency: Floats


@attrs.frozen
class RankedHit:
    observation_id: str
    score: float
    # The passages that counted, best first: (passage id, passage score).
    evidence: tuple[tuple[int, float], ...]


@attrs.frozen
class ChangedPassage:
    """A passage written, or reweighted, since a snapshot was taken."""

    id: int
    observation_id: str
    event: bool
    length: int
    weight: float
    kind: str
    updated: int  # the observation's updated_at, microseconds since the epoch
    frequencies: Mapping[str, float]


@attrs.frozen
class ProjectSnapshot:
    """One project's passages and observations as of ``version``; ``xmin``: the oldest
    transaction still running when it was read (what changed after it has a ``changed``
    stamp at least that)."""

    version: Version
    xmin: int
    passage_ids: Ints
    passage_observation: Ints  # position in observation_ids
    passage_norm: Floats  # ranking's K1 * (1 - B + B * length / PIVOT_LENGTH)
    passage_event: Floats  # ranking.EVENT_FACTOR or 1.0
    passage_weight: Floats
    observation_ids: tuple[str, ...]
    observation_kind: Ints  # a code of kind_codes
    kind_codes: dict[str, int]
    observation_updated: Ints  # microseconds since the epoch
    postings: dict[str, Posting]
    passage_at: dict[int, int] = attrs.field(eq=False, repr=False)
    observation_at: dict[str, int] = attrs.field(eq=False, repr=False)
    # Per observation: the most its score can be, as a multiple of its best passage's.
    observation_support: Floats = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        counts = np.bincount(self.passage_observation, minlength=len(self.observation_ids))
        others = np.minimum(counts, ranking.EVIDENCE_PASSAGES) - 1
        support = 1.0 + ranking.SUPPORT_WEIGHT * np.maximum(others, 0)
        object.__setattr__(self, "observation_support", support)

    @property
    def passages(self) -> int:
        return len(self.passage_ids)

    @property
    def size(self) -> int:
        """Postings and passages held: what a memory budget counts."""
        return sum(len(p.at) for p in self.postings.values()) + self.passages

    def updated(
        self, changed: Sequence[ChangedPassage], version: Version, xmin: int
    ) -> ProjectSnapshot | None:
        """This snapshot with ``changed`` applied (new passages appended, weights set), as
        of ``version``; None when that does not account for the project's passages (some
        were removed: only a full load can tell which)."""
        weights = self.passage_weight.copy()
        fresh: list[ChangedPassage] = []
        for passage in changed:
            at = self.passage_at.get(passage.id)
            if at is None:
                fresh.append(passage)
            else:
                weights[at] = passage.weight
        if self.passages + len(fresh) != version[1]:
            return None
        passage_at = dict(self.passage_at)
        observation_at = dict(self.observation_at)
        kind_codes = dict(self.kind_codes)
        new_observations: list[str] = []
        kinds: list[int] = []
        updated: list[int] = []
        owners: list[int] = []
        terms: dict[str, tuple[list[int], list[float]]] = {}
        for n, passage in enumerate(fresh, start=self.passages):
            passage_at[passage.id] = n
            owner = observation_at.get(passage.observation_id)
            if owner is None:
                owner = observation_at[passage.observation_id] = len(observation_at)
                new_observations.append(passage.observation_id)
                kinds.append(kind_codes.setdefault(passage.kind, len(kind_codes)))
                updated.append(passage.updated)
            owners.append(owner)
            for term, f in passage.frequencies.items():
                entry = terms.setdefault(term, ([], []))
                entry[0].append(n)
                entry[1].append(f)
        postings = dict(self.postings)
        for term, (positions, frequency) in terms.items():
            old = postings.get(term)
            added = Posting(
                np.array(positions, dtype=np.int64), np.array(frequency, dtype=np.float64)
            )
            postings[term] = (
                added
                if old is None
                else Posting(
                    np.concatenate([old.at, added.at]),
                    np.concatenate([old.frequency, added.frequency]),
                )
            )
        lengths = np.array([p.length for p in fresh], dtype=np.float64)
        event = np.array([p.event for p in fresh], dtype=bool)
        return ProjectSnapshot(
            version=version,
            xmin=xmin,
            passage_ids=np.concatenate(
                [self.passage_ids, np.array([p.id for p in fresh], dtype=np.int64)]
            ),
            passage_observation=np.concatenate(
                [self.passage_observation, np.array(owners, dtype=np.int64)]
            ),
            passage_norm=np.concatenate([self.passage_norm, norm_of(lengths)]),
            passage_event=np.concatenate(
                [self.passage_event, np.where(event, ranking.EVENT_FACTOR, 1.0)]
            ),
            passage_weight=np.concatenate(
                [weights, np.array([p.weight for p in fresh], dtype=np.float64)]
            ),
            observation_ids=self.observation_ids + tuple(new_observations),
            observation_kind=np.concatenate(
                [self.observation_kind, np.array(kinds, dtype=np.int64)]
            ),
            kind_codes=kind_codes,
            observation_updated=np.concatenate(
                [self.observation_updated, np.array(updated, dtype=np.int64)]
            ),
            postings=postings,
            passage_at=passage_at,
            observation_at=observation_at,
        )

    def rank(self, query: Query, limit: int, *, kind: str | None = None) -> list[RankedHit]:
        """The best ``limit`` observations, as every backend ranks them."""
        strings = ranking.query_strings(query)
        if not strings or limit <= 0 or not self.passages:
            return []
        lists = [self.postings.get(s) for s in strings]
        if all(p is None for p in lists):
            return []
        if any(term.parts for term in query.terms):
            candidates, score = self._gated_scores(query, strings, lists)
        else:
            candidates, score = self._plain_scores(lists)
        if kind is not None:
            code = self.kind_codes.get(kind)
            if code is None:
                return []
            of_kind = self.observation_kind[self.passage_observation[candidates]] == code
            candidates, score = candidates[of_kind], score[of_kind]
        score = score * self.passage_event[candidates] * self.passage_weight[candidates]
        matched = score > 0
        return self._top(candidates[matched], score[matched], limit)

    def _plain_scores(self, lists: Sequence[Posting | None]) -> tuple[Ints, Floats]:
        """Every string of a query of plain words counts wherever it is: each posting adds
        its terms in query order (adding nothing where a string is absent is exact, so
        the sums equal ``ranking.passage_score``'s)."""
        total = float(self.passages)
        k1_plus = ranking.K1 + 1.0
        score = np.zeros(self.passages, dtype=np.float64)
        for posting in lists:
            if posting is not None:
                f = posting.frequency
                idf = ranking.idf(total, float(len(posting.at)))
                score[posting.at] += idf * f * k1_plus / (f + self.passage_norm[posting.at])
        candidates = np.flatnonzero(score)
        return candidates, score[candidates]

    def _gated_scores(
        self, query: Query, strings: Sequence[str], lists: Sequence[Posting | None]
    ) -> tuple[Ints, Floats]:
        """Scores when a term has parts: a part counts only where the whole term or all
        its parts are (``ranking.matched_strings``)."""
        # Candidates through a mark per passage: cheaper than sorting the postings.
        mark = np.zeros(self.passages, dtype=bool)
        for posting in lists:
            if posting is not None:
                mark[posting.at] = True
        candidates = np.flatnonzero(mark)
        slot = np.full(self.passages, -1, dtype=np.int64)
        slot[candidates] = np.arange(len(candidates))
        width = len(candidates)
        present = np.zeros((len(strings), width), dtype=bool)
        frequency = np.zeros((len(strings), width), dtype=np.float64)
        for i, posting in enumerate(lists):
            if posting is not None:
                at = slot[posting.at]
                present[i, at] = True
                frequency[i, at] = posting.frequency
        counted = self._counted(query, strings, present)
        norm = self.passage_norm[candidates]
        total = float(self.passages)
        score = np.zeros(width, dtype=np.float64)
        k1_plus = ranking.K1 + 1.0
        for i, posting in enumerate(lists):  # query order: every backend adds in one order
            if posting is None:
                continue
            idf = ranking.idf(total, float(len(posting.at)))
            f = frequency[i]
            score = score + np.where(counted[i], idf * f * k1_plus / (f + norm), 0.0)
        return candidates, score

    @staticmethod
    def _counted(
        query: Query, strings: Sequence[str], present: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.bool_]:
        """Per string and candidate: does it count (``ranking.matched_strings``)?"""
        index = {s: i for i, s in enumerate(strings)}
        gate = np.zeros_like(present)
        for term in query.terms:
            whole = index[term.term]
            matches = present[whole].copy()
            if term.parts:
                matches |= np.logical_and.reduce([present[index[p]] for p in term.parts])
            for s in dict.fromkeys((term.term, *term.parts)):
                gate[index[s]] |= matches
        return gate & present

    def _top(self, at: Ints, score: Floats, limit: int) -> list[RankedHit]:
        if not len(at):
            return []
        observation = self.passage_observation[at]
        at, score, observation = self._reachable(at, score, observation, limit)
        passage_id = self.passage_ids[at]
        # By observation, then score descending, then passage id (SQL's and Python's order).
        order = np.lexsort((passage_id, -score, observation))
        observation, score, passage_id = observation[order], score[order], passage_id[order]
        starts = np.flatnonzero(np.r_[True, observation[1:] != observation[:-1]])
        ends = np.r_[starts[1:], len(observation)]
        total = score[starts].copy()
        for nth in range(1, ranking.EVIDENCE_PASSAGES):  # added one at a time, best first
            has = starts + nth < ends
            support = np.where(has, score[np.minimum(starts + nth, len(score) - 1)], 0.0)
            total = np.where(has, total + ranking.SUPPORT_WEIGHT * support, total)
        groups = np.arange(len(starts))
        if len(groups) > limit:
            # Every group scoring at least the limit-th best, ties at the cut included.
            cut = np.partition(total, len(total) - limit)[len(total) - limit]
            near = total >= cut
            groups, total = groups[near], total[near]
        owners = observation[starts]
        ids, updated = self.observation_ids, self.observation_updated
        chosen = sorted(
            zip(groups.tolist(), total.tolist(), strict=True),
            key=lambda g: (-g[1], -int(updated[owners[g[0]]]), ids[owners[g[0]]]),
        )[:limit]
        hits = []
        for group, value in chosen:
            start = int(starts[group])
            stop = min(int(ends[group]), start + ranking.EVIDENCE_PASSAGES)
            evidence = tuple((int(passage_id[n]), float(score[n])) for n in range(start, stop))
            hits.append(RankedHit(ids[owners[group]], value, evidence))
        return hits

    def _reachable(
        self, at: Ints, score: Floats, observation: Ints, limit: int
    ) -> tuple[Ints, Floats, Ints]:
        """The passages of the observations that can reach the top ``limit``.

        An observation scores at least its best passage, and at most that times its
        ``observation_support`` (1 for an observation of one passage: a memory, most
        summaries). The best passages (a few per observation wanted) give a lower bound θ
        of the limit-th observation score; an observation whose best passage times its
        support is below θ cannot reach it, and none of its passages are grouped (grouping
        sorts, the rest does not)."""
        wanted = limit * ranking.EVIDENCE_PASSAGES
        if len(score) <= 4 * wanted:
            return at, score, observation
        head = np.argpartition(score, len(score) - wanted)[len(score) - wanted :]
        best: dict[int, float] = {}
        for o, s in zip(observation[head].tolist(), score[head].tolist(), strict=True):
            if s > best.get(o, 0.0):
                best[o] = s
        if len(best) < limit:
            return at, score, observation
        theta = sorted(best.values(), reverse=True)[limit - 1]
        # A margin for rounding: the bound is exact in real numbers, not in floats.
        floor = theta * (1.0 - 1e-9)
        owners = np.zeros(int(observation.max()) + 1, dtype=bool)
        owners[observation[score * self.observation_support[observation] >= floor]] = True
        keep = owners[observation]
        return at[keep], score[keep], observation[keep]


def norm_of(lengths: Floats) -> Floats:
    """``ranking._norm`` over an array, with the same operations."""
    return ranking.K1 * (1.0 - ranking.B + ranking.B * lengths / ranking.PIVOT_LENGTH)
