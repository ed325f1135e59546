"""The Redis queue: taskiq-redis's acknowledging stream broker (``CLAUDE_MEM_QUEUE_ENGINE=redis``).

Layout (``<p>`` = ``CLAUDE_MEM_QUEUE_REDIS_PREFIX``, default ``claude_mem``):

* one Redis stream per lane, ``<p>:<lane>``, read by the consumer group ``<p>:workers``
  (created at id ``0``, so a group created after messages were added still sees them);
* each stream entry is a taskiq message (taskiq's JSON formatter) for the task
  ``claude_mem.generate`` with the :class:`QueueMessage` fields as keyword arguments, so
  producers never import worker code and a plain taskiq receiver could run it too;
* delayed messages (retry backoff, debounce) wait in a sorted set ``<p>:delayed:<lane>``
  scored by due time in Redis's own clock, with their bodies in ``<p>:delayed-data:<lane>``;
  the worker moves due ones into the stream (:meth:`TaskiqQueue.promote_due`, atomic Lua).
  taskiq's stream broker has no delay of its own. Publishing a transport id that is already
  delayed restarts its delay (that is what debounce needs); publishing it with no delay
  makes it due now;
* a marker ``<p>:waiting:<transport id>`` (with a TTL) exists while a message for that
  transport id waits undelivered, so republishing a waiting job (reconciliation does that)
  does not add a duplicate. A worker removes the marker when it receives the message.
  Publishing is one Lua script per message (marker check, marker and ``XADD`` together:
  one round trip, nothing half done), and :meth:`TaskiqQueue.publish_many` pipelines the
  scripts of a batch into one round trip;
* acknowledging a message deletes its entry (``XACK`` + ``XDEL``), so the stream holds only
  messages not yet processed and ``depth()`` is ``XLEN`` plus the delayed count.

The database stays the source of truth: a message lost with Redis (restart without
persistence, flush) is published again by the worker's reconciliation.

Consumption is not part of the :class:`JobQueue` port: the worker (``claude_mem_worker``)
calls :meth:`receive`, :meth:`claim_stale` and :meth:`promote_due` and acknowledges each
:class:`Delivery` after processing it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from attrs import define, field
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from claude_mem_core.errors import QueueError
from claude_mem_core.ports.queue import EVENT_LANE, SUMMARY_LANE, QueueMessage

if TYPE_CHECKING:  # taskiq (and pydantic) load only when a broker or decoder is needed
    from taskiq.message import TaskiqMessage
    from taskiq_redis import RedisStreamBroker

log = logging.getLogger("claude_mem.queue.redis")

TASK_NAME = "claude_mem.generate"
LANES = (EVENT_LANE, SUMMARY_LANE)

# Immediate publish, one round trip: "already waiting" (0), "delayed, now made due" (2), or
# "new": marker set and the entry added to the lane's stream (1), all atomically.
_PUBLISH_NOW = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 0, ARGV[1])
  return 2
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  redis.call('XADD', KEYS[3], '*', 'data', ARGV[3])
  return 1
end
return 0
"""

# Delayed publish: (re)schedule at Redis time + delay; a re-publish restarts the delay.
_PUBLISH_LATER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('SET', KEYS[3], '1', 'PX', tonumber(ARGV[2]) + tonumber(ARGV[4]))
return 1
"""

# Move due delayed messages into the lane's stream.
_PROMOTE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local data = redis.call('HGET', KEYS[2], member)
  if data then
    redis.call('XADD', KEYS[3], '*', 'data', data)
  end
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
end
return #due
"""


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


@define
class Delivery:
    """One received stream entry. ``message`` is None when the entry could not be decoded
    (``error`` says why); such entries should simply be acknowledged."""

    queue: TaskiqQueue = field(repr=False)
    stream: str
    entry_id: str
    data: bytes = field(repr=False)
    message: QueueMessage | None = None
    error: str | None = None
    done: bool = field(default=False, init=False)

    async def ack(self) -> None:
        """Processing is over (whatever its outcome): forget the entry."""
        if self.done:
            return
        await self.queue._ack(self.stream, self.entry_id)
        self.done = True

    async def requeue(self) -> None:
        """Hand the entry back, unprocessed, to any consumer (used at shutdown)."""
        if self.done:
            return
        await self.queue._requeue(self.stream, self.entry_id, self.data)
        self.done = True


