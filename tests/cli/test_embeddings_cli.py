"""``claude-mem embeddings backfill`` on the embedded SQLite default, against a fake
OpenAI-compatible embeddings server (run on a thread of its own: the CLI runs its own loop)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest

from claude_mem_core.cli import main
from claude_mem_core.config import Settings
from claude_mem_core.domain.models import Scope
from claude_mem_core.facade import open_memory_from_settings
from claude_mem_core.testing.fake_embeddings import FakeEmbeddingsServer

API_KEY = "sk-cli-embeddings-SECRET-0123456789"


@pytest.fixture
def fake() -> Iterator[FakeEmbeddingsServer]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = FakeEmbeddingsServer(dimensions=8, require_api_key=API_KEY)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def _memories(count: int) -> None:
    async with open_memory_from_settings(Settings.from_env(), queue=False) as memory:
        team, project = await memory.ensure_project("acme", "webapp")
        scope = Scope(team_id=team.id, project_id=project.id)
        for n in range(count):
            await memory.add_memory(scope, f"Decision {n}: retries back off exponentially")


def test_backfill_needs_semantic_recall_configured(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "embeddings", "backfill")

    assert code == 1 and out == ""
    assert "semantic recall is off" in err and "CLAUDE_MEM_EMBEDDINGS_URL" in err


def test_backfill_embeds_what_has_no_vector_with_progress(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fake: FakeEmbeddingsServer,
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_EMBEDDINGS_URL", fake.openai_base_url)
    monkeypatch.setenv("CLAUDE_MEM_EMBEDDINGS_MODEL", "fake-model")
    monkeypatch.setenv("CLAUDE_MEM_EMBEDDINGS_API_KEY", API_KEY)
    asyncio.run(_memories(3))
    assert fake.requests == []  # writing memories never calls the embedder

    code, out, err = run(capsys, "embeddings", "backfill")

    assert code == 0
    assert out.strip() == "Embedded 3 passage(s) with fake-model"
    assert "embedded 0/3 passages" in err and "embedded 3/3 passages" in err
    assert API_KEY not in out + err
    assert sum(len(r.inputs) for r in fake.requests) == 3

    code, out, err = run(capsys, "--json", "embeddings", "backfill", "--limit", "5")
    assert code == 0 and err == ""
    assert json.loads(out) == {
        "model": "fake-model",
        "embedded": 0,
        "failed": 0,
        "more": False,
        "interrupted": False,
    }


def test_backfill_reports_an_unreachable_embedder_without_the_key(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fake: FakeEmbeddingsServer,
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_EMBEDDINGS_URL", fake.openai_base_url)
    monkeypatch.setenv("CLAUDE_MEM_EMBEDDINGS_MODEL", "fake-model")
    monkeypatch.setenv("CLAUDE_MEM_EMBEDDINGS_API_KEY", "sk-wrong-key-0123456789")
    asyncio.run(_memories(2))

    code, out, err = run(capsys, "embeddings", "backfill")

    # A 401 (its message repeats the presented key) stops the pass: nothing stored.
    assert code == 1
    assert "Embedded 0 passage(s)" in out and "2 left without a vector" in out
    assert "sk-wrong-key-0123456789" not in out + err
