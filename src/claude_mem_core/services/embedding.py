"""Optional semantic recall: passage vectors written in the background, fused at query time.

Off unless an embedder is configured (``CLAUDE_MEM_EMBEDDINGS_URL``); without one nothing here
runs and search is BM25 alone (the offline default needs none of this).

Where vectors are made, never on a request's path:

* after a generation job stored its observations (:func:`embed_generated`, called by
  ``Generator.persist`` once the job's transaction has committed), for those observations'
  passages;
* by the backfill (:func:`backfill`): ``claude-mem embeddings backfill``, and periodically
  in the worker and in the embedded server (:func:`run_backfill`). It picks up every passage
  still without a vector of the configured model: memories written through
  ``POST /v1/memories`` (which never waits for an embedder), passages stored before the
  embedder was configured, and passages an earlier pass could not embed.

Each step reads the passages in one unit of work, calls the embedder with no unit of work
open (an HTTP call never holds a transaction), and stores the vectors in a second one. A
:class:`~claude_mem_core.errors.ProviderError` is logged (adapters keep keys out of their
messages) and leaves the passages for a later pass.

At query time (``services.memories.search``) the keyword search returns more candidates than
asked for (:func:`candidate_count`), the query is embedded once (a small LRU cache keeps
recent query vectors) while the database works, and :func:`fuse` merges two rankings of the
candidates with reciprocal rank fusion (``domain.fusion``, ``k`` = :data:`RRF_K`): the BM25
order, and the order of each candidate's best cosine between the query vector and its
passages' vectors. Both count alike (:data:`KEYWORD_WEIGHT`, :data:`SEMANTIC_WEIGHT`): k = 60
is the usual constant of the method (it keeps the first few ranks from dominating), and equal
weights let a candidate the embedder ranks far better climb past BM25's top only when BM25
has it close behind. A candidate without a vector keeps its BM25 rank in the semantic
ranking too, so a memory not embedded yet is neither lifted nor sunk. When the embedder
fails (or is cooling down after a failure), search answers with BM25 alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from attrs import frozen

from claude_mem_core.domain.fusion import DEFAULT_RRF_K, cosine, reciprocal_rank_fusion
from claude_mem_core.errors import ClaudeMemError, ConfigurationError, ProviderError
from claude_mem_core.ports.embedder import Embedder
from claude_mem_core.ports.search import PassageText, SearchHit
from claude_mem_core.services.context import Deps

log = logging.getLogger("claude_mem.embedding")

# Fusion (see the module docstring).
RRF_K = DEFAULT_RRF_K
KEYWORD_WEIGHT = 1.0
SEMANTIC_WEIGHT = 1.0
# Keyword candidates fused: three times the page, at least this many, at most the search
# limit's maximum.
CANDIDATE_FACTOR = 3
MIN_CANDIDATES = 30

# Passages per embedder call, and the characters of a passage sent (passages are at most
# 1,200 characters; an observation's own text can be longer, and its beginning says most).
BATCH_SIZE = 64
MAX_TEXT_CHARS = 8000
# At query time: the longest wait for a query vector, and how long search leaves a failed
# embedder alone before trying it again (each search would otherwise wait for it).
QUERY_TIMEOUT_S = 5.0
COOLDOWN_S = 30.0
QUERY_CACHE_SIZE = 256
# After a generation job: the longest the job's worker waits for its passages' vectors (the
# backfill takes over after that; the job is completed either way).
GENERATED_TIMEOUT_S = 20.0
# The background pass: how often, and how many passages at most per pass.
BACKFILL_INTERVAL_S = 30.0
BACKFILL_PASS = 1024
# An embedder that refuses one input (too long, malformed) refuses the whole batch: halves
# are tried, so the other passages of the batch are not held back by it.
_INPUT_KINDS = frozenset({"bad_request", "context_too_long"})


class SemanticRecall:
    """An :class:`Embedder` as search and the background passes use it: the name its vectors
    are stored under (``model``), a query-vector cache and a cooldown after failures."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        model: str | None = None,
        batch_size: int = BATCH_SIZE,
        query_timeout: float = QUERY_TIMEOUT_S,
        cooldown: float = COOLDOWN_S,
        cache_size: int = QUERY_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        label = model or getattr(embedder, "model", None) or embedder.name
        if not isinstance(label, str) or not label.strip():
            raise ValueError("semantic recall needs the name of the embedding model")
        self.embedder = embedder
        self.model = label.strip()
        self.batch_size = max(1, batch_size)
        self.query_timeout = query_timeout
        self.cooldown = cooldown
        self._cache: OrderedDict[str, list[float]] = OrderedDict()
        self._cache_size = max(0, cache_size)
        self._clock = clock
        self._down_until = 0.0

    def __repr__(self) -> str:
        return f"SemanticRecall(model={self.model!r}, embedder={self.embedder.name!r})"

    async def query_vector(self, query: str) -> list[float] | None:
        """The vector of ``query``, or None when the embedder failed now or recently (the
        failure is logged once, then search goes without it for ``cooldown`` seconds)."""
        cached = self._cache.get(query)
        if cached is not None:
            self._cache.move_to_end(query)
            return cached
        if self._clock() < self._down_until:
            return None
        try:
            async with asyncio.timeout(self.query_timeout):
                vectors = await self.embedder.embed([query[:MAX_TEXT_CHARS]])
        except Exception as exc:  # whatever went wrong, search answers by keywords
            if isinstance(exc, ProviderError):
                reason = exc.message
            elif isinstance(exc, TimeoutError):
                reason = f"no answer within {self.query_timeout:g}s"
            else:
                reason = f"unexpected {type(exc).__name__}"
            log.warning(
                "query embedding failed (%s); searching by keywords alone for %.0fs",
                reason,
                self.cooldown,
            )
            self._down_until = self._clock() + self.cooldown
            return None
        vector = vectors[0]
        if self._cache_size:
            self._cache[query] = vector
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vector

    async def prepare(self) -> None:
        """Load what the embedder needs ahead of its first call, when it can (a server or
        worker does it at start, so the first search does not wait for it)."""
        prepare = getattr(self.embedder, "prepare", None)
        if prepare is not None:
            await prepare()

    async def aclose(self) -> None:
        await self.embedder.aclose()


