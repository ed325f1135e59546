"""The data routes of api.md §3: parse, call one service, serialise (the legacy routes of
§4 are ``compat_routes.py``).

Scope and tenancy rules live in the core services; a handler only authenticates (via
:func:`auth.requires`), reads the request strictly and shapes the answer.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
from aiohttp import web

from claude_mem_core.domain.scopes import Need
from claude_mem_core.errors import EventConflict, FieldIssue, InvalidInput
from claude_mem_core.services import (
    admin,
    budgets,
    erase,
    ingest,
    jobs,
    memories,
    retention,
    sessions,
    usage,
)
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.memories import MAX_CONTEXT_LIMIT, MAX_SEARCH_LIMIT
from claude_mem_core.services.usage import MAX_REPORT_DAYS
from claude_mem_http.server.auth import requires
from claude_mem_http.server.metrics import count_ingested
from claude_mem_http.server.middlewares import json_response, large_json_response
from claude_mem_http.server.state import RUNTIME
from claude_mem_http.wire import bodies, responses, schemas
from claude_mem_http.wire import models as wire
from claude_mem_http.wire.schemas import RequestInvalid

JOB_PAGE_MAX = jobs.MAX_PAGE
# A project erase purges at most this many batches before it answers; a purge left over
# is finished by the upkeep of whoever generates (the worker, or the embedded loop).
ERASE_ROUTE_BATCHES = 20


def _deps(request: web.Request) -> Deps:
    return request.app[RUNTIME].memory.deps


# -- events --------------------------------------------------------------------------------


def _wait_timeout_s(request: web.Request) -> float:
    ms = schemas.query_int(
        request.query, "waitTimeoutMs", schemas.MAX_WAIT_MS, minimum=0, maximum=schemas.MAX_WAIT_MS
    )
    return ms / 1000


async def _event_result(
    deps: Deps,
    caller: Caller,
    result: ingest.IngestedEvent,
    *,
    wait: bool,
    deadline: float,
) -> tuple[dict[str, Any], bool]:
    # ``replayed``: the event was stored before (same idempotency key); the transport
    # then says what this request did with its job, not whether the event was accepted.
    generation_job: wire.JobSummary | wire.JobWaitStatus | None = None
    timed_out = False
    if wait and result.job is not None:
        job, timed_out = await jobs.wait_for_job(deps, caller, result.job, deadline=deadline)
        generation_job = responses.job_wait_status(job, result.transport)
    elif result.job is not None:
        generation_job = responses.job_summary(result.job, result.transport)
    stored = bodies.EventResult(
        event=responses.event(result.event),
        replayed=not result.created,
        generation_job=generation_job,
        wait_timed_out=True if timed_out else None,
    )
    body = responses.json_of(stored)
    if wait and result.job is None:
        body["generationJob"] = None  # asked to wait, and there is no job: said as null
    return body, timed_out


def answer(body: Any, status: int = 200) -> web.Response:
    """A route's body (a wire class of :mod:`~claude_mem_http.wire.bodies`) as its JSON."""
    return json_response(responses.json_of(body), status)


def _request_id(caller: Caller) -> str:
    # The middleware names every request before a route runs; the document says string.
    return caller.request_id or ""


@requires(Need.WRITE_EVENTS, checked_at_write=True)  # the event's write checks the key
async def post_event(request: web.Request, caller: Caller) -> web.StreamResponse:
    generate = schemas.query_flag(request.query, "generate", True)
    wait = schemas.query_flag(request.query, "wait", False)
    timeout = _wait_timeout_s(request)
    item = schemas.parse_event(await schemas.read_json(request))
    item = attrs.evolve(item, received_bytes=request.content_length)
    deps = _deps(request)
    writer = request.app[RUNTIME].memory.event_writer
    try:
        result = await writer.ingest(caller, item, generate=generate)
    except EventConflict as conflict:
        return json_response(responses.event_conflict(conflict), 409)
    count_ingested(request, int(result.created))
    body, _ = await _event_result(
        deps, caller, result, wait=wait, deadline=time.monotonic() + timeout
    )
    if item.is_large:
        return await large_json_response(body, 201)
    return json_response(body, 201)


