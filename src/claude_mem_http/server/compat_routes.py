"""The legacy routes of api.md §4 (``/api/sessions/observations``, ``/api/sessions/summarize``)
that the reference's hooks call: a tool use or a session end under a project-scoped key,
answered in the shape those clients expect (always 2xx for a replay or a conflict).

Like ``routes.py``, a handler only authenticates, reads the request strictly and shapes the
answer; what happens is ``services/compat.py``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from claude_mem_core.domain.scopes import Need
from claude_mem_core.services import compat
from claude_mem_core.services.context import Caller, Deps
from claude_mem_http.server.auth import requires
from claude_mem_http.server.metrics import count_ingested
from claude_mem_http.server.middlewares import BadRequest, json_response
from claude_mem_http.server.state import RUNTIME
from claude_mem_http.wire import bodies, schemas
from claude_mem_http.wire.converter import to_wire


def _deps(request: web.Request) -> Deps:
    return request.app[RUNTIME].memory.deps


def _project_key(caller: Caller, route: str) -> str:
    if caller.project_id is None:
        raise BadRequest(f"Legacy {route} requires a project-scoped API key")
    return caller.project_id


def _answer(body: Any) -> web.Response:
    """A legacy route's body (its wire class in :mod:`~claude_mem_http.wire.bodies`)."""
    return json_response(to_wire(body))


@requires(Need.WRITE_EVENTS)
async def compat_observations(request: web.Request, caller: Caller) -> web.StreamResponse:
    body = schemas.parse_compat_observation(await schemas.read_json(request))
    project_id = _project_key(caller, "/api/sessions/observations")
    recorded = await compat.record_tool_use(
        _deps(request),
        caller,
        project_id,
        compat.ToolUse(
            content_session_id=body["contentSessionId"],
            tool_name=body["tool_name"],
            tool_input=body["tool_input"],
            tool_response=body["tool_response"],
            tool_use_id=body["tool_use_id"] or body["toolUseId"],
            cwd=body["cwd"],
            agent_id=body["agentId"],
            agent_type=body["agentType"],
            platform_source=body["platformSource"],
        ),
    )
    result = recorded.result
    if result is not None:
        count_ingested(request, int(result.created))
    if recorded.erased:
        # The tool use id names an erased event: nothing is stored, and it stays erased.
        return _answer(
            bodies.CompatToolUse(
                status="skipped",
                observation_count=0,
                session_id=recorded.session.id,
                server_session_id=recorded.session.id,
                event_id=None,
                generation_job_id=None,
                transport="skipped",
                erased=True,
            )
        )
    if result is None:
        # Legacy clients expect 2xx: the conflict is a field (the stored event's id).
        conflict = recorded.conflict
        return _answer(
            bodies.CompatToolUse(
                status="queued",
                observation_count=0,
                session_id=recorded.session.id,
                server_session_id=recorded.session.id,
                event_id=conflict.event_id if conflict is not None else None,
                generation_job_id=None,
                transport="skipped",
                conflict=True,
            )
        )
    return _answer(
        bodies.CompatToolUse(
            status="queued",
            observation_count=1,
            session_id=recorded.session.id,
            server_session_id=recorded.session.id,
            event_id=result.event.id,
            generation_job_id=result.job.id if result.job is not None else None,
            transport=result.transport,
            replayed=not result.created,
        )
    )


@requires(Need.WRITE_SESSIONS)
async def compat_summarize(request: web.Request, caller: Caller) -> web.StreamResponse:
    body = schemas.parse_compat_summarize(await schemas.read_json(request))
    project_id = _project_key(caller, "/api/sessions/summarize")
    ended = await compat.summarize(
        _deps(request),
        caller,
        project_id,
        content_session_id=body["contentSessionId"],
        agent_id=body["agentId"],
        platform_source=body["platformSource"],
        last_assistant_message=body["last_assistant_message"],
    )
    if ended is None:
        return _answer(bodies.CompatSummarySkipped(status="skipped", reason="subagent_context"))
    return _answer(
        bodies.CompatSummaryQueued(
            status="queued",
            session_id=ended.session.id,
            server_session_id=ended.session.id,
            generation_job_id=ended.job.id,
            transport=ended.transport,
        )
    )


ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/api/sessions/observations", compat_observations),
    ("POST", "/api/sessions/summarize", compat_summarize),
]


def setup(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
