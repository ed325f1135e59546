"""The provider port: one LLM call that turns a prompt into text.

Providers know nothing of jobs or storage. They take a :class:`GenerationRequest` (the
prompt built by :mod:`claude_mem_core.generation.prompt` plus the events it came from, which
the offline provider reads directly) and return the raw text and usage, or raise
:class:`claude_mem_core.errors.ProviderError` with a classified ``kind``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

from attrs import field, frozen

from claude_mem_core.domain.models import AgentEvent

GenerationPurpose = Literal["observations", "summary"]


def _events(values: Iterable[AgentEvent]) -> tuple[AgentEvent, ...]:
    return tuple(values)


def _names(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@frozen(kw_only=True)
class GenerationRequest:
    prompt: str
    purpose: GenerationPurpose = "observations"
    events: Sequence[AgentEvent] = field(factory=tuple, converter=_events)
    allowed_types: Sequence[str] = field(factory=tuple, converter=_names)
    max_output_tokens: int = 4096
    temperature: float = 0.3


@frozen(kw_only=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None


@frozen(kw_only=True)
class GenerationResult:
    text: str
    provider: str
    model: str | None
    usage: Usage = field(factory=Usage)


class Provider(Protocol):
    """Adapters: Anthropic, OpenAI-compatible (OpenAI, OpenRouter, Gemini, local), offline."""

    name: str
    model: str | None

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    async def close(self) -> None: ...
