"""The Redis queue (``CLAUDE_MEM_QUEUE_ENGINE=redis``): a taskiq broker built from the URL.

:class:`TaskiqQueue` is the :class:`JobQueue` the HTTP server, embedders and workers publish
through. Its broker is :class:`~claude_mem_core.adapters.redis_stream_broker.JobStreamBroker`,
taskiq-redis's acknowledging stream broker extended with delays, deduplication of waiting
messages and bounded reads (its docstring has the Redis layout). Publishing kicks the task
``claude_mem.generate`` *by name* through taskiq's kicker, so producers never import worker
code, taskiq middlewares see every message, and a plain taskiq receiver can run it
(``taskiq worker claude_mem_worker:broker``). The :class:`QueueMessage` fields are the
task's keyword arguments; routing travels in labels (``queue_name``: the lane's stream,
``transport_id``, ``delay``), and so do the request id of the request that queued the job
(``request_id``) and, when tracing, the publishing span's context (``traceparent`` …, as
taskiq's own OpenTelemetry middleware carries it), never added to the stored payload.

The broker, and with it taskiq and pydantic, is built on first use: a process that never
touches the queue (a server that has not published yet) does not load them.

The database stays the source of truth: a message lost with Redis (restart without
persistence, flush) is published again by the worker's reconciliation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from claude_mem_core.errors import QueueError
from claude_mem_core.ports.queue import LANES, QueueMessage
from claude_mem_core.ports.tracing import NOOP_TRACER, Attributes, Tracer

if TYPE_CHECKING:  # taskiq (and pydantic) load only when the broker is built
    from taskiq.message import TaskiqMessage

    from claude_mem_core.adapters.redis_stream_broker import JobStreamBroker

log = logging.getLogger("claude_mem.queue.redis")

TASK_NAME = "claude_mem.generate"

T = TypeVar("T")


def redis_location(url: str) -> str:
    """``host:port/db`` of a Redis URL, never its credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    db = parts.path.lstrip("/") or "0"
    return f"{host}:{port}/{db}"


def message_from_taskiq(message: TaskiqMessage) -> QueueMessage:
    """The :class:`QueueMessage` a ``claude_mem.generate`` task message carries."""
    if message.task_name != TASK_NAME:
        raise ValueError(f"not a {TASK_NAME} message: {message.task_name!r}")
    return message_from_kwargs(message.kwargs)


def message_from_kwargs(kwargs: dict[str, Any]) -> QueueMessage:
    payload = kwargs.get("payload")
    fields = [kwargs.get(name) for name in ("job_id", "transport_id", "lane")]
    if not all(isinstance(value, str) and value for value in fields) or not isinstance(
        payload, dict
    ):
        raise ValueError("a generate message needs job_id, transport_id, lane and payload")
    return QueueMessage(
        job_id=str(kwargs["job_id"]),
        transport_id=str(kwargs["transport_id"]),
        lane=str(kwargs["lane"]),
        payload=payload,
    )


def message_attributes(message: QueueMessage, destination: str) -> Attributes:
    """A publish or process span's attributes: where the message goes, and ids."""
    request_id = message.payload.get("request_id")
    return {
        "messaging.system": "redis",
        "messaging.destination.name": destination,
        "messaging.message.id": message.transport_id,
        "claude_mem.job.id": message.job_id,
        "claude_mem.request_id": request_id if isinstance(request_id, str) else None,
    }


def trace_carrier(labels: dict[str, Any]) -> dict[str, str]:
    """The trace context among a received message's labels (the text ones)."""
    return {key: value for key, value in labels.items() if isinstance(value, str)}


