"""OpenAICompatibleEmbedder and embedder_from_url: the real ``openai`` SDK against the local
fake embeddings server (never the internet)."""

from __future__ import annotations

import base64
import logging
import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from claude_mem_core.adapters.openai_embedder import (
    OpenAICompatibleEmbedder,
    embedder_from_url,
)
from claude_mem_core.domain.fusion import pack_vector, unpack_vector
from claude_mem_core.errors import ConfigurationError, MissingExtra, ProviderError
from claude_mem_core.testing.fake_embeddings import FakeEmbeddingsServer, fake_embedding

SECRET_KEY = "sk-proj-embed-SECRET-0123456789abcdef"
MODEL = "text-embedding-test"

MakeEmbedder = Callable[..., OpenAICompatibleEmbedder]


@pytest.fixture
async def make_embedder(fake: FakeEmbeddingsServer) -> AsyncIterator[MakeEmbedder]:
    made: list[OpenAICompatibleEmbedder] = []

    def make(**kwargs: Any) -> OpenAICompatibleEmbedder:
        options: dict[str, Any] = {
            "api_key": SECRET_KEY,
            "base_url": fake.openai_base_url,
            "timeout": 5.0,
            "backoff": 0.001,
            "max_backoff": 0.05,
        }
        options.update(kwargs)
        embedder = OpenAICompatibleEmbedder(options.pop("model", MODEL), **options)
        made.append(embedder)
        return embedder

    yield make
    for embedder in made:
        await embedder.aclose()


@pytest.fixture
def embedder(make_embedder: MakeEmbedder) -> OpenAICompatibleEmbedder:
    return make_embedder()


async def failure(embedder: OpenAICompatibleEmbedder, texts: list[str]) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await embedder.embed(texts)
    assert SECRET_KEY not in str(info.value)
    assert SECRET_KEY not in repr(info.value)
    return info.value


# ------------------------------------------------------------------------------------ success


async def test_vectors_request_body_and_credentials(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder
) -> None:
    texts = ["fix the login redirect", "database migration failed"]

    vectors = await embedder.embed(texts)

    assert vectors == [fake_embedding(text, fake.dimensions) for text in texts]
    assert embedder.dimensions == fake.dimensions
    sent = fake.last_request
    assert sent.path == "/v1/embeddings"
    assert sent.json == {"model": MODEL, "input": texts, "encoding_format": "float"}
    assert sent.headers["authorization"] == f"Bearer {SECRET_KEY}"
    assert sent.api_key == SECRET_KEY


async def test_no_texts_sends_no_request(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder
) -> None:
    assert await embedder.embed([]) == []
    assert fake.requests == []
    assert embedder.dimensions is None


async def test_batches_keep_input_order(
    fake: FakeEmbeddingsServer, make_embedder: MakeEmbedder
) -> None:
    embedder = make_embedder(batch_size=3)
    texts = [f"passage number {i} about topic {i % 3}" for i in range(7)]

    vectors = await embedder.embed(texts)

    assert [r.inputs for r in fake.requests] == [texts[0:3], texts[3:6], texts[6:7]]
    assert vectors == [fake_embedding(text, fake.dimensions) for text in texts]


async def test_default_batch_size_is_64(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder
) -> None:
    texts = [f"text {i}" for i in range(130)]

    vectors = await embedder.embed(texts)

    assert [len(r.inputs) for r in fake.requests] == [64, 64, 2]
    assert len(vectors) == 130


async def test_results_are_ordered_by_index(make_embedder: MakeEmbedder) -> None:
    async with FakeEmbeddingsServer(dimensions=8, reverse_order=True) as server:
        embedder = make_embedder(base_url=server.openai_base_url)
        texts = ["alpha", "beta", "gamma", "delta"]

        vectors = await embedder.embed(texts)

    assert vectors == [fake_embedding(text, 8) for text in texts]


async def test_shuffled_indices_are_reordered(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder
) -> None:
    fake.mangle_next(lambda p: {**p, "data": [p["data"][i] for i in (2, 0, 3, 1)]})
    texts = ["one", "two", "three", "four"]

    assert await embedder.embed(texts) == [fake_embedding(t, fake.dimensions) for t in texts]


async def test_missing_indices_fall_back_to_list_order(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder
) -> None:
    def strip_index(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "data": [{"embedding": d["embedding"]} for d in payload["data"]]}

    fake.mangle_next(strip_index)
    texts = ["one", "two"]

    assert await embedder.embed(texts) == [fake_embedding(t, fake.dimensions) for t in texts]


