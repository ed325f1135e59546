"""Search hits carry the stored observation whole, on every backend (see conftest).

PostgreSQL decodes its result rows by hand (JSON columns read as text, one row per
evidence passage folded into one hit): every field must come back as it was stored, the
evidence in rank order, each hit with its own mutable values; with and without the read's
audit row written by the search's own statement.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from claude_mem_core.domain.models import AuditEntry, Observation
from claude_mem_core.domain.passages import event_passages, observation_passage
from claude_mem_core.domain.tokens import parse_query
from claude_mem_core.ports.storage import Storage
from claude_mem_core.testing.contracts import Factory

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _audit(n: int, team_id: str, project_id: str) -> AuditEntry:
    return AuditEntry(
        id=f"hits-read-{n}",
        team_id=team_id,
        project_id=project_id,
        actor_id="actor",
        action="observation.read",
        resource_type="observation",
        details={"mode": "search"},
        created_at=T0,
    )


@pytest.mark.parametrize("audited", [False, True])
async def test_hits_are_the_stored_observations_with_their_evidence(
    storage: Storage, audited: bool
) -> None:
    make = Factory()
    team = make.team()
    project = make.project(team)
    full = make.observation(
        project,
        "kestrel nest found under the bridge",
        title="kestrel nest",
        subtitle="under the bridge",
        narrative="a kestrel nested there",
        type="discovery",
        facts=["nest 'one'", 'with "quotes" and \\ backslash', "ünïcode ✓"],
        concepts=["birds"],
        files_read=["docs/kestrel.md"],
        files_modified=["src/nest.py", "src/bridge.py"],
        metadata={"source": {"nested": [1, 2.5, None, True]}, "empty": {}, "list": []},
    )
    bare = [make.observation(project, f"kestrel sighting {n}") for n in range(3)]
    events = [
        make.event(project, payload={"output": "kestrel kestrel kestrel on the wire"}),
        make.event(project, payload={"output": "a kestrel, once"}),
    ]
    async with storage.unit_of_work() as uow:
        await uow.teams.add(team)
        await uow.projects.add(project)
        for obs in (full, *bare):
            await uow.observations.add(obs)
        await uow.search.add(
            [
                observation_passage(full),
                *event_passages(full, events),
                *(observation_passage(o) for o in bare),
            ]
        )
    stored: dict[str, Observation] = {o.id: o for o in (full, *bare)}
    for n, query in enumerate(["kestrel", "kestrel nest wire sighting"]):
        async with storage.unit_of_work() as uow:
            hits = await uow.search.search(
                team.id,
                project.id,
                parse_query(query),
                limit=10,
                audit=_audit(n, team.id, project.id) if audited else None,
            )
        assert {h.observation.id for h in hits} == set(stored), query
        for hit in hits:
            assert hit.observation == stored[hit.observation.id], query
            scores = [e.score for e in hit.evidence]
            assert scores == sorted(scores, reverse=True)
            assert hit.score >= scores[0] > 0
        (found,) = [h for h in hits if h.observation.id == full.id]
        assert len(found.evidence) == 3  # its own passage and both events'
        assert {e.event_id for e in found.evidence} == {None, *(e.id for e in events)}
        # Each hit's values are its own, empty ones included.
        metadata = [h.observation.metadata for h in hits]
        assert len({id(m) for m in metadata}) == len(metadata)
