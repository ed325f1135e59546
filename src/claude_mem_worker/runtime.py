"""What a worker process runs around taskiq's receiver: the open memory, the upkeep loop,
the counters and the jobs in flight.

taskiq's receiver reads the broker (:class:`JobStreamBroker`: bounded reads, hand-back,
claiming a dead consumer's messages, outages) and runs the task ``claude_mem.generate``
(``tasks.py``) for each message, several at once. This runtime is wired to the broker's
events:

* ``WORKER_STARTUP`` (:meth:`WorkerRuntime.on_startup`): open the memory (unless the
  ``claude-mem worker`` command already did, to refuse an unmigrated database with a clear
  message), log the ``starting:`` line, reconcile once, start the upkeep loop;
* the task (:meth:`WorkerRuntime.generate`): run the job the message names. Failures and
  retries are job states in the database (a retry is published again with its backoff
  delay), so the message is acknowledged whatever the job's outcome;
* ``WORKER_SHUTDOWN`` (:meth:`WorkerRuntime.on_shutdown`, after the receiver stopped
  reading and gave in-flight jobs their grace period): jobs still running are cancelled
  and released to ``queued`` (not counted as an attempt) and published again, so any
  worker takes them now rather than after their lease.

Upkeep, every ``reconcile_interval`` seconds (and at start): :func:`reconcile.reconcile`
republishes due ``queued`` rows whose wake-up was lost and returns expired leases; the
counters are logged every ``log_interval``; with semantic recall on, passages without a
vector are embedded every ``embed_interval`` (:func:`embedding.run_backfill`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from attrs import define, frozen

from claude_mem_core.adapters.taskiq_queue import (
    TaskiqQueue,
    message_attributes,
    message_from_kwargs,
    trace_carrier,
)
from claude_mem_core.config import Settings
from claude_mem_core.errors import ClaudeMemError, ConfigurationError, SchemaNotReady
from claude_mem_core.logging_setup import request_logged
from claude_mem_core.ports.queue import QueueMessage
from claude_mem_core.ports.tracing import NOOP_TRACER
from claude_mem_core.services import debounce, embedding, reconcile, upkeep
from claude_mem_core.services.debounce import SessionBatcher
from claude_mem_core.services.job_outcome import ProcessResult

if TYPE_CHECKING:
    from claude_mem_core.adapters.observed_provider import ProviderCall
    from claude_mem_core.adapters.redis_stream_broker import JobStreamBroker
    from claude_mem_core.facade import Memory

log = logging.getLogger("claude_mem.worker")

NOT_REDIS = (
    "claude-mem worker consumes the Redis queue, but the queue engine is {engine!r}.\n"
    "The embedded server (the default) generates observations in-process and needs no "
    "worker.\nTo run generation in separate worker processes, set in the server AND the "
    "worker:\n"
    "  CLAUDE_MEM_QUEUE_ENGINE=redis\n"
    "  CLAUDE_MEM_REDIS_URL=redis://127.0.0.1:6379/0\n"
    "  CLAUDE_MEM_SERVER_DATABASE_URL=postgresql://…   (the database they share)"
)

_OUTCOME_COUNTER = {
    "completed": "completed",
    "failed": "failed",
    "retry_scheduled": "retried",
    "skipped": "skipped",
    "missing": "skipped",
    "busy": "busy",
    "lost_lease": "lost_lease",
}


def worker_identity() -> str:
    """``hostname:pid:random``: unique per process, readable in ``locked_by``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def redact_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        host = rest.rsplit("@", 1)[1]
        return f"{scheme}://***@{host}"
    return url


def _float_env(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds (got {raw!r})") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive (got {raw!r})")
    return value


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
    # A message received and not acknowledged for this long belonged to a dead worker.
    stale_after_seconds: float = 300.0
    ack_delay: float = 0.05
    # Semantic recall on: how often passages still without a vector are embedded.
    embed_interval: float = 30.0

    @classmethod
    def from_settings(
        cls, settings: Settings, env: Mapping[str, str], *, concurrency: int | None = None
    ) -> WorkerOptions:
        """``CLAUDE_MEM_WORKER_SHUTDOWN_GRACE_SECONDS`` (default 10),
        ``CLAUDE_MEM_WORKER_STATS_INTERVAL_SECONDS`` (default 30) and
        ``CLAUDE_MEM_EMBEDDINGS_INTERVAL_SECONDS`` (default 30) on top of ``settings``."""
        return cls(
            concurrency=concurrency or settings.worker_concurrency,
            reconcile_interval=settings.reconcile_interval_seconds,
            grace_seconds=_float_env(env, "CLAUDE_MEM_WORKER_SHUTDOWN_GRACE_SECONDS", 10.0),
            log_interval=_float_env(env, "CLAUDE_MEM_WORKER_STATS_INTERVAL_SECONDS", 30.0),
            stale_after_seconds=settings.lease_seconds,
            embed_interval=_float_env(env, "CLAUDE_MEM_EMBEDDINGS_INTERVAL_SECONDS", 30.0),
        )