@requires(Need.WRITE_EVENTS)
async def post_event_batch(request: web.Request, caller: Caller) -> web.StreamResponse:
    generate = schemas.query_flag(request.query, "generate", True)
    wait = schemas.query_flag(request.query, "wait", False)
    timeout = _wait_timeout_s(request)
    items = schemas.parse_event_batch(await schemas.read_json(request))
    items = [attrs.evolve(i, received_bytes=request.content_length) for i in items]
    deps = _deps(request)
    try:
        results = await ingest.ingest_batch(deps, caller, items, generate=generate)
    except EventConflict as conflict:
        return json_response(responses.event_conflict(conflict), 409)
    count_ingested(request, sum(1 for r in results if r.created))
    deadline = time.monotonic() + timeout
    entries = []
    any_timed_out = False
    for result in results:
        entry, timed_out = await _event_result(deps, caller, result, wait=wait, deadline=deadline)
        any_timed_out = any_timed_out or timed_out
        entries.append(entry)
    # The entries are already JSON (an entry's null job is not the class's None).
    body: dict[str, Any] = {"events": entries}
    if any_timed_out:
        body["waitTimedOut"] = True
    if any(item.is_large for item in items):
        return await large_json_response(body, 201)
    return json_response(body, 201)


@requires(Need.READ_EVENTS)
async def get_event(request: web.Request, caller: Caller) -> web.StreamResponse:
    event = await memories.get_event(_deps(request), caller, request.match_info["id"])
    return answer(bodies.EventBody(event=responses.event(event)))


@requires(Need.READ)
async def get_event_observations(request: web.Request, caller: Caller) -> web.StreamResponse:
    event_id = request.match_info["id"]
    pairs = await memories.event_observations(_deps(request), caller, event_id)
    return answer(
        bodies.EventObservations(
            event_id=event_id,
            observations=[responses.observation_with_source(o, s) for o, s in pairs],
        )
    )


# -- sessions ------------------------------------------------------------------------------


@requires(Need.WRITE_SESSIONS)
async def start_session(request: web.Request, caller: Caller) -> web.StreamResponse:
    item = schemas.parse_session_start(await schemas.read_json(request))
    started = await sessions.start_session(_deps(request), caller, item)
    return answer(
        bodies.SessionBody(session=responses.session(started.session)),
        201 if started.created else 200,
    )


@requires(Need.READ_SESSIONS)
async def get_session(request: web.Request, caller: Caller) -> web.StreamResponse:
    found = await sessions.get_session(_deps(request), caller, request.match_info["id"])
    return answer(bodies.SessionBody(session=responses.session(found)))


@requires(Need.WRITE_SESSIONS)
async def end_session(request: web.Request, caller: Caller) -> web.StreamResponse:
    ended = await sessions.end_session(_deps(request), caller, request.match_info["id"])
    return answer(
        bodies.EndSessionBody(
            session=responses.session(ended.session),
            generation_job=responses.job_summary(ended.job, ended.transport),
        )
    )


# -- memories, search, context -------------------------------------------------------------


@requires(Need.WRITE_MEMORIES, checked_at_write=True)  # the memory's write checks the key
async def post_memory(request: web.Request, caller: Caller) -> web.StreamResponse:
    item = schemas.parse_memory(await schemas.read_json(request))
    memory = await request.app[RUNTIME].memory.memory_writer.add(caller, item)
    return answer(bodies.MemoryBody(memory=responses.observation(memory)), 201)


