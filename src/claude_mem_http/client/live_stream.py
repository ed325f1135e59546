"""Following ``GET /v1/stream`` from Python: ``follow(client, project_id=...)``.

The server sends each new event, observation, summary and job change of the projects the
key may read as a Server-Sent Event (docs/stream.md). :func:`follow` parses them into
:class:`StreamMessage` values, in commit order, for as long as the connection lasts. It
does not reconnect by itself: a caller that wants to go on after a dropped connection (a
``ServerUnavailable``) calls it again with ``after=`` the last message's ``id`` and misses
nothing. A cursor older than the server keeps raises ``RequestRejected`` with status 410:
start again without one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
from attrs import frozen

from claude_mem_http.client.http_client import (
    USER_AGENT,
    ClaudeMemClient,
    ServerUnavailable,
    error_for,
)

# The server sends a heartbeat every 15 s by default: a connection silent for much longer
# than that is dead, whatever TCP believes.
SILENCE_LIMIT_S = 60.0


@frozen
class StreamMessage:
    """One change: its cursor (``id``, to resume after it), its kind (event, observation,
    summary, job), its project, and the item as the REST routes return it."""

    id: str
    kind: str
    project_id: str
    item: dict[str, Any]


def _message(fields: dict[str, str]) -> StreamMessage | None:
    if "data" not in fields or "id" not in fields:
        return None
    payload = json.loads(fields["data"])
    return StreamMessage(
        id=fields["id"],
        kind=fields.get("event", str(payload.get("kind", ""))),
        project_id=str(payload.get("projectId", "")),
        item=dict(payload.get("item") or {}),
    )


def parse_events(lines: Iterable[str]) -> list[StreamMessage]:
    """The complete messages of SSE ``lines`` (comments and heartbeats skipped)."""
    found: list[StreamMessage] = []
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            message = _message(fields)
            if message is not None:
                found.append(message)
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data" and name in fields:  # a multi-line data field
                value = fields[name] + "\n" + value
            fields[name] = value
    return found


async def follow(
    client: ClaudeMemClient,
    *,
    project_id: str | None = None,
    kinds: Iterable[str] | None = None,
    after: str | None = None,
) -> AsyncIterator[StreamMessage]:
    """The messages of one connection to ``GET /v1/stream`` (see the module docstring)."""
    params: dict[str, str] = {}
    if project_id is not None:
        params["projectId"] = project_id
    if kinds is not None:
        params["kinds"] = ",".join(kinds)
    headers = {"Accept": "text/event-stream", "User-Agent": USER_AGENT}
    if client.api_key is not None:
        headers["Authorization"] = f"Bearer {client.api_key}"
    if after is not None:
        headers["Last-Event-ID"] = after
    path = "/v1/stream"
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=client.timeout, sock_read=SILENCE_LIMIT_S
    )
    try:
        async with client._http().get(
            client.base_url + path, params=params, headers=headers, timeout=timeout
        ) as response:
            if response.status != 200:
                raw = await response.read()
                try:
                    body: Any = json.loads(raw.decode("utf-8")) if raw else {}
                except (UnicodeDecodeError, json.JSONDecodeError):
                    body = raw.decode("utf-8", "replace")
                raise error_for("GET", path, response.status, body, dict(response.headers))
            pending: list[str] = []
            async for raw_line in response.content:
                line = raw_line.decode("utf-8").rstrip("\r\n")
                pending.append(line)
                if not line:
                    for message in parse_events(pending):
                        yield message
                    pending = []
    except TimeoutError as exc:
        raise ServerUnavailable(
            f"GET {path}: nothing for {SILENCE_LIMIT_S:g} s", kind="timeout"
        ) from exc
    except aiohttp.ClientError as exc:
        raise ServerUnavailable(
            f"GET {path} failed: {type(exc).__name__}: {exc}", kind="transport"
        ) from exc


__all__ = ["SILENCE_LIMIT_S", "StreamMessage", "follow", "parse_events"]
