"""Coalesced API key lookups: concurrent requests bearing the same key share one read.

Every request must see its key as it is *now* (a revocation takes effect on the next
request, in every process), so nothing is cached. What is shared is only a read that has
not started yet: a lookup waits for the next read of its key's hash, never for one already
sent, so every answer comes from a read that began after the request arrived. Under load
(agents send many events with one key) that turns one read per request into one read per
round trip of the database, whatever the number of requests in flight.

One exception, :meth:`CoalescedKeyLookup.verify_known`, is for writes that check the key
again in the statement that writes (``Storage.add_fresh_events``): a key already seen is
taken from memory, since only its revocation or expiry can change, and that statement
refuses to write under a key that no longer works. A revoked key is therefore still
refused on the next request, with nothing written; the caller then calls :meth:`forget`.
The audit row of a read is such a write too (``AuditRepository.add_read``).

Each key that works is noted as used (:class:`KeyUsage`): ``last_used_at`` is written in
the background, at most once per key per minute, and what is still pending is written
at shutdown. No request waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

from attrs import define, field

from claude_mem_core.domain.models import UNKNOWN_KEY, ApiKey
from claude_mem_core.errors import Forbidden
from claude_mem_core.services.admin import caller_for_key, hash_key
from claude_mem_core.services.context import Caller, Deps

MAX_KNOWN_KEYS = 1024
USAGE_INTERVAL_S = 60.0
USAGE_RETRY_S = 5.0

log = logging.getLogger("claude_mem.keys")


@define(eq=False)
class KeyUsage:
    """Coalesced ``last_used_at`` writes: a key's first use is written at once (in the
    background), later uses at most once per ``interval_s``, each write carrying the
    newest use seen. :meth:`flush` writes whatever is pending (at shutdown)."""

    deps: Deps
    interval_s: float = USAGE_INTERVAL_S
    monotonic: Callable[[], float] = time.monotonic
    _pending: dict[str, datetime] = field(factory=dict, init=False)
    _written: dict[str, float] = field(factory=dict, init=False)  # key id -> when
    _writer: asyncio.Task[None] | None = field(default=None, init=False)
    # The write under way, if any: it runs on even when the writer is stopped (see flush).
    _inflight: asyncio.Future[None] | None = field(default=None, init=False)

    def record(self, key_id: str, at: datetime) -> None:
        """Note a use; never blocks and never fails."""
        seen = self._pending.get(key_id)
        if seen is None or at > seen:
            self._pending[key_id] = at
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_due())

    async def flush(self) -> None:
        """Stop the background writer and write every pending use now."""
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            # A write already under way finishes: cancelled while its connection is being
            # opened, it would abandon that connection unclosed (aiosqlite warns of it).
            await asyncio.gather(inflight, return_exceptions=True)
        if self._pending:
            batch, self._pending = self._pending, {}
            try:
                await self._write(batch)
            except Exception:
                log.warning("could not record the last use of %d API key(s)", len(batch))

    async def _write_due(self) -> None:
        while self._pending:
            now = self.monotonic()
            due = [k for k in self._pending if now - self._written.get(k, -1e18) >= self.interval_s]
            if not due:
                wake = min(self._written[k] for k in self._pending) + self.interval_s
                await asyncio.sleep(max(wake - now, 0.0))
                continue
            batch = {k: self._pending.pop(k) for k in due}
            self._inflight = write = asyncio.ensure_future(self._write_or_keep(batch))
            try:
                # Shielded: stopping the writer (flush) lets the write finish; flush waits.
                await asyncio.shield(write)
            except Exception:
                log.warning("could not record the last use of %d API key(s)", len(batch))
                await asyncio.sleep(USAGE_RETRY_S)
                continue
            finally:
                if write.done() and self._inflight is write:
                    self._inflight = None
            written = self.monotonic()
            for key_id in batch:
                self._written[key_id] = written
            # Forget keys not written for a whole interval: their next use is written at once.
            for key_id in [k for k, w in self._written.items() if written - w >= self.interval_s]:
                del self._written[key_id]

    async def _write_or_keep(self, batch: dict[str, datetime]) -> None:
        try:
            await self._write(batch)
        except BaseException:
            self._keep(batch)  # for the next try, or for flush()
            raise

    def _keep(self, batch: dict[str, datetime]) -> None:
        for key_id, at in batch.items():  # the newest use wins
            if key_id not in self._pending or self._pending[key_id] < at:
                self._pending[key_id] = at

    async def _write(self, batch: dict[str, datetime]) -> None:
        async with self.deps.storage.unit_of_work() as uow:
            await uow.api_keys.record_use(batch)


@define(eq=False)
class CoalescedKeyLookup:
    deps: Deps
    # Note each working key's use (``last_used_at``); off only where reads are counted.
    record_use: bool = True
    usage: KeyUsage = field(init=False)
    # Hashes waiting for the next read, each with the future its requests await.
    _next_read: dict[str, asyncio.Future[ApiKey | None]] = field(factory=dict, init=False)
    _reader: asyncio.Task[None] | None = field(default=None, init=False)
    # Keys seen usable, by hash, for verify_known (bounded; oldest entries go first).
    _known: dict[str, ApiKey] = field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        self.usage = KeyUsage(self.deps)

    async def verify(self, raw_key: str, *, request_id: str | None = None) -> Caller:
        """As :func:`admin.verify_api_key`: the caller of a usable key, else ``Forbidden``."""
        if not raw_key:
            raise Forbidden(UNKNOWN_KEY)
        key = await self._lookup(hash_key(raw_key))
        return self._used(caller_for_key(self.deps, key, request_id=request_id))

    async def verify_known(self, raw_key: str, *, request_id: str | None = None) -> Caller:
        """As :meth:`verify`, but a key seen before is not read again: only for a write whose
        own statement checks that the key still works (see the module docstring)."""
        if not raw_key:
            raise Forbidden(UNKNOWN_KEY)
        key_hash = hash_key(raw_key)
        key = self._known.get(key_hash)
        if key is None:
            key = await self._lookup(key_hash)
            if key is not None and key.is_usable(self.deps.clock.now()):
                if len(self._known) >= MAX_KNOWN_KEYS:
                    del self._known[next(iter(self._known))]
                self._known[key_hash] = key
        return self._used(caller_for_key(self.deps, key, request_id=request_id))

    def _used(self, caller: Caller) -> Caller:
        if self.record_use and caller.api_key_id is not None:
            self.usage.record(caller.api_key_id, self.deps.clock.now())
        return caller

    def forget(self, key_id: str) -> None:
        """Drop a key from memory (a write found it revoked or expired)."""
        for key_hash in [h for h, k in self._known.items() if k.id == key_id]:
            del self._known[key_hash]

    async def drain(self) -> None:
        """Wait for the read in flight, if any, and write pending key uses (for shutdown)."""
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.usage.flush()

    async def _lookup(self, key_hash: str) -> ApiKey | None:
        found = self._next_read.get(key_hash)
        if found is None:
            found = asyncio.get_running_loop().create_future()
            self._next_read[key_hash] = found
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_all())
        # shield: one request going away must not cancel the read its neighbours await.
        return await asyncio.shield(found)

    async def _read_all(self) -> None:
        while self._next_read:
            batch, self._next_read = self._next_read, {}
            found: dict[str, ApiKey | None] = {}
            try:
                async with self.deps.storage.unit_of_work() as uow:
                    for key_hash in batch:
                        found[key_hash] = await uow.api_keys.get_by_hash(key_hash)
            except BaseException as e:
                for reply in batch.values():
                    if not reply.done():
                        reply.set_exception(e)
                        reply.exception()  # retrieved here; awaiting callers still get it
                if not isinstance(e, Exception):
                    raise
                continue
            # Answered once the connection is back in the pool, not while it is held.
            for key_hash, reply in batch.items():
                if not reply.done():
                    reply.set_result(found[key_hash])