# -- query time ------------------------------------------------------------------------------


def candidate_count(limit: int, maximum: int) -> int:
    """How many keyword candidates a search of ``limit`` results fuses."""
    return max(limit, min(max(limit * CANDIDATE_FACTOR, MIN_CANDIDATES), maximum))


@frozen(kw_only=True)
class Fused:
    """A candidate in fused order, with its best cosine (None: no vector)."""

    hit: SearchHit
    similarity: float | None


def best_similarity(query: Sequence[float], vectors: Sequence[Sequence[float]]) -> float | None:
    """The best cosine between ``query`` and ``vectors``; vectors of another length (stored
    under another configuration of the model) are not compared."""
    best: float | None = None
    for vector in vectors:
        if len(vector) != len(query):
            continue
        try:
            similarity = cosine(query, vector)
        except ValueError:  # a stored nan or infinity
            continue
        if best is None or similarity > best:
            best = similarity
    return best


def fuse(
    hits: Sequence[SearchHit],
    vectors: Mapping[str, Sequence[Sequence[float]]],
    query: Sequence[float],
    limit: int,
) -> list[Fused]:
    """The best ``limit`` of ``hits`` (in BM25 order) by reciprocal rank fusion of their BM25
    ranks and their similarity ranks (see the module docstring)."""
    keyword = [hit.observation.id for hit in hits]
    similarity: dict[str, float] = {}
    for oid in keyword:
        best = best_similarity(query, vectors.get(oid, ()))
        if best is not None:
            similarity[oid] = best
    # Stable sort: equal similarities keep their BM25 order.
    by_similarity = iter(sorted(similarity, key=lambda oid: -similarity[oid]))
    semantic = [next(by_similarity) if oid in similarity else oid for oid in keyword]
    fused = reciprocal_rank_fusion(
        [keyword, semantic], k=RRF_K, weights=(KEYWORD_WEIGHT, SEMANTIC_WEIGHT)
    )
    by_id = {hit.observation.id: hit for hit in hits}
    return [Fused(hit=by_id[oid], similarity=similarity.get(oid)) for oid, _ in fused[:limit]]


# -- writing vectors ---------------------------------------------------------------------


async def _store(deps: Deps, semantic: SemanticRecall, passages: Sequence[PassageText]) -> int:
    """Embed ``passages`` (no unit of work open) and store their vectors; raises
    ``ProviderError``."""
    vectors = await semantic.embedder.embed([p.text[:MAX_TEXT_CHARS] for p in passages])
    async with deps.storage.unit_of_work() as uow:
        return await uow.vectors.add(
            semantic.model, {p.id: vector for p, vector in zip(passages, vectors, strict=True)}
        )


async def _store_isolating(
    deps: Deps, semantic: SemanticRecall, passages: Sequence[PassageText]
) -> tuple[int, int]:
    """``_store`` in batches; a batch refused for its input is halved until the passages the
    embedder refuses are alone. Returns (stored, refused); raises other ``ProviderError``s."""
    stored = refused = 0
    pending = [
        list(passages[i : i + semantic.batch_size])
        for i in range(0, len(passages), semantic.batch_size)
    ]
    while pending:
        batch = pending.pop(0)
        try:
            stored += await _store(deps, semantic, batch)
        except ProviderError as exc:
            if exc.kind not in _INPUT_KINDS:
                raise
            if len(batch) == 1:
                refused += 1
                log.warning(
                    "the embedder refused passage %d (%s); it stays without a vector",
                    batch[0].id,
                    exc.message,
                )
                continue
            half = len(batch) // 2
            pending[:0] = [batch[:half], batch[half:]]
    return stored, refused


