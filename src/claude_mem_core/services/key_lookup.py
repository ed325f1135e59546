"""Coalesced API key lookups: concurrent requests bearing the same key share one read.

Every request must see its key as it is *now* (a revocation takes effect on the next
request, in every process), so nothing is cached. What is shared is only a read that has
not started yet: a lookup waits for the next read of its key's hash, never for one already
sent, so every answer comes from a read that began after the request arrived. Under load
(agents send many events with one key) that turns one read per request into one read per
round trip of the database, whatever the number of requests in flight.
"""

from __future__ import annotations

import asyncio

from attrs import define, field

from claude_mem_core.domain.models import ApiKey
from claude_mem_core.errors import Forbidden
from claude_mem_core.services.admin import caller_for_key, hash_key
from claude_mem_core.services.context import Caller, Deps


@define(eq=False)
class CoalescedKeyLookup:
    deps: Deps
    # Hashes waiting for the next read, each with the future its requests await.
    _next_read: dict[str, asyncio.Future[ApiKey | None]] = field(factory=dict, init=False)
    _reader: asyncio.Task[None] | None = field(default=None, init=False)

    async def verify(self, raw_key: str, *, request_id: str | None = None) -> Caller:
        """As :func:`admin.verify_api_key`: the caller of a usable key, else ``Forbidden``."""
        if not raw_key:
            raise Forbidden("Invalid API key or insufficient scope")
        key = await self._lookup(hash_key(raw_key))
        return caller_for_key(self.deps, key, request_id=request_id)

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
