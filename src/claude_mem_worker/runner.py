"""The worker loop: read the lane streams, run jobs concurrently, reconcile, shut down cleanly.

Why our own loop rather than ``taskiq worker``: an idle taskiq worker on the stream broker
ignores SIGTERM, its ``listen()`` over-fetches (unprocessed messages are stranded in the
pending list on shutdown) and redelivers a dead worker's messages only lazily. Here:

* one reader takes at most as many messages as there are free slots (``concurrency``) with
  a short blocking read, and each message runs in its own task, so the provider calls of
  one process overlap;
* a message is acknowledged (and deleted) after its job was processed, whatever the job's
  outcome: failures and retries are job states in the database, and a retry is published
  again with its backoff delay. Acknowledgements ride along with the reader's next read
  (one round trip for both), or go on their own ``ack_delay`` later when no read comes,
  and at stop. An unexpected error leaves the message unacknowledged;
  :meth:`TaskiqQueue.claim_stale` or the database reconciliation brings it back;
* with semantic recall on, passages without a vector are embedded every
  ``embed_interval`` seconds (:func:`embedding.run_backfill`), in a task of their own;
* every ``reconcile_interval`` seconds (and at start): :func:`generation.reconcile`
  republishes due ``queued`` rows and returns expired leases; stale unacknowledged
  messages of dead consumers are claimed. Due delayed
  messages are moved into the streams several times a second;
* stop (first SIGTERM/SIGINT): the reader finishes its current read (at most ``block_ms``)
  and hands back what it got, in-flight jobs get ``grace_seconds`` to finish, the rest are
  cancelled and their jobs released to ``queued`` (not counted as an attempt) and published
  again. A second signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import attrs
from attrs import define, frozen

from claude_mem_core.adapters.taskiq_queue import Delivery, TaskiqQueue
from claude_mem_core.errors import ClaudeMemError, QueueError
from claude_mem_core.services import debounce, embedding, generation
from claude_mem_core.services.context import Deps
from claude_mem_core.services.debounce import SessionBatcher
from claude_mem_core.services.generation import ProcessResult
from claude_mem_worker import tasks

log = logging.getLogger("claude_mem.worker")

_OUTCOME_COUNTER = {
    "completed": "completed",
    "failed": "failed",
    "retry_scheduled": "retried",
    "skipped": "skipped",
    "missing": "skipped",
    "busy": "busy",
    "lost_lease": "lost_lease",
}


@define
class Counters:
    completed: int = 0
    failed: int = 0
    retried: int = 0
    stalled: int = 0
    reconciled: int = 0
    skipped: int = 0
    busy: int = 0
    lost_lease: int = 0
    released: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: int(value) for name, value in attrs.asdict(self).items()}

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.as_dict().items())


@frozen(kw_only=True)
class WorkerOptions:
    concurrency: int = 8
    reconcile_interval: float = 5.0
    grace_seconds: float = 10.0
    log_interval: float = 30.0
    block_ms: int = 1000
    promote_interval: float = 0.2
    stale_after_seconds: float = 300.0
    ack_delay: float = 0.05
    # Semantic recall on: how often passages still without a vector are embedded.
    embed_interval: float = 30.0

    @property
    def republish_after(self) -> float:
        return max(2 * self.reconcile_interval, 1.0)


class Worker:
    """One worker process's consumer. ``run()`` returns after :meth:`request_stop`."""

    def __init__(
        self,
        *,
        deps: Deps,
        batcher: SessionBatcher,
        queue: TaskiqQueue,
        worker_id: str,
        options: WorkerOptions | None = None,
    ) -> None:
        self.deps = deps
        self.batcher = batcher
        self.queue = queue
        self.worker_id = worker_id
        self.options = options or WorkerOptions()
        self.counters = Counters()
        self._stop = asyncio.Event()
        self._force = False
        self._slots = asyncio.Semaphore(self.options.concurrency)
        self._inflight: dict[asyncio.Task[None], Delivery] = {}
        self._reading = False
        self._queue_down_since: float | None = None
        # Processed deliveries not yet acknowledged: the next read carries them (same round
        # trip), or the acker after ``ack_delay`` when no read comes (an idle queue).
        self._acks: list[Delivery] = []
        self._acks_waiting = asyncio.Event()
        self.started = asyncio.Event()

    # -- control ------------------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: graceful stop. Second call: stop without waiting for jobs."""
        if self._stop.is_set():
            if not self._force:
                log.warning("second stop request: cancelling in-flight jobs now")
            self._force = True
            for task in list(self._inflight):
                task.cancel()
            return
        log.info("stop requested: finishing in-flight jobs (up to %.0fs)", self._grace())
        self._stop.set()

    def _grace(self) -> float:
        return 0.0 if self._force else self.options.grace_seconds

    @property
    def republish_after(self) -> float:
        policy_wait = (
            self.deps.options.debounce_seconds + self.options.reconcile_interval
            if self.deps.options.session_policy == "debounce"
            else 0.0
        )
        # A stranded job is published again at most once per lease: sooner would only
        # add duplicates behind a backlog (its message is delivered, or claimed from a dead
        # consumer, within that time anyway).
        return max(self.options.republish_after, policy_wait, self.deps.options.lease_seconds)

    # -- main ---------------------------------------------------------------------------

    async def run(self) -> Counters:
        await self.queue.startup()
        await self._reconcile()
        reader = asyncio.create_task(self._read_loop(), name="claude-mem-reader")
        upkeep = asyncio.create_task(self._upkeep_loop(), name="claude-mem-upkeep")
        acker = asyncio.create_task(self._ack_loop(), name="claude-mem-acker")
        backfill: asyncio.Task[None] | None = None
        if self.deps.semantic is not None:
            backfill = asyncio.create_task(
                embedding.run_backfill(self.deps, self._stop, interval=self.options.embed_interval),
                name="claude-mem-embeddings",
            )
        self.started.set()
        try:
            await self._stop.wait()
        finally:
            await self._stop_reader(reader)
            log.debug("reader stopped")
            # Upkeep stops at the end of its current round: cancelling it mid-query would
            # make psycopg cancel the query on the server, which can take seconds.
            done, _ = await asyncio.wait({upkeep}, timeout=15)
            if not done:
                upkeep.cancel()
                await asyncio.wait({upkeep}, timeout=15)
            log.debug("upkeep stopped")
            if backfill is not None:
                # Between two batches it stops by itself; an embedder call is not waited for.
                done, _ = await asyncio.wait({backfill}, timeout=1.0)
                if not done:
                    backfill.cancel()
                    await asyncio.gather(backfill, return_exceptions=True)
            await self._finish_inflight()
            acker.cancel()
            await asyncio.gather(acker, return_exceptions=True)
            await self._flush_acks()
            log.info("worker %s stopped: %s", self.worker_id, self.counters.line())
        return self.counters

    async def _stop_reader(self, reader: asyncio.Task[None]) -> None:
        if not self._reading:
            reader.cancel()
        try:
            await asyncio.wait_for(reader, timeout=self.options.block_ms / 1000 + 5.0)
        except (TimeoutError, asyncio.CancelledError):
            pass
        except Exception:  # pragma: no cover - the reader logs its own errors
            log.exception("reader failed while stopping")

    # -- reading ------------------------------------------------------------------------

    async def _take_slots(self) -> int:
        await self._slots.acquire()
        taken = 1
        while taken < self.options.concurrency and not self._slots.locked():
            await self._slots.acquire()
            taken += 1
        return taken

    async def _read_loop(self) -> None:
        backoff = 0.2
        next_claim = 0.0
        stale_ms = int(self.options.stale_after_seconds * 1000)
        while not self._stop.is_set():
            taken = await self._take_slots()
            if self._stop.is_set():
                self._release_slots(taken)
                return
            deliveries: list[Delivery] = []
            self._reading = True
            try:
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + self.options.reconcile_interval
                    deliveries = await self.queue.claim_stale(
                        self.worker_id, min_idle_ms=stale_ms, count=taken
                    )
                if not deliveries:
                    acks, self._acks = self._acks, []
                    try:
                        deliveries = await self.queue.receive(
                            self.worker_id,
                            count=taken,
                            block_ms=self.options.block_ms,
                            acks=acks,
                        )
                    finally:
                        self._acks[:0] = [d for d in acks if not d.done]
                self._queue_up()
                backoff = 0.2
            except QueueError as exc:
                self._release_slots(taken)
                self._queue_down(exc)
                self._reading = False
                await self._sleep_unless_stopped(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception:
                self._release_slots(taken)
                self.counters.errors += 1
                log.exception("unexpected error reading the queue")
                self._reading = False
                await self._sleep_unless_stopped(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            finally:
                self._reading = False
            self._release_slots(taken - len(deliveries))
            if self._stop.is_set():
                # Stopping: what we just received goes back, untouched, for other workers.
                for delivery in deliveries:
                    await self._hand_back(delivery)
                    self._slots.release()
                return
            for delivery in deliveries:
                task = asyncio.create_task(self._run_one(delivery))
                self._inflight[task] = delivery
                task.add_done_callback(self._done)

    def _release_slots(self, count: int) -> None:
        for _ in range(max(count, 0)):
            self._slots.release()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._slots.release()

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    def _queue_down(self, exc: BaseException) -> None:
        if self._queue_down_since is None:
            self._queue_down_since = time.monotonic()
            log.warning("queue unavailable, retrying: %s", exc)

    def _queue_up(self) -> None:
        if self._queue_down_since is not None:
            log.info("queue reachable again after %.1fs", time.monotonic() - self._queue_down_since)
            self._queue_down_since = None

    async def _hand_back(self, delivery: Delivery) -> None:
        try:
            await delivery.requeue()
        except QueueError as exc:
            log.warning("could not hand message back (reconciliation will): %s", exc)

    # -- processing ---------------------------------------------------------------------

    async def _run_one(self, delivery: Delivery) -> None:
        message = delivery.message
        if message is None:
            log.warning("dropping undecodable message %s: %s", delivery.entry_id, delivery.error)
            self.counters.errors += 1
            with contextlib.suppress(QueueError):
                await delivery.ack()
            return
        try:
            results = await tasks.generate(self.batcher, message)
            self._count(results)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Left unacknowledged: claimed again later, and the row is reconciled anyway.
            self.counters.errors += 1
            log.exception("job %s: unexpected error; left for redelivery", message.job_id)
            return
        self._acks.append(delivery)
        self._acks_waiting.set()

    async def _ack_loop(self) -> None:
        while True:
            await self._acks_waiting.wait()
            await asyncio.sleep(self.options.ack_delay)
            self._acks_waiting.clear()
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        acks, self._acks = self._acks, []
        if not acks:
            return
        try:
            await self.queue.ack_many(acks)
        except asyncio.CancelledError:
            self._acks[:0] = [d for d in acks if not d.done]  # the final flush takes them
            raise
        except QueueError as exc:
            # Left unacknowledged: claimed again later, and the job row is terminal.
            log.warning("%d processed message(s) not acknowledged: %s", len(acks), exc)
        except Exception:  # pragma: no cover - the same, for an unexpected error
            log.exception("acknowledging %d processed message(s) failed", len(acks))

    def _count(self, results: list[ProcessResult]) -> None:
        for result in results:
            name = _OUTCOME_COUNTER.get(result.outcome)
            if name is not None:
                setattr(self.counters, name, getattr(self.counters, name) + 1)

    async def _finish_inflight(self) -> None:
        if not self._inflight:
            return
        pending = set(self._inflight)
        log.info("waiting for %d in-flight job(s)", len(pending))
        _, still = await asyncio.wait(pending, timeout=self._grace())
        deliveries = {task: self._inflight.get(task) for task in still}
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)
        for task in still:
            delivery = deliveries.get(task)
            if delivery is not None:
                await self._release(delivery)

    async def _release(self, delivery: Delivery) -> None:
        """A job cut off by shutdown: back to ``queued`` (published again) so any worker
        can run it now, instead of waiting for its lease to expire."""
        message = delivery.message
        released = 0
        try:
            if message is not None:
                released = await debounce.release_held(
                    self.deps, message.job_id, worker_id=self.worker_id
                )
            self.counters.released += released
            if released:
                await delivery.ack()
            else:
                await delivery.requeue()
        except ClaudeMemError as exc:
            log.warning("could not release an interrupted job (its lease will expire): %s", exc)

    # -- upkeep -------------------------------------------------------------------------

    async def _upkeep_loop(self) -> None:
        next_reconcile = time.monotonic() + self.options.reconcile_interval
        next_log = time.monotonic() + self.options.log_interval
        while not self._stop.is_set():
            try:
                await self.queue.promote_due()
            except QueueError as exc:
                self._queue_down(exc)
            except Exception:
                self.counters.errors += 1
                log.exception("moving delayed messages failed")
            now = time.monotonic()
            if now >= next_reconcile:
                await self._reconcile()
                next_reconcile = time.monotonic() + self.options.reconcile_interval
            if now >= next_log:
                log.info("worker %s: %s", self.worker_id, self.counters.line())
                next_log = now + self.options.log_interval
            await self._sleep_unless_stopped(self.options.promote_interval)

    async def _reconcile(self) -> None:
        try:
            report = await generation.reconcile(
                self.deps, republish_after_seconds=self.republish_after
            )
            self.counters.reconciled += report.republished
            self.counters.stalled += report.released + report.failed
            if report.republished or report.released or report.failed:
                log.info(
                    "reconciled: republished=%d released=%d failed=%d",
                    report.republished,
                    report.released,
                    report.failed,
                )
        except Exception as exc:  # the database may be down; try again next round
            self.counters.errors += 1
            log.warning("reconciliation failed: %s: %s", type(exc).__name__, exc)