async def test_base64_answer_is_decoded(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder
) -> None:
    def to_base64(payload: dict[str, Any]) -> dict[str, Any]:
        for item in payload["data"]:
            item["embedding"] = base64.b64encode(pack_vector(item["embedding"])).decode()
        return payload

    fake.mangle_next(to_base64)

    [vector] = await embedder.embed(["a server that ignores encoding_format"])

    exact = fake_embedding("a server that ignores encoding_format", fake.dimensions)
    assert vector == unpack_vector(pack_vector(exact))  # float32, as sent
    assert vector != exact


async def test_configured_dimensions_are_sent_and_enforced(
    fake: FakeEmbeddingsServer, make_embedder: MakeEmbedder
) -> None:
    embedder = make_embedder(dimensions=8)
    assert embedder.dimensions == 8

    [vector] = await embedder.embed(["shorter vectors please"])

    assert fake.last_request.json["dimensions"] == 8
    assert vector == fake_embedding("shorter vectors please", 8)


# ------------------------------------------------------------------------------------ retries


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_retryable_status_then_success(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder, status: int
) -> None:
    fake.fail_next(2, status=status)

    vectors = await embedder.embed(["retry me"])

    assert vectors == [fake_embedding("retry me", fake.dimensions)]
    assert len(fake.requests) == 3


async def test_retries_are_bounded(fake: FakeEmbeddingsServer, make_embedder: MakeEmbedder) -> None:
    embedder = make_embedder(max_retries=2)
    fake.fail_next(5, status=500)

    error = await failure(embedder, ["never works"])

    assert error.kind == "transient" and error.status == 500 and error.retryable
    assert len(fake.requests) == 3


async def test_retry_after_within_the_cap_is_waited_for(
    fake: FakeEmbeddingsServer, make_embedder: MakeEmbedder
) -> None:
    embedder = make_embedder(max_backoff=1.0)
    fake.fail_next(1, status=429, retry_after="0.2")

    started = time.monotonic()
    await embedder.embed(["patience"])

    assert time.monotonic() - started >= 0.2
    assert len(fake.requests) == 2


async def test_retry_after_beyond_the_cap_is_raised_not_waited_for(
    fake: FakeEmbeddingsServer, make_embedder: MakeEmbedder
) -> None:
    embedder = make_embedder(max_backoff=0.5)
    fake.fail_next(1, status=429, retry_after="30")

    error = await failure(embedder, ["too long a wait"])

    assert error.kind == "rate_limit" and error.retry_after == 30.0
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("status", "kind"), [(400, "bad_request"), (401, "auth"), (403, "auth"), (404, "bad_request")]
)
async def test_permanent_failures_are_not_retried(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder, status: int, kind: str
) -> None:
    fake.fail_next(1, status=status)

    error = await failure(embedder, ["doomed"])

    assert (error.kind, error.status, error.retryable) == (kind, status, False)
    assert len(fake.requests) == 1


async def test_input_too_long_is_context_too_long(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder
) -> None:
    fake.fail_next(
        1, status=400, message="This model's maximum context length is 8192 tokens, however..."
    )

    error = await failure(embedder, ["a very long passage"])

    assert error.kind == "context_too_long"


async def test_slow_answer_times_out_as_transient(
    fake: FakeEmbeddingsServer, make_embedder: MakeEmbedder
) -> None:
    embedder = make_embedder(timeout=0.2, max_retries=0)
    fake.delay_next(3.0)

    error = await failure(embedder, ["slow"])

    assert error.kind == "transient"
    assert "timed out" in error.message