def check_worker_settings(settings: Settings) -> None:
    """Refuse what a worker cannot run with (a message saying what to set)."""
    lease_problem = settings.lease_problem()
    if lease_problem is not None:
        raise ConfigurationError(lease_problem)
    if settings.queue_engine != "redis" or not settings.redis_url:
        message = NOT_REDIS.format(engine=settings.queue_engine)
        if settings.queue_engine == "redis":
            message = "CLAUDE_MEM_QUEUE_ENGINE=redis needs CLAUDE_MEM_REDIS_URL.\n" + message
        raise ConfigurationError(message)


class WorkerRuntime:
    """One worker process: its queue and broker, its memory once open, its upkeep."""

    def __init__(
        self,
        settings: Settings,
        *,
        options: WorkerOptions,
        env: Mapping[str, str],
        worker_id: str | None = None,
    ) -> None:
        check_worker_settings(settings)
        assert settings.redis_url is not None
        self.settings = settings
        self.options = options
        self.env = env
        self.worker_id = worker_id or worker_identity()
        self.queue = TaskiqQueue.from_url(
            settings.redis_url,
            prefix=settings.redis_prefix,
            block_ms=options.block_ms,
            capacity=options.concurrency,
            consumer_name=self.worker_id,
            stale_after_seconds=options.stale_after_seconds,
            claim_interval=options.reconcile_interval,
            promote_interval=options.promote_interval,
            ack_delay=options.ack_delay,
        )
        self.broker: JobStreamBroker = self.queue.broker
        self.memory: Memory | None = None
        self.batcher: SessionBatcher | None = None
        self.counters = Counters()
        self._upkeep_steps = upkeep.Upkeep()
        self.inflight: dict[asyncio.Task[Any], str] = {}
        self._stopping = asyncio.Event()
        self._chores: list[asyncio.Task[None]] = []
        self._cutting_off = False
        # Told of every provider call (the worker's generation metrics), when set.
        self.provider_observer: Callable[[ProviderCall], None] | None = None

    # -- memory -------------------------------------------------------------------------

    async def open(self) -> Memory:
        """Open storage, provider and embedder; raises :class:`SchemaNotReady` for an
        unmigrated database, :class:`StorageError` for an unusable one."""
        from claude_mem_core.adapters import storage_from_url
        from claude_mem_core.adapters.providers import provider_from_spec
        from claude_mem_core.facade import Memory
        from claude_mem_core.facade_wiring import embedder_from_settings, tracer_from_env

        settings = self.settings
        storage = storage_from_url(settings.database_url)
        try:
            await storage.check_schema()
            provider = provider_from_spec(settings.provider, self.env)
            embedder = embedder_from_settings(settings)
            tracer = tracer_from_env(self.env, service_name="claude-mem-worker")
        except BaseException:
            await storage.close()
            raise
        self.memory = Memory(
            storage=storage,
            queue=self.queue,
            provider=provider,
            options=settings.pipeline_options(),
            worker_id=self.worker_id,
            embedder=embedder,
            embedding_model=settings.embeddings_model,
            provider_observer=self.provider_observer,
            tracer=tracer,
        )
        self.batcher = SessionBatcher(self.memory.generator)
        return self.memory

    @property
    def republish_after(self) -> float:
        assert self.memory is not None
        options = self.memory.deps.options
        policy_wait = (
            options.debounce_seconds + self.options.reconcile_interval
            if options.session_policy == "debounce"
            else 0.0
        )
        # A stranded job is published again at most once per lease: sooner would only
        # add duplicates behind a backlog (its message is delivered, or claimed from a dead
        # consumer, within that time anyway).
        return max(2 * self.options.reconcile_interval, 1.0, policy_wait, options.lease_seconds)

    # -- taskiq events ------------------------------------------------------------------

    async def on_startup(self, state: Any = None) -> None:
        settings = self.settings
        try:
            memory = self.memory or await self.open()
        except SchemaNotReady as exc:
            log.error(
                "the database %s is not migrated (%s): run `claude-mem migrate` with the same "
                "CLAUDE_MEM_SERVER_DATABASE_URL, then start the worker again",
                redact_url(settings.database_url),
                exc.message,
            )
            raise
        log.info(
            "worker %s starting: database=%s redis=%s prefix=%s concurrency=%d provider=%s "
            "policy=%s lease=%gs heartbeat=%gs reconcile every %.1fs semantic-recall=%s",
            self.worker_id,
            redact_url(settings.database_url),
            self.queue.location,
            settings.redis_prefix,
            self.options.concurrency,
            memory.provider.name,
            settings.session_policy,
            settings.lease_seconds,
            memory.deps.options.heartbeat_interval,
            self.options.reconcile_interval,
            settings.embeddings_model if memory.deps.semantic is not None else "off",
        )
        await self._upkeep_round()
        self._chores.append(asyncio.create_task(self._upkeep(), name="claude-mem-upkeep"))
        if memory.deps.semantic is not None:
            self._chores.append(
                asyncio.create_task(
                    embedding.run_backfill(
                        memory.deps, self._stopping, interval=self.options.embed_interval
                    ),
                    name="claude-mem-embeddings",
                )
            )

    async def on_shutdown(self, state: Any = None) -> None:
        self._stopping.set()
        # Upkeep stops at the end of its current round: cancelling it mid-query would make
        # psycopg cancel the query on the server, which can take seconds.
        if self._chores:
            _, late = await asyncio.wait(self._chores, timeout=15)
            for chore in late:
                chore.cancel()
            await asyncio.gather(*self._chores, return_exceptions=True)
        await self.cut_off()
        if not self.broker.reached:
            log.info("worker %s stopped before the queue was reachable", self.worker_id)
        log.info("worker %s stopped: %s", self.worker_id, self.counters.line())
        if self.memory is not None:
            await self.memory.close()

    async def cut_off(self) -> None:
        """Cancel the jobs still running; each releases itself (see :meth:`generate`)."""
        self._cutting_off = True
        running = list(self.inflight)
        if not running:
            return
        log.info("releasing %d interrupted job(s)", len(running))
        for task in running:
            task.cancel()
        await asyncio.wait(running, timeout=15)

    # -- the task -----------------------------------------------------------------------

    async def generate(self, kwargs: dict[str, Any], labels: dict[str, Any] | None = None) -> None:
        """Run the job a ``claude_mem.generate`` message names, traced as the child of its
        publish when ``labels`` carry that context."""
        try:
            message = message_from_kwargs(kwargs)
        except ValueError as exc:
            self.counters.errors += 1
            log.warning("dropping a malformed message: %s", exc)
            return
        batcher = self.batcher
        if batcher is None:
            raise RuntimeError("the worker's memory is not open (WORKER_STARTUP did not run)")
        task = asyncio.current_task()
        assert task is not None
        self.inflight[task] = message.job_id
        try:
            results = await self._traced(batcher, message, labels or {})
        except asyncio.CancelledError:
            if not self._cutting_off:
                raise
            await self._release(message.job_id)
            return
        except Exception as exc:
            # Acknowledged anyway: the row is reconciled (a claim's lease expires).
            self.counters.errors += 1
            log.warning(
                "job %s: unexpected error (%s); left to reconciliation", message.job_id, exc
            )
            raise
        finally:
            self.inflight.pop(task, None)
        self._count(results)

    async def _traced(
        self, batcher: SessionBatcher, message: QueueMessage, labels: dict[str, Any]
    ) -> list[ProcessResult]:
        request_id = labels.get("request_id")
        with request_logged(request_id if isinstance(request_id, str) else None):
            tracer = self.memory.deps.tracer if self.memory is not None else NOOP_TRACER
            if not tracer.enabled:
                return await batcher.process(message)
            stream = str(labels.get("queue_name") or self.queue.stream_for(message.lane))
            with tracer.span_from(
                trace_carrier(labels),
                f"process {stream}",
                message_attributes(message, stream),
                kind="consumer",
            ):
                return await batcher.process(message)

    async def _release(self, job_id: str) -> None:
        assert self.memory is not None
        try:
            released = await debounce.release_held(
                self.memory.deps, job_id, worker_id=self.worker_id
            )
        except ClaudeMemError as exc:
            log.warning("could not release an interrupted job (its lease will expire): %s", exc)
            return
        self.counters.released += released

    def _count(self, results: list[ProcessResult]) -> None:
        for result in results:
            name = _OUTCOME_COUNTER.get(result.outcome)
            if name is not None:
                setattr(self.counters, name, getattr(self.counters, name) + 1)

    # -- upkeep -------------------------------------------------------------------------

    async def _upkeep(self) -> None:
        loop = asyncio.get_running_loop()
        next_reconcile = loop.time() + self.options.reconcile_interval
        next_log = loop.time() + self.options.log_interval
        while not self._stopping.is_set():
            wait = max(0.0, min(next_reconcile, next_log) - loop.time())
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=wait)
                return
            except TimeoutError:
                pass
            now = loop.time()
            if now >= next_reconcile:
                await self._upkeep_round()
                next_reconcile = loop.time() + self.options.reconcile_interval
            if now >= next_log:
                log.info("worker %s: %s", self.worker_id, self.counters.line())
                next_log = now + self.options.log_interval

    async def _reconcile(self) -> None:
        assert self.memory is not None
        try:
            report = await reconcile.reconcile(
                self.memory.deps, republish_after_seconds=self.republish_after
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

    async def _upkeep_round(self) -> None:
        await self._reconcile()
        assert self.memory is not None
        self.counters.errors += await self._upkeep_steps.run(self.memory.deps)
