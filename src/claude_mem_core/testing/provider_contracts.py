"""The provider contract: one suite every :class:`~claude_mem_core.ports.provider.Provider`
adapter must pass.

What the generation service relies on, whichever model answers:

* a call returns a :class:`GenerationResult` labelled with the provider's own ``name`` and
  ``model``, its text, and token counts that are unknown (``None``) or non-negative;
* one provider object serves many jobs at once (concurrent calls do not interfere) and can be
  closed twice;
* for a provider behind a server, every failure is a :class:`ProviderError` whose ``kind``
  and ``retryable`` drive the job's next step (a 429 is a retryable ``rate_limit`` carrying
  the server's ``retry-after``; a refused key is ``auth`` and final; an overloaded or
  unreachable server, a timeout or a dropped connection is ``transient`` and retried; a
  request the server calls invalid is final; an unreadable 2xx is ``parse_error``), and no
  error ever shows the API key, even when the server echoes it.

Subclass :class:`RemoteProviderContract` (a provider behind a server the harness scripts)
or :class:`ProviderContract` (a model-free provider: it has no server to fail) in a test
module, with a ``harness`` fixture giving a :class:`ProviderHarness`. The classes have no
``Test`` prefix, so pytest collects them only where they are subclassed.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from claude_mem_core.domain.models import AgentEvent
from claude_mem_core.errors import ProviderError
from claude_mem_core.ports.provider import GenerationRequest, GenerationResult, Provider
from claude_mem_core.testing.fake_llm import Dialect, FakeLLMServer

# A key shaped like a real one: the failure tests check that it never shows in an error.
SECRET_KEY = "sk-contract-SECRET-0123456789abcdef"

_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def contract_event(n: int = 1) -> AgentEvent:
    """A tool use the offline provider can turn into an observation (and any model read)."""
    return AgentEvent(
        id=f"evt-contract-{n}",
        team_id="team-contract",
        project_id="project-contract",
        server_session_id="session-contract",
        source_adapter="hook",
        source_event_id=f"tool-{n}",
        idempotency_key=f"contract-{n}",
        event_type="tool_use",
        payload={
            "tool_name": "Bash",
            "tool_input": {"command": f"pytest -q tests/test_cache_{n}.py"},
            "tool_response": {"stdout": f"{n} passed in 0.12s", "exit_code": 0},
        },
        occurred_at=_AT,
        received_at=_AT,
        created_at=_AT,
    )


def contract_request(
    prompt: str = "Record what happened.", *, purpose: str = "observations", n: int = 1
) -> GenerationRequest:
    return GenerationRequest(
        prompt=prompt,
        purpose="summary" if purpose == "summary" else "observations",
        events=(contract_event(n),),
        allowed_types=("change", "discovery", "decision", "bugfix", "feature", "refactor"),
    )


class ProviderHarness:
    """Makes one adapter and, when ``remote``, scripts the server it talks to."""

    remote: bool = False
    # Credentials the adapter was given, beyond SECRET_KEY: never shown in an error.
    secrets: Sequence[str] = ()

    def make(self, *, timeout: float = 5.0) -> Provider:
        raise NotImplementedError

    # A remote harness only: the server's next answers, in order.
    def reply(self, text: str, *, input_tokens: int, output_tokens: int) -> None:
        raise NotImplementedError

    def status(self, status: int, message: str | None = None) -> None:
        raise NotImplementedError

    def rate_limited(self, retry_after: str) -> None:
        raise NotImplementedError

    def malformed(self) -> None:
        raise NotImplementedError

    def delay(self, seconds: float) -> None:
        raise NotImplementedError

    def disconnect(self) -> None:
        raise NotImplementedError

    def closed_server(self) -> Provider:
        """A provider pointed at a port where nothing listens."""
        raise NotImplementedError

    def received_prompts(self) -> list[str]:
        """The prompts the server was sent, in order."""
        raise NotImplementedError


class ProviderContract:
    """Subclass with a ``harness`` fixture; see the module's docstring."""

    @pytest.fixture
    async def provider(self, harness: ProviderHarness) -> Provider:
        return harness.make()

    @staticmethod
    async def failure(provider: Provider, harness: ProviderHarness) -> ProviderError:
        with pytest.raises(ProviderError) as info:
            await provider.generate(contract_request())
        shown = f"{info.value} {info.value.message} {info.value!r}"
        for secret in (SECRET_KEY, *harness.secrets):
            assert secret not in shown
        return info.value

    # -- every provider ------------------------------------------------------------------

    @staticmethod
    def _check_result(provider: Provider, result: GenerationResult) -> None:
        assert isinstance(result, GenerationResult)
        assert isinstance(result.text, str)
        assert result.provider == provider.name
        assert result.model == provider.model
        for tokens in (result.usage.input_tokens, result.usage.output_tokens):
            assert tokens is None or (isinstance(tokens, int) and tokens >= 0)

    async def test_a_call_returns_labelled_text_and_usage(
        self, provider: Provider, harness: ProviderHarness
    ) -> None:
        if harness.remote:
            harness.reply(
                "  <observation>ran the tests</observation>\n", input_tokens=9, output_tokens=4
            )
        result = await provider.generate(contract_request())
        self._check_result(provider, result)
        assert result.text.strip()
        if harness.remote:
            # Surrounding whitespace is the model's, not content; usage is the server's count.
            assert result.text == "<observation>ran the tests</observation>"
            assert (result.usage.input_tokens, result.usage.output_tokens) == (9, 4)
            assert harness.received_prompts()[-1] == "Record what happened."

    async def test_a_summary_call_is_answered_too(
        self, provider: Provider, harness: ProviderHarness
    ) -> None:
        if harness.remote:
            harness.reply("<summary>done</summary>", input_tokens=3, output_tokens=2)
        result = await provider.generate(contract_request("Summarise.", purpose="summary"))
        self._check_result(provider, result)

    async def test_concurrent_calls_each_get_their_own_answer(
        self, provider: Provider, harness: ProviderHarness
    ) -> None:
        requests = [contract_request(f"prompt number {n}", n=n) for n in range(8)]
        results = await asyncio.gather(*(provider.generate(r) for r in requests))
        assert len(results) == len(requests)
        for result in results:
            self._check_result(provider, result)
        if harness.remote:
            assert sorted(harness.received_prompts()[-8:]) == sorted(r.prompt for r in requests)
        else:
            # Model-free: each answer is derived from its own request's events.
            assert len({r.text for r in results}) == len(requests)

    async def test_close_may_be_called_twice(self, harness: ProviderHarness) -> None:
        provider = harness.make()
        await provider.close()
        await provider.close()


