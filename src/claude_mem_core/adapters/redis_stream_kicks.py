"""Kicks that share a round trip: the kicks made during one event-loop turn under
:meth:`KickBatcher.batched` are sent to Redis together (one pipeline), and each kicking
task waits until its own kick was sent (or learns why it was not). A kick made outside
``batched`` is sent at once, by the kicking task itself. What a kick is (a Lua script's sha
and its arguments) and how a batch is sent are the broker's (``redis_stream_broker.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from attrs import define


@define(slots=True, eq=False)
class Kick:
    sha: str
    args: list[Any]
    sent: asyncio.Future[None] | None  # None: sent at once, by the kicking task itself


# Set by :meth:`KickBatcher.batched`: kicks wait to share a round trip.
_BATCHED: contextvars.ContextVar[bool] = contextvars.ContextVar("batched_kicks", default=False)


class KickBatcher:
    """Collects the batched kicks of one event-loop turn and sends them with ``send``."""

    def __init__(self, send: Callable[[Sequence[Kick]], Awaitable[None]]) -> None:
        self._send = send
        self._kicks: list[Kick] = []
        self._sending: set[asyncio.Task[None]] = set()

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Kicks made in this context (and in tasks started from it) during one event-loop
        turn go together."""
        token = _BATCHED.set(True)
        try:
            yield
        finally:
            _BATCHED.reset(token)

    async def submit(self, sha: str, args: list[Any]) -> None:
        """Send one kick: at once outside :meth:`batched`, else with the turn's others."""
        if not _BATCHED.get():
            await self._send([Kick(sha=sha, args=args, sent=None)])
            return
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._kicks.append(Kick(sha=sha, args=args, sent=sent))
        if len(self._kicks) == 1:
            # Runs after every task already scheduled in this turn has made its kick.
            sending = asyncio.get_running_loop().create_task(self._send_queued())
            self._sending.add(sending)
            sending.add_done_callback(self._sending.discard)
        await sent

    async def _send_queued(self) -> None:
        kicks, self._kicks = self._kicks, []
        try:
            await self._send(kicks)
        except Exception as exc:
            for kick in kicks:
                if kick.sent is not None and not kick.sent.done():
                    kick.sent.set_exception(exc)
        except BaseException:
            for kick in kicks:
                if kick.sent is not None:
                    kick.sent.cancel()
            raise
        else:
            for kick in kicks:
                if kick.sent is not None and not kick.sent.done():
                    kick.sent.set_result(None)
