"""A typed async client for the claude-mem HTTP API (api.md §3-§5).

    async with ClaudeMemClient("http://127.0.0.1:37877", api_key) as client:
        started = await client.start_session("proj-id", external_session_id="abc")
        await client.record_event(
            "proj-id", "tool_use", source_type="hook", source_event_id="toolu_1",
            server_session_id=started.session.id, payload={...},
        )

Every method returns the route's body decoded into its wire class
(:mod:`claude_mem_http.wire.bodies`), the very classes the server builds its JSON from:
an answer that is not one raises :class:`InvalidResponse` naming the member. Errors
(:mod:`claude_mem_http.client.errors`) map onto the core hierarchy: 400 →
:class:`InvalidInput` (with ``issues``), 401 → :class:`Unauthorized`, 403 →
:class:`Forbidden`, 404 → :class:`NotFound` (its subclass :class:`RouteUnsupported` when
:meth:`ClaudeMemClient.recent_memories` meets a server without that route), 409 →
:class:`Conflict`. A call that may succeed later (connection refused, timeout, 429, 5xx)
raises :class:`ServerUnavailable`; callers that must not lose data (the hooks) spool on
exactly that exception.

Retries with exponential backoff (and ``Retry-After``) happen only for calls that are safe
to repeat: GETs, search and context, session start with an external id, session end
(re-ending returns the same job), and event posts whose every event carries a
``sourceEventId`` (the server deduplicates on it).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast
from urllib.parse import quote

import aiohttp

from claude_mem_core.errors import InvalidInput, NotFound, Unauthorized
from claude_mem_http.client.errors import (
    InvalidResponse,
    RequestRejected,
    RouteUnsupported,
    ServerUnavailable,
    error_for,
)
from claude_mem_http.client.shapes import SourceType
from claude_mem_http.wire.bodies import (
    CancelBody,
    CompatSummary,
    CompatToolUse,
    ContextBody,
    EndSessionBody,
    EventBatchResult,
    EventBody,
    EventObservations,
    EventResult,
    JobBody,
    JobPage,
    MemoryBody,
    ProjectPage,
    RecentMemories,
    RetryBody,
    SearchBody,
    SessionBody,
)
from claude_mem_http.wire.converter import WireMismatch, from_wire
from claude_mem_http.wire.health_models import Alive, Health, Info

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_S = 0.25
MAX_BACKOFF_S = 5.0
USER_AGENT = "claude-mem-python-client/1"
PROJECT_NOT_FOUND = "Project not found"
T = TypeVar("T")

# -- helpers -------------------------------------------------------------------------------


def now_epoch_ms() -> int:
    return int(time.time() * 1000)


def _compact(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Absent inputs are omitted from the body, never sent as null."""
    return {k: v for k, v in fields.items() if v is not None}


