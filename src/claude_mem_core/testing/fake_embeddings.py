"""A scriptable local embeddings server for tests and benchmarks.

:class:`FakeEmbeddingsServer` speaks the OpenAI embeddings wire format, ``POST <any
prefix>/embeddings``, on ``127.0.0.1`` with an ephemeral port, so the real ``openai`` SDK (or any
HTTP client) runs against it unchanged by pointing its ``base_url`` at
:attr:`FakeEmbeddingsServer.openai_base_url`.

Vectors are deterministic (:func:`fake_embedding`): a hashed bag of words. Each lower-cased word
lands in one of ``dimensions`` buckets with a sign fixed by its hash, counts add up and the
result is scaled to unit length. Texts sharing words therefore have a higher cosine than texts
that share none, which is enough to test ranking without a model. A request's ``dimensions``
field is honoured; ``encoding_format`` may be ``float`` (the default) or ``base64``
(little-endian float32, as OpenAI sends it).

Each request consumes one queued behaviour, if any; otherwise it is answered normally::

    async with FakeEmbeddingsServer(dimensions=32) as fake:
        fake.fail_next(2, status=429, retry_after="0")
        ...  # the first two requests get a 429, later ones vectors
        assert fake.last_request.inputs == ["a text"]
        assert fake.last_request.api_key == "sk-test"

Behaviours: :class:`Fail` (any status, OpenAI error JSON), :class:`Mangle` (answer normally,
then pass the JSON payload through a function: for wrong counts, dimensions or indices) and
:class:`Delay` (sleep, then run another behaviour; for timeouts). ``reverse_order=True`` lists
``data`` items last index first, as a server may, with their ``index`` fields intact.

Credentials: any presented key (or none) is accepted unless ``require_api_key`` is set; a wrong
key then gets a 401 whose message repeats the presented key verbatim, the worst case a client's
redaction must handle. Request validation (a JSON object with ``model`` and ``input``, at most
``max_inputs`` strings) answers 400 without consuming a behaviour.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from aiohttp import web
from attrs import field, frozen

from claude_mem_core.domain.fusion import pack_vector
from claude_mem_core.testing.local_server import LocalServer

DEFAULT_DIMENSIONS = 64
DEFAULT_MAX_INPUTS = 2048

_WORD = re.compile(r"\w+", re.UNICODE)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}
_DEFAULT_MESSAGES = {
    400: "Invalid request.",
    401: "Incorrect API key provided.",
    404: "The requested resource could not be found.",
    429: "Rate limit reached for requests.",
    500: "The server had an error while processing your request.",
    503: "Service unavailable.",
}


def fake_embedding(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The unit vector the fake server returns for ``text``: a signed, hashed bag of words.

    A text without words is hashed whole, so no vector is ever all zeros.
    """
    if dimensions < 1:
        raise ValueError(f"dimensions must be at least 1 (got {dimensions})")
    vector = [0.0] * dimensions
    for token in _WORD.findall(text.lower()) or [text]:
        digest = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
        vector[digest % dimensions] += 1.0 if (digest >> 63) & 1 else -1.0
    norm = math.hypot(*vector)
    if norm == 0.0:  # opposite signs cancelled out; fall back to one bucket
        vector[0], norm = 1.0, 1.0
    return [value / norm for value in vector]


@frozen(kw_only=True)
class Fail:
    """An error response: OpenAI's error JSON built from ``message`` (``body`` overrides it)."""

    status: int = 429
    message: str | None = None
    headers: Mapping[str, str] = field(factory=dict)
    body: Mapping[str, Any] | str | None = None


@frozen(kw_only=True)
class Mangle:
    """A normal answer whose JSON payload is first passed through ``transform``."""

    transform: Callable[[dict[str, Any]], Any]


@frozen(kw_only=True)
class Delay:
    """Sleep ``seconds`` before running ``then`` (a normal answer when None)."""

    seconds: float
    then: Behaviour | None = None


Behaviour: TypeAlias = "Fail | Mangle | Delay"


@frozen(kw_only=True)
class RecordedEmbeddingRequest:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: Mapping[str, str]
    json: Any
    received_at: float

    @property
    def api_key(self) -> str | None:
        """The credential presented as ``Authorization: Bearer <key>``."""
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return None

    @property
    def inputs(self) -> list[str]:
        """The texts of the request, as a list even when ``input`` was a single string."""
        raw = self.json.get("input") if isinstance(self.json, dict) else None
        if isinstance(raw, str):
            return [raw]
        return [item for item in raw if isinstance(item, str)] if isinstance(raw, list) else []


