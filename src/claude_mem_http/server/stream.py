"""``GET /v1/stream``: Server-Sent Events of what commits, resumable without gaps.

A client first gets what it missed, read from the database after its cursor
(``Last-Event-ID``, or ``?after=``: the header wins), then live changes. Each message's
``id:`` is the change's feed position, so a reconnect to any server process, before or
after a restart, resumes exactly after the last message it got. Without a cursor the
stream starts now, announced by the comment ``: ready <cursor>``.

Live changes come from one :class:`StreamHub` per app: a single poller reads the feed of
every connected client at once (woken at once by this process's commits, and every
``poll_s`` for other processes' writes, a worker's say), loads each row once, encodes each
message once and offers it to the clients it concerns. Each client has a bounded queue: one
that does not keep up is disconnected (and replays from the database when it reconnects),
so a slow reader never holds up the poller, the writers or other clients. An idle stream
holds no database connection; a heartbeat comment goes out every ``heartbeat_s``, and the
key is checked again then, so a revoked key's stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from attrs import frozen

from claude_mem_core.domain.models import AgentEvent, GenerationJob
from claude_mem_core.domain.scopes import Need
from claude_mem_core.errors import ClaudeMemError, FieldIssue, InvalidInput
from claude_mem_core.ports.change_feed import Change, ChangeKind, FeedPosition
from claude_mem_core.services import stream
from claude_mem_core.services.context import Caller, Deps
from claude_mem_http.server.auth import parse_bearer, requires
from claude_mem_http.server.middlewares import REQUEST_ID_HEADER
from claude_mem_http.server.state import REQUEST_ID, RUNTIME
from claude_mem_http.wire import responses, schemas
from claude_mem_http.wire.schemas import RequestInvalid

log = logging.getLogger("claude_mem.http.stream")

CURSOR_HEADER = "Last-Event-ID"
HUB_PAGE = 500
SHUTDOWN_WAIT_S = 2.0


@frozen(kw_only=True)
class StreamSettings:
    """``heartbeat_s``: a ``: ping`` comment this often. ``poll_s``: how often the poller
    looks for other processes' writes while clients are connected. ``queue_size``: the
    messages a client may have waiting before it is disconnected. ``min_gap_s``: the
    least time between two reads of the poller (a burst of commits is read in one go)."""

    heartbeat_s: float = 15.0
    poll_s: float = 0.5
    queue_size: int = 1000
    min_gap_s: float = 0.02

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StreamSettings:
        """``CLAUDE_MEM_STREAM_HEARTBEAT_SECONDS`` and ``CLAUDE_MEM_STREAM_POLL_SECONDS``
        (positive numbers; anything else keeps the default, with a warning)."""
        values: dict[str, Any] = {}
        for name, attr in (("HEARTBEAT", "heartbeat_s"), ("POLL", "poll_s")):
            raw = env.get(f"CLAUDE_MEM_STREAM_{name}_SECONDS")
            if raw is None:
                continue
            try:
                value = float(raw)
            except ValueError:
                value = 0.0
            if not 0 < value < 86400:
                log.warning("CLAUDE_MEM_STREAM_%s_SECONDS must be a positive number", name)
                continue
            values[attr] = value
        return cls(**values)


def item(change: Change) -> dict[str, Any]:
    """The change's row in the JSON its read route returns."""
    record = change.record
    if isinstance(record, AgentEvent):
        return responses.json_of(responses.event(record))
    if isinstance(record, GenerationJob):
        return responses.json_of(responses.job_status(record))
    assert record is not None
    return responses.json_of(responses.observation(record))


def message(change: Change) -> bytes:
    data = {"kind": change.kind.value, "projectId": change.project_id, "item": item(change)}
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return (
        f"id: {change.position.encode()}\nevent: {change.kind.value}\ndata: {text}\n\n"
    ).encode()


