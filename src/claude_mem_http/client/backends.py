"""One interface over "where the memory lives", used by the hooks, the MCP server and the
transcript import.

* :class:`RemoteBackend` speaks HTTP to a claude-mem server through
  :class:`~claude_mem_http.client.http_client.ClaudeMemClient`; projects are server project ids.
* :class:`LocalBackend` calls the core services in-process on a :class:`Memory`'s ports,
  as a given :class:`Caller`: the whole local team (embedded mode, a SQLite file, no
  server) or an API key's caller (the MCP app mounted in the HTTP server). In embedded
  mode a project may also be named: an unknown name creates the project.

Both return the HTTP API's JSON shapes (``{"session": …}``, ``{"event": …}``…), so callers
never care which one they hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from claude_mem_core.errors import InvalidInput, NotFound
from claude_mem_core.services import admin, ingest, jobs, memories, sessions
from claude_mem_core.services.context import Caller, Deps
from claude_mem_http.client.http_client import ClaudeMemClient
from claude_mem_http.wire import bodies, responses
from claude_mem_http.wire.converter import to_wire

LOCAL_TEAM = "local"


class Backend(Protocol):
    """What hooks, MCP tools and the importer need from a memory."""

    name: str

    async def start_session(
        self,
        project: str | None,
        *,
        external_session_id: str | None = None,
        content_session_id: str | None = None,
        platform_source: str | None = None,
        agent_id: str | None = None,
        agent_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]: ...

    async def record_event(
        self, project: str | None, event: Mapping[str, Any], *, generate: bool = True
    ) -> dict[str, Any]: ...

    async def end_session(self, session_id: str) -> dict[str, Any]: ...

    async def add_memory(
        self,
        project: str | None,
        content: str,
        *,
        server_session_id: str | None = None,
        kind: str | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]: ...

    async def search(
        self, project: str | None, query: str, limit: int | None
    ) -> dict[str, Any]: ...

    async def context(
        self, project: str | None, query: str, limit: int | None, max_tokens: int | None = None
    ) -> dict[str, Any]: ...

    async def recent(self, project: str | None, limit: int) -> list[dict[str, Any]]:
        """The project's newest observations (HTTP memory item shape), newest first."""

    async def get_job(self, job_id: str) -> dict[str, Any]: ...

    async def close(self) -> None: ...


