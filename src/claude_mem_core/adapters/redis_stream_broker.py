"""The taskiq broker of the Redis queue: taskiq-redis's acknowledging stream broker,
extended for generation jobs.

:class:`JobStreamBroker` is a :class:`taskiq_redis.RedisStreamBroker` (same consumer group,
same stream entries, acknowledged after processing) with what the jobs need and the plain
stream broker lacks. Layout (``<p>`` = the key prefix, ``CLAUDE_MEM_QUEUE_REDIS_PREFIX``):

* one stream per lane, ``<p>:<lane>``, read by the consumer group ``<p>:workers`` (created
  at id ``0``, so a group created after messages were added still sees them). An entry is
  ``data`` (the taskiq message, as taskiq's JSON formatter writes it) and ``tid`` (the
  message's transport id, so a reader needs not decode it);
* **delay**: a kick whose ``delay`` label is positive waits in a sorted set
  ``<p>:delayed:<lane>`` scored by due time in Redis's own clock, its body in
  ``<p>:delayed-data:<lane>``; a consumer moves due ones into the stream every
  ``promote_interval``. Kicking a transport id that is already delayed restarts its delay
  (debounce needs that); kicking it with no delay makes it due now;
* **no duplicates while waiting**: a marker ``<p>:waiting:<transport id>`` (with a TTL) exists
  while a message for that transport id waits undelivered, so a second kick of a waiting
  job (reconciliation does that) adds nothing. A consumer removes the marker when it
  receives the message. A kick is one Lua script (marker check, marker and ``XADD``
  together: nothing half done); under :meth:`JobStreamBroker.batched` (``publish_many``)
  the kicks of one event-loop turn go to Redis in one pipelined round trip
  (``redis_stream_kicks.py``);
* **acknowledged = deleted** (``XACK`` + ``XDEL``), so a stream holds only messages not yet
  processed; acknowledgements ride along with the next read, or go ``ack_delay`` later;
* **reading** takes at most as many messages as there are free slots (``capacity`` minus
  messages received and not yet acknowledged), lanes in turn so neither starves, and
  never strands what it took: entries read but not handed to taskiq's receiver when it
  stops are put back for other consumers;
* **a dead consumer's messages** (received, never acknowledged) are claimed once they are
  ``stale_after_seconds`` idle, checked every ``claim_interval``;
* **outages**: Redis down or restarted empty never ends :meth:`listen`; it logs, backs off
  and retries, and re-creates a lost consumer group.

The database stays the source of truth: a message lost with Redis is published again by
the worker's reconciliation. This module imports taskiq; producers that never publish
(see :class:`~claude_mem_core.adapters.taskiq_queue.TaskiqQueue`) do not load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from attrs import define
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError, ResponseError
from taskiq import AckableMessage
from taskiq.formatters.json_formatter import JSONFormatter
from taskiq.message import BrokerMessage
from taskiq_redis import RedisStreamBroker

from claude_mem_core.adapters import redis_stream_scripts as scripts
from claude_mem_core.adapters.redis_stream_kicks import Kick, KickBatcher
from claude_mem_core.ports.queue import LANES

log = logging.getLogger("claude_mem.queue.redis")

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


def new_task_id() -> str:
    return os.urandom(16).hex()


async def _sleep_unless(
    stop: asyncio.Event, seconds: float | None, wake: asyncio.Event | None = None
) -> None:
    """Wait ``seconds`` (None: for ever), or until ``stop`` (or ``wake``) is set."""
    events = [stop] if wake is None else [stop, wake]
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@define(slots=True, eq=False)
class StreamEntry:
    """One stream entry this consumer received and has not acknowledged yet."""

    stream: str
    entry_id: str
    data: bytes
    transport_id: str | None
    acked: bool = False  # by the receiver: its slot is free
    settled: bool = False  # in Redis (XACK + XDEL sent)


class JobStreamBroker(RedisStreamBroker):
    """:class:`RedisStreamBroker` with delays, deduplication of waiting messages, bounded
    reads, prompt hand-back, claiming of a dead consumer's messages and outage recovery
    (see the module docstring). Labels it reads on a kick: ``queue_name`` (the lane's
    stream), ``transport_id`` and ``delay`` (seconds)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "claude_mem",
        location: str = "redis",
        capacity: int = 8,
        consumer_name: str | None = None,
        block_ms: int = 1000,
        stale_after_seconds: float = 300.0,
        claim_interval: float = 5.0,
        promote_interval: float = 0.2,
        ack_delay: float = 0.05,
        waiting_ttl_seconds: float = 600.0,
        max_connections: int = 64,
        **connection: Any,
    ) -> None:
        streams = [f"{prefix}:{lane}" for lane in LANES]
        super().__init__(
            url,
            queue_name=streams[0],
            additional_streams={stream: ">" for stream in streams[1:]},
            consumer_group_name=f"{prefix}:workers",
            consumer_name=consumer_name,
            consumer_id="0",
            xread_block=block_ms,
            xread_count=capacity,
            idle_timeout=int(stale_after_seconds * 1000),
            max_connection_pool_size=max_connections,
            **connection,
        )
        # The JSON formatter (pydantic's own JSON, no dict round trip) and short random ids:
        # both sides of the queue are this class, so both agree.
        self.with_formatter(JSONFormatter())
        self.with_id_generator(new_task_id)
        self.prefix = prefix
        self.location = location  # host:port/db for log lines, never the credentials
        self.streams = streams
        self.capacity = max(1, capacity)
        self.claim_interval = claim_interval
        self.promote_interval = promote_interval
        self.ack_delay = ack_delay
        self.waiting_ttl_ms = int(waiting_ttl_seconds * 1000)
        self.started = False
        self.redis: Redis = Redis(connection_pool=self.connection_pool)
        self._kick_now = self.redis.register_script(scripts.KICK_NOW)
        self._kick_later = self.redis.register_script(scripts.KICK_LATER)
        self._promote = self.redis.register_script(scripts.PROMOTE)
        self._read_now = self.redis.register_script(scripts.READ)
        self._batcher = KickBatcher(self._send_kicks)
        # Reading side: messages handed out and not acknowledged, acknowledgements not yet
        # sent, and which lane was found empty lately (read last for EMPTY_LANE_SKIP).
        self._outstanding = 0
        self._freed = asyncio.Event()
        self._acks: list[StreamEntry] = []
        self._acks_waiting = asyncio.Event()
        self._turn = 0
        self._empty_until: dict[str, float] = {}
        self._next_claim = 0.0
        # Redis unreachable: the first retry after this, doubling up to ``retry_most``.
        self.retry_first = RETRY_FIRST_S
        self.retry_most = RETRY_MAX_S
        self._down_since: float | None = None
        self._failed_tries = 0
        self.reached = False

    EMPTY_LANE_SKIP = 0.1

    # -- names --------------------------------------------------------------------------

    def stream_for(self, lane: str) -> str:
        return f"{self.prefix}:{lane}"

    def delayed_keys(self, lane: str) -> tuple[str, str]:
        return f"{self.prefix}:delayed:{lane}", f"{self.prefix}:delayed-data:{lane}"

    def marker(self, transport_id: str) -> str:
        return f"{self.prefix}:waiting:{transport_id}"

    # -- lifecycle ----------------------------------------------------------------------

    async def startup(self) -> None:
        # Set first: startup handlers may publish, and publishing starts a broker that
        # is not started yet.
        self.started = True
        await super().startup()

    async def _declare_consumer_group(self) -> None:
        try:
            await self.declare_groups()
        except RedisError as exc:
            if not self.is_worker_process:
                raise
            # A worker starts anyway: :meth:`listen` waits for Redis and declares them.
            log.debug("consumer groups not declared yet: %s", exc)

    async def declare_groups(self) -> None:
        """Create the lane streams and the consumer group (idempotent)."""
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(
                    stream, self.consumer_group_name, id=self.consumer_id, mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def shutdown(self) -> None:
        """taskiq's shutdown (events, then the pool is closed), then the acknowledgements
        still owed (they may come from jobs the shutdown handlers cut off)."""
        await super().shutdown()
        with contextlib.suppress(RedisError, TimeoutError):
            await asyncio.wait_for(self._flush_acks(), timeout=5.0)
        await self.connection_pool.disconnect()

    # -- producing ----------------------------------------------------------------------

    def _kick_call(self, message: BrokerMessage) -> tuple[str, list[Any]]:
        """(script sha, EVALSHA arguments after the sha) publishing ``message``."""
        labels = message.labels
        stream = str(labels.get("queue_name") or self.queue_name)
        lane = stream.removeprefix(f"{self.prefix}:")
        if stream not in self.streams:
            raise ValueError(f"unknown queue lane {lane!r}")
        transport_id = str(labels.get("transport_id") or message.task_id)
        delay = float(labels.get("delay") or 0.0)
        if delay > 0:
            zset, data = self.delayed_keys(lane)
            args = [transport_id, max(1, int(delay * 1000)), message.message, self.waiting_ttl_ms]
            return self._kick_later.sha, [3, zset, data, self.marker(transport_id), *args]
        zset = self.delayed_keys(lane)[0]
        args = [transport_id, self.waiting_ttl_ms, message.message]
        return self._kick_now.sha, [3, zset, self.marker(transport_id), stream, *args]

    def batched(self) -> AbstractContextManager[None]:
        """Kicks made in this context (and in tasks started from it) during one event-loop
        turn go to Redis together, in one pipelined round trip."""
        return self._batcher.batched()

    async def kick(self, message: BrokerMessage) -> None:
        """Send ``message`` (see :meth:`batched` for sending several at once)."""
        sha, args = self._kick_call(message)
        await self._batcher.submit(sha, args)

    async def _send_kicks(self, kicks: Sequence[Kick]) -> None:
        for attempt in (1, 2):
            try:
                if len(kicks) == 1:  # a lone kick (one request's job): no pipeline
                    await self.redis.evalsha(kicks[0].sha, *kicks[0].args)
                else:
                    pipe: Any = self.redis.pipeline(transaction=False)
                    for kick in kicks:
                        pipe.evalsha(kick.sha, *kick.args)
                    await pipe.execute()
                return
            except NoScriptError:  # Redis restarted or flushed its scripts (same sha)
                if attempt == 2:
                    raise
                for script in (self._kick_now, self._kick_later):
                    await self.redis.script_load(script.script)

    # -- consuming ----------------------------------------------------------------------

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """Messages for taskiq's receiver, one at a time, each acknowledged through its
        ``ack`` once processed (see the module docstring for what reading guarantees)."""
        stop_chores = asyncio.Event()
        chores = [
            asyncio.create_task(self._promote_loop(stop_chores), name="claude-mem-promote"),
            asyncio.create_task(self._ack_loop(stop_chores), name="claude-mem-acks"),
        ]
        taken: deque[StreamEntry] = deque()
        try:
            while True:
                if not taken:
                    taken.extend(await self._next_batch())
                    continue
                entry = taken.popleft()
                self._outstanding += 1
                yield AckableMessage(data=entry.data, ack=self._acknowledger(entry))
        finally:
            # Chores stop between Redis calls: redis-py may swallow a cancellation that
            # lands inside a call, so they are cancelled only if they do not stop in time.
            stop_chores.set()
            _, late = await asyncio.wait(chores, timeout=2.0)
            for chore in late:
                chore.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
            if taken:
                await self.hand_back(list(taken))

    def _acknowledger(self, entry: StreamEntry) -> Callable[[], None]:
        def ack() -> None:
            if entry.acked:
                return
            entry.acked = True
            self._outstanding -= 1
            self._acks.append(entry)
            self._freed.set()
            self._acks_waiting.set()

        return ack

    async def _next_batch(self) -> list[StreamEntry]:
        delay = self.retry_first
        while True:
            while self._outstanding >= self.capacity:
                self._freed.clear()
                await self._freed.wait()
            read = asyncio.ensure_future(self._read(self.capacity - self._outstanding))
            try:
                entries = await asyncio.shield(read)
            except asyncio.CancelledError:
                # The receiver stops: what the read took (it may already be ours in Redis)
                # goes back to the stream instead of waiting to be claimed as stale.
                with contextlib.suppress(BaseException):
                    taken = await read
                    if taken:
                        await self.hand_back(taken)
                raise
            except RedisError as exc:
                self._unreachable(exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_most)
                continue
            self._reachable()
            return entries

    async def _read(self, count: int) -> list[StreamEntry]:
        """One read: a dead consumer's stale messages when it is time to look for them,
        else new ones (carrying the acknowledgements owed)."""
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.claim_interval
            claimed = await self.claim_stale(
                self.consumer_name, min_idle_ms=self.idle_timeout, count=count
            )
            if claimed:
                return claimed
        acks = self._take_acks()
        try:
            return await self.receive(
                self.consumer_name, count=count, block_ms=self.block, acks=acks
            )
        finally:
            self._acks[:0] = [entry for entry in acks if not entry.settled]

    def _unreachable(self, exc: BaseException, delay: float) -> None:
        self._failed_tries += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
        log.warning(
            "Redis at %s is not reachable (%s: %s); retrying in %.1fs (try %d, waiting until "
            "it is up or the worker is stopped)",
            self.location,
            type(exc).__name__,
            exc,
            delay,
            self._failed_tries,
        )

    def _reachable(self) -> None:
        self.reached = True
        if self._down_since is not None:
            log.info(
                "Redis at %s is reachable after %d failed tries (%.1fs)",
                self.location,
                self._failed_tries,
                time.monotonic() - self._down_since,
            )
            self._down_since = None
            self._failed_tries = 0

    def _take_acks(self) -> list[StreamEntry]:
        acks, self._acks = self._acks, []
        return acks

    async def receive(
        self,
        consumer: str,
        *,
        count: int = 1,
        block_ms: int | None = 1000,
        acks: Sequence[StreamEntry] = (),
    ) -> list[StreamEntry]:
        """New messages for ``consumer``, at most ``count``, waiting up to ``block_ms`` when
        none is there (None: do not wait). Lanes are read in turn, so neither starves the
        other (a lane found empty is read last for the next ``EMPTY_LANE_SKIP`` seconds,
        so a busy lane alone costs one read, not two). Re-creates the group if Redis lost
        it. ``acks``: entries to acknowledge in the same round trip as the first read."""
        group = self.consumer_group_name
        try:
            streams = self.streams
            self._turn = (self._turn + 1) % len(streams)
            now = time.monotonic()
            order = streams[self._turn :] + streams[: self._turn]
            order.sort(key=lambda stream: self._empty_until.get(stream, 0.0) > now)
            by_stream: dict[str, list[str]] = {}
            for entry in acks:
                if not entry.settled:
                    by_stream.setdefault(entry.stream, []).append(entry.entry_id)
            args: list[Any] = [group, consumer, count, f"{self.prefix}:waiting:"]
            for stream in order:
                ids = by_stream.get(stream, [])
                args += [len(ids), *ids]
            fetched = await self._read_now(keys=order, args=args)
            for entry in acks:
                entry.settled = True
            entries: list[StreamEntry] = []
            for stream, messages in fetched:
                fresh = self._parse([(stream, messages)], pairs=True)
                if not fresh:
                    self._empty_until[_text(stream)] = now + self.EMPTY_LANE_SKIP
                entries += fresh
            if entries or block_ms is None:
                return entries
            entries = self._parse(
                await self.redis.xreadgroup(
                    group, consumer, dict.fromkeys(streams, ">"), count=count, block=block_ms
                )
            )
            if len(entries) > count:  # one per lane arrived at once
                await self.hand_back(entries[count:])
                entries = entries[:count]
        except ResponseError as exc:
            if "NOGROUP" not in str(exc) and "no longer exists" not in str(exc):
                raise
            log.warning("Redis lost the queue streams (%s); recreating them", exc)
            await self.declare_groups()
            return []
        await self._received(entries)
        return entries

    def _parse(self, fetched: Any, *, pairs: bool = False) -> list[StreamEntry]:
        """Entries of an XREADGROUP / XAUTOCLAIM answer (``pairs``: fields as a flat
        ``[name, value, …]`` list, as a script returns them)."""
        entries: list[StreamEntry] = []
        for stream, messages in fetched or []:
            name = _text(stream)
            for entry_id, fields in messages:
                if fields is None:  # deleted meanwhile (XAUTOCLAIM reports it)
                    continue
                if pairs:
                    fields = dict(zip(fields[::2], fields[1::2], strict=True))
                entries.append(self._entry(name, entry_id, fields))
        return entries

    @staticmethod
    def _entry(stream: str, entry_id: Any, fields: Any) -> StreamEntry:
        data = fields.get(b"data", fields.get("data", b""))
        transport = fields.get(b"tid", fields.get("tid"))
        return StreamEntry(
            stream=stream,
            entry_id=_text(entry_id),
            data=data.encode() if isinstance(data, str) else bytes(data or b""),
            transport_id=None if transport is None else _text(transport),
        )

    async def _received(self, entries: Sequence[StreamEntry]) -> None:
        markers = [self.marker(e.transport_id) for e in entries if e.transport_id]
        if markers:
            await self.redis.delete(*markers)

    async def claim_stale(
        self, consumer: str, *, min_idle_ms: int, count: int = 100
    ) -> list[StreamEntry]:
        """Take over messages another consumer received but never acknowledged for
        ``min_idle_ms`` (a crashed worker). Duplicate deliveries are harmless: the worker
        re-reads the job row."""
        entries: list[StreamEntry] = []
        for stream in self.streams:
            try:
                result = await self.redis.xautoclaim(
                    stream, self.consumer_group_name, consumer, min_idle_ms, "0-0", count=count
                )
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    continue
                raise
            claimed = result[1] if len(result) > 1 else []
            entries += self._parse([(stream, claimed)])
            if len(entries) >= count:
                break
        await self._received(entries)
        return entries

    async def promote_due(self, limit: int = 500) -> int:
        """Move delayed messages that are due into their streams; returns how many."""
        moved = 0
        for lane in LANES:
            zset, data = self.delayed_keys(lane)
            moved += int(
                await self._promote(keys=[zset, data, self.stream_for(lane)], args=[limit])
            )
        return moved

    async def _promote_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(RedisError):  # the reader reports outages
                await self.promote_due()
            await _sleep_unless(stop, self.promote_interval)

    async def _ack_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _sleep_unless(stop, None, self._acks_waiting)
            await _sleep_unless(stop, self.ack_delay)
            self._acks_waiting.clear()
            try:
                await self._flush_acks()
            except RedisError as exc:
                # Left unacknowledged: claimed again later, and the job rows are terminal.
                log.warning("processed message(s) not acknowledged: %s", exc)

    async def _flush_acks(self) -> None:
        acks = self._take_acks()
        try:
            await self.ack_many(acks)
        except BaseException:
            self._acks[:0] = [entry for entry in acks if not entry.settled]
            raise

    def _queue_acks(self, pipe: Any, entries: Sequence[StreamEntry]) -> None:
        by_stream: dict[str, list[str]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.entry_id)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.consumer_group_name, *ids)
            pipe.xdel(stream, *ids)

    async def ack_many(self, entries: Sequence[StreamEntry]) -> None:
        """Acknowledge (and delete) ``entries`` in one round trip."""
        pending = [entry for entry in entries if not entry.settled]
        if not pending:
            return
        pipe: Any = self.redis.pipeline(transaction=True)
        self._queue_acks(pipe, pending)
        await pipe.execute()
        for entry in pending:
            entry.settled = True

    async def hand_back(self, entries: Sequence[StreamEntry]) -> None:
        """Return received, unprocessed entries to the stream for any consumer."""
        try:
            pipe: Any = self.redis.pipeline(transaction=True)
            for entry in entries:
                fields = {b"data": entry.data}
                if entry.transport_id:
                    fields[b"tid"] = entry.transport_id.encode()
                pipe.xadd(entry.stream, fields)
                pipe.xack(entry.stream, self.consumer_group_name, entry.entry_id)
                pipe.xdel(entry.stream, entry.entry_id)
            await pipe.execute()
        except RedisError as exc:
            log.warning(
                "could not hand %d message(s) back (claimed again once stale, and the jobs "
                "are reconciled): %s",
                len(entries),
                exc,
            )

    # -- inspection ---------------------------------------------------------------------

    async def depth(self) -> dict[str, int]:
        """Messages not yet processed per lane: in the stream (waiting or being processed)
        plus delayed."""
        pipe: Any = self.redis.pipeline(transaction=False)
        for lane in LANES:
            pipe.xlen(self.stream_for(lane))
            pipe.zcard(self.delayed_keys(lane)[0])
        counts = await pipe.execute()
        return {
            lane: int(counts[2 * i] or 0) + int(counts[2 * i + 1] or 0)
            for i, lane in enumerate(LANES)
        }

    async def pending(self) -> dict[str, int]:
        """Messages received by some consumer and not acknowledged, per lane."""
        counts: dict[str, int] = {}
        for lane in LANES:
            try:
                info = await self.redis.xpending(self.stream_for(lane), self.consumer_group_name)
            except ResponseError:
                counts[lane] = 0
                continue
            counts[lane] = int(info.get("pending", 0) if isinstance(info, dict) else 0)
        return counts

    async def delete_all_keys(self) -> int:
        """Delete every key under this broker's prefix (tests, and reset tooling)."""
        deleted = 0
        async for key in self.redis.scan_iter(match=f"{self.prefix}:*", count=500):
            deleted += int(await self.redis.delete(key))
        return deleted
