"""The erasure contract (``uow.erasure``, ``ports.storage.ErasureRepository``): part of
:class:`~claude_mem_core.testing.contracts.StorageContract`, which inherits it, so every
adapter that runs the storage contract runs these too (with the same ``storage``,
``backdoor`` and ``make`` fixtures).

Each test builds a small world of events, jobs, observations, passages and vectors, erases
part of it, and checks through the backdoor that exactly the erased part is gone, and
through search that the statistics left are exactly those of the passages left.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from claude_mem_core.domain import jobs as machine
from claude_mem_core.domain import ranking
from claude_mem_core.domain.models import (
    AgentEvent,
    AuditEntry,
    GenerationJob,
    JobStatus,
    Observation,
    ObservationKind,
    ObservationSource,
    ObservationSourceType,
    Project,
    ServerSession,
    Team,
)
from claude_mem_core.domain.passages import Passage, event_passages, observation_passage
from claude_mem_core.domain.tokens import parse_query
from claude_mem_core.ports.erasure import ErasedRows
from claude_mem_core.ports.storage import FreshEvent, FreshMemory, Page, Storage

if TYPE_CHECKING:
    from claude_mem_core.testing.contracts import Backdoor, Factory

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MODEL = "erase-test-embedder"


@attrs.define
class World:
    """What :meth:`ErasureContract._world` stored, by name."""

    team: Team
    project: Project
    sibling: Project
    session: ServerSession
    events: dict[str, AgentEvent]
    jobs: dict[str, GenerationJob]
    observations: dict[str, Observation]
    passages: list[Passage]
    sources: list[ObservationSource]


def _link(
    obs: Observation,
    n: int,
    *,
    event: AgentEvent | None = None,
    job: GenerationJob | None = None,
    session: ServerSession | None = None,
) -> ObservationSource:
    if event is not None:
        kind, source_id = ObservationSourceType.AGENT_EVENT, event.id
    elif session is not None:
        kind, source_id = ObservationSourceType.SESSION_SUMMARY, session.id
    else:
        kind, source_id = ObservationSourceType.MANUAL, obs.id
    return ObservationSource(
        id=f"src-{obs.id}-{n}",
        observation_id=obs.id,
        team_id=obs.team_id,
        project_id=obs.project_id,
        source_type=kind,
        source_id=source_id,
        agent_event_id=event.id if event is not None else None,
        generation_job_id=job.id if job is not None and kind is not kind.MANUAL else None,
        created_at=AT,
    )


class ErasureContract:
    """Behaviour of :class:`~claude_mem_core.ports.storage.ErasureRepository`."""

    async def _world(self, storage: Storage, make: Factory) -> World:
        """A session with events e1 (with a source event id), e2; e3 outside it; their
        jobs and the session's summary job; observations o1 (of e1), o12 (of e1 and e2),
        o2 (of e2), o3 (of e3), the session's summary, a memory written into the session
        and one outside; every one indexed (and embedded); a sibling project whose
        observation uses e1's marker word."""
        team, project = await make.stored_tenant(storage)
        sibling = make.project(team, "sibling")
        session = make.session(project)
        words = {"e1": "zebramark", "e2": "yakmark", "e3": "quokkamark"}
        events = {
            "e1": make.event(
                project,
                session,
                source_event_id="client-1",
                payload={"tool_name": "Bash", "tool_response": f"{words['e1']} printed twice"},
            ),
            "e2": make.event(
                project, session, payload={"tool_name": "Bash", "tool_response": words["e2"]}
            ),
            "e3": make.event(project, payload={"tool_name": "Read", "tool_response": words["e3"]}),
        }
        jobs = {name: make.job(event) for name, event in events.items()}
        jobs["summary"] = make.summary_job(session)
        obs = {
            "o1": make.observation(
                project, "zebramark seen", server_session_id=session.id, created_by_job_id=None
            ),
            "o12": make.observation(project, "both commands ran", server_session_id=session.id),
            "o2": make.observation(project, "yakmark seen", server_session_id=session.id),
            "o3": make.observation(project, "quokkamark seen"),
            "summary": make.observation(
                project,
                "The session printed zebramark and yakmark",
                kind=ObservationKind.SUMMARY,
                server_session_id=session.id,
            ),
            "memo_in_session": make.observation(
                project, "a memo ibexmark", kind="note", server_session_id=session.id
            ),
            "memo": make.observation(project, "a memo lynxmark", kind="note"),
            "elsewhere": make.observation(sibling, "zebramark elsewhere too"),
        }
        made_by = {"o1": "e1", "o12": "e2", "o2": "e2", "o3": "e3", "summary": "summary"}
        for name, maker in made_by.items():
            obs[name] = attrs.evolve(obs[name], created_by_job_id=jobs[maker].id)
        linked = {
            "o1": ["e1"],
            "o12": ["e1", "e2"],
            "o2": ["e2"],
            "o3": ["e3"],
        }
        sources = [
            _link(obs[name], n, event=events[e], job=jobs[made_by[name]])
            for name, names in linked.items()
            for n, e in enumerate(names)
        ]
        sources.append(_link(obs["summary"], 0, job=jobs["summary"], session=session))
        sources += [_link(obs[name], 0) for name in ("memo_in_session", "memo", "elsewhere")]
        passages = [observation_passage(o) for o in obs.values()]
        for name, names in linked.items():
            passages += event_passages(obs[name], [events[e] for e in names])
        async with storage.unit_of_work() as uow:
            await uow.projects.add(sibling)
            await uow.sessions.add(session)
            for event in events.values():
                await uow.events.add(event)
            for job in jobs.values():
                await uow.jobs.add(job)
                await uow.job_events.add(make.job_event(job))
            for o in obs.values():
                await uow.observations.add(o)
            await uow.sources.add_many(sources)
            await uow.search.add(passages)
        async with storage.unit_of_work() as uow:
            for scope in (project, sibling):
                missing = await uow.vectors.missing(
                    MODEL, team_id=team.id, project_id=scope.id, limit=1000
                )
                await uow.vectors.add(MODEL, {p.id: [1.0, float(p.id)] for p in missing})
        return World(
            team=team,
            project=project,
            sibling=sibling,
            session=session,
            events=events,
            jobs=jobs,
            observations=obs,
            passages=passages,
            sources=sources,
        )

    async def _ids(self, backdoor: Backdoor, table: str, project: Project) -> set[str]:
        """Ids of the project's rows (a passage by its observation's)."""
        rows = await backdoor.rows(table)
        key = "observation_id" if table == "passages" else "id"
        return {r[key] for r in rows if r["project_id"] == project.id}

    async def _search(self, storage: Storage, w: World, text: str, project: Project) -> list[Any]:
        async with storage.unit_of_work() as uow:
            return list(await uow.search.search(w.team.id, project.id, parse_query(text), limit=50))

    async def _scores_follow_the_model(
        self, storage: Storage, w: World, kept: Sequence[Passage], text: str
    ) -> None:
        """Search scores equal the model's over exactly the passages left: the statistics
        were decremented exactly (passage count, document frequencies)."""
        query = parse_query(text)
        strings = ranking.query_strings(query)
        mine = [p for p in kept if p.project_id == w.project.id]
        idfs = {s: ranking.idf(len(mine), sum(1 for p in mine if s in p.tf)) for s in strings}
        expected: dict[str, list[float]] = {}
        for p in mine:
            score = ranking.passage_score(
                query, p.tf, p.length, idfs=idfs, event=p.event_id is not None
            )
            if score > 0:
                expected.setdefault(p.observation_id, []).append(score)
        hits = await self._search(storage, w, text, w.project)
        assert {h.observation.id for h in hits} == set(expected)
        for hit in hits:
            wanted = ranking.observation_score(expected[hit.observation.id])
            assert hit.score == pytest.approx(wanted, rel=1e-9)

    async def test_erase_events_takes_what_was_derived_and_remembers_the_key(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        w = await self._world(storage, make)
        e1 = w.events["e1"]
        gone = {w.observations[n].id for n in ("o1", "o12", "summary")}
        async with storage.unit_of_work() as uow:
            # Another team, another project: nothing of theirs, nothing done.
            assert await uow.erasure.erase_events("other", w.project.id, [e1.id], at=AT) == (
                ErasedRows()
            )
            assert await uow.erasure.erase_events(w.team.id, w.sibling.id, [e1.id], at=AT) == (
                ErasedRows()
            )
            removed = await uow.erasure.erase_events(
                w.team.id, w.project.id, [e1.id, "no-such-event"], at=AT
            )
        erased_passages = [p for p in w.passages if p.observation_id in gone]
        assert removed == ErasedRows(
            events=1,
            observations=3,
            sources=4,  # o1's, o12's two, the summary's
            passages=len(erased_passages),
            vectors=len(erased_passages),
            jobs=1,
            job_events=1,
        )
        everything = {o.id for o in w.observations.values() if o.project_id == w.project.id}
        assert await self._ids(backdoor, "observations", w.project) == everything - gone
        assert await self._ids(backdoor, "events", w.project) == {
            w.events["e2"].id,
            w.events["e3"].id,
        }
        assert await self._ids(backdoor, "jobs", w.project) == {
            w.jobs[n].id for n in ("e2", "e3", "summary")
        }
        logged = {r["generation_job_id"] for r in await backdoor.rows("job_events")}
        assert logged == {w.jobs[n].id for n in ("e2", "e3", "summary")}
        links = await backdoor.rows("sources")
        assert not [r for r in links if r["observation_id"] in gone or r["source_id"] == e1.id]
        passages = await backdoor.rows("passages")
        assert not [p for p in passages if p["observation_id"] in gone]
        assert not [p for p in passages if p["event_id"] == e1.id]
        async with storage.unit_of_work() as uow:
            kept = [w.observations[n].id for n in ("o2", "o3")]
            vectors = await uow.vectors.for_observations(
                w.team.id, w.project.id, MODEL, [*gone, *kept]
            )
            assert set(vectors) == set(kept)
            e2 = w.events["e2"]
            keys = [e1.idempotency_key, e2.idempotency_key]
            assert await uow.erasure.erased_keys(w.team.id, w.project.id, keys) == {
                e1.idempotency_key
            }
            assert await uow.erasure.erased_keys(w.team.id, w.sibling.id, keys) == set()
        assert await self._search(storage, w, "zebramark", w.project) == []
        elsewhere = await self._search(storage, w, "zebramark", w.sibling)
        assert [h.observation.id for h in elsewhere] == [w.observations["elsewhere"].id]
        kept_passages = [p for p in w.passages if p.observation_id not in gone]
        for text in ("yakmark seen", "quokkamark memo", "seen"):
            await self._scores_follow_the_model(storage, w, kept_passages, text)

    async def test_erase_session_takes_its_events_observations_and_jobs(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        w = await self._world(storage, make)
        async with storage.unit_of_work() as uow:
            assert await uow.erasure.erase_session("other", w.project.id, w.session.id, at=AT) == (
                ErasedRows()
            )
            assert await uow.erasure.erase_session(w.team.id, w.project.id, "nope", at=AT) == (
                ErasedRows()
            )
            removed = await uow.erasure.erase_session(w.team.id, w.project.id, w.session.id, at=AT)
        gone = {w.observations[n].id for n in ("o1", "o12", "o2", "summary", "memo_in_session")}
        erased_passages = [p for p in w.passages if p.observation_id in gone]
        assert removed == ErasedRows(
            events=2,
            sessions=1,
            observations=5,
            sources=6,
            passages=len(erased_passages),
            vectors=len(erased_passages),
            jobs=3,
            job_events=3,
        )
        assert await self._ids(backdoor, "sessions", w.project) == set()
        assert await self._ids(backdoor, "events", w.project) == {w.events["e3"].id}
        assert await self._ids(backdoor, "jobs", w.project) == {w.jobs["e3"].id}
        assert await self._ids(backdoor, "observations", w.project) == {
            w.observations[n].id for n in ("o3", "memo")
        }
        for word in ("zebramark", "yakmark", "ibexmark"):
            assert await self._search(storage, w, word, w.project) == []
        kept_passages = [p for p in w.passages if p.observation_id not in gone]
        await self._scores_follow_the_model(storage, w, kept_passages, "quokkamark lynxmark memo")
        async with storage.unit_of_work() as uow:
            keys = [e.idempotency_key for e in w.events.values()]
            # Only e1 came with a source event id: only its key is remembered.
            assert await uow.erasure.erased_keys(w.team.id, w.project.id, keys) == {
                w.events["e1"].idempotency_key
            }
            assert await uow.sessions.get(w.team.id, w.session.id) is None

    async def test_an_erase_rolls_back_with_its_unit_of_work(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        w = await self._world(storage, make)
        before = {t: len(await backdoor.rows(t)) for t in ("events", "observations", "jobs")}
        with pytest.raises(RuntimeError):
            async with storage.unit_of_work() as uow:
                await uow.erasure.erase_session(w.team.id, w.project.id, w.session.id, at=AT)
                raise RuntimeError("boom")
        assert {t: len(await backdoor.rows(t)) for t in before} == before
        hits = await self._search(storage, w, "zebramark", w.project)
        assert {h.observation.id for h in hits} >= {w.observations["o1"].id}
        async with storage.unit_of_work() as uow:
            key = w.events["e1"].idempotency_key
            assert await uow.erasure.erased_keys(w.team.id, w.project.id, [key]) == set()

    async def test_a_project_marked_deleted_is_missing_and_its_jobs_are_cancelled(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        w = await self._world(storage, make)
        claimed = machine.transition(
            w.jobs["e2"], JobStatus.PROCESSING, now=AT, worker_id="worker-1"
        )
        async with storage.unit_of_work() as uow:
            assert await uow.jobs.compare_and_set(w.jobs["e2"], claimed)
        async with storage.unit_of_work() as uow:
            assert not await uow.erasure.mark_project_deleted("other", w.project.id, at=AT)
            assert await uow.erasure.project_deleted_at(w.team.id, w.project.id) is None
            assert await uow.erasure.mark_project_deleted(w.team.id, w.project.id, at=AT)
            assert not await uow.erasure.mark_project_deleted(w.team.id, w.project.id, at=AT)
        t, p = w.team.id, w.project.id
        async with storage.unit_of_work() as uow:
            assert await uow.erasure.project_deleted_at(t, p) == AT
            assert (t, p) in await uow.erasure.projects_to_purge()
            assert await uow.projects.get(t, p) is None
            assert await uow.projects.find_by_name(t, w.project.name) is None
            listed, total = await uow.projects.list(t, Page())
            assert ([x.id for x in listed], total) == ([w.sibling.id], 1)
            assert await uow.events.get(t, w.events["e3"].id) is None
            assert await uow.sessions.get(t, w.session.id) is None
            assert await uow.jobs.get(t, w.jobs["e3"].id) is None
            memo = w.observations["memo"].id
            assert await uow.observations.get(t, p, memo) is None
            assert await uow.observations.get_in_team(t, memo) is None
            sibling_obs = w.observations["elsewhere"].id
            assert await uow.observations.get_in_team(t, sibling_obs) is not None
        for word in ("quokkamark", "lynxmark", "seen"):
            assert await self._search(storage, w, word, w.project) == []
        assert len(await self._search(storage, w, "zebramark", w.sibling)) == 1
        statuses = {r["id"]: r["status"] for r in await backdoor.rows("jobs")}
        assert {statuses[j.id] for j in w.jobs.values()} == {"cancelled"}
        # The worker that held e2's job can neither renew nor complete it.
        async with storage.unit_of_work() as uow:
            assert not await uow.jobs.renew_lease(claimed, now=AT + timedelta(seconds=5))
            done = machine.transition(claimed, JobStatus.COMPLETED, now=AT)
            assert not await uow.jobs.compare_and_set(claimed, done)

    async def test_purge_removes_a_projects_rows_in_bounded_batches(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        w = await self._world(storage, make)
        t, p = w.team.id, w.project.id
        tables = ("observations", "sources", "passages", "jobs", "job_events", "events")
        before = {name: len(await backdoor.rows(name)) for name in (*tables, "sessions")}
        async with storage.unit_of_work() as uow:
            # Not marked: nothing purged.
            assert await uow.erasure.purge_project(t, p, limit=3, at=AT) == ErasedRows()
            assert await uow.erasure.mark_project_deleted(t, p, at=AT)
        total = ErasedRows()
        for _ in range(200):
            async with storage.unit_of_work() as uow:
                step = await uow.erasure.purge_project(t, p, limit=3, at=AT)
            counts = step.as_dict()
            # One table per batch (vectors go with their passages; statistics rows are
            # bounded by the shards and terms), never more than the limit of it.
            moved = {k: v for k, v in counts.items() if v and k not in ("vectors", "statistics")}
            assert len(moved) <= 1 and all(v <= 3 for v in moved.values()), counts
            total += step
            if step.total == 0:
                break
        else:
            pytest.fail("the purge never ended")
        for name in (*tables, "sessions"):
            assert await self._ids(backdoor, name, w.project) == set(), name
        sibling_rows = len([o for o in w.observations.values() if o.project_id == w.sibling.id])
        assert before["observations"] - total.observations == sibling_rows
        assert total.events == 3 and total.jobs == 4 and total.sessions == 1
        assert total.tombstones == 0  # nothing was erased one by one before
        async with storage.unit_of_work() as uow:
            assert await uow.erasure.projects_to_purge() == []
            assert await uow.erasure.project_deleted_at(t, p) == AT
        # The project row stays, marked; the sibling is whole.
        assert w.project.id in {r["id"] for r in await backdoor.rows("projects")}
        assert len(await self._search(storage, w, "zebramark", w.sibling)) == 1

    async def test_fresh_writes_leave_out_erased_keys_and_deleted_projects(
        self, storage: Storage, backdoor: Backdoor, make: Factory
    ) -> None:
        team, project = await make.stored_tenant(storage)
        doomed = make.project(team, "doomed")
        erased = make.event(project, source_event_id="client-9")
        async with storage.unit_of_work() as uow:
            await uow.projects.add(doomed)
            await uow.events.add(erased)
            await uow.erasure.erase_events(team.id, project.id, [erased.id], at=AT)
            await uow.erasure.mark_project_deleted(team.id, doomed.id, at=AT)

        def fresh(event: AgentEvent) -> FreshEvent:
            return FreshEvent(event=event, audit=_audit(event.id, event.project_id, team))

        replay = make.event(
            project, source_event_id="client-9", idempotency_key=erased.idempotency_key
        )
        into_deleted = make.event(doomed)
        ok = make.event(project, source_event_id="client-10")
        written = await storage.add_fresh_events([fresh(replay), fresh(into_deleted), fresh(ok)])
        assert written == {ok.id}
        memo = make.observation(doomed, "late memo")
        link = _link(memo, 0)
        assert (
            await storage.add_fresh_memories(
                [
                    FreshMemory(
                        observation=memo,
                        source=link,
                        passages=(observation_passage(memo),),
                        audit=_audit(memo.id, doomed.id, team),
                    )
                ]
            )
            == set()
        )
        assert {r["id"] for r in await backdoor.rows("events")} == {ok.id}
        assert await backdoor.rows("observations") == []


def _audit(resource_id: str, project_id: str, team: Team) -> AuditEntry:
    return AuditEntry(
        id=f"aud-{resource_id}",
        team_id=team.id,
        project_id=project_id,
        action="event.received",
        resource_type="agent_event",
        resource_id=resource_id,
        created_at=AT,
    )