class TaskiqQueue:
    """:class:`JobQueue` on the streams of a taskiq-redis :class:`RedisStreamBroker`.

    Producing needs no taskiq object: the entry is the JSON taskiq's default formatter
    writes, built here, and added by the publish script in the same round trip as its
    waiting marker. The broker itself (for taskiq tooling) is built on first use of
    :attr:`broker`, so a producer such as the HTTP server never imports taskiq."""

    name = "redis"
    EMPTY_LANE_SKIP = 0.1

    def __init__(
        self,
        broker: RedisStreamBroker | None = None,
        *,
        prefix: str = "claude_mem",
        location: str = "redis",
        waiting_ttl_seconds: float = 600.0,
        connection_pool: BlockingConnectionPool | None = None,
        broker_factory: Callable[[], RedisStreamBroker] | None = None,
    ) -> None:
        if broker is not None:
            pool = broker.connection_pool
        elif connection_pool is not None:
            pool = connection_pool
        else:
            raise ValueError("TaskiqQueue needs a broker or a connection pool")
        self._broker = broker
        self._broker_factory = broker_factory
        self.prefix = prefix
        self.location = location
        self.group = f"{prefix}:workers"
        self.waiting_ttl_ms = int(waiting_ttl_seconds * 1000)
        self._pool = pool
        self._redis: Redis = Redis(connection_pool=pool)
        self._publish_now = self._redis.register_script(_PUBLISH_NOW)
        self._publish_later = self._redis.register_script(_PUBLISH_LATER)
        self._promote = self._redis.register_script(_PROMOTE)
        self._started = False
        self._closed = False
        self._turn = 0
        self._empty_until: dict[str, float] = {}
        self._loads: Callable[[bytes], TaskiqMessage] | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "claude_mem",
        max_connections: int = 64,
        connect_timeout: float = 2.0,
        block_ms: int = 1000,
    ) -> TaskiqQueue:
        """The queue for ``url``. Producers fail fast when Redis is down (short connect
        timeout, two quick retries) so a publish never hangs a request. Connects to
        nothing yet."""
        streams = [f"{prefix}:{lane}" for lane in LANES]
        connection: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": max(5.0, block_ms / 1000 + 5.0),
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        }

        def broker_factory() -> RedisStreamBroker:
            from taskiq_redis import RedisStreamBroker

            return RedisStreamBroker(
                url,
                queue_name=streams[0],
                additional_streams={stream: ">" for stream in streams[1:]},
                consumer_group_name=f"{prefix}:workers",
                consumer_id="0",
                xread_block=block_ms,
                max_connection_pool_size=max_connections,
                **connection,
            )

        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, **connection)
        return cls(
            prefix=prefix,
            location=redis_location(url),
            connection_pool=pool,
            broker_factory=broker_factory,
        )

    @property
    def broker(self) -> RedisStreamBroker:
        """The taskiq broker on the same streams and group (for taskiq tooling and task
        registration); built, and taskiq imported, on first use."""
        if self._broker is None:
            if self._broker_factory is None:  # pragma: no cover - the constructor forbids it
                raise RuntimeError("no taskiq broker configured")
            self._broker = self._broker_factory()
        return self._broker

    # -- names --------------------------------------------------------------------------

    def stream_for(self, lane: str) -> str:
        return f"{self.prefix}:{lane}"

    def _delayed(self, lane: str) -> tuple[str, str]:
        return f"{self.prefix}:delayed:{lane}", f"{self.prefix}:delayed-data:{lane}"

    def _marker(self, transport_id: str) -> str:
        return f"{self.prefix}:waiting:{transport_id}"

    @property
    def streams(self) -> list[str]:
        return [self.stream_for(lane) for lane in LANES]

    def _error(self, action: str, exc: BaseException) -> QueueError:
        return QueueError(
            f"the Redis queue could not {action} ({type(exc).__name__}: {exc}); is Redis "
            f"running at {self.location}? Check CLAUDE_MEM_REDIS_URL."
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def startup(self) -> None:
        """Create the streams and the consumer group (idempotent). A producer does this
        before its first publish, so no message can precede the group."""
        try:
            if not self._started and self._broker is not None:
                await self._broker.startup()
            await self._declare_groups()
        except RedisError as exc:
            raise self._error("start", exc) from exc
        self._started = True

    async def _declare_groups(self) -> None:
        for stream in self.streams:
            try:
                await self._redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._broker is not None:
                await self._broker.shutdown()
            if self._broker is None or self._broker.connection_pool is not self._pool:
                await self._pool.disconnect()
        except RedisError as exc:  # pragma: no cover - closing a broken pool
            log.debug("closing the Redis queue: %s", exc)

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise self._error("be reached", exc) from exc

    # -- producing ----------------------------------------------------------------------

    def encode(self, message: QueueMessage) -> bytes:
        """The stream entry for ``message``: the JSON of a taskiq message for the task
        ``claude_mem.generate`` with the fields as kwargs, exactly as taskiq's default
        formatter (``model_dump`` through its JSON serializer) writes it."""
        stream = self.stream_for(message.lane)
        return json.dumps(
            {
                "task_id": os.urandom(16).hex(),
                "task_name": TASK_NAME,
                "labels": {"queue_name": stream},
                "labels_types": {"queue_name": 3},  # taskiq.labels.LabelType.STR
                "args": [],
                "kwargs": {
                    "job_id": message.job_id,
                    "transport_id": message.transport_id,
                    "lane": message.lane,
                    "payload": message.payload,
                },
            }
        ).encode()

    def _script_call(self, message: QueueMessage, delay: float) -> tuple[str, list[Any]]:
        """(script sha, EVALSHA arguments after the sha) publishing ``message``."""
        if message.lane not in LANES:
            raise QueueError(f"unknown queue lane {message.lane!r}")
        encoded = self.encode(message)
        zset, data = self._delayed(message.lane)
        marker = self._marker(message.transport_id)
        if delay > 0:
            args = [message.transport_id, max(1, int(delay * 1000)), encoded, self.waiting_ttl_ms]
            return self._publish_later.sha, [3, zset, data, marker, *args]
        stream = self.stream_for(message.lane)
        args = [message.transport_id, self.waiting_ttl_ms, encoded]
        return self._publish_now.sha, [3, zset, marker, stream, *args]

    async def _load_scripts(self) -> None:
        for script in (self._publish_now, self._publish_later):
            await self._redis.script_load(script.script)

    async def publish(self, message: QueueMessage, *, delay: float = 0.0) -> None:
        sha, args = self._script_call(message, delay)
        try:
            if not self._started:
                await self.startup()
            try:
                await self._redis.evalsha(sha, *args)
            except NoScriptError:  # Redis restarted or flushed its scripts (same sha)
                await self._load_scripts()
                await self._redis.evalsha(sha, *args)
        except RedisError as exc:
            raise self._error(f"publish job {message.job_id}", exc) from exc

    async def publish_many(self, messages: Sequence[tuple[QueueMessage, float]]) -> None:
        """Publish every ``(message, delay)`` in one pipelined round trip."""
        if not messages:
            return
        calls = [self._script_call(message, delay) for message, delay in messages]
        try:
            if not self._started:
                await self.startup()
            for attempt in (1, 2):
                pipe: Any = self._redis.pipeline(transaction=False)
                for sha, args in calls:
                    pipe.evalsha(sha, *args)
                try:
                    await pipe.execute()
                    return
                except NoScriptError:
                    if attempt == 2:
                        raise
                    await self._load_scripts()  # then the same calls again
        except RedisError as exc:
            raise self._error(f"publish {len(messages)} jobs", exc) from exc

    async def depth(self) -> dict[str, int]:
        """Messages not yet processed per lane: in the stream (waiting or being processed)
        plus delayed."""
        try:
            pipe: Any = self._redis.pipeline(transaction=False)
            for lane in LANES:
                pipe.xlen(self.stream_for(lane))
                pipe.zcard(self._delayed(lane)[0])
            counts = await pipe.execute()
        except RedisError as exc:
            raise self._error("count waiting messages", exc) from exc
        return {
            lane: int(counts[2 * i] or 0) + int(counts[2 * i + 1] or 0)
            for i, lane in enumerate(LANES)
        }

    # -- consuming (the worker) ---------------------------------------------------------

    def _decoder(self) -> Callable[[bytes], TaskiqMessage]:
        """The broker's loader for stream entries (builds the broker on first use)."""
        if self._loads is None:
            self._loads = self.broker.formatter.loads
        return self._loads

    def _decode(self, stream: str, entry_id: Any, fields: Any) -> Delivery:
        entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        data = b""
        if isinstance(fields, dict):
            raw = fields.get(b"data", fields.get("data"))
            data = raw.encode() if isinstance(raw, str) else bytes(raw or b"")
        delivery = Delivery(queue=self, stream=stream, entry_id=entry, data=data)
        try:
            delivery.message = message_from_taskiq(self._decoder()(data))
        except Exception as exc:  # any undecodable entry is poison, not a crash
            delivery.error = f"{type(exc).__name__}: {exc}"
        return delivery

    async def receive(
        self,
        consumer: str,
        *,
        count: int = 1,
        block_ms: int | None = 1000,
        acks: Sequence[Delivery] = (),
    ) -> list[Delivery]:
        """New messages for ``consumer``, at most ``count``, waiting up to ``block_ms`` when
        none is there (None: do not wait). Lanes are read in turn, so neither starves the
        other (a lane found empty is read last for the next ``EMPTY_LANE_SKIP`` seconds,
        so a busy lane alone costs one read, not two). Re-creates the group if Redis
        lost it.

        ``acks``: processed deliveries to acknowledge (as :meth:`Delivery.ack`) in the
        same round trip as the first read; they are marked done once that succeeded."""
        try:
            try:
                deliveries: list[Delivery] = []
                streams = self.streams
                self._turn = (self._turn + 1) % len(streams)
                pending = [d for d in acks if not d.done]
                now = time.monotonic()
                order = streams[self._turn :] + streams[: self._turn]
                order.sort(key=lambda stream: self._empty_until.get(stream, 0.0) > now)
                for stream in order:
                    if len(deliveries) >= count:
                        break
                    want = count - len(deliveries)
                    if pending:
                        pipe: Any = self._redis.pipeline(transaction=True)
                        self._queue_acks(pipe, pending)
                        pipe.xreadgroup(self.group, consumer, {stream: ">"}, count=want)
                        fetched = (await pipe.execute())[-1]
                        for delivery in pending:
                            delivery.done = True
                        pending = []
                    else:
                        fetched = await self._redis.xreadgroup(
                            self.group, consumer, {stream: ">"}, count=want
                        )
                    fresh = self._parse(fetched)
                    if not fresh:
                        self._empty_until[stream] = now + self.EMPTY_LANE_SKIP
                    deliveries += fresh
                if not deliveries and block_ms is not None:
                    deliveries = self._parse(
                        await self._redis.xreadgroup(
                            self.group,
                            consumer,
                            dict.fromkeys(streams, ">"),
                            count=count,
                            block=block_ms,
                        )
                    )
                    for extra in deliveries[count:]:  # one per lane arrived at once
                        await extra.requeue()
                    deliveries = deliveries[:count]
            except ResponseError as exc:
                if "NOGROUP" not in str(exc) and "no longer exists" not in str(exc):
                    raise
                log.warning("Redis lost the queue streams (%s); recreating them", exc)
                await self._declare_groups()
                return []
            await self._received(deliveries)
        except RedisError as exc:
            raise self._error("receive messages", exc) from exc
        return deliveries

    def _parse(self, fetched: Any) -> list[Delivery]:
        deliveries: list[Delivery] = []
        for stream, entries in fetched or []:
            name = stream.decode() if isinstance(stream, bytes) else str(stream)
            for entry_id, fields in entries:
                deliveries.append(self._decode(name, entry_id, fields))
        return deliveries

    async def claim_stale(
        self, consumer: str, *, min_idle_ms: int, count: int = 100
    ) -> list[Delivery]:
        """Take over messages another consumer received but never acknowledged for
        ``min_idle_ms`` (a crashed worker). Duplicate deliveries are harmless: the worker
        re-reads the job row."""
        deliveries: list[Delivery] = []
        try:
            for stream in self.streams:
                try:
                    result = await self._redis.xautoclaim(
                        stream, self.group, consumer, min_idle_ms, "0-0", count=count
                    )
                except ResponseError as exc:
                    if "NOGROUP" in str(exc):
                        continue
                    raise
                claimed = result[1] if len(result) > 1 else []
                for entry_id, fields in claimed:
                    if fields is None:
                        continue  # deleted entry: XAUTOCLAIM dropped it from the PEL
                    deliveries.append(self._decode(stream, entry_id, fields))
                    if len(deliveries) >= count:
                        break
            await self._received(deliveries)
        except RedisError as exc:
            raise self._error("claim stale messages", exc) from exc
        return deliveries

    async def _received(self, deliveries: Sequence[Delivery]) -> None:
        markers = [self._marker(d.message.transport_id) for d in deliveries if d.message]
        if markers:
            await self._redis.delete(*markers)

    async def promote_due(self, limit: int = 500) -> int:
        """Move delayed messages that are due into their streams; returns how many."""
        moved = 0
        try:
            for lane in LANES:
                zset, data = self._delayed(lane)
                moved += int(
                    await self._promote(keys=[zset, data, self.stream_for(lane)], args=[limit])
                )
        except RedisError as exc:
            raise self._error("move due delayed messages", exc) from exc
        return moved

    async def pending(self) -> dict[str, int]:
        """Messages received by some consumer and not acknowledged, per lane."""
        counts: dict[str, int] = {}
        try:
            for lane in LANES:
                try:
                    info = await self._redis.xpending(self.stream_for(lane), self.group)
                except ResponseError:
                    counts[lane] = 0
                    continue
                counts[lane] = int(info.get("pending", 0) if isinstance(info, dict) else 0)
        except RedisError as exc:
            raise self._error("count pending messages", exc) from exc
        return counts

    def _queue_acks(self, pipe: Any, deliveries: Sequence[Delivery]) -> None:
        by_stream: dict[str, list[str]] = {}
        for delivery in deliveries:
            by_stream.setdefault(delivery.stream, []).append(delivery.entry_id)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.group, *ids)
            pipe.xdel(stream, *ids)

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """:meth:`Delivery.ack` for several deliveries, in one round trip."""
        pending = [d for d in deliveries if not d.done]
        if not pending:
            return
        try:
            pipe: Any = self._redis.pipeline(transaction=True)
            self._queue_acks(pipe, pending)
            await pipe.execute()
        except RedisError as exc:
            raise self._error(f"acknowledge {len(pending)} messages", exc) from exc
        for delivery in pending:
            delivery.done = True

    async def _ack(self, stream: str, entry_id: str) -> None:
        try:
            pipe: Any = self._redis.pipeline(transaction=True)
            pipe.xack(stream, self.group, entry_id)
            pipe.xdel(stream, entry_id)
            await pipe.execute()
        except RedisError as exc:
            raise self._error("acknowledge a message", exc) from exc

    async def _requeue(self, stream: str, entry_id: str, data: bytes) -> None:
        try:
            pipe: Any = self._redis.pipeline(transaction=True)
            pipe.xadd(stream, {b"data": data})
            pipe.xack(stream, self.group, entry_id)
            pipe.xdel(stream, entry_id)
            await pipe.execute()
        except RedisError as exc:
            raise self._error("requeue a message", exc) from exc

    async def delete_all_keys(self) -> int:
        """Delete every key under this queue's prefix (tests, and ``reset`` tooling)."""
        deleted = 0
        try:
            async for key in self._redis.scan_iter(match=f"{self.prefix}:*", count=500):
                deleted += int(await self._redis.delete(key))
        except RedisError as exc:
            raise self._error("delete its keys", exc) from exc
        return deleted