class TaskiqQueue:
    """:class:`JobQueue` on a :class:`JobStreamBroker` (built, with taskiq, on first use)."""

    name = "redis"

    def __init__(
        self, broker_factory: Callable[[], JobStreamBroker], *, prefix: str, location: str
    ) -> None:
        self._broker_factory = broker_factory
        self._broker: JobStreamBroker | None = None
        self.prefix = prefix
        self.location = location
        self.group = f"{prefix}:workers"
        self._closed = False
        self.tracer: Tracer = NOOP_TRACER

    def trace_with(self, tracer: Tracer) -> None:
        """Trace each publish, and carry its context to the worker in the labels."""
        self.tracer = tracer

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "claude_mem",
        max_connections: int = 64,
        connect_timeout: float = 2.0,
        block_ms: int = 1000,
        **consumer: Any,
    ) -> TaskiqQueue:
        """The queue for ``url``. Producers fail fast when Redis is down (short connect
        timeout, two quick retries) so a publish never hangs a request. ``consumer``:
        the reading side's options of :class:`JobStreamBroker` (``capacity``,
        ``consumer_name``, ``stale_after_seconds`` …). Connects to nothing yet."""

        def broker_factory() -> JobStreamBroker:
            from redis.asyncio.retry import Retry
            from redis.backoff import ExponentialBackoff

            from claude_mem_core.adapters.redis_stream_broker import JobStreamBroker

            return JobStreamBroker(
                url,
                prefix=prefix,
                location=redis_location(url),
                block_ms=block_ms,
                max_connections=max_connections,
                socket_connect_timeout=connect_timeout,
                socket_timeout=max(5.0, block_ms / 1000 + 5.0),
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
                **consumer,
            )

        return cls(broker_factory, prefix=prefix, location=redis_location(url))

    @property
    def broker(self) -> JobStreamBroker:
        """The taskiq broker (for receivers, task registration and middlewares); built,
        and taskiq imported, on first use."""
        if self._broker is None:
            self._broker = self._broker_factory()
        return self._broker

    @property
    def streams(self) -> list[str]:
        return [self.stream_for(lane) for lane in LANES]

    def stream_for(self, lane: str) -> str:
        return f"{self.prefix}:{lane}"

    def _error(self, action: str, exc: BaseException) -> QueueError:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        return QueueError(
            f"the Redis queue could not {action} ({type(cause).__name__}: {cause}); is Redis "
            f"running at {self.location}? Check CLAUDE_MEM_REDIS_URL."
        )

    async def _redis(self, action: str, call: Callable[[], Awaitable[T]]) -> T:
        from redis.exceptions import RedisError

        try:
            return await call()
        except RedisError as exc:
            raise self._error(action, exc) from exc

    # -- lifecycle ----------------------------------------------------------------------

    async def startup(self) -> None:
        """Start the broker as a client: the streams and the consumer group are created
        (idempotent), so a worker that starts later still sees what was published."""
        broker = self.broker
        if broker.started:
            return
        try:
            await self._redis("start", broker.startup)
        except QueueError:
            broker.started = False
            raise

    async def close(self) -> None:
        """Close the client side. A worker's broker is shut down by its receiver (taskiq's
        shutdown events run there), not here."""
        if self._closed or self._broker is None:
            self._closed = True
            return
        self._closed = True
        broker = self._broker
        if broker.is_worker_process:
            return
        from redis.exceptions import RedisError

        try:
            if broker.started:
                await broker.shutdown()
            else:
                await broker.connection_pool.disconnect()
        except RedisError as exc:  # pragma: no cover - closing a broken pool
            log.debug("closing the Redis queue: %s", exc)

    async def ping(self) -> None:
        broker = self.broker
        await self._redis("be reached", broker.redis.ping)

    # -- producing ----------------------------------------------------------------------

    async def publish(self, message: QueueMessage, *, delay: float = 0.0) -> None:
        if message.lane not in LANES:
            raise QueueError(f"unknown queue lane {message.lane!r}")
        if not self.broker.started:
            await self.startup()
        labels: dict[str, Any] = {
            "queue_name": self.stream_for(message.lane),
            "transport_id": message.transport_id,
        }
        if delay > 0:
            labels["delay"] = float(delay)
        request_id = message.payload.get("request_id")
        if isinstance(request_id, str):
            labels["request_id"] = request_id
        if not self.tracer.enabled:
            await self._kick(message, labels)
            return
        stream = labels["queue_name"]
        with self.tracer.span(
            f"publish {stream}",
            message_attributes(message, stream),
            kind="producer",
            request_id=request_id if isinstance(request_id, str) else None,
        ):
            # Our own labels win: a propagator may not overwrite the routing.
            await self._kick(message, {**self.tracer.inject(), **labels})

    async def _kick(self, message: QueueMessage, labels: dict[str, Any]) -> None:
        from taskiq.exceptions import SendTaskError
        from taskiq.kicker import AsyncKicker

        kicker: AsyncKicker[Any, Any] = AsyncKicker(TASK_NAME, self.broker, labels)
        try:
            await kicker.kiq(
                job_id=message.job_id,
                transport_id=message.transport_id,
                lane=message.lane,
                payload=message.payload,
            )
        except SendTaskError as exc:
            raise self._error(f"publish job {message.job_id}", exc) from exc

    async def publish_many(self, messages: Sequence[tuple[QueueMessage, float]]) -> None:
        """Publish every ``(message, delay)``: kicked together, they reach Redis in one
        pipelined round trip."""
        if not messages:
            return
        with self.broker.batched():
            results = await asyncio.gather(
                *(self.publish(message, delay=delay) for message, delay in messages),
                return_exceptions=True,
            )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def depth(self) -> dict[str, int]:
        """Messages not yet processed per lane: in the stream (waiting or being processed)
        plus delayed."""
        return await self._redis("count waiting messages", self.broker.depth)

    async def pending(self) -> dict[str, int]:
        """Messages received by some consumer and not acknowledged, per lane."""
        return await self._redis("count pending messages", self.broker.pending)

    async def delete_all_keys(self) -> int:
        """Delete every key under this queue's prefix (tests, and ``reset`` tooling)."""
        return await self._redis("delete its keys", self.broker.delete_all_keys)
