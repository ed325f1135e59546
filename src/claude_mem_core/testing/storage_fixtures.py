"""What the storage contract suites share: the logical tables a backdoor reads, the
:class:`Backdoor` protocol, and :class:`Factory`, which makes rows with fresh ids and
timestamps after :data:`T0`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from claude_mem_core.domain import keys
from claude_mem_core.domain.models import (
    AgentEvent,
    ApiKey,
    GenerationJob,
    JobEvent,
    JobEventType,
    JobType,
    Observation,
    ObservationKind,
    Project,
    ServerSession,
    SourceType,
    Team,
)
from claude_mem_core.ports.storage import Storage

LOGICAL_TABLES = (
    "teams",
    "projects",
    "api_keys",
    "sessions",
    "events",
    "jobs",
    "job_events",
    "observations",
    "sources",
    "audit",
)


class Backdoor(Protocol):
    async def rows(self, table: str) -> list[dict[str, Any]]:
        """All rows of a logical table (see ``LOGICAL_TABLES``) as column dicts."""


T0 = datetime(2026, 11, 27, 12, 0, 0, 123000, tzinfo=UTC)


class Factory:
    """Builds valid records with unique ids and advancing timestamps."""

    def __init__(self) -> None:
        self.n = 0

    def _next(self, prefix: str) -> tuple[str, datetime]:
        self.n += 1
        return f"{prefix}-{self.n:05d}", T0 + timedelta(milliseconds=self.n)

    async def stored_tenant(self, storage: Storage) -> tuple[Team, Project]:
        """A new team and a project of it, stored: where most contract tests start."""
        team = self.team()
        project = self.project(team)
        async with storage.unit_of_work() as uow:
            await uow.teams.add(team)
            await uow.projects.add(project)
        return team, project

    def team(self, name: str = "team") -> Team:
        tid, at = self._next("team")
        return Team(id=tid, name=name, created_at=at, updated_at=at)

    async def stored_event_job(
        self, storage: Storage, **kw: Any
    ) -> tuple[Team, Project, GenerationJob]:
        """A stored tenant with one stored event and its job (``kw`` sets job fields)."""
        team, project = await self.stored_tenant(storage)
        event = self.event(project)
        job = self.job(event, **kw)
        async with storage.unit_of_work() as uow:
            await uow.events.add(event)
            assert await uow.jobs.add(job) == (job, True)
        return team, project, job

    def project(self, team: Team, name: str = "project") -> Project:
        pid, at = self._next("proj")
        return Project(id=pid, team_id=team.id, name=name, created_at=at, updated_at=at)

    def key(self, team: Team, project: Project | None = None, **kw: Any) -> ApiKey:
        kid, at = self._next("key")
        fields: dict[str, Any] = {
            "id": kid,
            "key_hash": keys.canonical_json(kid).encode().hex(),
            "team_id": team.id,
            "project_id": project.id if project else None,
            "actor_id": "actor:test",
            "scopes": {"memories:read"},
            "created_at": at,
            "updated_at": at,
        }
        fields.update(kw)
        return ApiKey(**fields)

    def session(self, project: Project, **kw: Any) -> ServerSession:
        sid, at = self._next("sess")
        fields: dict[str, Any] = {
            "id": sid,
            "team_id": project.team_id,
            "project_id": project.id,
            "external_session_id": f"ext-{sid}",
            "idempotency_key": f"idem-{sid}",
            "started_at": at,
            "created_at": at,
            "updated_at": at,
        }
        fields.update(kw)
        return ServerSession(**fields)

    def event(
        self, project: Project, session: ServerSession | None = None, **kw: Any
    ) -> AgentEvent:
        eid, at = self._next("evt")
        fields: dict[str, Any] = {
            "id": eid,
            "team_id": project.team_id,
            "project_id": project.id,
            "server_session_id": session.id if session else None,
            "source_adapter": "api",
            "idempotency_key": f"agent_event:test:{eid}",
            "event_type": "tool_use",
            "payload": {"tool_name": "Edit", "n": self.n, "nested": {"ü": [1, 2.5, None]}},
            "metadata": {"m": 1},
            "occurred_at": at,
            "received_at": at,
            "created_at": at,
        }
        fields.update(kw)
        return AgentEvent(**fields)

    def job(self, event: AgentEvent, **kw: Any) -> GenerationJob:
        jid, at = self._next("job")
        fields: dict[str, Any] = {
            "id": jid,
            "team_id": event.team_id,
            "project_id": event.project_id,
            "agent_event_id": event.id,
            "source_type": SourceType.AGENT_EVENT,
            "source_id": event.id,
            "server_session_id": event.server_session_id,
            "job_type": JobType.GENERATE_FOR_EVENT,
            "idempotency_key": f"job:{event.id}",
            "transport_id": f"evt_{event.id}",
            "payload": {"kind": "event", "team_id": event.team_id},
            "created_at": at,
            "updated_at": at,
        }
        fields.update(kw)
        return GenerationJob(**fields)

    def summary_job(self, session: ServerSession, **kw: Any) -> GenerationJob:
        jid, at = self._next("job")
        fields: dict[str, Any] = {
            "id": jid,
            "team_id": session.team_id,
            "project_id": session.project_id,
            "source_type": SourceType.SESSION_SUMMARY,
            "source_id": session.id,
            "server_session_id": session.id,
            "job_type": JobType.GENERATE_SESSION_SUMMARY,
            "idempotency_key": f"job:{session.id}",
            "transport_id": f"sum_{session.id}",
            "created_at": at,
            "updated_at": at,
        }
        fields.update(kw)
        return GenerationJob(**fields)

    def observation(self, project: Project, content: str, **kw: Any) -> Observation:
        oid, at = self._next("obs")
        fields: dict[str, Any] = {
            "id": oid,
            "team_id": project.team_id,
            "project_id": project.id,
            "kind": ObservationKind.OBSERVATION,
            "type": "discovery",
            "title": content[:40],
            "facts": ("a fact",),
            "files_read": ("src/a.py",),
            "content": content,
            "created_at": at,
            "updated_at": at,
        }
        fields.update(kw)
        return Observation(**fields)

    def job_event(self, job: GenerationJob, **kw: Any) -> JobEvent:
        jid, at = self._next("jev")
        fields: dict[str, Any] = {
            "id": jid,
            "generation_job_id": job.id,
            "team_id": job.team_id,
            "project_id": job.project_id,
            "event_type": JobEventType.QUEUED,
            "status_after": job.status,
            "attempt": job.attempts,
            "details": {"source": "t"},
            "created_at": at,
        }
        fields.update(kw)
        return JobEvent(**fields)