@requires(Need.READ, checked_at_write=True)  # the read's audit row checks the key
async def post_search(request: web.Request, caller: Caller) -> web.StreamResponse:
    project_id, query, limit, kind = schemas.parse_search(
        await schemas.read_json(request), default_limit=20, max_limit=MAX_SEARCH_LIMIT
    )
    found = await memories.search(
        _deps(request), caller, project_id=project_id, query=query, limit=limit, kind=kind
    )
    return answer(bodies.SearchBody(observations=[responses.search_result(r) for r in found]))


@requires(Need.READ, checked_at_write=True)  # the read's audit row checks the key
async def post_context(request: web.Request, caller: Caller) -> web.StreamResponse:
    project_id, query, limit, max_tokens = schemas.parse_context(
        await schemas.read_json(request), default_limit=10, max_limit=MAX_CONTEXT_LIMIT
    )
    built = await memories.context(
        _deps(request),
        caller,
        project_id=project_id,
        query=query,
        limit=limit,
        max_tokens=max_tokens,
    )
    return answer(
        bodies.ContextBody(
            observations=[responses.search_result(r) for r in built.results],
            context=built.context,
        )
    )


def _required_query(request: web.Request, name: str) -> str:
    raw = schemas.query_one(request.query, name)
    if raw is None:
        raise RequestInvalid(FieldIssue(name, "is required", "required"))
    if not raw.strip():
        raise RequestInvalid(FieldIssue(name, "must be a non-empty string", "invalid_type"))
    return raw


@requires(Need.READ)
async def get_recent_memories(request: web.Request, caller: Caller) -> web.StreamResponse:
    project_id = _required_query(request, "projectId")
    limit = schemas.query_int(
        request.query, "limit", 20, minimum=1, maximum=memories.MAX_RECENT_LIMIT
    )
    kind = schemas.query_one(request.query, "kind")
    found = await memories.recent(
        _deps(request), caller, project_id=project_id, limit=limit, kind=kind
    )
    return answer(bodies.RecentMemories(memories=[responses.observation(o) for o in found]))


@requires(Need.READ)
async def get_memory(request: web.Request, caller: Caller) -> web.StreamResponse:
    found = await memories.get_memory(_deps(request), caller, request.match_info["id"])
    return answer(bodies.MemoryBody(memory=responses.observation(found)))


# -- jobs ----------------------------------------------------------------------------------


def _status(request: web.Request) -> Any:
    return _query_enum(request, "status", jobs.parse_status)


def _source_type(request: web.Request) -> Any:
    raw = schemas.query_one(request.query, "source_type")
    if raw is None:
        raw = schemas.query_one(request.query, "sourceType")
    return _wrap_query("source_type", jobs.parse_source_type, raw)


def _query_enum(request: web.Request, name: str, parse: Any) -> Any:
    return _wrap_query(name, parse, schemas.query_one(request.query, name))


def _wrap_query(name: str, parse: Any, raw: str | None) -> Any:
    try:
        return parse(raw)
    except InvalidInput as exc:
        raise RequestInvalid(
            [FieldIssue(name, i.message, "invalid_enum_value") for i in exc.issues]
        ) from None


def _page(request: web.Request) -> tuple[int, int]:
    limit = schemas.query_int(request.query, "limit", 50, minimum=1, maximum=JOB_PAGE_MAX)
    offset = schemas.query_int(request.query, "offset", 0, minimum=0, maximum=None)
    return limit, offset


def _includes(request: web.Request) -> set[str]:
    raw = schemas.query_one(request.query, "include")
    if raw is None:
        return set()
    parts = {p.strip() for p in raw.split(",") if p.strip()}
    unknown = sorted(parts - {"payload"})
    if unknown:
        raise RequestInvalid(
            FieldIssue("include", f"unknown value(s) {', '.join(unknown)}; allowed: payload")
        )
    return parts


def _job_page(
    page: jobs.JobPage, *, include_payload: bool = False, request_id: str | None = None
) -> bodies.JobPage:
    return bodies.JobPage(
        jobs=[responses.job_list_entry(j, include_payload=include_payload) for j in page.jobs],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
        request_id=request_id,
    )


