"""``GET /metrics``: the server's Prometheus metrics (prometheus-client's text format).

What is counted, and where:

* every request, by route template (``/v1/events/{id}``, never the raw path: label values
  stay bounded), method and status, with its latency (``request_middleware`` calls
  :meth:`HttpMetrics.observe` once per response);
* events accepted by the ingest routes (the handlers add how many they stored);
* searches (``/v1/search``, ``/v1/context``, the compat search) and their latency;
* at scrape time, from the database and the queue: jobs by status, and messages waiting
  per lane in the broker. A scrape that cannot reach either leaves those gauges out and
  says so in ``claude_mem_scrape_errors_total`` instead of failing the whole page;
* when this process generates (the embedded default), its provider calls: latency, tokens
  and failures by provider and model, the families a worker reports
  (:mod:`claude_mem_core.adapters.generation_metrics`).

Several server processes on one host (gunicorn-style workers, ``--workers``) share their
counters the way prometheus-client does it: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
directory for all of them, and any one answers for the whole host. Without it each process
has its own registry, with the usual process metrics.

``CLAUDE_MEM_METRICS``: ``on`` (the default: Prometheus scrapes without credentials, as
its users expect), ``off`` (no route: 404 like any unknown path), or ``key`` (a key with
the ``metrics:read`` scope, or an admin key, is required).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from claude_mem_core.errors import ConfigurationError, MissingExtra

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from claude_mem_core.adapters.generation_metrics import GenerationMetrics
    from claude_mem_core.adapters.observed_provider import ProviderCall
    from claude_mem_core.facade import Memory
    from claude_mem_core.services.context import Caller

log = logging.getLogger("claude_mem.http")

METRICS_PATH = "/metrics"
METRICS_ENV = "CLAUDE_MEM_METRICS"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Requests to paths no route serves share one label value, whatever the path.
UNMATCHED_ROUTE = "unmatched"
SEARCH_ROUTES = frozenset({"/v1/search", "/v1/context", "/api/search"})
# The scrape's own queries are bounded: a slow database must not hold Prometheus.
SCRAPE_TIMEOUT_S = 2.0
# Latency buckets (seconds): from a cached key lookup to a slow large batch.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsMode(enum.StrEnum):
    ON = "on"
    OFF = "off"
    KEY = "key"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MetricsMode:
        text = (env.get(METRICS_ENV) or "").strip().lower()
        if not text:
            return cls.ON
        try:
            return cls(text)
        except ValueError:
            raise ConfigurationError(
                f"{METRICS_ENV} must be one of on, off, key (got {text!r})"
            ) from None


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:  # pragma: no cover - the http extra installs it
        raise MissingExtra("GET /metrics (Prometheus metrics)", "http") from None
    return prometheus_client


class HttpMetrics:
    """The server's metric families, in a registry of their own (or the multiprocess
    directory's), so two apps in one process never collide."""

    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        prom = _prometheus()
        self.multiprocess_dir = multiprocess_dir
        # Provider calls, when this process generates (built at the first call).
        self.generation: GenerationMetrics | None = None
        self._registry: CollectorRegistry = prom.CollectorRegistry(auto_describe=True)
        # In multiprocess mode the values live in the directory's files: the families are
        # not registered anywhere, the scrape collects every process's files instead.
        owner = None if multiprocess_dir else self._registry
        if not multiprocess_dir:
            prom.ProcessCollector(registry=self._registry)
            prom.PlatformCollector(registry=self._registry)
        self.requests = prom.Counter(
            "claude_mem_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=owner,
        )
        self.latency = prom.Histogram(
            "claude_mem_http_request_duration_seconds",
            "Time from a request's arrival to its response, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=owner,
        )
        self.searches = prom.Histogram(
            "claude_mem_search_duration_seconds",
            "Time to answer a search or context request, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=owner,
        )
        self.events = prom.Counter(
            "claude_mem_events_ingested",
            "Events stored by the ingest routes (new events; replays are not counted).",
            registry=owner,
        )
        self.scrape_errors = prom.Counter(
            "claude_mem_scrape_errors",
            "Scrapes that could not read the jobs or the queue, by source.",
            ["source"],
            registry=owner,
        )
        # Gauges set at scrape time from the database and the broker; in multiprocess
        # mode the live value of the process that answered the scrape counts.
        gauge_mode = {"multiprocess_mode": "livemostrecent"} if multiprocess_dir else {}
        self.jobs = prom.Gauge(
            "claude_mem_jobs",
            "Generation jobs by status (the database's outbox).",
            ["status"],
            registry=owner,
            **gauge_mode,
        )
        self.queue_depth = prom.Gauge(
            "claude_mem_queue_depth",
            "Messages waiting in the queue, by lane.",
            ["lane"],
            registry=owner,
            **gauge_mode,
        )
        self.held_jobs = prom.Gauge(
            "claude_mem_jobs_held",
            "Queued jobs held back from the provider, by reason (budget: the project's "
            "budget is spent; rate_limit: the provider asked every worker to wait, or its "
            "calls of the minute are used up).",
            ["reason"],
            registry=owner,
            **gauge_mode,
        )
        self.budget_remaining = prom.Gauge(
            "claude_mem_budget_remaining",
            "What remains of each project budget in its current period, by project and "
            "unit (tokens, usd).",
            ["project", "unit"],
            registry=owner,
            **gauge_mode,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HttpMetrics:
        env = os.environ if env is None else env
        directory = (env.get("PROMETHEUS_MULTIPROC_DIR") or "").strip() or None
        return cls(multiprocess_dir=directory)

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        """Count one answered request (called once per response by the middleware)."""
        route = route_label(request)
        method = request.method
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)
        if route in SEARCH_ROUTES:
            self.searches.labels(route).observe(seconds)

    def provider_call(self, call: ProviderCall) -> None:
        """Record a provider call of embedded generation (same families as a worker's)."""
        if self.generation is None:
            from claude_mem_core.adapters.generation_metrics import GenerationMetrics

            self.generation = GenerationMetrics(False if self.multiprocess_dir else self._registry)
        self.generation.record(call)

    def ingested(self, count: int) -> None:
        if count > 0:
            self.events.inc(count)

    async def refresh(self, memory: Memory | None) -> None:
        """Set the scrape-time gauges from the database and the queue."""
        if memory is None:
            return
        from claude_mem_core.domain.models import JobStatus
        from claude_mem_core.services.jobs import job_counts

        try:
            counts = await asyncio.wait_for(job_counts(memory.deps), SCRAPE_TIMEOUT_S)
        except Exception as exc:  # a scrape reports what it could not read, never fails
            self.scrape_errors.labels("jobs").inc()
            log.warning("metrics: job counts unavailable (%s)", type(exc).__name__)
        else:
            for status in JobStatus:
                self.jobs.labels(status.value).set(counts.get(status, 0))
        await self._refresh_budgets(memory)
        queue = memory.deps.queue
        if queue is None:
            return
        try:
            depth = await asyncio.wait_for(queue.depth(), SCRAPE_TIMEOUT_S)
        except Exception as exc:
            self.scrape_errors.labels("queue").inc()
            log.warning("metrics: queue depth unavailable (%s)", type(exc).__name__)
        else:
            for lane, waiting in depth.items():
                self.queue_depth.labels(lane).set(waiting)

    async def _refresh_budgets(self, memory: Memory) -> None:
        from claude_mem_core.domain.budgets import HELD_REASONS
        from claude_mem_core.services.budgets import overview

        try:
            statuses, held = await asyncio.wait_for(overview(memory.deps), SCRAPE_TIMEOUT_S)
        except Exception as exc:
            self.scrape_errors.labels("budgets").inc()
            log.warning("metrics: budgets unavailable (%s)", type(exc).__name__)
            return
        for reason in HELD_REASONS:
            self.held_jobs.labels(reason).set(held.get(reason, 0))
        self.budget_remaining.clear()  # a cleared budget's series goes away
        for status in statuses:
            project = status.budget.project_id
            if status.remaining_tokens is not None:
                self.budget_remaining.labels(project, "tokens").set(status.remaining_tokens)
            if status.remaining_usd is not None:
                self.budget_remaining.labels(project, "usd").set(status.remaining_usd)

    def exposition(self) -> bytes:
        prom = _prometheus()
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            return bytes(prom.generate_latest(registry))
        return bytes(prom.generate_latest(self._registry))