async def embed_generated(
    deps: Deps, team_id: str, project_id: str, observation_ids: Sequence[str]
) -> int:
    """Embed the passages of observations a generation job just stored; returns how many
    vectors were stored. Never raises: a failure is logged and the backfill retries."""
    semantic = deps.semantic
    if semantic is None or not observation_ids:
        return 0
    try:
        async with asyncio.timeout(GENERATED_TIMEOUT_S):
            async with deps.storage.unit_of_work() as uow:
                passages = await uow.vectors.missing(
                    semantic.model,
                    team_id=team_id,
                    project_id=project_id,
                    observation_ids=observation_ids,
                    limit=BACKFILL_PASS,
                )
            if not passages:
                return 0
            stored, _ = await _store_isolating(deps, semantic, passages)
            return stored
    except TimeoutError:
        log.warning(
            "embedding the passages of %d new observation(s) took over %.0fs; the backfill "
            "will finish it",
            len(observation_ids),
            GENERATED_TIMEOUT_S,
        )
    except ClaudeMemError as exc:
        log.warning(
            "embedding the passages of %d new observation(s) failed (%s); the backfill will retry",
            len(observation_ids),
            exc.message,
        )
    except Exception:
        log.exception("embedding new observations failed unexpectedly; the backfill will retry")
    return 0


@frozen(kw_only=True)
class BackfillReport:
    """``embedded``: vectors stored; ``failed``: passages left without one (for a later
    pass); ``more``: the pass stopped at its ``max_passages`` with passages left to read;
    ``interrupted``: it stopped at an embedder failure worth waiting out (unavailable,
    rate limited, unauthorised)."""

    embedded: int = 0
    failed: int = 0
    more: bool = False
    interrupted: bool = False


Progress = Callable[[int, int], None]


async def backfill(
    deps: Deps,
    *,
    team_id: str | None = None,
    project_id: str | None = None,
    max_passages: int | None = None,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> BackfillReport:
    """Embed the passages without a vector of the configured model, oldest first: of one
    project, one team, or all (the default). ``progress(done, total)`` is called after each
    batch (``total``: the passages missing when the pass started); ``stop`` ends the pass
    between batches. Raises ``ConfigurationError`` when no embedder is configured."""
    semantic = deps.semantic
    if semantic is None:
        raise ConfigurationError(
            "semantic recall is off: set CLAUDE_MEM_EMBEDDINGS_URL and CLAUDE_MEM_EMBEDDINGS_MODEL"
        )
    total = 0
    if progress is not None:
        async with deps.storage.unit_of_work() as uow:
            total = await uow.vectors.count_missing(
                semantic.model, team_id=team_id, project_id=project_id
            )
        progress(0, total)
    embedded = failed = done = 0
    after = 0
    while stop is None or not stop.is_set():
        take = semantic.batch_size
        if max_passages is not None:
            if done >= max_passages:
                return BackfillReport(embedded=embedded, failed=failed, more=True)
            take = min(take, max_passages - done)
        async with deps.storage.unit_of_work() as uow:
            batch = await uow.vectors.missing(
                semantic.model, team_id=team_id, project_id=project_id, after=after, limit=take
            )
        if not batch:
            break
        after = batch[-1].id
        done += len(batch)
        try:
            stored, refused = await _store_isolating(deps, semantic, batch)
        except ProviderError as exc:
            log.warning(
                "embedding %d passage(s) failed (%s); they are left for a later pass",
                len(batch),
                exc.message,
            )
            return BackfillReport(embedded=embedded, failed=failed + len(batch), interrupted=True)
        embedded += stored
        failed += refused
        if progress is not None:
            progress(done, max(total, done))
    return BackfillReport(embedded=embedded, failed=failed)


async def run_backfill(
    deps: Deps,
    stop: asyncio.Event,
    *,
    interval: float = BACKFILL_INTERVAL_S,
    per_pass: int = BACKFILL_PASS,
) -> None:
    """Backfill until ``stop`` is set: a pass every ``interval`` seconds, the next one at
    once while a pass embedded a full ``per_pass`` and more are waiting."""
    semantic = deps.semantic
    if semantic is not None:
        try:
            await semantic.prepare()
        except Exception as exc:  # the first pass reports it again, with its context
            log.warning("the embedder could not be prepared: %s", type(exc).__name__)
    while not stop.is_set():
        busy = False
        try:
            report = await backfill(deps, max_passages=per_pass, stop=stop)
        except ClaudeMemError as exc:  # the database may be down: next time
            log.warning("embedding backfill failed: %s", exc.message)
        except Exception:
            log.exception("embedding backfill failed unexpectedly")
        else:
            if report.embedded or report.failed:
                log.info(
                    "embedding backfill: %d passage(s) embedded, %d left for later",
                    report.embedded,
                    report.failed,
                )
            busy = report.more and report.embedded > 0
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


__all__ = [
    "CANDIDATE_FACTOR",
    "KEYWORD_WEIGHT",
    "MIN_CANDIDATES",
    "RRF_K",
    "SEMANTIC_WEIGHT",
    "BackfillReport",
    "Fused",
    "SemanticRecall",
    "backfill",
    "best_similarity",
    "candidate_count",
    "embed_generated",
    "fuse",
    "run_backfill",
]
