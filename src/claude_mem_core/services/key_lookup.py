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
"""

from __future__ import annotations

import asyncio

from attrs import define, field

from claude_mem_core.domain.models import ApiKey
from claude_mem_core.errors import Forbidden
from claude_mem_core.services.admin import caller_for_key, hash_key
from claude_mem_core.services.context import Caller, Deps

MAX_KNOWN_KEYS = 1024


@define(eq=False)
class CoalescedKeyLookup:
    deps: Deps
    # Hashes waiting for the next read, each with the future its requests await.
    _next_read: dict[str, asyncio.Future[ApiKey | None]] = field(factory=dict, init=False)
    _reader: asyncio.Task[None] | None = field(default=None, init=False)
    # Keys seen usable, by hash, for verify_known (bounded; oldest entries go first).
    _known: dict[str, ApiKey] = field(factory=dict, init=False)

    async def verify(self, raw_key: str, *, request_id: str | None = None) -> Caller:
        """As :func:`admin.verify_api_key`: the caller of a usable key, else ``Forbidden``."""
        if not raw_key:
            raise Forbidden("Invalid API key or insufficient scope")
        key = await self._lookup(hash_key(raw_key))
        return caller_for_key(self.deps, key, request_id=request_id)

    async def verify_known(self, raw_key: str, *, request_id: str | None = None) -> Caller:
        """As :meth:`verify`, but a key seen before is not read again: only for a write whose
        own statement checks that the key still works (see the module docstring)."""
        if not raw_key:
            raise Forbidden("Invalid API key or insufficient scope")
        key_hash = hash_key(raw_key)
        key = self._known.get(key_hash)
        if key is None:
            key = await self._lookup(key_hash)
            if key is not None and key.is_usable(self.deps.clock.now()):
                if len(self._known) >= MAX_KNOWN_KEYS:
                    del self._known[next(iter(self._known))]
                self._known[key_hash] = key
        return caller_for_key(self.deps, key, request_id=request_id)

    def forget(self, key_id: str) -> None:
        """Drop a key from memory (a write found it revoked or expired)."""
        for key_hash in [h for h, k in self._known.items() if k.id == key_id]:
            del self._known[key_hash]

    async def drain(self) -> None:
        """Wait for the read in flight, if any (for shutdown)."""
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

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
