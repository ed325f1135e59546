"""The one exception hierarchy of claude-mem.

Services raise domain meanings (``NotFound``, ``Conflict``, ``InvalidInput``, ``Forbidden``);
adapters translate driver and SDK errors into infrastructure categories at their boundary.
The HTTP, MCP and CLI layers map these to status codes and exit codes in one place each.
"""

from __future__ import annotations

from claude_mem_core.distribution import install_hint


class ClaudeMemError(Exception):
    """Base class of every error raised by claude-mem."""

    default_message = "claude-mem error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self.args[0])


class NotFound(ClaudeMemError):
    """The resource does not exist, or is outside the caller's team or project.

    The two cases are deliberately indistinguishable, so no caller can probe for ids.
    """

    default_message = "Not found"


class Conflict(ClaudeMemError):
    """The request is valid but contradicts the resource's current state."""

    default_message = "Conflict"


class EventConflict(Conflict):
    """An event's ``sourceEventId`` (its idempotency key) was already used for an event
    with a different payload. ``event_id`` is the stored event; ``index`` the position of
    the attempt in a batch (None for a single event)."""

    default_message = "sourceEventId was already used for a different payload"

    def __init__(
        self,
        *,
        event_id: str,
        source_event_id: str | None,
        index: int | None = None,
    ) -> None:
        super().__init__(
            f"sourceEventId {source_event_id!r} was already used by event {event_id} "
            "with a different payload"
        )
        self.event_id = event_id
        self.source_event_id = source_event_id
        self.index = index


class CursorExpired(ClaudeMemError):
    """A stream's cursor is older than what the change feed keeps: resuming there could
    skip changes, so the client must start again without it. ``field``: where the cursor
    came from (``Last-Event-ID`` or ``after``). An HTTP layer answers 410."""

    default_message = "The cursor is older than the live stream keeps"

    def __init__(self, field: str, message: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Gone(Conflict):
    """What the request would store was erased and stays erased: an event whose
    ``sourceEventId`` names an erased event of the same project (``services/erase.py``).
    Nothing of the request is kept. An HTTP layer answers 410 (it is a :class:`Conflict`,
    so a layer that does not know it answers 409). ``source_event_id``: the id replayed;
    ``index``: the position of the event in a batch (None for a single event)."""

    default_message = "This event was erased and cannot be stored again"

    def __init__(self, *, source_event_id: str | None = None, index: int | None = None) -> None:
        super().__init__(
            f"sourceEventId {source_event_id!r} names an erased event; it cannot be stored again"
            if source_event_id is not None
            else None
        )
        self.source_event_id = source_event_id
        self.index = index


class Forbidden(ClaudeMemError):
    """The caller is known but lacks a scope, or the key is revoked or expired."""

    default_message = "Forbidden"


class Unauthorized(ClaudeMemError):
    """No credential was presented."""

    default_message = "Missing bearer API key"


class FieldIssue:
    """One problem with one input field; ``path`` names the field as the caller spelled it."""

    __slots__ = ("code", "message", "path")

    def __init__(self, path: str, message: str, code: str = "invalid") -> None:
        self.path = path
        self.message = message
        self.code = code

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path.split(".") if self.path else [],
            "message": self.message,
            "code": self.code,
        }

    def __repr__(self) -> str:
        return f"FieldIssue({self.path!r}, {self.message!r})"


class InvalidInput(ClaudeMemError):
    """Input failed validation; ``issues`` names each offending field."""

    default_message = "Invalid input"

    def __init__(
        self, issues: list[FieldIssue] | FieldIssue | str, message: str | None = None
    ) -> None:
        if isinstance(issues, str):
            issues = [FieldIssue("", issues)]
        elif isinstance(issues, FieldIssue):
            issues = [issues]
        self.issues: list[FieldIssue] = issues
        text = message or "; ".join(f"{i.path or '<input>'}: {i.message}" for i in issues)
        super().__init__(text)

    @classmethod
    def field(cls, path: str, message: str, code: str = "invalid") -> InvalidInput:
        return cls([FieldIssue(path, message, code)])


class IllegalTransition(Conflict):
    """A job status change that the state machine does not allow."""

    default_message = "Illegal job transition"


class StorageError(ClaudeMemError):
    """The storage backend failed."""

    default_message = "Storage failure"


class StorageUnavailable(StorageError):
    """The storage backend could not be reached; retrying later may succeed."""

    default_message = "Storage unavailable"


class SchemaNotReady(StorageError):
    """The database has not been migrated to the schema this code expects."""

    default_message = "Database schema is not up to date; run `claude-mem migrate`"


class QueueError(ClaudeMemError):
    """Publishing to or consuming from the job queue failed."""

    default_message = "Queue failure"


class ConfigurationError(ClaudeMemError):
    """Settings are missing, contradictory or unsafe; the message says what to set."""

    default_message = "Invalid configuration"


class MissingExtra(ConfigurationError):
    """An adapter needs an optional dependency that is not installed."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs the '{extra}' extra: {install_hint(extra)}")
        self.extra = extra


class ProviderError(ClaudeMemError):
    """An LLM provider call failed.

    ``kind`` is one of ``transient``, ``rate_limit``, ``auth``, ``bad_request``,
    ``context_too_long``, ``parse_error``, ``unknown``. Only ``transient`` and ``rate_limit``
    are worth retrying; ``retry_after`` (seconds) is the server's hint, when it gave one.
    """

    default_message = "Provider call failed"
    RETRYABLE_KINDS = frozenset({"transient", "rate_limit"})

    def __init__(
        self,
        message: str | None = None,
        *,
        kind: str = "unknown",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE_KINDS