class StreamClient:
    """One connected stream: its filter and its bounded queue of encoded messages."""

    def __init__(self, where: stream.StreamFilter, queue_size: int) -> None:
        self.where = where
        self.messages: deque[tuple[FeedPosition, bytes]] = deque()
        self.ready = asyncio.Event()
        self.queue_size = queue_size
        self.dropped = False
        self.closed = False
        self.abort: Callable[[], None] | None = None  # ends a write stuck on a full socket

    def offer(self, position: FeedPosition, data: bytes) -> None:
        if self.closed or self.dropped:
            return
        if len(self.messages) >= self.queue_size:
            self.dropped = True
            self.messages.clear()
            self.ready.set()
            if self.abort is not None:
                self.abort()
            return
        self.messages.append((position, data))
        self.ready.set()

    def close(self) -> None:
        self.closed = True
        self.ready.set()


class StreamHub:
    """The app's one poller of the change feed, fanning out to its clients."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.clients: set[StreamClient] = set()
        self._position: FeedPosition | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deps: Deps | None = None
        self.closing = False

    def wake(self) -> None:
        """Called after a commit of this process (maybe off the loop's thread)."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def register(self, where: stream.StreamFilter, deps: Deps) -> StreamClient:
        """A new client, which receives every change the poller reads from now on. Register
        before replaying from the database: the replay then reaches at least where the
        poller is, and the client drops what it got twice."""
        if self._task is None:
            self._deps = deps
            self._loop = asyncio.get_running_loop()
            self._unsubscribe = deps.storage.change_feed().on_commit(self.wake)
            self._task = asyncio.create_task(self._run(), name="claude-mem-stream-poller")
        client = StreamClient(where, self.settings.queue_size)
        async with self._lock:
            if not self.clients:
                # Idle, the poller did not follow the feed: start it at the head again.
                self._position = await deps.storage.change_feed().head()
            self.clients.add(client)
        self._wake.set()
        return client

    def unregister(self, client: StreamClient) -> None:
        self.clients.discard(client)

    async def _run(self) -> None:
        while not self.closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)
            self._wake.clear()
            if not self.clients:
                continue
            try:
                more = await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("stream poller: reading the change feed failed", exc_info=True)
                await asyncio.sleep(max(self.settings.poll_s, 0.5))
                continue
            if more:
                self._wake.set()
            await asyncio.sleep(self.settings.min_gap_s)

    async def _poll(self) -> bool:
        """Read the next page for the clients connected now; True if there may be more."""
        deps = self._deps
        async with self._lock:
            position = self._position
            clients = list(self.clients)
            if deps is None or position is None or not clients:
                return False
            teams = {c.where.team_id for c in clients}
            projects = {c.where.project_id for c in clients}
            team = next(iter(teams)) if len(teams) == 1 else None
            project = next(iter(projects)) if team is not None and len(projects) == 1 else None
            kinds: set[ChangeKind] = set().union(*(c.where.kinds for c in clients))
            changes = await deps.storage.change_feed().read(
                position, team_id=team, project_id=project, kinds=kinds, limit=HUB_PAGE
            )
            for change in changes:
                if change.record is None:
                    continue
                encoded: bytes | None = None
                for client in clients:
                    if client.where.admits(change):
                        encoded = encoded or message(change)
                        client.offer(change.position, encoded)
            if changes:
                self._position = changes[-1].position
            return len(changes) >= HUB_PAGE

    async def shutdown(self, app: web.Application | None = None) -> None:
        """End every stream (the server is stopping) and the poller."""
        self.closing = True
        for client in list(self.clients):
            client.close()
        self.clients.clear()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        task, self._task = self._task, None
        if task is not None:
            # Let a read in flight finish (cancelling it mid-connect could leak the
            # connection being opened); cut it only if it hangs.
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_WAIT_S)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


STREAM_HUB: web.AppKey[StreamHub] = web.AppKey("claude_mem_stream_hub", StreamHub)


def _cursor(request: web.Request) -> tuple[FeedPosition, str] | None:
    """The cursor to resume after, and where it came from (the header wins)."""
    header = request.headers.get(CURSOR_HEADER)
    field, raw = (CURSOR_HEADER, header) if header is not None else ("after", None)
    if header is None:
        raw = schemas.query_one(request.query, "after")
    if raw is None:
        return None
    try:
        return FeedPosition.decode(raw, field=field), field
    except InvalidInput as bad:
        raise RequestInvalid(FieldIssue(field, bad.issues[0].message, "invalid")) from None