def _segment(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput.field(what, "must be a non-empty string")
    return quote(value, safe="")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _decoded(body: Any, cls: Any, method: str, path: str) -> Any:
    """A 2xx body as the route's wire class (the class the server builds it from), or as
    one of a union's."""
    try:
        return from_wire(body, cls)
    except WireMismatch as exc:
        raise InvalidResponse(f"{method} {path}: {exc}") from exc


# -- the client ----------------------------------------------------------------------------


class ClaudeMemClient:
    """Async client over one ``aiohttp.ClientSession`` (opened lazily, closed by
    :meth:`close` or ``async with``). ``timeout`` bounds each attempt; ``retries`` is the
    number of extra attempts for idempotent calls."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF_S,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.strip():
            raise InvalidInput.field("base_url", "must be a non-empty URL")
        self.base_url = base_url.strip().rstrip("/")
        self.api_key = (api_key or "").strip() or None
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> ClaudeMemClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    # -- transport ----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool = False,
        auth: bool = True,
    ) -> Any:
        """Send one request (with retries when ``idempotent``) and return the JSON body."""
        if auth and self.api_key is None:
            raise Unauthorized("no API key configured (CLAUDE_MEM_SERVER_BETA_API_KEY)")
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            try:
                return await self._once(method, path, body=body, params=params, auth=auth)
            except ServerUnavailable as exc:
                if attempt + 1 >= attempts:
                    raise
                delay = min(MAX_BACKOFF_S, self.backoff * (2**attempt))
                delay = delay * (0.5 + random.random() / 2)
                if exc.retry_after is not None:
                    delay = min(MAX_BACKOFF_S, max(delay, exc.retry_after))
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(
        self,
        cls: type[T],
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool = False,
        auth: bool = True,
    ) -> T:
        """:meth:`request`, its answer decoded into the route's wire class."""
        answer = await self.request(
            method, path, body=body, params=params, idempotent=idempotent, auth=auth
        )
        return cast(T, _decoded(answer, cls, method, path))

    async def _once(
        self,
        method: str,
        path: str,
        *,
        body: Any,
        params: Mapping[str, str] | None,
        auth: bool,
    ) -> Any:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if auth and self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        url = self.base_url + path
        try:
            async with self._http().request(
                method,
                url,
                data=data,
                params=dict(params) if params else None,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                raw = await response.read()
                status = response.status
                response_headers = dict(response.headers)
        except TimeoutError as exc:
            raise ServerUnavailable(
                f"{method} {path} timed out after {self.timeout:g} s", kind="timeout"
            ) from exc
        except aiohttp.ClientError as exc:
            raise ServerUnavailable(
                f"{method} {path} failed: {type(exc).__name__}: {exc}", kind="transport"
            ) from exc
        parsed: Any
        if not raw:
            parsed = {}
        else:
            try:
                parsed = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                parsed = raw.decode("utf-8", "replace")
        if 200 <= status < 300:
            if not isinstance(parsed, dict):
                raise InvalidResponse(f"{method} {path} returned {status} without a JSON object")
            return parsed
        raise error_for(method, path, status, parsed, response_headers)

    # -- health --------------------------------------------------------------------------

    async def healthz(self) -> Alive:
        return await self._call(Alive, "GET", "/healthz", idempotent=True, auth=False)

    async def info(self) -> Info:
        return await self._call(Info, "GET", "/v1/info", idempotent=True, auth=False)

    async def api_health(self) -> Health:
        """The server's health (a degraded one answers 503: :class:`ServerUnavailable`)."""
        return await self._call(Health, "GET", "/api/health", idempotent=True, auth=False)

    # -- sessions ------------------------------------------------------------------------

    async def start_session(
        self,
        project_id: str,
        *,
        external_session_id: str | None = None,
        content_session_id: str | None = None,
        agent_id: str | None = None,
        agent_type: str | None = None,
        platform_source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SessionBody:
        """Find or create a session. With an external id this is idempotent (retried)."""
        body = _compact(
            {
                "projectId": project_id,
                "externalSessionId": external_session_id,
                "contentSessionId": content_session_id,
                "agentId": agent_id,
                "agentType": agent_type,
                "platformSource": platform_source,
                "metadata": dict(metadata) if metadata is not None else None,
            }
        )
        idempotent = bool(external_session_id or content_session_id)
        return await self._call(
            SessionBody, "POST", "/v1/sessions/start", body=body, idempotent=idempotent
        )

    async def get_session(self, session_id: str) -> SessionBody:
        path = f"/v1/sessions/{_segment(session_id, 'session_id')}"
        return await self._call(SessionBody, "GET", path, idempotent=True)

    async def end_session(self, session_id: str) -> EndSessionBody:
        """End a session; re-ending returns the same summary job, so this is retried."""
        path = f"/v1/sessions/{_segment(session_id, 'session_id')}/end"
        return await self._call(EndSessionBody, "POST", path, body={}, idempotent=True)

    # -- events --------------------------------------------------------------------------

    async def record_event(
        self,
        project_id: str,
        event_type: str,
        *,
        source_type: SourceType = "api",
        occurred_at_epoch: int | None = None,
        server_session_id: str | None = None,
        content_session_id: str | None = None,
        memory_session_id: str | None = None,
        source_event_id: str | None = None,
        payload: Any = None,
        metadata: Mapping[str, Any] | None = None,
        generate: bool = True,
        wait: bool = False,
    ) -> EventResult:
        """Ingest one event. Retried only when it carries a ``source_event_id``."""
        event = event_body(
            project_id,
            event_type,
            source_type=source_type,
            occurred_at_epoch=occurred_at_epoch,
            server_session_id=server_session_id,
            content_session_id=content_session_id,
            memory_session_id=memory_session_id,
            source_event_id=source_event_id,
            payload=payload,
            metadata=metadata,
        )
        return await self.post_event(event, generate=generate, wait=wait)

    async def post_event(
        self, event: Mapping[str, Any], *, generate: bool = True, wait: bool = False
    ) -> EventResult:
        """POST an already-built wire event (see :func:`event_body`)."""
        params = {"generate": _flag(generate), "wait": _flag(wait)}
        return await self._call(
            EventResult,
            "POST",
            "/v1/events",
            body=dict(event),
            params=params,
            idempotent=bool(event.get("sourceEventId")),
        )

    async def record_events(
        self, events: Sequence[Mapping[str, Any]], *, generate: bool = True, wait: bool = False
    ) -> EventBatchResult:
        """Ingest 1..500 events in one transaction, in order. Retried only when every event
        carries a ``sourceEventId``."""
        params = {"generate": _flag(generate), "wait": _flag(wait)}
        idempotent = bool(events) and all(e.get("sourceEventId") for e in events)
        return await self._call(
            EventBatchResult,
            "POST",
            "/v1/events/batch",
            body=[dict(e) for e in events],
            params=params,
            idempotent=idempotent,
        )

    async def get_event(self, event_id: str) -> EventBody:
        path = f"/v1/events/{_segment(event_id, 'event_id')}"
        return await self._call(EventBody, "GET", path, idempotent=True)

    async def event_observations(self, event_id: str) -> EventObservations:
        path = f"/v1/events/{_segment(event_id, 'event_id')}/observations"
        return await self._call(EventObservations, "GET", path, idempotent=True)

    # -- memories, search, context -------------------------------------------------------

    async def add_memory(
        self,
        project_id: str,
        content: str,
        *,
        server_session_id: str | None = None,
        kind: str | None = None,
        title: str | None = None,
        type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> MemoryBody:
        """Store a manual observation (never retried: a repeat would store it twice)."""
        body = _compact(
            {
                "projectId": project_id,
                "content": content,
                "serverSessionId": server_session_id,
                "kind": kind,
                "title": title,
                "type": type,
                "metadata": dict(metadata) if metadata is not None else None,
            }
        )
        return await self._call(MemoryBody, "POST", "/v1/memories", body=body)

    async def get_memory(self, memory_id: str) -> MemoryBody:
        """One memory (observation) by id; :class:`NotFound` outside the key's scope."""
        path = f"/v1/memories/{_segment(memory_id, 'memory_id')}"
        return await self._call(MemoryBody, "GET", path, idempotent=True)

    async def recent_memories(self, project_id: str, *, limit: int | None = None) -> RecentMemories:
        """The project's newest memories, newest first (``limit`` 1..100, default 20).

        Raises :class:`RouteUnsupported` (a :class:`NotFound`) when the server predates
        the route, and plain :class:`NotFound` for a project outside the key's scope."""
        if not isinstance(project_id, str) or not project_id.strip():
            raise InvalidInput.field("project_id", "must be a non-empty string")
        params = {"projectId": project_id}
        if limit is not None:
            params["limit"] = str(limit)
        try:
            body = await self.request("GET", "/v1/memories/recent", params=params, idempotent=True)
        except NotFound as exc:
            if exc.message == PROJECT_NOT_FOUND:
                raise
            raise RouteUnsupported(
                f"GET /v1/memories/recent is not served by {self.base_url} "
                f"(an older claude-mem server?): {exc.message}"
            ) from exc
        return cast(RecentMemories, _decoded(body, RecentMemories, "GET", "/v1/memories/recent"))

    async def search(
        self, project_id: str, query: str, *, limit: int | None = None, kind: str | None = None
    ) -> SearchBody:
        """``kind``: only observations of that kind (a memory's kind as written)."""
        body = _compact({"projectId": project_id, "query": query, "limit": limit, "kind": kind})
        return await self._call(SearchBody, "POST", "/v1/search", body=body, idempotent=True)

    async def context(
        self,
        project_id: str,
        query: str,
        *,
        limit: int | None = None,
        max_tokens: int | None = None,
    ) -> ContextBody:
        """``max_tokens``: titles and excerpts within that budget instead of whole contents."""
        body = _compact(
            {"projectId": project_id, "query": query, "limit": limit, "maxTokens": max_tokens}
        )
        return await self._call(ContextBody, "POST", "/v1/context", body=body, idempotent=True)

    # -- jobs ----------------------------------------------------------------------------

    @staticmethod
    def _page_params(
        *,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        **extra: str | None,
    ) -> dict[str, str]:
        params = {"status": status, "limit": limit, "offset": offset, **extra}
        return {k: str(v) for k, v in params.items() if v is not None}

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        source_type: str | None = None,
        since: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        include_payload: bool = False,
    ) -> JobPage:
        params = self._page_params(
            status=status,
            limit=limit,
            offset=offset,
            source_type=source_type,
            since=since,
            include="payload" if include_payload else None,
        )
        return await self._call(JobPage, "GET", "/v1/jobs", params=params, idempotent=True)

    async def team_jobs(
        self,
        team_id: str,
        *,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> JobPage:
        path = f"/v1/teams/{_segment(team_id, 'team_id')}/jobs"
        params = self._page_params(status=status, limit=limit, offset=offset)
        return await self._call(JobPage, "GET", path, params=params, idempotent=True)

    async def project_jobs(
        self,
        project_id: str,
        *,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> JobPage:
        path = f"/v1/projects/{_segment(project_id, 'project_id')}/jobs"
        params = self._page_params(status=status, limit=limit, offset=offset)
        return await self._call(JobPage, "GET", path, params=params, idempotent=True)

    async def get_job(self, job_id: str) -> JobBody:
        path = f"/v1/jobs/{_segment(job_id, 'job_id')}"
        return await self._call(JobBody, "GET", path, idempotent=True)

    async def retry_job(self, job_id: str) -> RetryBody:
        path = f"/v1/jobs/{_segment(job_id, 'job_id')}/retry"
        return await self._call(RetryBody, "POST", path, body={})

    async def cancel_job(self, job_id: str) -> CancelBody:
        path = f"/v1/jobs/{_segment(job_id, 'job_id')}/cancel"
        return await self._call(CancelBody, "POST", path, body={})

    async def list_projects(
        self, *, limit: int | None = None, offset: int | None = None
    ) -> ProjectPage:
        params = self._page_params(limit=limit, offset=offset)
        return await self._call(ProjectPage, "GET", "/v1/projects", params=params, idempotent=True)

    # -- legacy compat routes (api.md §4) --------------------------------------------------

    async def compat_observation(
        self,
        content_session_id: str,
        tool_name: str,
        *,
        tool_input: Any = None,
        tool_response: Any = None,
        cwd: str | None = None,
        agent_id: str | None = None,
        agent_type: str | None = None,
        platform_source: str | None = None,
        tool_use_id: str | None = None,
    ) -> CompatToolUse:
        body = _compact(
            {
                "contentSessionId": content_session_id,
                "tool_name": tool_name,
                "tool_input": tool_input,
                "tool_response": tool_response,
                "cwd": cwd,
                "agentId": agent_id,
                "agentType": agent_type,
                "platformSource": platform_source,
                "tool_use_id": tool_use_id,
            }
        )
        return await self._call(
            CompatToolUse,
            "POST",
            "/api/sessions/observations",
            body=body,
            idempotent=bool(tool_use_id),
        )

    async def compat_summarize(
        self,
        content_session_id: str,
        *,
        last_assistant_message: str | None = None,
        agent_id: str | None = None,
        platform_source: str | None = None,
    ) -> CompatSummary:
        body = _compact(
            {
                "contentSessionId": content_session_id,
                "last_assistant_message": last_assistant_message,
                "agentId": agent_id,
                "platformSource": platform_source,
            }
        )
        path = "/api/sessions/summarize"
        answer = await self.request("POST", path, body=body, idempotent=True)
        return cast(CompatSummary, _decoded(answer, CompatSummary, "POST", path))


def event_body(
    project_id: str,
    event_type: str,
    *,
    source_type: SourceType = "api",
    occurred_at_epoch: int | None = None,
    server_session_id: str | None = None,
    content_session_id: str | None = None,
    memory_session_id: str | None = None,
    source_event_id: str | None = None,
    payload: Any = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One event as the wire spells it; absent inputs omitted."""
    return _compact(
        {
            "projectId": project_id,
            "sourceType": source_type,
            "eventType": event_type,
            "occurredAtEpoch": now_epoch_ms() if occurred_at_epoch is None else occurred_at_epoch,
            "serverSessionId": server_session_id,
            "contentSessionId": content_session_id,
            "memorySessionId": memory_session_id,
            "sourceEventId": source_event_id,
            "payload": payload,
            "metadata": dict(metadata) if metadata is not None else None,
        }
    )


__all__ = [
    "ClaudeMemClient",
    "ContextBody",
    "EventBody",
    "EventResult",
    "InvalidResponse",
    "JobBody",
    "RecentMemories",
    "RequestRejected",
    "RouteUnsupported",
    "SearchBody",
    "ServerUnavailable",
    "SessionBody",
    "error_for",
    "event_body",
    "now_epoch_ms",
]
