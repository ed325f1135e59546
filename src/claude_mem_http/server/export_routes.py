"""``GET /v1/projects/{id}/export`` and ``POST /v1/projects/{id}/import``: a project as
versioned NDJSON (docs/your-data.md), streamed both ways.

The export is checked (key, scope, project) and audited before the response starts, so
refusals are ordinary JSON errors; then the lines go out as they are read, in chunks, with
``Content-Type: application/x-ndjson``. A failure after the first byte can only cut the
stream short: the header's ``counts`` let a reader notice.

The import reads its body as a stream (never whole), checks every line before writing any
(``services/project_import.py``) and answers 200 with what it added, 400 naming the bad
line and field, or 409 for an id of another project. The server's body limit is for bodies
read whole, so it does not apply here (``STREAMED_BODY_ROUTES`` in ``middlewares.py``):
an import may be sent chunked or with a ``Content-Length`` of any size.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from claude_mem_core.domain.export_format import BadExportLine, UnsupportedExportVersion
from claude_mem_core.domain.scopes import Need
from claude_mem_core.services import export, project_import
from claude_mem_core.services.context import Caller
from claude_mem_http.server.auth import requires
from claude_mem_http.server.middlewares import json_response
from claude_mem_http.server.state import RUNTIME
from claude_mem_http.wire import bodies, schemas
from claude_mem_http.wire.converter import to_wire

NDJSON = "application/x-ndjson"
# Lines are sent in writes of about this size: few writes, little held.
WRITE_BYTES = 64 * 1024
READ_BYTES = 64 * 1024


def bad_line_body(bad: BadExportLine) -> dict[str, Any]:
    """400: which line, which field, why (and the version, for a newer export)."""
    body: dict[str, Any] = {
        "error": "ValidationError",
        "message": bad.message,
        "line": bad.line,
        "field": bad.path,
        "issues": [{"path": ["line", bad.line, *filter(None, bad.path.split("."))],
                    "message": bad.issues[0].message, "code": "invalid"}],
    }  # fmt: skip
    if isinstance(bad, UnsupportedExportVersion):
        body["version"] = bad.version
    return body


# Export reads every kind of row: memories:read (or *) holds all three reads it needs.
@requires(Need.READ_EVENTS)
async def export_project(request: web.Request, caller: Caller) -> web.StreamResponse:
    deps = request.app[RUNTIME].memory.deps
    prepared = await export.open_export(deps, caller, request.match_info["id"])
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": f"{NDJSON}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{prepared.project.id}.jsonl"',
        },
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    pending: list[bytes] = []
    size = 0
    async for line in prepared.lines():
        data = line.encode("utf-8")
        pending.append(data)
        size += len(data)
        if size >= WRITE_BYTES:
            await response.write(b"".join(pending))
            pending, size = [], 0
    if pending:
        await response.write(b"".join(pending))
    await response.write_eof()
    return response


# Import writes sessions, events and memories: memories:write (or *) holds all three.
@requires(Need.WRITE_MEMORIES)
async def import_project(request: web.Request, caller: Caller) -> web.StreamResponse:
    generate = schemas.query_flag(request.query, "generate", False)
    deps = request.app[RUNTIME].memory.deps
    lines = project_import.split_lines(request.content.iter_chunked(READ_BYTES))
    try:
        report = await project_import.import_project(
            deps, caller, request.match_info["id"], lines, generate=generate
        )
    except BadExportLine as bad:
        return json_response(bad_line_body(bad), 400)
    except project_import.ImportConflict as conflict:
        body = {
            "error": "Conflict",
            "message": conflict.message,
            "line": conflict.line,
            "field": conflict.field,
        }
        return json_response(body, 409)
    imported = bodies.Imported(
        project_id=report.project_id,
        lines=report.lines,
        sessions=report.sessions,
        events=report.events,
        observations=report.observations,
        sources=report.sources,
        skipped=report.skipped,
        jobs=report.jobs,
    )
    return json_response(
        to_wire(bodies.ImportedBody(imported=imported, request_id=caller.request_id))
    )


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/projects/{id}/export", export_project),
    ("POST", "/v1/projects/{id}/import", import_project),
]


def setup(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)


__all__ = ["NDJSON", "ROUTES", "bad_line_body", "setup"]