@requires(Need.READ_JOBS)
async def list_jobs(request: web.Request, caller: Caller) -> web.StreamResponse:
    include_payload = "payload" in _includes(request)
    status = _status(request)
    source_type = _source_type(request)
    since = schemas.query_since(request.query)
    limit, offset = _page(request)
    page = await jobs.list_jobs(
        _deps(request),
        caller,
        status=status,
        source_type=source_type,
        since=since,
        limit=limit,
        offset=offset,
        include_payload=include_payload,
    )
    return answer(_job_page(page, include_payload=include_payload, request_id=_request_id(caller)))


@requires(Need.READ_JOBS)
async def list_team_jobs(request: web.Request, caller: Caller) -> web.StreamResponse:
    status = _status(request)
    limit, offset = _page(request)
    page = await jobs.list_jobs(
        _deps(request),
        caller,
        team_id=request.match_info["teamId"],
        status=status,
        limit=limit,
        offset=offset,
        mode="team_jobs",
    )
    return answer(_job_page(page))


@requires(Need.READ_JOBS)
async def list_project_jobs(request: web.Request, caller: Caller) -> web.StreamResponse:
    status = _status(request)
    limit, offset = _page(request)
    page = await jobs.list_jobs(
        _deps(request),
        caller,
        project_id=request.match_info["projectId"],
        status=status,
        limit=limit,
        offset=offset,
        mode="project_jobs",
    )
    return answer(_job_page(page))


@requires(Need.READ_JOBS)
async def get_job(request: web.Request, caller: Caller) -> web.StreamResponse:
    job = await jobs.get_job(_deps(request), caller, request.match_info["id"])
    return answer(bodies.JobBody(generation_job=responses.job_status(job)))


@requires(Need.OPERATE_JOBS)
async def retry_job(request: web.Request, caller: Caller) -> web.StreamResponse:
    outcome = await jobs.retry_job(_deps(request), caller, request.match_info["id"])
    return answer(
        bodies.RetryBody(
            generation_job=responses.job_status(outcome.job),
            retried_count=outcome.retried_count,
            already_queued=outcome.already_queued,
            request_id=_request_id(caller),
        )
    )


@requires(Need.OPERATE_JOBS)
async def cancel_job(request: web.Request, caller: Caller) -> web.StreamResponse:
    outcome = await jobs.cancel_job(_deps(request), caller, request.match_info["id"])
    return answer(
        bodies.CancelBody(
            generation_job=responses.job_status(outcome.job),
            already_cancelled=outcome.already_cancelled,
            request_id=_request_id(caller),
        )
    )


# -- projects ------------------------------------------------------------------------------


@requires(Need.READ_PROJECTS)
async def list_projects(request: web.Request, caller: Caller) -> web.StreamResponse:
    limit = schemas.query_int(request.query, "limit", 50, minimum=1, maximum=500)
    offset = schemas.query_int(request.query, "offset", 0, minimum=0, maximum=None)
    rows, total = await admin.list_visible_projects(
        request.app[RUNTIME].memory.deps, caller, limit=limit, offset=offset
    )
    listed = [responses.project(p) for p in rows]
    return answer(bodies.ProjectPage(projects=listed, total=total, limit=limit, offset=offset))


@requires(Need.ERASE)  # a retention erases what is older: whoever sets it could erase
async def set_project_retention(request: web.Request, caller: Caller) -> web.StreamResponse:
    body = await schemas.read_json(request)
    if not isinstance(body, dict) or "retainDays" not in body:
        raise InvalidInput.field("retainDays", "is required (a number of days, or null)")
    project = await retention.set_retention(
        _deps(request), caller, request.match_info["id"], body["retainDays"]
    )
    return answer(
        bodies.ProjectBody(project=responses.project(project), request_id=caller.request_id)
    )


