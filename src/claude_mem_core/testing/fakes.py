"""Deterministic doubles for the ports, shipped for embedders' tests too."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from claude_mem_core.errors import ProviderError
from claude_mem_core.ports.clock import truncate_ms
from claude_mem_core.ports.provider import GenerationRequest, GenerationResult, Usage

Reply = str | ProviderError | Callable[[GenerationRequest], str]


class ScriptedProvider:
    """Answers from a script: each call takes the next reply (text, an error to raise, or a
    function of the request); when the script runs out, ``default`` answers."""

    name = "scripted"

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        default: Reply | None = None,
        model: str = "scripted-1",
    ) -> None:
        self.script: deque[Reply] = deque(replies)
        self.default = default
        self.model = model
        self.requests: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self.requests.append(request)
        reply = self.script.popleft() if self.script else self.default
        if reply is None:
            raise AssertionError("ScriptedProvider ran out of replies")
        if isinstance(reply, ProviderError):
            raise reply
        text = reply(request) if callable(reply) else reply
        return GenerationResult(
            text=text,
            provider=self.name,
            model=self.model,
            usage=Usage(input_tokens=len(request.prompt) // 4, output_tokens=len(text) // 4),
        )

    async def close(self) -> None:
        return None


class FixedClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = truncate_ms(start or datetime(2026, 1, 1, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current = truncate_ms(self.current + timedelta(seconds=seconds))


class SequentialIds:
    def __init__(self, prefix: str = "id") -> None:
        self.prefix = prefix
        self.n = 0

    def new_id(self) -> str:
        self.n += 1
        return f"{self.prefix}-{self.n:06d}"
