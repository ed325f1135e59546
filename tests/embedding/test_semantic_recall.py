"""Semantic recall end to end: vectors written by generation and the backfill, fused at
query time, with a fake OpenAI-compatible embeddings server and the real adapter.

Runs on the in-memory storage, SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.adapters.openai_embedder import OpenAICompatibleEmbedder
from claude_mem_core.domain.tokens import index_terms, parse_query
from claude_mem_core.errors import ProviderError
from claude_mem_core.ports.storage import Page
from claude_mem_core.services import memories
from claude_mem_core.services.context import Caller
from claude_mem_core.testing.fake_embeddings import FakeEmbeddingsServer, fake_embedding

MODEL = "fake-embedding-model"
API_KEY = "sk-semantic-recall-SECRET-0123456789"
DIMS = 8


@pytest.fixture(
    params=[
        "memory",
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "memory":
        yield "memory://"
        return
    from claude_mem_core.testing import databases

    if request.param == "sqlite":
        yield await databases.migrated_sqlite_url(tmp_path)
        return
    url = await databases.create_postgres_database(request.getfixturevalue("postgres_base_url"))
    try:
        yield url
    finally:
        await databases.drop_postgres_database(url)


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmbeddingsServer]:
    async with FakeEmbeddingsServer(dimensions=DIMS, require_api_key=API_KEY) as server:
        yield server


def _embedder(fake: FakeEmbeddingsServer) -> OpenAICompatibleEmbedder:
    # No retries: a failure the test scripts is final at once.
    return OpenAICompatibleEmbedder(
        MODEL, api_key=API_KEY, base_url=fake.openai_base_url, max_retries=0, timeout=5.0
    )


@pytest.fixture
async def mem(storage_url: str, fake: FakeEmbeddingsServer) -> AsyncIterator[Memory]:
    memory = Memory(
        storage=storage_from_url(storage_url),
        queue=InProcessQueue(),
        provider=OfflineProvider(),
        embedder=_embedder(fake),
    )
    try:
        yield memory
    finally:
        await memory.close()


@pytest.fixture
async def plain(storage_url: str, fake: FakeEmbeddingsServer) -> AsyncIterator[Memory]:
    """Semantic recall off."""
    memory = Memory(
        storage=storage_from_url(storage_url), queue=InProcessQueue(), provider=OfflineProvider()
    )
    try:
        yield memory
    finally:
        await memory.close()


async def _scope(memory: Memory) -> Scope:
    team, project = await memory.ensure_project("acme", "webapp")
    return Scope(team_id=team.id, project_id=project.id)


async def _missing(memory: Memory, scope: Scope) -> int:
    async with memory.storage.unit_of_work() as uow:
        return await uow.vectors.count_missing(
            MODEL, team_id=scope.team_id, project_id=scope.project_id
        )


async def _ingest_tool_uses(memory: Memory, scope: Scope) -> None:
    for command, output in (
        ("pytest tests/e2e -k login", "3 passed in 0.41s"),
        ("git log --oneline -3", "381c14c Fix the login redirect loop"),
    ):
        await memory.ingest(
            scope,
            event_type="tool_use",
            payload={
                "tool_name": "Bash",
                "tool_input": {"command": command},
                "tool_response": {"stdout": output},
            },
        )


# -- (a) vectors are written by generation and by the backfill ------------------------------


async def test_generation_embeds_the_passages_it_stored(
    mem: Memory, fake: FakeEmbeddingsServer
) -> None:
    scope = await _scope(mem)
    await _ingest_tool_uses(mem, scope)
    assert fake.requests == []  # ingest never waits for an embedder

    assert await mem.drain() == 2

    async with mem.storage.unit_of_work() as uow:
        observations, total = await uow.observations.list(
            scope.team_id, scope.project_id, Page(limit=10)
        )
        vectors = await uow.vectors.for_observations(
            scope.team_id, scope.project_id, MODEL, [o.id for o in observations]
        )
    assert total == 2
    assert await _missing(mem, scope) == 0
    assert set(vectors) == {o.id for o in observations}
    # Each observation has its own passage and at least one of its event's text.
    assert all(len(v) >= 2 for v in vectors.values())
    sent = [text for request in fake.requests for text in request.inputs]
    assert any("pytest tests/e2e -k login" in text for text in sent)
    assert {request.api_key for request in fake.requests} == {API_KEY}


async def test_an_embedder_failing_after_generation_leaves_the_job_completed(
    mem: Memory, fake: FakeEmbeddingsServer, caplog: pytest.LogCaptureFixture
) -> None:
    scope = await _scope(mem)
    await _ingest_tool_uses(mem, scope)
    fake.fail_next(2, status=503, message=f"overloaded (key {API_KEY})")

    with caplog.at_level(logging.WARNING):
        assert await mem.drain() == 2

    jobs = await mem.list_jobs(scope)
    assert {job.status.value for job in jobs.jobs} == {"completed"}
    assert await _missing(mem, scope) > 0
    assert "the backfill will retry" in caplog.text and API_KEY not in caplog.text
    assert (await mem.backfill_embeddings()).embedded > 0
    assert await _missing(mem, scope) == 0


async def test_memories_are_not_embedded_inline_and_the_backfill_picks_them_up(
    mem: Memory, fake: FakeEmbeddingsServer
) -> None:
    scope = await _scope(mem)
    written = [
        await mem.add_memory(scope, f"Decision {n}: the cache TTL is {n} minutes") for n in range(5)
    ]
    assert fake.requests == []
    assert await _missing(mem, scope) == 5

    seen: list[tuple[int, int]] = []
    report = await mem.backfill_embeddings(progress=lambda done, total: seen.append((done, total)))

    assert (report.embedded, report.failed, report.more, report.interrupted) == (5, 0, False, False)
    assert await _missing(mem, scope) == 0
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    sent = sorted(text for request in fake.requests for text in request.inputs)
    assert sent == sorted(m.content for m in written)
    # Nothing left: a second pass sends nothing.
    before = len(fake.requests)
    assert (await mem.backfill_embeddings()).embedded == 0
    assert len(fake.requests) == before


async def test_a_failing_embedder_leaves_passages_for_a_later_pass(
    mem: Memory, fake: FakeEmbeddingsServer, caplog: pytest.LogCaptureFixture
) -> None:
    scope = await _scope(mem)
    for n in range(3):
        await mem.add_memory(scope, f"Runbook step {n}")
    fake.fail_next(1, status=503, message=f"upstream down for key {API_KEY}")

    with caplog.at_level(logging.WARNING):
        failed = await mem.backfill_embeddings()

    assert failed.interrupted and (failed.embedded, failed.failed) == (0, 3)
    assert await _missing(mem, scope) == 3
    assert "left for a later pass" in caplog.text
    assert API_KEY not in caplog.text
    again = await mem.backfill_embeddings()
    assert (again.embedded, again.interrupted) == (3, False)
    assert await _missing(mem, scope) == 0


class RefusingEmbedder:
    """Refuses any batch holding ``refused`` as a bad request, as a server does for an
    input it cannot take; embeds the others."""

    name = "refusing"
    dimensions: int | None = DIMS

    def __init__(self, refused: str) -> None:
        self.refused = refused
        self.batches: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.batches.append(list(texts))
        if self.refused in texts:
            raise ProviderError("embeddings: input too long (bad_request)", kind="bad_request")
        return [fake_embedding(text, DIMS) for text in texts]

    async def aclose(self) -> None:
        return None


async def test_an_input_the_embedder_refuses_does_not_hold_back_the_others(
    storage_url: str,
) -> None:
    refused = "Deploy note 2"
    embedder = RefusingEmbedder(refused)
    memory = Memory(
        storage=storage_from_url(storage_url),
        queue=InProcessQueue(),
        provider=OfflineProvider(),
        embedder=embedder,
        embedding_model=MODEL,
    )
    try:
        scope = await _scope(memory)
        for n in range(6):
            await memory.add_memory(scope, f"Deploy note {n}")

        report = await memory.backfill_embeddings()

        assert (report.embedded, report.failed, report.interrupted) == (5, 1, False)
        async with memory.storage.unit_of_work() as uow:
            left = await uow.vectors.missing(MODEL)
        assert [p.text for p in left] == [refused]
        assert embedder.batches[0] == [f"Deploy note {n}" for n in range(6)]
        assert [refused] in embedder.batches  # isolated, then given up for this pass
    finally:
        await memory.close()


# -- (b) fusion finds what BM25 alone ranks lower ---------------------------------------------


def _slot(word: str) -> tuple[int, float]:
    """The bucket and sign the fake embedder gives ``word``."""
    vector = fake_embedding(word, DIMS)
    index = max(range(DIMS), key=lambda i: abs(vector[i]))
    return index, vector[index]


def _words(count: int, wanted: Any, taken: set[str]) -> list[str]:
    """``count`` plain words (one search term each) whose slot satisfies ``wanted``."""
    found = []
    for n in range(100_000):
        word = "qu" + "".join("bcdfghjklmnprtvz"[int(d)] for d in f"{n:05d}")
        if word in taken or index_terms(word) != [word] or not wanted(_slot(word)):
            continue
        found.append(word)
        taken.add(word)
        if len(found) == count:
            return found
    raise AssertionError("no such words")


def _corpus() -> dict[str, Any]:
    """A query of a word every memory holds and a rare word; the answer holds the common
    word only (BM25 ranks it second) but its other words sit where the rare word's vector
    is, while the memory holding both query words points the other way."""
    taken: set[str] = set()
    (common,) = _words(1, lambda s: True, taken)
    (rare,) = _words(1, lambda s: s[0] != _slot(common)[0], taken)
    bucket, sign = _slot(rare)
    near = _words(3, lambda s: s == (bucket, sign), taken)
    away = _words(4, lambda s: s == (bucket, -sign), taken)
    neutral = _words(8, lambda s: s[0] not in (bucket, _slot(common)[0]), taken)
    return {
        "query": f"{common} {rare}",
        "answer": f"{common} {common} {' '.join(near)}",
        "distractor": f"{common} {rare} {' '.join(away)}",
        "fillers": [f"{common} {neutral[2 * n]} {neutral[2 * n + 1]}" for n in range(4)],
    }


async def test_fusion_finds_the_answer_bm25_alone_ranks_lower(
    mem: Memory, fake: FakeEmbeddingsServer
) -> None:
    scope = await _scope(mem)
    data = _corpus()
    for text in data["fillers"]:
        await mem.add_memory(scope, text)
    answer = await mem.add_memory(scope, data["answer"])
    distractor = await mem.add_memory(scope, data["distractor"])
    assert (await mem.backfill_embeddings()).embedded == 6
    caller = Caller.embedded(scope.team_id, project_id=scope.project_id)
    keyword_only = attrs.evolve(mem.deps, semantic=None)

    plain = await memories.search(
        keyword_only, caller, project_id=scope.project_id, query=data["query"], limit=1
    )
    fused = await mem.search(scope, data["query"], limit=1)
    fused_all = await mem.search(scope, data["query"], limit=10)

    assert [r.observation.id for r in plain] == [distractor.id]
    assert [r.observation.id for r in fused] == [answer.id]
    assert fused[0].similarity is not None and fused[0].similarity > 0.9
    assert fused[0].score == pytest.approx(
        next(r.score for r in fused_all if r.observation.id == answer.id)
    )
    assert fused[0].excerpt  # evidence as usual
    # Every candidate is still returned, each once.
    assert len({r.observation.id for r in fused_all}) == 6


async def test_a_failing_embedder_at_query_time_answers_with_bm25(
    mem: Memory, fake: FakeEmbeddingsServer, caplog: pytest.LogCaptureFixture
) -> None:
    scope = await _scope(mem)
    data = _corpus()
    for text in [*data["fillers"], data["answer"]]:
        await mem.add_memory(scope, text)
    distractor = await mem.add_memory(scope, data["distractor"])
    await mem.backfill_embeddings()
    requests = len(fake.requests)
    fake.fail_next(1, status=500, message=f"model crashed; key {API_KEY}")

    with caplog.at_level(logging.WARNING):
        first = await mem.search(scope, data["query"], limit=1)
        second = await mem.search(scope, data["query"], limit=1)

    assert [r.observation.id for r in first] == [distractor.id]
    assert [r.observation.id for r in second] == [distractor.id]
    assert first[0].similarity is None
    # One failed call; the next search does not wait for it again (cooldown).
    assert len(fake.requests) == requests + 1
    assert "searching by keywords alone" in caplog.text
    assert API_KEY not in caplog.text


async def test_a_slow_embedder_at_query_time_answers_with_bm25(
    mem: Memory, fake: FakeEmbeddingsServer
) -> None:
    scope = await _scope(mem)
    data = _corpus()
    for text in [*data["fillers"], data["answer"]]:
        await mem.add_memory(scope, text)
    distractor = await mem.add_memory(scope, data["distractor"])
    await mem.backfill_embeddings()
    assert mem.deps.semantic is not None
    mem.deps.semantic.query_timeout = 0.2
    fake.delay_next(3.0)

    found = await mem.search(scope, data["query"], limit=1)

    assert [r.observation.id for r in found] == [distractor.id]


# -- (d) off by default: nothing calls an embedder, results unchanged ------------------------


async def test_with_embeddings_off_nothing_is_embedded_and_results_are_bm25(
    plain: Memory, fake: FakeEmbeddingsServer
) -> None:
    scope = await _scope(plain)
    data = _corpus()
    for text in [*data["fillers"], data["answer"], data["distractor"]]:
        await plain.add_memory(scope, text)
    await _ingest_tool_uses(plain, scope)
    await plain.drain()

    assert plain.semantic_recall is None
    found = await plain.search(scope, data["query"], limit=10)
    async with plain.storage.unit_of_work() as uow:
        hits = await uow.search.search(
            scope.team_id, scope.project_id, parse_query(data["query"]), limit=10
        )
    assert [(r.observation.id, r.score) for r in found] == [
        (h.observation.id, h.score) for h in hits
    ]
    assert all(r.similarity is None for r in found)
    assert fake.requests == []
    async with plain.storage.unit_of_work() as uow:
        listed, _ = await uow.observations.list(scope.team_id, scope.project_id, Page(limit=20))
        stored = await uow.vectors.for_observations(
            scope.team_id, scope.project_id, MODEL, [o.id for o in listed]
        )
    assert len(listed) == 8 and stored == {}


# -- the HTTP server: reported in /v1/info, nothing inline on POST /v1/memories ----------------


async def test_http_reports_semantic_recall_and_memories_do_not_wait_for_the_embedder(
    mem: Memory, plain: Memory, fake: FakeEmbeddingsServer, aiohttp_client: Any
) -> None:
    from claude_mem_http.server.app import create_app

    scope = await _scope(mem)
    issued = await mem.create_api_key(
        team_id=scope.team_id,
        project_id=scope.project_id,
        scopes=["memories:read", "memories:write"],
    )
    client = await aiohttp_client(create_app(mem, background_generation=False))
    headers = {"Authorization": f"Bearer {issued.raw_key}"}

    info = await (await client.get("/v1/info")).json()
    written = await client.post(
        "/v1/memories",
        json={"projectId": scope.project_id, "content": "The staging cluster is eu-west"},
        headers=headers,
    )
    requests_after_write = len(fake.requests)
    found = await client.post(
        "/v1/search",
        json={"projectId": scope.project_id, "query": "staging cluster"},
        headers=headers,
    )
    off = await aiohttp_client(create_app(plain, background_generation=False))
    off_info = await (await off.get("/v1/info")).json()

    assert info["semanticRecall"] == {"enabled": True, "model": MODEL}
    assert off_info["semanticRecall"] == {"enabled": False, "model": None}
    assert written.status == 201, await written.text()
    assert requests_after_write == 0  # the write answered without the embedder
    assert found.status == 200
    body = await found.json()
    assert [r["content"] for r in body["observations"]] == ["The staging cluster is eu-west"]
    # On the wire: null until the hit has a vector to compare (BM25 alone ranked it).
    assert body["observations"][0]["similarity"] is None
    assert API_KEY not in json.dumps(info)
    assert await _missing(mem, scope) == 1  # left for the backfill


async def test_the_server_that_generates_also_backfills(
    mem: Memory, fake: FakeEmbeddingsServer, aiohttp_client: Any
) -> None:
    from claude_mem_http.server.app import create_app

    scope = await _scope(mem)
    await mem.add_memory(scope, "Backups run at 02:00 UTC")
    assert await _missing(mem, scope) == 1

    await aiohttp_client(create_app(mem, background_generation=True))
    for _ in range(300):
        if not await _missing(mem, scope):
            break
        await asyncio.sleep(0.05)

    assert await _missing(mem, scope) == 0
