"""What the client sends, typed: keys spelled as on the wire (api.md §3-§5). What it
receives is decoded into the wire classes the server builds it from
(:mod:`claude_mem_http.wire.bodies`); nothing here describes answers."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

SourceType = Literal["hook", "worker", "provider", "server", "api"]


class EventInput(TypedDict, total=False):
    """One element of a batch, as sent (``projectId``, ``sourceType``, ``eventType`` and
    ``occurredAtEpoch`` are required by the server)."""

    projectId: str
    sourceType: SourceType
    eventType: str
    occurredAtEpoch: int
    serverSessionId: str | None
    contentSessionId: str | None
    memorySessionId: str | None
    sourceEventId: str | None
    payload: Any
    metadata: dict[str, Any]