class FakeEmbeddingsServer(LocalServer):
    """A local HTTP server imitating an OpenAI-compatible ``/embeddings`` endpoint.

    Use as an async context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        *,
        dimensions: int = DEFAULT_DIMENSIONS,
        require_api_key: str | None = None,
        max_inputs: int = DEFAULT_MAX_INPUTS,
        reverse_order: bool = False,
        record: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if dimensions < 1 or max_inputs < 1:
            raise ValueError("dimensions and max_inputs must be at least 1")
        self.dimensions = dimensions
        self.require_api_key = require_api_key
        self.max_inputs = max_inputs
        self.reverse_order = reverse_order
        self.record = record
        self.queue: deque[Behaviour] = deque()
        self.requests: list[RecordedEmbeddingRequest] = []
        super().__init__(host=host, port=port)
        self._ids = itertools.count(1)

    # -- scripting ---------------------------------------------------------------------------

    def push(self, *behaviours: Behaviour) -> FakeEmbeddingsServer:
        """Queue behaviours; each answers one request, in order."""
        self.queue.extend(behaviours)
        return self

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 429,
        message: str | None = None,
        retry_after: str | None = None,
    ) -> FakeEmbeddingsServer:
        """Answer the next ``count`` requests with ``status`` (``retry-after`` when given)."""
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        return self.push(
            *(Fail(status=status, message=message, headers=headers) for _ in range(count))
        )

    def mangle_next(self, transform: Callable[[dict[str, Any]], Any]) -> FakeEmbeddingsServer:
        """Answer the next request with ``transform`` applied to the normal JSON payload."""
        return self.push(Mangle(transform=transform))

    def delay_next(self, seconds: float, then: Behaviour | None = None) -> FakeEmbeddingsServer:
        return self.push(Delay(seconds=seconds, then=then))

    @property
    def last_request(self) -> RecordedEmbeddingRequest:
        if not self.requests:
            raise AssertionError("the fake embeddings server has received no request")
        return self.requests[-1]

    def reset(self) -> None:
        """Forget queued behaviours and recorded requests."""
        self.queue.clear()
        self.requests.clear()

    # -- routes and addresses -----------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/embeddings", self._handle)
        app.router.add_post("/{prefix:.+}/embeddings", self._handle)

    @property
    def openai_base_url(self) -> str:
        """For ``AsyncOpenAI(base_url=...)``: ends in ``/v1``."""
        return f"{self.base_url}/v1"

    def url(self, path: str) -> str:
        """Any base URL on this server, e.g. ``fake.url("/api/v1")``."""
        return self.base_url + "/" + path.lstrip("/")

    # -- handler -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if self.record:
            self.requests.append(
                RecordedEmbeddingRequest(
                    method=request.method,
                    path=request.path,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    json=body,
                    received_at=time.monotonic(),
                )
            )
        if self.require_api_key is not None:
            auth = request.headers.get("authorization", "")
            key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            if key != self.require_api_key:
                # Deliberately verbatim: clients must redact what servers echo back.
                return self._error(Fail(status=401, message=f"Incorrect API key provided: {key}"))
        problem = self._invalid(body)
        if problem is not None:
            return self._error(Fail(status=400, message=problem))
        behaviour: Behaviour | None = self.queue.popleft() if self.queue else None
        while isinstance(behaviour, Delay):
            if behaviour.seconds > 0:
                try:
                    await asyncio.wait_for(self.closing.wait(), timeout=behaviour.seconds)
                except TimeoutError:
                    pass
                else:  # the server is shutting down
                    return web.Response(status=503)
            behaviour = behaviour.then
        if isinstance(behaviour, Fail):
            return self._error(behaviour)
        payload: Any = self._payload(body)
        if isinstance(behaviour, Mangle):
            payload = behaviour.transform(payload)
        return web.json_response(payload, headers={"x-request-id": self._request_id()})

    def _invalid(self, body: Any) -> str | None:
        """Why ``body`` is not a request this server answers, or None."""
        if not isinstance(body, dict):
            return "Request body is not a JSON object."
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return "you must provide a model parameter"
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts:
            return "'input' must be a string or a non-empty array of strings"
        if not all(isinstance(text, str) for text in texts):
            return "the fake server only embeds strings, not token arrays"
        if len(texts) > self.max_inputs:
            return f"'input' must have at most {self.max_inputs} items (got {len(texts)})"
        dims = body.get("dimensions")
        if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
            return "'dimensions' must be a positive integer"
        if body.get("encoding_format") not in (None, "float", "base64"):
            return "'encoding_format' must be 'float' or 'base64'"
        return None

    def _payload(self, body: Mapping[str, Any]) -> dict[str, Any]:
        texts = body["input"]
        texts = [texts] if isinstance(texts, str) else texts
        dims = body.get("dimensions") or self.dimensions
        as_base64 = body.get("encoding_format") == "base64"
        data: list[dict[str, Any]] = []
        tokens = 0
        for index, text in enumerate(texts):
            vector = fake_embedding(text, dims)
            tokens += max(1, len(_WORD.findall(text)))
            data.append(
                {
                    "object": "embedding",
                    "index": index,
                    "embedding": (
                        base64.b64encode(pack_vector(vector)).decode("ascii")
                        if as_base64
                        else vector
                    ),
                }
            )
        if self.reverse_order:
            data.reverse()
        return {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _error(self, fail: Fail) -> web.Response:
        headers = {"x-request-id": self._request_id(), **fail.headers}
        if isinstance(fail.body, str):
            return web.Response(status=fail.status, text=fail.body, headers=headers)
        if fail.body is not None:
            return web.json_response(dict(fail.body), status=fail.status, headers=headers)
        status = fail.status
        message = fail.message or _DEFAULT_MESSAGES.get(status, f"HTTP {status}")
        error_type = _ERROR_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        payload = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        return web.json_response(payload, status=status, headers=headers)

    def _request_id(self) -> str:
        return f"req_fake{next(self._ids):020d}"


__all__ = [
    "DEFAULT_DIMENSIONS",
    "Behaviour",
    "Delay",
    "Fail",
    "FakeEmbeddingsServer",
    "Mangle",
    "RecordedEmbeddingRequest",
    "fake_embedding",
]
