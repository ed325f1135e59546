"""Every backend's search returns the ranking model's top, on random corpora and queries.

PostgreSQL reads only the passages that can still reach the top (pairs of query terms,
high-impact terms, per-term bounds, completion of observations with several passages);
SQLite and the in-memory adapter score every match. Whatever the corpus, the hits, their
scores and their evidence must be what ``domain/ranking.py`` computes over all passages.
Words repeat within a text so that some are high-impact and some are not; observations
carry zero to three event passages so that an observation's next best passages count.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_mem_core.adapters import storage_from_url
from claude_mem_core.domain import ranking
from claude_mem_core.domain.passages import event_passages, observation_passage
from claude_mem_core.domain.tokens import parse_query
from claude_mem_core.testing.contracts import T0, Factory

WORDS = ["cache", "redirect", "login", "worker", "redirect_uri", "schema", "token", "queue"]
# Filler makes long texts where a query word is said once (not high-impact) beside short
# ones where it is said often (high-impact): both sides of every bound get exercised.
FILLER = [f"filler{n}" for n in range(40)]
_tenants = itertools.count()

texts = st.one_of(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=12),
    st.lists(st.sampled_from(WORDS + FILLER * 4), min_size=20, max_size=120),
).map(" ".join)
observations = st.lists(st.tuples(texts, st.lists(texts, max_size=3)), min_size=1, max_size=30)
queries = st.lists(
    st.tuples(
        st.lists(st.sampled_from([*WORDS, "uri", "absent"]), min_size=1, max_size=4, unique=True),
        st.integers(1, 6),
    ),
    min_size=1,
    max_size=4,
)


def _model(
    passages: list[Any], query_text: str, superseded: frozenset[str] | set[str] = frozenset()
) -> dict[str, list[float]]:
    """Each matching observation's passage scores, over every passage of the project
    (a superseded observation's weighted by ``ranking.SUPERSEDED_WEIGHT``)."""
    query = parse_query(query_text)
    strings = ranking.query_strings(query)
    idfs = {s: ranking.idf(len(passages), sum(1 for p in passages if s in p.tf)) for s in strings}
    scores: dict[str, list[float]] = {}
    for p in passages:
        score = ranking.passage_score(
            query,
            p.tf,
            p.length,
            idfs=idfs,
            event=p.event_id is not None,
            weight=ranking.SUPERSEDED_WEIGHT if p.observation_id in superseded else 1.0,
        )
        if score > 0:
            scores.setdefault(p.observation_id, []).append(score)
    return scores


async def _check(url: str, corpus: list[tuple[str, list[str]]], asked: list[Any]) -> None:
    make = Factory()
    make.n = 100_000 * next(_tenants)  # ids unique across examples in one database
    storage = storage_from_url(url)
    try:
        team = make.team()
        project = make.project(team)
        passages = []
        async with storage.unit_of_work() as uow:
            await uow.teams.add(team)
            await uow.projects.add(project)
            for n, (content, outputs) in enumerate(corpus):
                # Every third observation is about one subject: all but the newest of them
                # are superseded, their scores weighted (pruning must stay exact).
                subject = "v1:model" if n % 3 == 0 else None
                obs = make.observation(project, content, title=content[:24], subject=subject)
                events = [make.event(project, payload={"output": text}) for text in outputs]
                written = [observation_passage(obs), *event_passages(obs, events)]
                await uow.observations.add(obs)
                await uow.search.add(written)
                passages.extend(written)
            marked = await uow.observations.supersede(team.id, project.id, ["v1:model"], at=T0)
        superseded = {old for old, _ in marked}
        for words, limit in asked:
            text = " ".join(words)
            scores = _model(passages, text, superseded)
            expected = sorted(
                (ranking.observation_score(v) for v in scores.values()), reverse=True
            )[:limit]
            async with storage.unit_of_work() as uow:
                hits = await uow.search.search(team.id, project.id, parse_query(text), limit=limit)
            assert [h.score for h in hits] == pytest.approx(expected, rel=1e-9), text
            for hit in hits:
                mine = sorted(scores[hit.observation.id], reverse=True)
                assert hit.score == pytest.approx(ranking.observation_score(mine), rel=1e-9)
                assert [e.score for e in hit.evidence] == pytest.approx(
                    mine[: ranking.EVIDENCE_PASSAGES], rel=1e-9
                )
    finally:
        await storage.close()


def test_search_returns_the_models_top(storage_url: str) -> None:
    runner = asyncio.Runner()

    @settings(
        max_examples=30,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(corpus=observations, asked=queries)
    def check(corpus: list[tuple[str, list[str]]], asked: list[Any]) -> None:
        runner.run(_check(storage_url, corpus, asked))

    try:
        check()
    finally:
        runner.close()
