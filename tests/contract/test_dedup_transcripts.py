"""Dedup end to end (issue #16, item 5), on every storage backend: a Claude Code transcript
imported again as a new session (new session and event ids, so idempotency does not apply)
adds no observation, and every observation gains a source link to the new events (and one
more occurrence); each event still answers its own observations."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest

from claude_mem_core import Memory
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.domain.models import ObservationKind
from claude_mem_core.ports.storage import Storage
from claude_mem_core.services import memories
from claude_mem_http.client.backends import LocalBackend
from claude_mem_http.client.transcript_import import Transcript, parse_transcript, replay

ROOT = Path(__file__).resolve().parents[2]
TRANSCRIPTS = [
    ROOT / "tests" / "clients" / "fixtures" / "transcript.jsonl",
    ROOT / "bench" / "retrieval" / "transcripts" / "m-claude-gitleaks-redaction.jsonl",
]


@pytest.fixture
async def mem(storage: Storage) -> Memory:
    return Memory(storage=storage, queue=InProcessQueue(), provider=OfflineProvider())


def _as_new_session(transcript: Transcript) -> Transcript:
    """The same transcript under new ids: what a second session doing the same work sends."""
    return attrs.evolve(
        transcript,
        session_id=f"again-{transcript.session_id}",
        events=[
            attrs.evolve(e, source_event_id=f"again:{e.source_event_id}") for e in transcript.events
        ],
    )


def _generated(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in rows if r["kind"] == ObservationKind.OBSERVATION.value}


def _event_links(rows: list[dict[str, Any]], ids: set[str]) -> Counter[str]:
    return Counter(
        r["observation_id"]
        for r in rows
        if r["observation_id"] in ids and r["source_type"] == "agent_event"
    )


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
async def test_a_transcript_imported_again_adds_no_observation_and_doubles_sources(
    mem: Memory, backdoor: Any, path: Path
) -> None:
    backend = await LocalBackend.embedded(mem, default_project=None)
    transcript = parse_transcript(path)
    await replay(transcript, backend, project="webapp")
    await mem.drain()
    first = _generated(await backdoor.rows("observations"))
    links_before = _event_links(await backdoor.rows("sources"), set(first))
    assert len(first) >= 3
    assert set(links_before) == set(first)

    await replay(_as_new_session(transcript), backend, project="webapp")
    await mem.drain()

    after = _generated(await backdoor.rows("observations"))
    assert set(after) == set(first)  # no new generated observation
    links_after = _event_links(await backdoor.rows("sources"), set(after))
    assert links_after == Counter({oid: 2 * n for oid, n in links_before.items()})
    for oid, row in after.items():
        assert row["occurrences"] == 2 * first[oid]["occurrences"]
        assert row["fingerprint"] is not None

    # Every event of either session answers its observations, and an event's copy in the
    # second session answers the same ones as the original.
    events = {r["id"]: r for r in await backdoor.rows("events")}
    original = {r["source_event_id"]: i for i, r in events.items()}
    answered: dict[str, set[str]] = {}
    for event_id in events:
        found = await memories.event_observations(mem.deps, backend.caller, event_id)
        answered[event_id] = {o.id for o, _ in found if o.kind == ObservationKind.OBSERVATION}
    assert set().union(*answered.values()) == set(after)
    for event_id, row in events.items():
        key = str(row["source_event_id"])
        if key.startswith("again:"):
            assert answered[event_id] == answered[original[key.removeprefix("again:")]]