@requires(Need.READ_JOBS)  # what the jobs' provider calls cost
async def get_usage(request: web.Request, caller: Caller) -> web.StreamResponse:
    report = await usage.report(
        _deps(request),
        caller,
        project_id=schemas.query_one(request.query, "projectId"),
        days=schemas.query_int(request.query, "days", 30, minimum=1, maximum=MAX_REPORT_DAYS),
        group_by=schemas.query_one(request.query, "groupBy") or "day",
    )
    budget = None
    if report.project_id is not None:
        budget = await budgets.status(_deps(request), caller, report.project_id)
    return answer(
        bodies.UsageBody(usage=responses.usage_report(report, budget), request_id=caller.request_id)
    )


@requires(Need.ADMIN)  # a budget decides what the team pays for
async def set_project_budget(request: web.Request, caller: Caller) -> web.StreamResponse:
    body = await schemas.read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput.field("tokenLimit", "the body must be an object with the limits")
    status = await budgets.set_budget(
        _deps(request),
        caller,
        request.match_info["id"],
        period=body.get("period", "month"),
        token_limit=body.get("tokenLimit"),
        usd_limit=body.get("usdLimit"),
    )
    return answer(
        bodies.BudgetBody(budget=responses.budget_status(status), request_id=caller.request_id)
    )


# -- erase (docs/your-data.md) -------------------------------------------------------------


def _erased(erasure: erase.Erasure, caller: Caller) -> web.StreamResponse:
    return answer(
        bodies.ErasedBody(erased=responses.erasure(erasure), request_id=_request_id(caller))
    )


@requires(Need.ERASE)
async def erase_event(request: web.Request, caller: Caller) -> web.StreamResponse:
    erased = await erase.erase_event(_deps(request), caller, request.match_info["id"])
    return _erased(erased, caller)


@requires(Need.ERASE)
async def erase_session(request: web.Request, caller: Caller) -> web.StreamResponse:
    erased = await erase.erase_session(_deps(request), caller, request.match_info["id"])
    return _erased(erased, caller)


@requires(Need.ERASE)
async def erase_project(request: web.Request, caller: Caller) -> web.StreamResponse:
    erased = await erase.erase_project(
        _deps(request), caller, request.match_info["id"], max_batches=ERASE_ROUTE_BATCHES
    )
    return _erased(erased, caller)


ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/sessions/start", start_session),
    ("GET", "/v1/sessions/{id}", get_session),
    ("DELETE", "/v1/sessions/{id}", erase_session),
    ("POST", "/v1/sessions/{id}/end", end_session),
    ("POST", "/v1/events", post_event),
    ("POST", "/v1/events/batch", post_event_batch),
    ("GET", "/v1/events/{id}", get_event),
    ("DELETE", "/v1/events/{id}", erase_event),
    ("GET", "/v1/events/{id}/observations", get_event_observations),
    ("POST", "/v1/memories", post_memory),
    ("GET", "/v1/memories/recent", get_recent_memories),  # before /v1/memories/{id}
    ("GET", "/v1/memories/{id}", get_memory),
    ("POST", "/v1/search", post_search),
    ("POST", "/v1/context", post_context),
    ("GET", "/v1/jobs", list_jobs),
    ("GET", "/v1/jobs/{id}", get_job),
    ("POST", "/v1/jobs/{id}/retry", retry_job),
    ("POST", "/v1/jobs/{id}/cancel", cancel_job),
    ("GET", "/v1/teams/{teamId}/jobs", list_team_jobs),
    ("GET", "/v1/projects/{projectId}/jobs", list_project_jobs),
    ("GET", "/v1/projects", list_projects),
    ("DELETE", "/v1/projects/{id}", erase_project),
    ("PUT", "/v1/projects/{id}/retention", set_project_retention),
    ("GET", "/v1/usage", get_usage),
    ("PUT", "/v1/projects/{id}/budget", set_project_budget),
]


def setup(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