def _kinds(request: web.Request) -> frozenset[ChangeKind] | None:
    try:
        return stream.parse_kinds(schemas.query_one(request.query, "kinds"))
    except InvalidInput as bad:
        raise RequestInvalid(FieldIssue("kinds", bad.issues[0].message, "invalid")) from None


async def _still_allowed(request: web.Request, caller: Caller) -> bool:
    """Whether the stream's key still works (revoked or expired: the stream ends)."""
    token = parse_bearer(request.headers.get("Authorization"))
    if token is None or caller.api_key_id is None:
        return True
    try:
        await request.app[RUNTIME].memory.key_lookup.verify(token)
    except ClaudeMemError:
        return False
    return True


@requires(Need.READ)
async def get_stream(request: web.Request, caller: Caller) -> web.StreamResponse:
    project_id = schemas.query_one(request.query, "projectId")
    kinds = _kinds(request)
    resume = _cursor(request)
    hub = request.app[STREAM_HUB]
    deps: Deps = request.app[RUNTIME].memory.deps
    where = await stream.open_stream(deps, caller, project_id=project_id, kinds=kinds)
    cursor = None
    if resume is not None:
        cursor, field = resume
        await stream.check_resumable(deps, cursor, field=field)  # pruned past it: 410
    client = await hub.register(where, deps)
    try:
        position = cursor if cursor is not None else await stream.start_position(deps)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # proxies: pass each message on at once
                REQUEST_ID_HEADER: request[REQUEST_ID],
            }
        )
        await response.prepare(request)
        client.abort = _abort_later(request, client)
        if cursor is None:
            await response.write(f": ready {position.encode()}\n\n".encode())
        with contextlib.suppress(ConnectionError):  # the client went away
            await _follow(request, response, caller, client, deps, position, hub.settings)
        return response
    finally:
        client.closed = True
        hub.unregister(client)


ABORT_GRACE_S = 1.0


def _abort_later(request: web.Request, client: StreamClient) -> Callable[[], None]:
    """For a client dropped as too slow: its handler ends the response as soon as it runs;
    if it is still stuck writing to a full socket a moment later, the connection is cut."""
    loop = asyncio.get_running_loop()

    def cut() -> None:
        transport = request.transport
        if not client.closed and transport is not None:
            transport.abort()

    def schedule() -> None:
        loop.call_later(ABORT_GRACE_S, cut)

    return schedule


async def _follow(
    request: web.Request,
    response: web.StreamResponse,
    caller: Caller,
    client: StreamClient,
    deps: Deps,
    position: FeedPosition,
    settings: StreamSettings,
) -> None:
    # What was missed, from the database; the hub queues live changes meanwhile.
    while not client.closed:
        page = await stream.read_page(deps, client.where, position)
        if page.end == position:
            break
        for change in page.changes:
            await response.write(message(change))
        position = page.end
    while not (client.closed or client.dropped):
        try:
            await asyncio.wait_for(client.ready.wait(), settings.heartbeat_s)
        except TimeoutError:
            if not await _still_allowed(request, caller):
                await response.write(b": key refused\n\n")
                return
            await response.write(b": ping\n\n")
            continue
        client.ready.clear()
        while client.messages and not (client.closed or client.dropped):
            at, data = client.messages.popleft()
            if at <= position:
                continue  # sent by the replay already
            await response.write(data)
            position = at
    if client.dropped:
        log.info("stream client too slow: disconnected (it resumes from its last id)")


def setup(app: web.Application, settings: StreamSettings | None = None) -> None:
    """Mount ``GET /v1/stream`` and its hub; the streams end when the app shuts down."""
    hub = StreamHub(settings or StreamSettings())
    app[STREAM_HUB] = hub
    app.router.add_get("/v1/stream", get_stream)
    app.on_shutdown.append(hub.shutdown)


__all__ = ["STREAM_HUB", "StreamClient", "StreamHub", "StreamSettings", "get_stream", "setup"]