class RemoteProviderContract(ProviderContract):
    """A provider behind a server: every failure is classified for the job's next step."""

    async def test_a_429_is_a_retryable_rate_limit_with_the_servers_delay(
        self, provider: Provider, harness: ProviderHarness
    ) -> None:
        harness.rate_limited(retry_after="7")
        error = await self.failure(provider, harness)
        assert (error.kind, error.retryable, error.retry_after) == ("rate_limit", True, 7.0)

    async def test_a_refused_key_is_final_and_never_shown(
        self, provider: Provider, harness: ProviderHarness
    ) -> None:
        harness.status(401, f"invalid api key: {SECRET_KEY}")
        error = await self.failure(provider, harness)
        assert (error.kind, error.retryable) == ("auth", False)

    @pytest.mark.parametrize("status", [500, 502, 503])
    async def test_a_server_error_is_transient(
        self, provider: Provider, harness: ProviderHarness, status: int
    ) -> None:
        harness.status(status, "upstream trouble")
        error = await self.failure(provider, harness)
        assert (error.kind, error.retryable) == ("transient", True)

    async def test_an_invalid_request_is_final(
        self, provider: Provider, harness: ProviderHarness
    ) -> None:
        harness.status(400, "max_tokens: must be positive")
        error = await self.failure(provider, harness)
        assert not error.retryable
        assert error.kind not in ("transient", "rate_limit")

    async def test_an_unreadable_answer_is_a_parse_error(
        self, provider: Provider, harness: ProviderHarness
    ) -> None:
        harness.malformed()
        error = await self.failure(provider, harness)
        assert (error.kind, error.retryable) == ("parse_error", False)

    async def test_a_slow_server_times_out_as_transient(self, harness: ProviderHarness) -> None:
        provider = harness.make(timeout=0.3)
        try:
            harness.delay(10)
            started = asyncio.get_running_loop().time()
            error = await self.failure(provider, harness)
            assert (error.kind, error.retryable) == ("transient", True)
            assert asyncio.get_running_loop().time() - started < 3.0
        finally:
            await provider.close()

    async def test_a_dropped_connection_is_transient(
        self, provider: Provider, harness: ProviderHarness
    ) -> None:
        harness.disconnect()
        error = await self.failure(provider, harness)
        assert (error.kind, error.retryable) == ("transient", True)

    async def test_an_unreachable_server_is_transient(self, harness: ProviderHarness) -> None:
        provider = harness.closed_server()
        try:
            error = await self.failure(provider, harness)
            assert (error.kind, error.retryable) == ("transient", True)
        finally:
            await provider.close()


