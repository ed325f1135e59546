"""The fake embeddings server on the wire (plain aiohttp, no SDK) and its vectors."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_mem_core.domain.fusion import cosine, pack_vector, unpack_vector
from claude_mem_core.testing.fake_embeddings import (
    Delay,
    Fail,
    FakeEmbeddingsServer,
    fake_embedding,
)


async def post(
    url: str, body: object, *, key: str | None = "sk-test"
) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as response,
    ):
        text = await response.text()
        headers = {name.lower(): value for name, value in response.headers.items()}
        try:
            return response.status, headers, json.loads(text)
        except ValueError:
            return response.status, headers, text


# ------------------------------------------------------------------------------------ vectors


@given(st.text(max_size=80), st.integers(min_value=1, max_value=64))
def test_vectors_are_deterministic_unit_vectors(text: str, dimensions: int) -> None:
    vector = fake_embedding(text, dimensions)

    assert len(vector) == dimensions
    assert math.hypot(*vector) == pytest.approx(1.0)
    assert vector == fake_embedding(text, dimensions)


def test_shared_words_mean_higher_cosine() -> None:
    query = fake_embedding("login redirect bug", 256)
    related = fake_embedding("Fixed the login redirect in auth middleware", 256)
    unrelated = fake_embedding("database migration for invoices", 256)

    assert cosine(query, related) > 0.4
    assert cosine(query, related) > cosine(query, unrelated)
    assert fake_embedding("Login, REDIRECT!", 256) == fake_embedding("login redirect", 256)


def test_wordless_text_still_has_a_vector() -> None:
    assert math.hypot(*fake_embedding("", 8)) == pytest.approx(1.0)
    assert math.hypot(*fake_embedding("?!", 8)) == pytest.approx(1.0)


def test_dimensions_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fake_embedding("x", 0)
    with pytest.raises(ValueError, match="at least 1"):
        FakeEmbeddingsServer(dimensions=0)


# ------------------------------------------------------------------------------------ wire


async def test_openai_wire_format(fake: FakeEmbeddingsServer) -> None:
    status, headers, body = await post(
        fake.openai_base_url + "/embeddings", {"model": "m", "input": ["a b", "c"]}
    )

    assert status == 200
    assert headers["x-request-id"].startswith("req_fake")
    assert body["object"] == "list" and body["model"] == "m"
    assert body["data"] == [
        {"object": "embedding", "index": 0, "embedding": fake_embedding("a b", fake.dimensions)},
        {"object": "embedding", "index": 1, "embedding": fake_embedding("c", fake.dimensions)},
    ]
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert fake.last_request.inputs == ["a b", "c"]
    assert fake.last_request.api_key == "sk-test"


async def test_any_prefix_single_string_and_dimensions(fake: FakeEmbeddingsServer) -> None:
    status, _, body = await post(
        fake.url("/api/v1/embeddings"), {"model": "m", "input": "solo", "dimensions": 5}
    )

    assert status == 200
    assert body["data"][0]["embedding"] == fake_embedding("solo", 5)
    assert fake.last_request.inputs == ["solo"]
    assert fake.last_request.path == "/api/v1/embeddings"


async def test_base64_encoding_is_little_endian_float32(fake: FakeEmbeddingsServer) -> None:
    _, _, body = await post(
        fake.url("/embeddings"), {"model": "m", "input": ["x"], "encoding_format": "base64"}
    )

    raw = base64.b64decode(body["data"][0]["embedding"])
    assert raw == pack_vector(fake_embedding("x", fake.dimensions))
    assert unpack_vector(raw) == pytest.approx(fake_embedding("x", fake.dimensions), rel=1e-6)


async def test_reverse_order_keeps_indices() -> None:
    async with FakeEmbeddingsServer(dimensions=4, reverse_order=True) as server:
        _, _, body = await post(server.url("/v1/embeddings"), {"model": "m", "input": ["a", "b"]})

    assert [(d["index"], d["embedding"]) for d in body["data"]] == [
        (1, fake_embedding("b", 4)),
        (0, fake_embedding("a", 4)),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (["not", "an", "object"], "not a JSON object"),
        ({"input": ["x"]}, "model parameter"),
        ({"model": "m", "input": []}, "non-empty array"),
        ({"model": "m", "input": [[1, 2, 3]]}, "token arrays"),
        ({"model": "m", "input": ["x"] * 5}, "at most 4 items"),
        ({"model": "m", "input": ["x"], "dimensions": 0}, "positive integer"),
        ({"model": "m", "input": ["x"], "encoding_format": "int8"}, "encoding_format"),
    ],
)
async def test_invalid_requests_get_400_without_consuming_behaviours(
    body: object, message: str
) -> None:
    async with FakeEmbeddingsServer(max_inputs=4) as server:
        server.fail_next(1, status=500)
        status, _, answer = await post(server.url("/v1/embeddings"), body)

        assert status == 400
        assert message in answer["error"]["message"]
        assert answer["error"]["type"] == "invalid_request_error"
        assert len(server.queue) == 1


async def test_required_key_is_checked_and_echoed(fake: FakeEmbeddingsServer) -> None:
    fake.require_api_key = "sk-right"
    status, _, body = await post(fake.url("/v1/embeddings"), {"model": "m", "input": ["x"]})
    assert status == 401
    assert body["error"] == {
        "message": "Incorrect API key provided: sk-test",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    missing, _, _ = await post(fake.url("/v1/embeddings"), {"model": "m", "input": ["x"]}, key=None)
    assert missing == 401
    ok, _, _ = await post(
        fake.url("/v1/embeddings"), {"model": "m", "input": ["x"]}, key="sk-right"
    )
    assert ok == 200
    assert [r.api_key for r in fake.requests] == ["sk-test", None, "sk-right"]


async def test_no_key_is_fine_without_require_api_key(fake: FakeEmbeddingsServer) -> None:
    status, _, _ = await post(fake.url("/v1/embeddings"), {"model": "m", "input": ["x"]}, key=None)
    assert status == 200


async def test_fail_next_then_normal_answers(fake: FakeEmbeddingsServer) -> None:
    fake.fail_next(2, status=429, retry_after="7")
    url = fake.url("/v1/embeddings")
    first, headers, body = await post(url, {"model": "m", "input": ["x"]})
    second, _, _ = await post(url, {"model": "m", "input": ["x"]})
    third, _, _ = await post(url, {"model": "m", "input": ["x"]})

    assert (first, second, third) == (429, 429, 200)
    assert headers["retry-after"] == "7"
    assert body["error"]["code"] == "rate_limit_exceeded"


async def test_custom_failures_mangles_and_delays(fake: FakeEmbeddingsServer) -> None:
    url = fake.url("/v1/embeddings")
    fake.push(Fail(status=503, body={"detail": "warming up"}), Fail(status=502, body="bad gw"))
    fake.mangle_next(lambda payload: {"data": payload["data"][:0]})
    fake.push(Delay(seconds=0.01, then=Fail(status=500)))

    assert (await post(url, {"model": "m", "input": ["x"]}))[::2] == (503, {"detail": "warming up"})
    assert (await post(url, {"model": "m", "input": ["x"]}))[::2] == (502, "bad gw")
    assert (await post(url, {"model": "m", "input": ["x"]}))[::2] == (200, {"data": []})
    status, _, body = await post(url, {"model": "m", "input": ["x"]})
    assert status == 500 and body["error"]["type"] == "server_error"


async def test_reset_and_last_request(fake: FakeEmbeddingsServer) -> None:
    with pytest.raises(AssertionError, match="no request"):
        _ = fake.last_request
    fake.fail_next(3)
    await post(fake.url("/v1/embeddings"), {"model": "m", "input": ["x"]})
    fake.reset()
    assert fake.requests == [] and len(fake.queue) == 0


async def test_record_false_keeps_no_log() -> None:
    async with FakeEmbeddingsServer(record=False) as server:
        status, _, _ = await post(server.url("/v1/embeddings"), {"model": "m", "input": ["x"]})
    assert status == 200 and server.requests == []


async def test_port_before_start_is_an_error() -> None:
    server = FakeEmbeddingsServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port
    await server.close()  # closing a server that never started is harmless