def route_label(request: web.Request) -> str:
    """The route's template (``/v1/jobs/{id}``), or :data:`UNMATCHED_ROUTE`: never the raw
    path, which would make a label value per id."""
    match_info = request.match_info
    route = getattr(match_info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or getattr(match_info, "http_exception", None) is not None:
        return UNMATCHED_ROUTE
    canonical = resource.canonical
    return canonical if isinstance(canonical, str) and canonical else UNMATCHED_ROUTE


def count_ingested(request: web.Request, count: int) -> None:
    """Add ``count`` new events to ``claude_mem_events_ingested_total`` (no-op when off)."""
    metrics = request.app.get(METRICS)
    if metrics is not None:
        metrics.ingested(count)


METRICS: web.AppKey[HttpMetrics] = web.AppKey("claude_mem_metrics", HttpMetrics)


async def _scrape(request: web.Request) -> web.StreamResponse:
    from claude_mem_http.server.state import RUNTIME

    metrics = request.app[METRICS]
    await metrics.refresh(request.app[RUNTIME].memory)
    body = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def serve_metrics(request: web.Request) -> web.StreamResponse:
    """``GET /metrics`` without credentials (``CLAUDE_MEM_METRICS=on``)."""
    return await _scrape(request)


def setup(app: web.Application, mode: MetricsMode, metrics: HttpMetrics | None = None) -> None:
    """Register ``GET /metrics`` as ``mode`` says; the middleware counts requests whenever
    the app holds :data:`METRICS` (every mode but ``off``)."""
    if mode is MetricsMode.OFF:
        return
    app[METRICS] = metrics or HttpMetrics.from_env()
    if mode is MetricsMode.KEY:
        from claude_mem_core.domain.scopes import Need
        from claude_mem_http.server.auth import requires

        @requires(Need.READ_METRICS)
        async def serve_metrics_to_key(request: web.Request, caller: Caller) -> web.StreamResponse:
            return await _scrape(request)

        app.router.add_get(METRICS_PATH, serve_metrics_to_key)
    else:
        app.router.add_get(METRICS_PATH, serve_metrics)
