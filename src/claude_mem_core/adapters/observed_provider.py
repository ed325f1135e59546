"""A provider that reports each call it makes: who answered, how long it took, the tokens
it spent, or the kind of failure. For metrics (the worker's Prometheus families) and any
other observer, without the generation service knowing about them; and, with a tracer, a
span per call (provider, model, purpose and tokens: never the prompt or the answer).

The observer is a plain callable; it runs after the call, on the event loop, and must be
quick. A call cancelled (lease lost, shutdown) is not reported: it neither succeeded nor
failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from attrs import frozen

from claude_mem_core.errors import ProviderError
from claude_mem_core.ports.provider import GenerationRequest, GenerationResult, Provider
from claude_mem_core.ports.tracing import NOOP_TRACER, Tracer

UNEXPECTED = "unexpected"  # the kind reported for an exception that is not a ProviderError


@frozen(kw_only=True)
class ProviderCall:
    """One provider call as observed. ``error_kind`` is None for a success, else the
    :class:`ProviderError` kind (``transient``, ``rate_limit``, ``auth`` …) or
    :data:`UNEXPECTED`."""

    provider: str
    model: str | None
    purpose: str
    seconds: float
    input_tokens: int | None = None
    output_tokens: int | None = None
    error_kind: str | None = None


class ObservedProvider:
    """``inner``, with every ``generate`` reported to ``report`` (when given) and traced."""

    def __init__(
        self,
        inner: Provider,
        report: Callable[[ProviderCall], None] | None,
        *,
        tracer: Tracer = NOOP_TRACER,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self._report = report
        self._tracer = tracer

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if not self._tracer.enabled:
            return await self._observed(request)
        with self._tracer.span(
            f"chat {self.model or self.name}",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": self.name,
                "gen_ai.request.model": self.model,
                "claude_mem.purpose": request.purpose,
                "claude_mem.events": len(request.events),
            },
            kind="client",
        ) as span:
            try:
                result = await self._observed(request)
            except ProviderError as exc:
                span.set_attribute("claude_mem.provider_error", exc.kind)
                raise
            span.set_attribute("gen_ai.response.model", result.model)
            span.set_attribute("gen_ai.usage.input_tokens", result.usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", result.usage.output_tokens)
            return result

    async def _observed(self, request: GenerationRequest) -> GenerationResult:
        started = time.perf_counter()
        try:
            result = await self.inner.generate(request)
        except ProviderError as exc:
            self._failed(request, started, exc.kind)
            raise
        except Exception:
            self._failed(request, started, UNEXPECTED)
            raise
        if self._report is not None:
            self._report(
                ProviderCall(
                    provider=result.provider,
                    model=result.model,
                    purpose=request.purpose,
                    seconds=time.perf_counter() - started,
                    input_tokens=result.usage.input_tokens,
                    output_tokens=result.usage.output_tokens,
                )
            )
        return result

    def _failed(self, request: GenerationRequest, started: float, kind: str) -> None:
        if self._report is not None:
            self._report(
                ProviderCall(
                    provider=self.name,
                    model=self.model,
                    purpose=request.purpose,
                    seconds=time.perf_counter() - started,
                    error_kind=kind,
                )
            )

    async def close(self) -> None:
        await self.inner.close()