def _text(value: Any, field: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput.field(field, "must be a non-empty string")
    return value


def _as_json(decoded: Any) -> dict[str, Any]:
    """A decoded answer as the JSON shape every backend returns (the client checked it
    against its wire class on the way in)."""
    return cast(dict[str, Any], to_wire(decoded))


class RemoteBackend:
    """A claude-mem server over HTTP; ``default_project`` is the configured project id."""

    name = "remote"

    def __init__(self, client: ClaudeMemClient, default_project: str | None) -> None:
        self.client = client
        self.default_project = (default_project or "").strip() or None

    def project(self, project: str | None) -> str:
        chosen = (project or "").strip() or self.default_project
        if chosen is None:
            raise InvalidInput.field(
                "projectId",
                "is required (or set CLAUDE_MEM_SERVER_BETA_PROJECT_ID in the settings)",
            )
        return chosen

    async def start_session(
        self,
        project: str | None,
        *,
        external_session_id: str | None = None,
        content_session_id: str | None = None,
        platform_source: str | None = None,
        agent_id: str | None = None,
        agent_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = await self.client.start_session(
            self.project(project),
            external_session_id=external_session_id,
            content_session_id=content_session_id,
            platform_source=platform_source,
            agent_id=agent_id,
            agent_type=agent_type,
            metadata=metadata,
        )
        return _as_json(body)

    async def record_event(
        self, project: str | None, event: Mapping[str, Any], *, generate: bool = True
    ) -> dict[str, Any]:
        wire = {**event, "projectId": self.project(project or event.get("projectId"))}
        return _as_json(await self.client.post_event(wire, generate=generate))

    async def end_session(self, session_id: str) -> dict[str, Any]:
        return _as_json(await self.client.end_session(session_id))

    async def add_memory(
        self,
        project: str | None,
        content: str,
        *,
        server_session_id: str | None = None,
        kind: str | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = await self.client.add_memory(
            self.project(project),
            content,
            server_session_id=server_session_id,
            kind=kind,
            title=title,
            metadata=metadata,
        )
        return _as_json(body)

    async def search(self, project: str | None, query: str, limit: int | None) -> dict[str, Any]:
        body = await self.client.search(self.project(project), query, limit=limit)
        return _as_json(body)

    async def context(
        self, project: str | None, query: str, limit: int | None, max_tokens: int | None = None
    ) -> dict[str, Any]:
        body = await self.client.context(
            self.project(project), query, limit=limit, max_tokens=max_tokens
        )
        return _as_json(body)

    async def recent(self, project: str | None, limit: int) -> list[dict[str, Any]]:
        """GET /v1/memories/recent; a server without that route raises
        :class:`~claude_mem_http.client.http_client.RouteUnsupported` (callers may fall back to
        :meth:`context`)."""
        body = await self.client.recent_memories(self.project(project), limit=limit)
        return [_as_json(m) for m in body.memories]

    async def get_job(self, job_id: str) -> dict[str, Any]:
        return _as_json(await self.client.get_job(job_id))

    async def close(self) -> None:
        await self.client.close()


class LocalBackend:
    """The core services in this process, as ``caller``.

    ``default_project`` is a project id or (with ``names=True``) a project name; with
    ``names=True`` an unknown project name is created in the caller's team."""

    name = "local"

    def __init__(
        self,
        deps: Deps,
        caller: Caller,
        *,
        default_project: str | None = None,
        names: bool = False,
        on_close: Any = None,
    ) -> None:
        self.deps = deps
        self.caller = caller
        self.default_project = default_project or caller.project_id
        self.names = names
        self._on_close = on_close
        self._resolved: dict[str, str] = {}

    @classmethod
    async def embedded(
        cls, memory: Any, *, default_project: str | None, team_name: str = LOCAL_TEAM
    ) -> LocalBackend:
        """The whole local team of an embedded memory; projects by id or by name."""
        deps: Deps = memory.deps
        team = await admin.ensure_team(deps, team_name)
        return cls(deps, Caller.embedded(team.id), default_project=default_project, names=True)

    async def project(self, project: str | None) -> str:
        chosen = (project or "").strip() or self.default_project
        if not chosen:
            raise InvalidInput.field("projectId", "is required")
        if not self.names:
            return chosen
        if chosen in self._resolved:
            return self._resolved[chosen]
        found = await admin.ensure_project(self.deps, self.caller.team_id, chosen)
        self._resolved[chosen] = found.id
        return found.id

    async def start_session(
        self,
        project: str | None,
        *,
        external_session_id: str | None = None,
        content_session_id: str | None = None,
        platform_source: str | None = None,
        agent_id: str | None = None,
        agent_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        item = sessions.SessionInput(
            project_id=await self.project(project),
            external_session_id=external_session_id,
            content_session_id=content_session_id,
            platform_source=platform_source,
            agent_id=agent_id,
            agent_type=agent_type,
            metadata=dict(metadata or {}),
        )
        started = await sessions.start_session(self.deps, self.caller, item)
        return _as_json(bodies.SessionBody(session=responses.session(started.session)))

    async def record_event(
        self, project: str | None, event: Mapping[str, Any], *, generate: bool = True
    ) -> dict[str, Any]:
        occurred = event.get("occurredAtEpoch")
        if isinstance(occurred, bool) or not isinstance(occurred, int) or occurred < 0:
            raise InvalidInput.field("occurredAtEpoch", "must be a non-negative integer")
        metadata = event.get("metadata")
        item = ingest.EventInput(
            project_id=await self.project(project or event.get("projectId")),
            source_adapter=str(event.get("sourceType") or "api"),
            event_type=cast(str, _text(event.get("eventType"), "eventType")),
            occurred_at=datetime.fromtimestamp(occurred / 1000, tz=UTC),
            server_session_id=event.get("serverSessionId"),
            source_event_id=event.get("sourceEventId"),
            payload=event.get("payload") if event.get("payload") is not None else {},
            metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
        )
        result = await ingest.ingest_event(
            self.deps, self.caller, item, generate=generate, job_source="python_client"
        )
        job = result.job
        return _as_json(
            bodies.EventResult(
                event=responses.event(result.event),
                replayed=not result.created,
                generation_job=None
                if job is None
                else responses.job_summary(job, result.transport),
            )
        )

    async def end_session(self, session_id: str) -> dict[str, Any]:
        ended = await sessions.end_session(
            self.deps, self.caller, session_id, job_source="python_client"
        )
        return _as_json(
            bodies.EndSessionBody(
                session=responses.session(ended.session),
                generation_job=responses.job_summary(ended.job, ended.transport),
            )
        )

    async def add_memory(
        self,
        project: str | None,
        content: str,
        *,
        server_session_id: str | None = None,
        kind: str | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        item = memories.MemoryInput(
            project_id=await self.project(project),
            content=content,
            kind=kind or "manual",
            server_session_id=server_session_id,
            title=title,
            metadata=dict(metadata or {}),
        )
        stored = await memories.add_memory(self.deps, self.caller, item)
        return _as_json(bodies.MemoryBody(memory=responses.observation(stored)))

    async def search(self, project: str | None, query: str, limit: int | None) -> dict[str, Any]:
        found = await memories.search(
            self.deps,
            self.caller,
            project_id=await self.project(project),
            query=query,
            limit=20 if limit is None else limit,
        )
        return _as_json(bodies.SearchBody(observations=[responses.search_result(r) for r in found]))

    async def context(
        self, project: str | None, query: str, limit: int | None, max_tokens: int | None = None
    ) -> dict[str, Any]:
        built = await memories.context(
            self.deps,
            self.caller,
            project_id=await self.project(project),
            query=query,
            limit=10 if limit is None else limit,
            max_tokens=max_tokens,
        )
        return _as_json(
            bodies.ContextBody(
                observations=[responses.search_result(r) for r in built.results],
                context=built.context,
            )
        )

    async def recent(self, project: str | None, limit: int) -> list[dict[str, Any]]:
        found = await memories.recent(
            self.deps, self.caller, project_id=await self.project(project), limit=limit
        )
        return [_as_json(responses.observation(o)) for o in found]

    async def get_job(self, job_id: str) -> dict[str, Any]:
        if not isinstance(job_id, str) or not job_id.strip():
            raise InvalidInput.field("jobId", "must be a non-empty string")
        try:
            job = await jobs.get_job(self.deps, self.caller, job_id)
        except NotFound:
            raise NotFound("Generation job not found") from None
        return _as_json(bodies.JobBody(generation_job=responses.job_status(job)))

    async def close(self) -> None:
        if self._on_close is not None:
            await self._on_close()


__all__ = ["LOCAL_TEAM", "Backend", "LocalBackend", "RemoteBackend"]