async def test_connection_refused_is_transient_after_retries(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = OpenAICompatibleEmbedder(
        MODEL,
        api_key=SECRET_KEY,
        base_url=f"http://127.0.0.1:{closed_port}/v1",
        timeout=2.0,
        max_retries=1,
        backoff=0.0,
    )
    try:
        with caplog.at_level(logging.WARNING, logger="claude_mem_core.adapters.openai_embedder"):
            error = await failure(embedder, ["nobody home"])
    finally:
        await embedder.aclose()

    assert error.kind == "transient" and error.status is None
    assert "connection failed" in error.message
    assert any("retry 1 of 1" in record.getMessage() for record in caplog.records)


# ------------------------------------------------------------------------------------ secrecy


async def test_key_echoed_by_the_server_is_redacted_everywhere(
    make_embedder: MakeEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeEmbeddingsServer(require_api_key="sk-the-right-one") as server:
        embedder = make_embedder(base_url=server.openai_base_url)
        with caplog.at_level(logging.DEBUG):
            error = await failure(embedder, ["who am i"])
            server.fail_next(1, status=500, message=f"upstream rejected {SECRET_KEY}")
            server.require_api_key = SECRET_KEY
            await embedder.embed(["now retried with the key in a 500 body"])

    assert error.kind == "auth" and error.status == 401
    assert "Incorrect API key provided: ***" in error.message
    assert server.requests[0].api_key == SECRET_KEY  # it was sent, just never repeated
    assert any("upstream rejected ***" in record.getMessage() for record in caplog.records)
    assert SECRET_KEY not in caplog.text
    for record in caplog.records:
        assert SECRET_KEY not in record.getMessage()
    assert SECRET_KEY not in repr(embedder)


# ------------------------------------------------------------------------------------ answers


async def test_wrong_number_of_vectors_is_a_parse_error(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder
) -> None:
    fake.mangle_next(lambda p: {**p, "data": p["data"][:1]})

    error = await failure(embedder, ["one", "two"])

    assert error.kind == "parse_error" and not error.retryable
    assert "returned 1 vector for 2 texts" in error.message
    assert len(fake.requests) == 1


async def test_inconsistent_dimensions_in_one_answer(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder
) -> None:
    def shorten_second(payload: dict[str, Any]) -> dict[str, Any]:
        payload["data"][1]["embedding"] = payload["data"][1]["embedding"][:4]
        return payload

    fake.mangle_next(shorten_second)

    error = await failure(embedder, ["one", "two"])

    assert error.kind == "parse_error"
    assert "inconsistent dimensions [4, 16]" in error.message
    assert embedder.dimensions is None


async def test_dimensions_must_stay_the_same_across_calls(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder
) -> None:
    await embedder.embed(["learn the length"])
    assert embedder.dimensions == fake.dimensions
    fake.mangle_next(lambda p: {**p, "data": [{**d, "embedding": [1.0] * 8} for d in p["data"]]})

    error = await failure(embedder, ["a different model behind the same URL"])

    assert error.kind == "parse_error"
    assert "returned 8-dimensional vectors; expected 16 dimensions" in error.message


async def test_configured_dimensions_ignored_by_the_server(
    fake: FakeEmbeddingsServer, make_embedder: MakeEmbedder
) -> None:
    embedder = make_embedder(dimensions=8)
    fake.mangle_next(lambda p: {**p, "data": [{**d, "embedding": [1.0] * 12} for d in p["data"]]})

    error = await failure(embedder, ["ignored"])

    assert "expected 8 dimensions" in error.message


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("not a list", "no 'data' list"),
        ([{"index": 0, "embedding": [0.1]}, {"index": 0, "embedding": [0.2]}], "indices [0, 0]"),
        ([{"index": 0, "embedding": [0.1]}, {"index": 2, "embedding": [0.2]}], "indices [0, 2]"),
        ([{"index": 0, "embedding": [0.1]}, {"embedding": [0.2]}], "indices [0, None]"),
        ([{"index": 0, "embedding": []}, {"index": 1, "embedding": [0.2]}], "no vector at"),
        ([{"index": 0, "embedding": None}, {"index": 1, "embedding": [0.2]}], "no vector at"),
        ([{"index": 0, "embedding": [0.1]}, {"index": 1, "embedding": ["x"]}], "non-numeric"),
        ([{"index": 0, "embedding": [math.nan]}, {"index": 1, "embedding": [0.2]}], "non-finite"),
        ([{"index": 0, "embedding": "@@@"}, {"index": 1, "embedding": [0.2]}], "undecodable"),
    ],
)
async def test_unusable_answers_are_parse_errors(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder, data: object, problem: str
) -> None:
    fake.mangle_next(lambda p: {**p, "data": data})

    error = await failure(embedder, ["one", "two"])

    assert error.kind == "parse_error"
    assert problem in error.message


async def test_error_inside_a_200_answer_is_classified_and_retried(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder
) -> None:
    fake.mangle_next(lambda p: {"error": {"message": "upstream timeout", "code": 504}})

    assert await embedder.embed(["proxied"]) == [fake_embedding("proxied", fake.dimensions)]
    assert len(fake.requests) == 2

    fake.mangle_next(lambda p: {"error": {"message": f"bad key {SECRET_KEY}", "code": 401}})
    error = await failure(embedder, ["proxied"])
    assert (error.kind, error.status) == ("auth", 401)
    assert "bad key ***" in error.message


