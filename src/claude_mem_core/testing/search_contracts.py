"""The storage contract, observations and search: observations with their sources and
passages, and the ranked, scoped search over them. Part of
:class:`~claude_mem_core.testing.contracts.StorageContract` (same fixtures)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from claude_mem_core.domain import ranking
from claude_mem_core.domain.models import (
    Observation,
    ObservationSource,
    ObservationSourceType,
)
from claude_mem_core.domain.passages import event_passages, observation_passage
from claude_mem_core.domain.tokens import parse_query
from claude_mem_core.ports.storage import Page, Storage
from claude_mem_core.testing.storage_fixtures import T0, Backdoor, Factory


class SearchStorageContract:
    """Observations and search on every storage adapter."""

    # -- observations and search -----------------------------------------------------

    async def test_observation_generation_key_is_idempotent_per_scope(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        other_team, other_project = await make.stored_tenant(storage)
        first = make.observation(project, "hello", generation_key="generation:v1:j:0:abc")
        async with storage.unit_of_work() as uow:
            assert await uow.observations.add(first) == (first, True)
            again, created = await uow.observations.add(
                make.observation(project, "changed", generation_key=first.generation_key)
            )
            assert (again, created) == (first, False)
            elsewhere, created = await uow.observations.add(
                make.observation(other_project, "hello", generation_key=first.generation_key)
            )
            assert created is True and elsewhere.id != first.id
            assert await uow.observations.get(team.id, project.id, first.id) == first
            assert await uow.observations.get(other_team.id, project.id, first.id) is None
            assert await uow.observations.get_in_team(team.id, first.id) == first
            assert await uow.observations.get_in_team(other_team.id, first.id) is None
            assert await uow.observations.get_in_team(team.id, "missing") is None
        stored = {r["id"]: r for r in await backdoor.rows("observations")}
        assert set(stored) == {first.id, elsewhere.id}
        assert stored[first.id]["content"] == "hello"
        assert list(stored[first.id]["files_read"]) == ["src/a.py"]

    async def _indexed(
        self,
        storage: Storage,
        observations: list[Observation],
        events: dict[str, Any] | None = None,
    ) -> None:
        """Store observations with their passages (and those of ``events[obs.id]``)."""
        async with storage.unit_of_work() as uow:
            for obs in observations:
                await uow.observations.add(obs)
                linked = (events or {}).get(obs.id, [])
                await uow.search.add([observation_passage(obs), *event_passages(obs, linked)])

    async def test_search_answers_a_question_and_ranks_by_matches(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        _, other_project = await make.stored_tenant(storage)
        target = make.observation(
            project,
            "Fixed the login redirect loop in auth/middleware.py by changing the callback "
            "URL check",
        )
        partial = make.observation(project, "The login page now shows a spinner")
        noise = [
            make.observation(project, text)
            for text in (
                "Refactored the database pool settings",
                "Added pagination to the jobs listing",
                "Documented the deployment steps for the worker",
            )
        ]
        foreign = make.observation(other_project, "Fixed the login redirect in another tenant")
        await self._indexed(storage, [target, partial, *noise, foreign])
        question = parse_query("which file did we change to fix the login redirect?")
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(team.id, project.id, question, limit=10)
            none = await uow.search.search(
                team.id, project.id, parse_query("nonexistent_xyz_term"), limit=10
            )
            hostile = await uow.search.search(
                team.id,
                project.id,
                parse_query('"login" OR redirect* NEAR( ) AND -- \' ;'),
                limit=10,
            )
            capped = await uow.search.search(team.id, project.id, parse_query("login"), limit=1)
        ids = [h.observation.id for h in hits]
        assert ids[0] == target.id
        assert partial.id in ids and foreign.id not in ids
        assert hits[0].score > hits[ids.index(partial.id)].score
        assert hits[0].evidence[0].text is None  # the observation's own words matched best
        assert list(none) == []
        assert target.id in [h.observation.id for h in hostile]
        assert len(capped) == 1

    async def test_search_finds_identifiers_whole_and_by_all_their_parts(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        path = make.observation(project, "Changed auth/middleware.py to strip the query")
        snake = make.observation(project, "The redirect_uri must match the registered one")
        camel = make.observation(project, "parseConfig now reads the TOML file")
        only_part = make.observation(project, "A term that is plain")
        await self._indexed(storage, [path, snake, camel, only_part])

        async def first(text: str) -> list[str]:
            async with storage.unit_of_work() as uow:
                hits = await uow.search.search(team.id, project.id, parse_query(text), limit=5)
            return [h.observation.id for h in hits]

        assert (await first("auth/middleware.py"))[:1] == [path.id]
        assert (await first("middleware"))[:1] == [path.id]
        assert (await first("redirect_uri"))[:1] == [snake.id]
        assert (await first("redirect uri"))[:1] == [snake.id]
        assert (await first("parseConfig"))[:1] == [camel.id]
        assert (await first("config parse"))[:1] == [camel.id]
        # One part of an identifier is not the identifier.
        assert await first("nonexistent_xyz_term") == []

    async def test_search_groups_passages_and_returns_the_best_as_evidence(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        edit = make.observation(project, "Ran the test suite", title="Ran tests")
        other = make.observation(project, "Looked at the README", title="Read docs")
        output = "\n".join(
            [f"collected line {n} passed" for n in range(60)]
            + ["FAILED tests/test_login.py::test_redirect_loop - AssertionError"]
            + [f"more output {n}" for n in range(60)]
        )
        events = {
            edit.id: [
                make.event(project, payload={"tool_name": "Bash", "tool_response": output}),
            ]
        }
        await self._indexed(storage, [edit, other], events)
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(
                team.id, project.id, parse_query("which test failed: test_redirect_loop?"), limit=5
            )
            passages = await uow.search.search(
                team.id, project.id, parse_query("collected passed output"), limit=5
            )
        assert [h.observation.id for h in hits] == [edit.id]
        best = hits[0].evidence[0]
        assert best.text is not None and "test_redirect_loop" in best.text
        assert best.event_id == events[edit.id][0].id
        assert len(hits[0].evidence) <= ranking.EVIDENCE_PASSAGES
        scores = [e.score for e in hits[0].evidence]
        assert scores == sorted(scores, reverse=True)
        assert hits[0].score == pytest.approx(ranking.observation_score(scores), rel=1e-9)
        # Many passages of one observation match: it is still one hit.
        assert [h.observation.id for h in passages].count(edit.id) == 1

    async def test_search_normalises_length_and_saturates_frequency(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        filler = " ".join(f"word{n} cache" for n in range(400))
        long = make.observation(project, "The cache TTL decision. " + filler, title="Summary")
        short = make.observation(project, "We decided the cache TTL is 300 seconds", title="TTL")
        padding = [make.observation(project, f"unrelated note {n}") for n in range(5)]
        await self._indexed(storage, [long, short, *padding])
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(
                team.id, project.id, parse_query("what did we decide about the cache TTL?"), limit=5
            )
        assert [h.observation.id for h in hits][:2] == [short.id, long.id]

    async def test_search_scores_follow_the_model(self, storage: Storage, make: Factory) -> None:
        """Every backend computes domain/ranking.py: scores equal the model's to rounding,
        statistics are per project, and ties go to the newer observation."""
        team, project = await make.stored_tenant(storage)
        _, elsewhere = await make.stored_tenant(storage)
        words = ["login", "redirect", "cache", "worker", "deploy", "schema", "token", "queue"]
        corpus = [
            make.observation(project, " ".join(words[(n * k) % 8] for k in range(1, n % 5 + 2)))
            for n in range(24)
        ]
        twin_a = make.observation(project, "identical twin text about login")
        twin_b = make.observation(project, "identical twin text about login")
        foreign = [make.observation(elsewhere, "login login login") for _ in range(6)]
        await self._indexed(storage, [*corpus, twin_a, twin_b, *foreign])
        query = parse_query("login cache queue twin")
        passages = [observation_passage(o) for o in [*corpus, twin_a, twin_b]]
        strings = ranking.query_strings(query)
        idfs = {
            s: ranking.idf(len(passages), sum(1 for p in passages if s in p.tf)) for s in strings
        }
        expected = {
            p.observation_id: ranking.passage_score(query, p.tf, p.length, idfs=idfs, event=False)
            for p in passages
        }
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(team.id, project.id, query, limit=100)
        assert {h.observation.id for h in hits} == {o for o, s in expected.items() if s > 0}
        for hit in hits:
            assert hit.score == pytest.approx(expected[hit.observation.id], rel=1e-9)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        ids = [h.observation.id for h in hits]
        assert ids.index(twin_b.id) < ids.index(twin_a.id)  # same score: newer first

    async def test_search_top_of_many_matches_is_the_models(
        self, storage: Storage, make: Factory
    ) -> None:
        """Many passages match, few are asked for: a backend that reads only the passages
        that can still reach the top (PostgreSQL) returns exactly the model's top, with
        every matching passage of each hit as evidence."""
        import random

        team, project = await make.stored_tenant(storage)
        rng = random.Random(7)
        words = "alpha beta gamma delta kappa sigma omega theta lambda zeta".split()
        corpus = [
            make.observation(
                project,
                " ".join(rng.choice(words) for _ in range(rng.randint(3, 30))),
                title=rng.choice(words),
            )
            for _ in range(150)
        ]
        events = {
            o.id: [make.event(project, payload={"output": " ".join(rng.sample(words, 4))})]
            for o in corpus[::3]
        }
        await self._indexed(storage, corpus, events)
        passages = [observation_passage(o) for o in corpus] + [
            p for o in corpus for p in event_passages(o, events.get(o.id, []))
        ]
        by_id = {o.id: o for o in corpus}
        for _ in range(12):
            query = parse_query(" ".join(rng.sample(words, rng.randint(1, 4))))
            strings = ranking.query_strings(query)
            idfs = {
                s: ranking.idf(len(passages), sum(1 for p in passages if s in p.tf))
                for s in strings
            }
            scores: dict[str, list[float]] = {}
            for p in passages:
                event = p.event_id is not None
                score = ranking.passage_score(query, p.tf, p.length, idfs=idfs, event=event)
                if score > 0:
                    scores.setdefault(p.observation_id, []).append(score)
            expected = sorted(
                ((ranking.observation_score(v), oid) for oid, v in scores.items()),
                key=lambda e: ranking.score_order(e[0], by_id[e[1]].updated_at, e[1]),
            )[:5]
            async with storage.unit_of_work() as uow:
                hits = await uow.search.search(team.id, project.id, query, limit=5)
            assert len(hits) == len(expected)
            for hit, (score, oid) in zip(hits, expected, strict=True):
                assert hit.score == pytest.approx(score, rel=1e-9)
                # The same observation, or one of exactly its score (a tie within rounding).
                assert hit.observation.id == oid or ranking.observation_score(
                    scores[hit.observation.id]
                ) == pytest.approx(score, rel=1e-9)
                found = sorted(scores[hit.observation.id], reverse=True)
                assert [e.score for e in hit.evidence] == pytest.approx(
                    found[: ranking.EVIDENCE_PASSAGES], rel=1e-9
                )

    async def test_search_counts_an_observations_next_passages_even_where_it_prunes(
        self, storage: Storage, make: Factory
    ) -> None:
        """An observation scores its best passage plus a share of its next best. Here the
        winner's extra passages hold only a common query word, the kind of match a backend
        that prunes (PostgreSQL) skips; its score must still count them, and so it must
        beat the observation whose single passage is a little better than its best."""
        team, project = await make.stored_tenant(storage)
        winner = make.observation(project, "kestrel falcon notes")
        single = make.observation(project, "kestrel falcon")
        common = [make.observation(project, f"harbor note {n}") for n in range(10)]
        common += [make.observation(project, f"filler line {n}") for n in range(60)]
        output = "harbor harbor harbor harbor"
        events = {winner.id: [make.event(project, payload={"output": output}) for _ in range(2)]}
        await self._indexed(storage, [winner, single, *common], events)
        query = parse_query("kestrel falcon harbor")
        passages = [observation_passage(o) for o in [winner, single, *common]]
        passages += event_passages(winner, events[winner.id])
        strings = ranking.query_strings(query)
        idfs = {
            s: ranking.idf(len(passages), sum(1 for p in passages if s in p.tf)) for s in strings
        }
        scores: dict[str, list[float]] = {}
        for p in passages:
            score = ranking.passage_score(
                query, p.tf, p.length, idfs=idfs, event=p.event_id is not None
            )
            scores.setdefault(p.observation_id, []).append(score)
        # The case this test is about, as the model sees it.
        assert max(scores[single.id]) > max(scores[winner.id])
        assert ranking.observation_score(scores[winner.id]) > ranking.observation_score(
            scores[single.id]
        )
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(team.id, project.id, query, limit=1)
        assert [h.observation.id for h in hits] == [winner.id]
        assert hits[0].score == pytest.approx(
            ranking.observation_score(scores[winner.id]), rel=1e-9
        )
        assert len(hits[0].evidence) == 3

    async def test_search_a_common_word_alone_is_ranked_exactly(
        self, storage: Storage, make: Factory
    ) -> None:
        """One common word, many passages holding it: where a few hold it often (its
        high-impact passages) they settle the top without the rest being read (PostgreSQL);
        where they are too few, every match is scored. Both give the model's top."""
        team, project = await make.stored_tenant(storage)
        filler = " ".join(f"word{n}" for n in range(60))
        weak = [make.observation(project, f"{filler} {n} cache") for n in range(40)]
        strong = [make.observation(project, f"cache note cache {n} cache") for n in range(7)]
        await self._indexed(storage, [*weak, *strong])
        by_id = {o.id: o for o in [*weak, *strong]}
        passages = [observation_passage(o) for o in by_id.values()]
        query = parse_query("cache")
        [word] = ranking.query_strings(query)
        high = {
            p.observation_id for p in passages if word in ranking.high_impact_terms(p.tf, p.length)
        }
        assert high == {o.id for o in strong}
        idfs = {word: ranking.idf(len(passages), len(passages))}
        for limit in (5, 12):  # 7 strong passages: enough for 5, too few for 12
            expected = sorted(
                (
                    (ranking.passage_score(query, p.tf, p.length, idfs=idfs, event=False), oid)
                    for p in passages
                    for oid in [p.observation_id]
                ),
                key=lambda e: ranking.score_order(e[0], by_id[e[1]].updated_at, e[1]),
            )[:limit]
            async with storage.unit_of_work() as uow:
                hits = await uow.search.search(team.id, project.id, query, limit=limit)
            assert [h.observation.id for h in hits] == [oid for _, oid in expected]
            for hit, (score, _) in zip(hits, expected, strict=True):
                assert hit.score == pytest.approx(score, rel=1e-9)

    async def test_search_reads_a_words_weak_passages_when_together_they_can_win(
        self, storage: Storage, make: Factory
    ) -> None:
        """One observation says the word once in each of three longer passages (none of
        them high-impact), another says it in one short passage (high-impact, the best
        single passage). Together the three win; a backend that reads the high-impact
        passages first must still read the others, since their observation can win."""
        team, project = await make.stored_tenant(storage)

        def filler(n: int, start: int) -> str:
            return " ".join(f"w{start + i}" for i in range(n))

        strong = make.observation(project, f"cache {filler(10, 0)}", title=None)
        # Past a third of the pivot length (150), a word said once is not high-impact
        # (ranking.term_factor < HIGH_IMPACT with k1 2.0); at ten words it is.
        weak = make.observation(project, f"cache {filler(60, 100)}", title=None)
        outputs = [f"cache {filler(60, 200 + 70 * k)}" for k in range(2)]
        events = {weak.id: [make.event(project, payload={"output": out}) for out in outputs]}
        others = [
            make.observation(project, filler(30, 500 + 40 * k), title=None) for k in range(20)
        ]
        await self._indexed(storage, [strong, weak, *others], events)
        passages = [observation_passage(o) for o in [strong, weak, *others]]
        passages += event_passages(weak, events[weak.id])
        query = parse_query("cache")
        [word] = ranking.query_strings(query)
        idfs = {word: ranking.idf(len(passages), sum(1 for p in passages if word in p.tf))}
        scores: dict[str, list[float]] = {}
        for p in passages:
            if word in p.tf:
                high = word in ranking.high_impact_terms(p.tf, p.length)
                assert high == (p.observation_id == strong.id)  # the case under test
                scores.setdefault(p.observation_id, []).append(
                    ranking.passage_score(
                        query, p.tf, p.length, idfs=idfs, event=p.event_id is not None
                    )
                )
        assert max(scores[strong.id]) > max(scores[weak.id])
        expected = ranking.observation_score(scores[weak.id])
        assert expected > ranking.observation_score(scores[strong.id])
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(team.id, project.id, query, limit=1)
        assert [h.observation.id for h in hits] == [weak.id]
        assert hits[0].score == pytest.approx(expected, rel=1e-9)

    async def test_search_of_one_kind_ranks_as_among_all(
        self, storage: Storage, make: Factory
    ) -> None:
        """A kind filter keeps the observations of that kind, in the order and with the
        scores they have among all kinds (statistics stay the project's), and the limit
        counts only them: notes that outrank every decision take no decision's place."""
        team, project = await make.stored_tenant(storage)
        notes = [
            make.observation(project, "zebra zebra zebra", kind="note", title="zebra")
            for _ in range(4)
        ]
        decisions = [
            make.observation(project, f"zebra {'crossing ' * n}decided", kind="decision")
            for n in range(1, 5)
        ]
        await self._indexed(storage, [*notes, *decisions])
        query = parse_query("zebra")
        async with storage.unit_of_work() as uow:
            every = await uow.search.search(team.id, project.id, query, limit=20)
            kinded = await uow.search.search(team.id, project.id, query, limit=3, kind="decision")
        assert [h.observation.id for h in every][:4] == [o.id for o in reversed(notes)]
        expected = [h for h in every if h.observation.kind == "decision"][:3]
        assert [h.observation.id for h in kinded] == [h.observation.id for h in expected]
        assert [h.score for h in kinded] == pytest.approx([h.score for h in expected], rel=1e-9)
        async with storage.unit_of_work() as uow:
            none = await uow.search.search(team.id, project.id, query, limit=3, kind="absent")
        assert none == []

    async def test_search_reads_pairs_of_weak_words_when_they_can_win(
        self, storage: Storage, make: Factory
    ) -> None:
        """Three query words. The best answer says two rare ones once each in a longer
        passage (neither high-impact there); the passage a backend reads first (two words,
        one of them high-impact) scores less. A backend that bounds the pairs it has not
        read must still read this one."""
        team, project = await make.stored_tenant(storage)

        def filler(n: int, start: int) -> str:
            return " ".join(f"w{start + i}" for i in range(n))

        # Long enough that a word said once is not high-impact (see the test above).
        best = make.observation(project, f"kestrel falcon {filler(55, 0)}", title=None)
        first = make.observation(project, f"kestrel kestrel heron {filler(30, 100)}", title=None)
        herons = [
            make.observation(project, f"heron {filler(5, 200 + 10 * k)}", title=None)
            for k in range(30)
        ]
        others = [make.observation(project, filler(8, 600 + 10 * k), title=None) for k in range(30)]
        await self._indexed(storage, [best, first, *herons, *others])
        passages = [observation_passage(o) for o in [best, first, *herons, *others]]
        query = parse_query("kestrel falcon heron")
        strings = ranking.query_strings(query)
        idfs = {
            s: ranking.idf(len(passages), sum(1 for p in passages if s in p.tf)) for s in strings
        }
        scores = {
            p.observation_id: ranking.passage_score(query, p.tf, p.length, idfs=idfs, event=False)
            for p in passages
        }
        # The case under test, as the model sees it.
        high = {
            o: set(ranking.high_impact_terms(p.tf, p.length)) & set(strings)
            for p in passages
            for o in [p.observation_id]
            if o in (best.id, first.id)
        }
        assert not high[best.id] and high[first.id]
        assert (
            scores[best.id] > scores[first.id] > max(ranking.HIGH_IMPACT * idfs[s] for s in strings)
        )
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(team.id, project.id, query, limit=1)
        assert [h.observation.id for h in hits] == [best.id]
        assert hits[0].score == pytest.approx(scores[best.id], rel=1e-9)

    async def test_search_a_rare_term_alone_beats_common_pairs(
        self, storage: Storage, make: Factory
    ) -> None:
        """Many observations hold two common query words; the best answer holds only the
        rare one. A backend that skips single-word matches it judges hopeless must not skip
        this one; those whose words cannot win stay out without changing the answer."""
        team, project = await make.stored_tenant(storage)
        pairs = [make.observation(project, f"deploy cache note {n}") for n in range(40)]
        only_cache = [make.observation(project, f"cache entry {n}") for n in range(40)]
        rare = make.observation(project, "zookeeper", title="zookeeper")
        await self._indexed(storage, [*pairs, *only_cache, rare])
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(
                team.id, project.id, parse_query("zookeeper deploy cache"), limit=3
            )
        ids = [h.observation.id for h in hits]
        assert ids[0] == rare.id
        assert set(ids[1:]) <= {o.id for o in pairs}

    async def test_sources_link_and_merge(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project, job = await make.stored_event_job(storage)
        obs = make.observation(project, "generated", created_by_job_id=job.id)
        link = ObservationSource(
            id="src-1",
            observation_id=obs.id,
            team_id=team.id,
            project_id=project.id,
            source_type=ObservationSourceType.AGENT_EVENT,
            source_id=job.source_id,
            agent_event_id=job.agent_event_id,
            generation_job_id=job.id,
            metadata={"a": 1},
            created_at=T0,
        )
        async with storage.unit_of_work() as uow:
            await uow.observations.add(obs)
            await uow.sources.add(link)
            merged = await uow.sources.add(attrs.evolve(link, id="src-2", metadata={"b": 2}))
            pairs = await uow.observations.list_for_source(
                team.id, project.id, "agent_event", job.source_id
            )
            foreign = await uow.observations.list_for_source(
                "other", project.id, "agent_event", job.source_id
            )
            by_job = await uow.observations.list_for_job(team.id, project.id, job.id)
        assert merged.id == "src-1" and merged.metadata == {"a": 1, "b": 2}
        assert [(o.id, s.id) for o, s in pairs] == [(obs.id, "src-1")]
        assert list(foreign) == [] and [o.id for o in by_job] == [obs.id]
        assert len(await backdoor.rows("sources")) == 1

    async def test_observation_listing_is_newest_first(
        self, storage: Storage, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        made = [make.observation(project, f"note {i}") for i in range(3)]
        async with storage.unit_of_work() as uow:
            for obs in made:
                await uow.observations.add(obs)
            page, total = await uow.observations.list(team.id, project.id, Page(limit=2, offset=1))
        assert total == 3 and [o.id for o in page] == [made[1].id, made[0].id]

    async def test_observations_of_one_moment_list_by_id(
        self, storage: Storage, make: Factory
    ) -> None:
        # One generation job writes several observations in the same millisecond: every
        # backend must list them in the same order (newest first, then by id).
        team, project = await make.stored_tenant(storage)
        first = make.observation(project, "note")
        same = [
            attrs.evolve(make.observation(project, f"note {i}"), created_at=first.created_at)
            for i in range(4)
        ]
        newer = make.observation(project, "newer")
        async with storage.unit_of_work() as uow:
            for obs in [*same, newer]:
                await uow.observations.add(obs)
            page, _ = await uow.observations.list(team.id, project.id, Page(limit=10))
        assert [o.id for o in page] == [newer.id, *sorted(o.id for o in same)]