# -- harnesses for this package's adapters ---------------------------------------------------


class OfflineHarness(ProviderHarness):
    """The model-free provider: nothing to script."""

    def make(self, *, timeout: float = 5.0) -> Provider:
        from claude_mem_core.adapters.offline_provider import OfflineProvider

        return OfflineProvider()


class FakeServerHarness(ProviderHarness):
    """An adapter pointed at :class:`~claude_mem_core.testing.fake_llm.FakeLLMServer`;
    ``factory(base_url, api_key, timeout)`` makes it. ``dialect`` picks the endpoint the
    adapter talks to (``anthropic`` or ``openai``)."""

    remote = True

    def __init__(
        self,
        fake: FakeLLMServer,
        dialect: Dialect,
        factory: Callable[[str, str, float], Provider],
    ) -> None:
        self.fake = fake
        self.factory = factory
        self.script = fake.anthropic if dialect == "anthropic" else fake.openai
        self.base_url = fake.anthropic_base_url if dialect == "anthropic" else fake.openai_base_url
        self.made: list[Provider] = []

    def make(self, *, timeout: float = 5.0) -> Provider:
        provider = self.factory(self.base_url, SECRET_KEY, timeout)
        self.made.append(provider)
        return provider

    def reply(self, text: str, *, input_tokens: int, output_tokens: int) -> None:
        self.script.reply(text, input_tokens=input_tokens, output_tokens=output_tokens)

    def status(self, status: int, message: str | None = None) -> None:
        self.script.status(status, message)

    def rate_limited(self, retry_after: str) -> None:
        self.script.rate_limited(retry_after=retry_after)

    def malformed(self) -> None:
        self.script.malformed("{not json")

    def delay(self, seconds: float) -> None:
        self.script.delay(seconds)

    def disconnect(self) -> None:
        self.script.disconnect()

    def closed_server(self) -> Provider:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        # The same path below the root, so only the port differs from the live server's.
        path = self.base_url.split("//", 1)[1].partition("/")[2]
        url = f"http://127.0.0.1:{port}" + (f"/{path}" if path else "")
        return self.factory(url, SECRET_KEY, 2.0)

    def received_prompts(self) -> list[str]:
        return [_prompt_of(request.json) for request in self.script.requests]

    async def close(self) -> None:
        for provider in self.made:
            await provider.close()


def _prompt_of(body: Any) -> str:
    """The user message of a recorded Messages or Chat Completions request."""
    messages = body.get("messages", []) if isinstance(body, dict) else []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""