async def test_invalid_json_is_a_parse_error(
    fake: FakeEmbeddingsServer, embedder: OpenAICompatibleEmbedder
) -> None:
    from claude_mem_core.testing.fake_embeddings import Fail

    fake.push(Fail(status=200, body='{"data": [{"index": 0, "embed'))

    error = await failure(embedder, ["truncated"])

    assert error.kind == "parse_error"


# ------------------------------------------------------------------------------------ misuse


async def test_a_single_string_is_refused(embedder: OpenAICompatibleEmbedder) -> None:
    with pytest.raises(TypeError, match="not a single string"):
        await embedder.embed("one text, not a list")
    with pytest.raises(TypeError, match="takes strings"):
        await embedder.embed(["fine", 42])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": " "}, "a model is required"),
        ({"dimensions": 0}, "dimensions must be at least 1"),
        ({"batch_size": 0}, "batch size must be at least 1"),
        ({"timeout": 0}, "timeout must be positive"),
        ({"max_retries": -1}, "must not be negative"),
        ({"backoff": -1.0}, "must not be negative"),
    ],
)
def test_bad_options_are_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    options: dict[str, Any] = {"model": MODEL, **kwargs}
    with pytest.raises(ConfigurationError, match=message):
        OpenAICompatibleEmbedder(options.pop("model"), **options)


# ------------------------------------------------------------------------------------ factory


async def test_factory_with_the_openai_plus_scheme(fake: FakeEmbeddingsServer) -> None:
    embedder = embedder_from_url(
        "openai+" + fake.openai_base_url + "/", api_key=SECRET_KEY, model=MODEL
    )
    try:
        assert await embedder.embed(["hello"]) == [fake_embedding("hello", fake.dimensions)]
    finally:
        await embedder.aclose()
    assert embedder.name == "openai-compatible"
    assert fake.last_request.path == "/v1/embeddings"
    assert fake.last_request.api_key == SECRET_KEY


async def test_factory_without_key_sends_a_placeholder(fake: FakeEmbeddingsServer) -> None:
    embedder = embedder_from_url(fake.url("/v1/embeddings"), api_key=None, model=MODEL)
    try:
        await embedder.embed(["local server"])
    finally:
        await embedder.aclose()
    assert fake.last_request.path == "/v1/embeddings"
    assert fake.last_request.api_key == "local"


@pytest.mark.parametrize(
    ("url", "base_url", "name"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com/v1", "openai"),
        ("openai+https://API.OpenAI.com/v1/", "https://API.OpenAI.com/v1", "openai"),
        ("openai+http://127.0.0.1:11434/v1", "http://127.0.0.1:11434/v1", "openai-compatible"),
        ("OPENAI+HTTP://localhost:8080", "http://localhost:8080", "openai-compatible"),
        ("http://[::1]:1234/v1/embeddings", "http://[::1]:1234/v1", "openai-compatible"),
    ],
)
async def test_factory_url_forms(url: str, base_url: str, name: str) -> None:
    embedder = embedder_from_url(url, api_key=SECRET_KEY, model=MODEL)
    try:
        assert isinstance(embedder, OpenAICompatibleEmbedder)
        assert (embedder.base_url, embedder.name, embedder.model) == (base_url, name, MODEL)
    finally:
        await embedder.aclose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/v1", "unsupported embeddings URL scheme"),
        ("ollama://127.0.0.1:11434", "unsupported embeddings URL scheme"),
        ("127.0.0.1:11434/v1", "unsupported embeddings URL scheme"),
        ("openai+http:///v1", "needs a host"),
        ("http://127.0.0.1:notaport/v1", "malformed embeddings URL"),
        (f"https://user:{SECRET_KEY}@api.example.com/v1", "must not hold credentials"),
        ("https://api.example.com/v1?api-version=1", "query string or fragment"),
    ],
)
def test_factory_refuses_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        embedder_from_url(url, api_key=None, model=MODEL)
    assert SECRET_KEY not in str(info.value)


def test_factory_needs_a_model() -> None:
    with pytest.raises(ConfigurationError, match="a model is required"):
        embedder_from_url("http://127.0.0.1:1/v1", api_key=None, model="")


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(MissingExtra, match=r"claude-mem-py\[openai\]"):
        embedder_from_url("http://127.0.0.1:1/v1", api_key=None, model=MODEL)


def test_importing_the_blocks_loads_no_sdk() -> None:
    code = (
        "import sys\n"
        "import claude_mem_core.adapters.openai_embedder\n"
        "import claude_mem_core.ports.embedder, claude_mem_core.domain.fusion\n"
        "print(sorted({'openai', 'aiohttp'} & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
