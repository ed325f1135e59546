"""The embedding API: the whole pipeline in-process, no server.

    async with open_memory("sqlite+aiosqlite:///mem.db") as mem:
        team, project = await mem.ensure_project("acme", "webapp")
        scope = Scope(team_id=team.id, project_id=project.id)
        await mem.ingest(scope, event_type="tool_use", payload={...})
        await mem.drain()                       # run queued generation here and now
        hits = await mem.search(scope, "which file fixed the login redirect?")

Every use case takes the tenant scope explicitly; the caller is trusted (no API key), as
an embedding application owns its database.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from claude_mem_core.adapters import queue_from_url, storage_from_url
from claude_mem_core.config import search_snapshot_postings
from claude_mem_core.domain.models import (
    AgentEvent,
    ApiKey,
    GenerationJob,
    JobEvent,
    JobStatus,
    Observation,
    Project,
    Scope,
    ServerSession,
    Team,
)
from claude_mem_core.facade_budgets import BudgetMethods
from claude_mem_core.facade_wiring import embedder_from_settings, tracer_from_env
from claude_mem_core.generation.modes import CODE_MODE, Mode
from claude_mem_core.ports.clock import Clock, IdSource, SystemClock, UuidSource
from claude_mem_core.ports.embedder import Embedder
from claude_mem_core.ports.provider import Provider
from claude_mem_core.ports.queue import JobQueue
from claude_mem_core.ports.storage import Storage
from claude_mem_core.ports.tracing import NOOP_TRACER, Tracer
from claude_mem_core.services import (
    admin,
    debounce,
    embedding,
    erase,
    export,
    generation,
    group_commit,
    jobs,
    key_lookup,
    memories,
    memory_writer,
    project_import,
    reconcile,
    retention,
    sessions,
    usage,
)
from claude_mem_core.services import ingest as ingest_service
from claude_mem_core.services.context import Caller, Deps, PipelineOptions

if TYPE_CHECKING:
    from claude_mem_core.adapters.observed_provider import ProviderCall


class Memory(BudgetMethods):
    """The use cases of claude-mem as async methods over one set of ports."""

    def __init__(
        self,
        *,
        storage: Storage,
        queue: JobQueue | None,
        provider: Provider,
        options: PipelineOptions | None = None,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        mode: Mode = CODE_MODE,
        worker_id: str = "embedded",
        embedder: Embedder | None = None,
        embedding_model: str | None = None,
        provider_observer: Callable[[ProviderCall], None] | None = None,
        tracer: Tracer = NOOP_TRACER,
    ) -> None:
        """``embedder`` turns semantic recall on (off by default); its vectors are stored
        under ``embedding_model`` (default: the embedder's model). The memory closes it.
        ``provider_observer`` is told of every provider call (metrics). ``tracer`` gets
        the spans (:func:`tracer_from_env`; none by default)."""
        self.deps = Deps(
            storage=storage,
            queue=queue,
            clock=clock or SystemClock(),
            ids=ids or UuidSource(),
            options=options or PipelineOptions(),
            semantic=(
                None
                if embedder is None
                else embedding.SemanticRecall(embedder, model=embedding_model)
            ),
            tracer=tracer,
        )
        if provider_observer is not None or tracer.enabled:
            from claude_mem_core.adapters.observed_provider import ObservedProvider

            provider = ObservedProvider(provider, provider_observer, tracer=tracer)
        if tracer.enabled:
            tracer.instrument_storage(storage)
            trace_with = getattr(queue, "trace_with", None)
            if trace_with is not None:
                trace_with(tracer)
        self.provider = provider
        self.generator = generation.Generator(self.deps, provider, worker_id=worker_id, mode=mode)
        # Queue handler: one job at a time, or a debounced session's jobs together.
        self.batcher = debounce.SessionBatcher(self.generator)
        # Concurrent requests with one key share a key read that starts after they arrive.
        self.key_lookup = key_lookup.CoalescedKeyLookup(self.deps)
        # Single events of concurrent callers share transactions (group commit).
        self.event_writer = group_commit.GroupCommitIngest(self.deps)
        # Memories of concurrent callers too.
        self.memory_writer = memory_writer.GroupCommitMemories(self.deps)

    @property
    def storage(self) -> Storage:
        return self.deps.storage

    # -- tenants and keys -------------------------------------------------------------

    async def create_team(self, name: str) -> Team:
        return await admin.create_team(self.deps, name)

    async def create_project(self, team_id: str, name: str) -> Project:
        return await admin.create_project(self.deps, team_id, name)

    async def ensure_project(self, team_name: str, project_name: str) -> tuple[Team, Project]:
        return await admin.ensure_team_and_project(self.deps, team_name, project_name)

    async def list_teams(self, *, limit: int = 50, offset: int = 0) -> tuple[Sequence[Team], int]:
        return await admin.list_teams(self.deps, limit=limit, offset=offset)

    async def list_projects(
        self, team_id: str, *, limit: int = 50, offset: int = 0
    ) -> tuple[Sequence[Project], int]:
        return await admin.list_projects(self.deps, team_id, limit=limit, offset=offset)

    async def create_api_key(self, **kwargs: Any) -> admin.IssuedKey:
        return await admin.create_api_key(self.deps, **kwargs)

    async def verify_api_key(self, raw_key: str) -> Caller:
        return await self.key_lookup.verify(raw_key)

    async def list_api_keys(self, **kwargs: Any) -> tuple[Sequence[ApiKey], int]:
        return await admin.list_api_keys(self.deps, **kwargs)

    async def revoke_api_key(self, key_id: str) -> ApiKey:
        return await admin.revoke_api_key(self.deps, key_id)

    async def rotate_api_key(self, key_id: str) -> admin.IssuedKey:
        return await admin.rotate_api_key(self.deps, key_id)

    # -- events and sessions ----------------------------------------------------------

    @staticmethod
    def _caller(scope: Scope) -> Caller:
        """The whole scope, team and project: a row of another project of the same team
        is as missing as one of another team (``NotFound``, same message)."""
        return Caller.embedded(scope.team_id, project_id=scope.project_id)

    async def ingest(
        self,
        scope: Scope,
        *,
        event_type: str,
        payload: Any = None,
        source: str = "api",
        occurred_at: datetime | None = None,
        session_id: str | None = None,
        source_event_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        generate: bool = True,
    ) -> ingest_service.IngestedEvent:
        item = ingest_service.EventInput(
            project_id=scope.project_id,
            source_adapter=source,
            event_type=event_type,
            occurred_at=occurred_at or datetime.now(UTC),
            server_session_id=session_id,
            source_event_id=source_event_id,
            payload=payload if payload is not None else {},
            metadata=dict(metadata or {}),
        )
        return await self.event_writer.ingest(
            self._caller(scope), item, generate=generate, job_source="python_api"
        )

    async def ingest_batch(
        self, scope: Scope, items: Sequence[ingest_service.EventInput], *, generate: bool = True
    ) -> list[ingest_service.IngestedEvent]:
        return await ingest_service.ingest_batch(
            self.deps, self._caller(scope), items, generate=generate, job_source="python_api"
        )

    async def get_event(self, scope: Scope, event_id: str) -> AgentEvent:
        return await memories.get_event(self.deps, self._caller(scope), event_id)

    async def start_session(
        self, scope: Scope, *, external_session_id: str | None = None, **fields: Any
    ) -> sessions.StartedSession:
        item = sessions.SessionInput(
            project_id=scope.project_id, external_session_id=external_session_id, **fields
        )
        return await sessions.start_session(self.deps, self._caller(scope), item)

    async def get_session(self, scope: Scope, session_id: str) -> ServerSession:
        return await sessions.get_session(self.deps, self._caller(scope), session_id)

    async def end_session(self, scope: Scope, session_id: str) -> sessions.EndedSession:
        return await sessions.end_session(
            self.deps, self._caller(scope), session_id, job_source="python_api"
        )

    # -- memories, search, context ----------------------------------------------------

    async def add_memory(
        self, scope: Scope, content: str, *, title: str | None = None, **fields: Any
    ) -> Observation:
        item = memories.MemoryInput(
            project_id=scope.project_id, content=content, title=title, **fields
        )
        return await self.memory_writer.add(self._caller(scope), item)

    async def search(
        self, scope: Scope, query: str, *, limit: int = 20, kind: str | None = None
    ) -> list[memories.SearchResult]:
        """The best observations for ``query``, best first, each with the excerpt that
        matched (``result.observation``, ``result.excerpt``); ``kind``: only that kind."""
        return await memories.search(
            self.deps,
            self._caller(scope),
            project_id=scope.project_id,
            query=query,
            limit=limit,
            kind=kind,
        )

    async def context(
        self, scope: Scope, query: str, *, limit: int = 10, max_tokens: int | None = None
    ) -> memories.Context:
        return await memories.context(
            self.deps,
            self._caller(scope),
            project_id=scope.project_id,
            query=query,
            limit=limit,
            max_tokens=max_tokens,
        )

    async def recent(
        self, scope: Scope, *, limit: int = 20, kind: str | None = None
    ) -> list[Observation]:
        """The project's newest observations, newest first; only those of ``kind``
        (``decision``, ``summary``…) when given."""
        return await memories.recent(
            self.deps, self._caller(scope), project_id=scope.project_id, limit=limit, kind=kind
        )

    # -- semantic recall ----------------------------------------------------------------

    @property
    def semantic_recall(self) -> embedding.SemanticRecall | None:
        """The embedder search fuses with, None when semantic recall is off."""
        return self.deps.semantic

    async def backfill_embeddings(
        self,
        *,
        team_id: str | None = None,
        project_id: str | None = None,
        max_passages: int | None = None,
        progress: embedding.Progress | None = None,
    ) -> embedding.BackfillReport:
        """Embed the passages still without a vector (of one project, one team, or all);
        ``ConfigurationError`` when semantic recall is off."""
        return await embedding.backfill(
            self.deps,
            team_id=team_id,
            project_id=project_id,
            max_passages=max_passages,
            progress=progress,
        )

    # -- jobs ---------------------------------------------------------------------------

    async def get_job(self, scope: Scope, job_id: str) -> GenerationJob:
        return await jobs.get_job(self.deps, self._caller(scope), job_id)

    async def job_events(self, scope: Scope, job_id: str) -> Sequence[JobEvent]:
        return await jobs.job_events(self.deps, self._caller(scope), job_id)

    async def list_jobs(
        self,
        scope: Scope,
        *,
        status: JobStatus | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> jobs.JobPage:
        parsed = (
            status if isinstance(status, JobStatus) or status is None else jobs.parse_status(status)
        )
        return await jobs.list_jobs(
            self.deps,
            self._caller(scope),
            project_id=scope.project_id,
            status=parsed,
            limit=limit,
            offset=offset,
        )

    async def retry_job(self, scope: Scope, job_id: str) -> jobs.RetryOutcome:
        return await jobs.retry_job(self.deps, self._caller(scope), job_id)

    async def cancel_job(self, scope: Scope, job_id: str) -> jobs.CancelOutcome:
        return await jobs.cancel_job(self.deps, self._caller(scope), job_id)

    # -- erasing ------------------------------------------------------------------------

    async def erase_event(self, scope: Scope, event_id: str) -> erase.Erasure:
        """Erase one event and everything derived from it, in one transaction: the
        observations made from it (one made from several events goes when any of them is
        erased, and so does every summary of its session), their search passages and
        vectors, its jobs. ``result.counts``: the rows removed, by kind. A replay of its
        ``source_event_id`` is then refused (``Gone``). ``services/erase.py`` has it all."""
        return await erase.erase_event(self.deps, self._caller(scope), event_id)

    async def erase_session(self, scope: Scope, session_id: str) -> erase.Erasure:
        """Erase one session, its events, every observation of it and what was derived
        from them, in one transaction. ``result.counts``: the rows removed, by kind."""
        return await erase.erase_session(self.deps, self._caller(scope), session_id)

    async def erase_project(
        self, scope: Scope, *, batch_size: int = erase.PURGE_BATCH
    ) -> erase.Erasure:
        """Erase the scope's project: it is marked deleted at once (missing to every read,
        refusing writes), then its rows are purged ``batch_size`` rows a transaction.
        ``result.counts``: the rows removed, by kind. Calling it again for a project whose
        purge was cut short finishes the purge."""
        return await erase.erase_project(
            self.deps, self._caller(scope), scope.project_id, batch_size=batch_size
        )

    # -- usage --------------------------------------------------------------------------

    async def usage_report(
        self, scope: Scope, *, days: int = 30, group_by: str = "day"
    ) -> usage.UsageReport:
        """What generation cost the scope's project over the last ``days`` days: calls,
        tokens and estimated US dollars from the token ledger, by ``day``, ``model`` or
        ``project`` (``services/usage.py``)."""
        return await usage.report(
            self.deps,
            self._caller(scope),
            project_id=scope.project_id,
            days=days,
            group_by=group_by,
        )

    # -- retention ------------------------------------------------------------------------

    async def set_retention(self, scope: Scope, retain_days: int | None) -> Project:
        """Keep the scope's project's sessions and events for ``retain_days`` days after
        their last activity (None: until erased by hand); the sweep erases what is older
        (``services/retention.py``)."""
        return await retention.set_retention(
            self.deps, self._caller(scope), scope.project_id, retain_days
        )

    async def sweep_retention(
        self, *, team_id: str | None = None, project_id: str | None = None
    ) -> list[retention.ProjectSweep]:
        """One bounded round of the retention sweep over every project with a retention
        (or the one given); the worker and the embedded server run it every few minutes."""
        return await retention.sweep(self.deps, team_id=team_id, project_id=project_id)

    # -- export and import ----------------------------------------------------------------

    async def export_project(self, scope: Scope) -> AsyncIterator[str]:
        """The scope's project as versioned NDJSON, line by line (each ends in a newline),
        read in pages: memory stays bounded whatever the project's size
        (``services/export.py``; the format: ``domain/export_format.py``)."""
        async for line in export.export_project(self.deps, self._caller(scope), scope.project_id):
            yield line

    async def import_project(
        self,
        scope: Scope,
        lines: AsyncIterable[str | bytes],
        *,
        generate: bool = False,
        progress: project_import.Progress | None = None,
    ) -> project_import.ImportReport:
        """Import an export into the scope's project: every line is checked before any is
        written (a bad one raises ``BadExportLine`` naming it), ids are kept, rows already
        there are skipped, imported observations are indexed for search; ``generate``
        queues generation for the imported events (``services/project_import.py``)."""
        return await project_import.import_project(
            self.deps,
            self._caller(scope),
            scope.project_id,
            lines,
            generate=generate,
            progress=progress,
        )

    # -- in-process generation ----------------------------------------------------------

    async def drain(self, *, max_jobs: int | None = None) -> int:
        """Run queued generation in this process until no job is due. Returns how many
        jobs were processed. Jobs waiting on a retry backoff are left for later."""
        processed = 0
        while max_jobs is None or processed < max_jobs:
            report = await reconcile.reconcile(self.deps, republish_after_seconds=0.0)
            del report
            queue = self.deps.queue
            consume = getattr(queue, "consume", None)
            if consume is not None:
                remaining = None if max_jobs is None else max_jobs - processed
                handled: int = await consume(self.batcher.handle, max_messages=remaining)
            else:
                handled = await self._process_due(max_jobs, processed)
            if handled == 0:
                break
            processed += handled
        return processed

    async def _process_due(self, max_jobs: int | None, processed: int) -> int:
        """Without a consumable queue, take due rows straight from storage."""
        now = self.deps.clock.now()
        async with self.deps.storage.unit_of_work() as uow:
            due = await uow.jobs.list_due(now=now, lease_expired_before=now, limit=100)
        handled = 0
        for job in due:
            if max_jobs is not None and processed + handled >= max_jobs:
                break
            if job.status is JobStatus.QUEUED:
                result = await self.generator.process(job.id)
                if result.outcome != "busy":
                    handled += 1
        return handled

    async def close(self) -> None:
        await self.event_writer.drain()
        await self.memory_writer.drain()
        await self.key_lookup.drain()
        if self.deps.queue is not None:
            await self.deps.queue.close()
        await self.provider.close()
        if self.deps.semantic is not None:
            await self.deps.semantic.aclose()
        await self.deps.storage.close()


@asynccontextmanager
async def open_memory(
    url: str = "sqlite+aiosqlite:///claude-mem.db",
    *,
    queue_url: str = "memory://",
    provider: Provider | str | None = None,
    options: PipelineOptions | None = None,
    env: Mapping[str, str] | None = None,
    migrate: bool = True,
    queue_prefix: str | None = None,
    embedder: Embedder | None = None,
    embedding_model: str | None = None,
    clock: Clock | None = None,
    provider_observer: Callable[[ProviderCall], None] | None = None,
    tracer: Tracer | None = None,
) -> AsyncIterator[Memory]:
    """Open a memory on a storage URL. SQLite files are migrated on open (``migrate``);
    Postgres must be migrated with ``claude-mem migrate`` first. ``provider`` is a
    :class:`Provider`, a spec such as ``"anthropic:claude-sonnet-4-5"`` or ``"offline"``, or
    None to choose from the API keys in the environment (offline when there are none).
    ``embedder`` (closed with the memory) turns semantic recall on; see :class:`Memory`.
    ``clock``: what "now" is for the services and the storage adapter alike. ``tracer``:
    where spans go (default: :func:`tracer_from_env` of ``env``)."""
    clock = clock or SystemClock()
    if tracer is None:
        tracer = tracer_from_env(os.environ if env is None else env)
    try:
        storage = storage_from_url(
            url,
            clock=clock,
            search_snapshot_postings=search_snapshot_postings(os.environ if env is None else env),
        )
    except BaseException:
        if embedder is not None:
            await embedder.aclose()
        raise
    try:
        if migrate and storage.name == "sqlite":
            from claude_mem_core.migrations import upgrade

            await upgrade(url)
        await storage.check_schema()
        if provider is None or isinstance(provider, str):
            from claude_mem_core.adapters.providers import provider_from_spec

            chosen = provider_from_spec(provider, os.environ if env is None else env)
        else:
            chosen = provider
        queue = queue_from_url(queue_url, prefix=queue_prefix)
    except BaseException:
        await storage.close()
        if embedder is not None:
            await embedder.aclose()
        raise
    memory = Memory(
        storage=storage,
        queue=queue,
        provider=chosen,
        options=options,
        embedder=embedder,
        embedding_model=embedding_model,
        clock=clock,
        provider_observer=provider_observer,
        tracer=tracer,
    )
    try:
        yield memory
    finally:
        await memory.close()


@asynccontextmanager
async def open_memory_from_settings(
    settings: Any,
    *,
    migrate_embedded: bool = True,
    queue: bool = True,
    provider_observer: Callable[[ProviderCall], None] | None = None,
) -> AsyncIterator[Memory]:
    """Open the memory a deployment is configured for (see :class:`config.Settings`).

    The embedded default (an unconfigured SQLite file) is migrated on open so a new user
    needs no setup; a configured database must be migrated with ``claude-mem migrate``."""
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with open_memory(
        settings.database_url,
        queue_url=settings.queue_url if queue else "memory://",
        provider=settings.provider,
        options=settings.pipeline_options(),
        migrate=migrate_embedded and not settings.database_configured,
        queue_prefix=settings.redis_prefix,
        embedder=embedder_from_settings(settings),
        embedding_model=settings.embeddings_model,
        provider_observer=provider_observer,
    ) as memory:
        yield memory
