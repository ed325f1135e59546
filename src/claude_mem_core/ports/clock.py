"""Time and identity as ports, so services are deterministic under test."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Protocol


def truncate_ms(moment: datetime) -> datetime:
    """UTC, millisecond precision: what the wire (epoch ms) and every backend can hold."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=(moment.microsecond // 1000) * 1000)


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC, truncated to milliseconds."""


class IdSource(Protocol):
    def new_id(self) -> str: ...


class SystemClock:
    def now(self) -> datetime:
        return truncate_ms(datetime.now(UTC))


class UuidSource:
    def new_id(self) -> str:
        return str(uuid.uuid4())
