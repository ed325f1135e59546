"""Use cases: write a manual memory, search observations, build context, read events."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, cast

from attrs import field, frozen

from claude_mem_core.domain import redaction
from claude_mem_core.domain.excerpts import distinct_excerpts
from claude_mem_core.domain.models import (
    AgentEvent,
    Observation,
    ObservationKind,
    ObservationSource,
    ObservationSourceType,
)
from claude_mem_core.domain.passages import observation_passage
from claude_mem_core.domain.scopes import Need, require
from claude_mem_core.domain.tokens import Query, parse_query
from claude_mem_core.errors import FieldIssue, InvalidInput, NotFound
from claude_mem_core.generation.privacy import strip_tags
from claude_mem_core.ports.search import SearchHit
from claude_mem_core.ports.storage import FreshMemory, Page
from claude_mem_core.services import embedding
from claude_mem_core.services.context import Caller, Deps
from claude_mem_core.services.tenancy import audit, audit_entry, project_visible, require_project

MAX_SEARCH_LIMIT = 100
MAX_CONTEXT_LIMIT = 50


@frozen(kw_only=True)
class MemoryInput:
    project_id: str
    content: str
    kind: str = ObservationKind.MANUAL.value
    server_session_id: str | None = None
    title: str | None = None
    type: str | None = None
    metadata: dict[str, Any] = field(factory=dict)


# A memory's kind: any short label its writer chooses (``decision``, ``note``, ``bug-fix``,
# ``team:infra``…), stored and returned as sent (without surrounding whitespace).
MAX_KIND_LENGTH = 64
_KIND = re.compile(r"[\w.:/-]+")
KIND_RULE = f"must be 1 to {MAX_KIND_LENGTH} characters: letters, digits, '_', '-', '.', ':' or '/'"


def parse_kind(kind: object) -> str | None:
    """``kind`` trimmed, or ``None`` when it is not a valid kind (:data:`KIND_RULE`)."""
    if not isinstance(kind, str):
        return None
    kind = kind.strip()
    if not 1 <= len(kind) <= MAX_KIND_LENGTH or _KIND.fullmatch(kind) is None:
        return None
    return kind


def fresh_memory(deps: Deps, caller: Caller, item: MemoryInput) -> FreshMemory:
    """Check a memory (scope, fields) and build its rows: the observation, its search
    passage, its source link and its ``memory.write`` audit row. Needs no database; the
    project and session are checked where the rows are written."""
    require(caller.scopes, Need.WRITE_MEMORIES)
    issues = []
    if not isinstance(item.project_id, str) or not item.project_id.strip():
        issues.append(FieldIssue("project_id", "must be a non-empty string"))
    content = strip_tags(item.content).text if isinstance(item.content, str) else ""
    if not content.strip():
        issues.append(
            FieldIssue("content", "must be non-empty text (after removing private content)")
        )
    kind = parse_kind(item.kind)
    if kind is None:
        issues.append(FieldIssue("kind", KIND_RULE))
    if not isinstance(cast(object, item.metadata), dict):
        issues.append(FieldIssue("metadata", "must be an object"))
    if issues:
        raise InvalidInput(issues)
    assert kind is not None
    if not project_visible(caller, item.project_id):
        raise NotFound("Project not found")
    content, title = content.strip(), item.title
    metadata = {k: v for k, v in item.metadata.items() if k != redaction.REDACTIONS_KEY}
    if deps.options.redact_secrets:
        # A memory is what search returns and context hands to the next session: the same
        # typed credentials as in events are replaced before it is stored (the server's
        # setting; a project's own switch applies to events, which read the project).
        counts: Counter[str] = Counter()
        content = deps.options.redactor.redact(content, counts)
        if isinstance(title, str):
            title = deps.options.redactor.redact(title, counts)
        if counts:
            metadata[redaction.REDACTIONS_KEY] = dict(counts)
    now = deps.clock.now()
    observation = Observation(
        id=deps.ids.new_id(),
        team_id=caller.team_id,
        project_id=item.project_id,
        server_session_id=item.server_session_id,
        kind=kind,
        type=item.type,
        title=title,
        content=content,
        metadata=metadata,
        created_at=now,
        updated_at=now,
    )
    return FreshMemory(
        observation=observation,
        source=ObservationSource(
            id=deps.ids.new_id(),
            observation_id=observation.id,
            team_id=observation.team_id,
            project_id=observation.project_id,
            source_type=ObservationSourceType.MANUAL,
            source_id=caller.api_key_id or caller.actor_id or "embedded",
            created_at=now,
        ),
        passages=(observation_passage(observation),),
        audit=audit_entry(
            deps,
            caller,
            "memory.write",
            project_id=observation.project_id,
            resource_id=observation.id,
        ),
        key_id=caller.api_key_id,
    )


async def write_memory(deps: Deps, caller: Caller, fresh: FreshMemory) -> Observation:
    """Write the rows of :func:`fresh_memory` in one unit of work of their own, checking
    the project and session first (the caller's key is not checked here)."""
    observation = fresh.observation
    async with deps.storage.unit_of_work() as uow:
        await require_project(uow, caller, observation.project_id)
        if observation.server_session_id is not None:
            session = await uow.sessions.get(caller.team_id, observation.server_session_id)
            if session is None or session.project_id != observation.project_id:
                raise NotFound("Session not found")
        stored, _ = await uow.observations.add(observation)
        await uow.search.add(fresh.passages)
        await uow.sources.add(fresh.source)
        await uow.audit.add(fresh.audit)
    return stored


async def add_memory(deps: Deps, caller: Caller, item: MemoryInput) -> Observation:
    """Store a memory the caller wrote itself, in a transaction of its own; no generation
    job is involved. Concurrent callers share transactions through
    :class:`~claude_mem_core.services.memory_writer.GroupCommitMemories` instead."""
    return await write_memory(deps, caller, fresh_memory(deps, caller, item))


def _check_limit(limit: int, maximum: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise InvalidInput.field("limit", f"must be an integer from 1 to {maximum}")


@frozen(kw_only=True)
class Excerpt:
    """The stretch of one matching passage that matches the query, matches marked
    ``**like this**``; ``event_id`` names the event it comes from (``None``: the
    observation's own text)."""

    text: str
    event_id: str | None
    score: float


@frozen(kw_only=True)
class SearchResult:
    """A search hit: the observation, its score, and the evidence: ``excerpts`` of its best
    passages (its own text, the events it was made from), best first; ``excerpt`` is them
    joined by `` … ``. ``similarity``: with semantic recall on, the best cosine between the
    query's vector and its passages' (None without vectors); ``score`` stays the BM25
    score, the order is the fused one."""

    observation: Observation
    score: float
    excerpts: tuple[Excerpt, ...] = ()
    similarity: float | None = None

    @property
    def excerpt(self) -> str:
        return EXCERPT_SEPARATOR.join(e.text for e in self.excerpts)


EXCERPT_SEPARATOR = " … "


async def search(
    deps: Deps,
    caller: Caller,
    *,
    project_id: str,
    query: str,
    limit: int = 20,
    mode: str = "search",
    kind: str | None = None,
) -> list[SearchResult]:
    """Ranked full-text search (BM25 over passages, ``domain/ranking.py``), one result per
    observation with its excerpt; ``kind``: only observations of that kind. The audit row
    records the result ids, not the query text (it may be personal data).

    With semantic recall on (``deps.semantic``), storage is asked for more candidates than
    ``limit`` (``embedding.candidate_count``), the query is embedded while it searches, and
    the candidates are reordered by rank fusion with their passages' cosine similarity
    (``services/embedding.py``) before the best ``limit`` are returned. The audit row is
    written by that storage search, so it records every candidate read (``resultCount`` and
    ``observationIds`` of the candidates, ``candidates`` in its details), not only those
    returned. An embedder that fails leaves the answer to BM25 alone."""
    require(caller.scopes, Need.READ)
    _check_limit(limit, MAX_SEARCH_LIMIT if mode == "search" else MAX_CONTEXT_LIMIT)
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput.field("query", "must be a non-empty string")
    wanted_kind = None if kind is None else parse_kind(kind)
    if kind is not None and wanted_kind is None:
        raise InvalidInput.field("kind", KIND_RULE)
    parsed = parse_query(query)
    if not project_visible(caller, project_id):
        raise NotFound("Project not found")
    details: dict[str, Any] = {"mode": mode, "queryTermCount": len(parsed.terms), "limit": limit}
    if wanted_kind is not None:
        details["kind"] = wanted_kind
    semantic = deps.semantic
    fetch = limit
    if semantic is not None:
        fetch = embedding.candidate_count(limit, MAX_SEARCH_LIMIT)
        details["candidates"] = fetch
    entry = audit_entry(deps, caller, "observation.read", project_id=project_id, details=details)
    vectors: Mapping[str, Sequence[Sequence[float]]] = {}
    query_vector: asyncio.Future[list[float] | None] | None = None
    if semantic is not None:
        # Embedded while the database searches: no transaction waits for the embedder.
        query_vector = asyncio.ensure_future(semantic.query_vector(query))
    try:
        async with deps.storage.unit_of_work() as uow:
            # The read's audit row (with the result count and ids) is written with the search
            # (on PostgreSQL by its own statement); a foreign or missing project is "not
            # found", a key revoked meanwhile "forbidden", and then nothing is answered.
            hits = await uow.search.search(
                caller.team_id, project_id, parsed, limit=fetch, audit=entry, kind=wanted_kind
            )
            if semantic is not None and len(hits) > 1:
                vectors = await uow.vectors.for_observations(
                    caller.team_id, project_id, semantic.model, [h.observation.id for h in hits]
                )
    except BaseException:
        if query_vector is not None:
            query_vector.cancel()
        raise
    ranked: list[tuple[SearchHit, float | None]] = [(h, None) for h in hits[:limit]]
    if query_vector is not None:
        if len(hits) > 1:
            wanted = await query_vector
            if wanted is not None:
                fused = embedding.fuse(hits, vectors, wanted, limit)
                ranked = [(f.hit, f.similarity) for f in fused]
        else:
            query_vector.cancel()
    return [
        SearchResult(
            observation=h.observation,
            score=h.score,
            excerpts=_excerpts(h, parsed),
            similarity=similarity,
        )
        for h, similarity in ranked
    ]


def _excerpts(hit: SearchHit, query: Query) -> tuple[Excerpt, ...]:
    """The hit's evidence as excerpts, none repeating what an earlier one shows."""
    texts = [e.text if e.text is not None else hit.observation.content for e in hit.evidence]
    return tuple(
        Excerpt(text=text, event_id=e.event_id, score=e.score)
        for e, text in zip(hit.evidence, distinct_excerpts(texts, query), strict=True)
        if text is not None
    )


@frozen(kw_only=True)
class Context:
    """The text built for a query, and the search results it was built from."""

    results: Sequence[SearchResult]
    context: str

    @property
    def observations(self) -> list[Observation]:
        return [r.observation for r in self.results]


# Characters per token when a caller budgets context in tokens: the usual estimate for
# English and code with the tokenizers of current models (no tokenizer is bundled).
CHARS_PER_TOKEN = 4


async def context(
    deps: Deps,
    caller: Caller,
    *,
    project_id: str,
    query: str,
    limit: int = 10,
    max_tokens: int | None = None,
) -> Context:
    """The best observations for ``query`` as one text. Without ``max_tokens``: their
    contents joined by a blank line (the reference's format). With it: for each, in rank
    order, its title and the excerpt that matched, as long as the whole stays within
    ``max_tokens`` (estimated at CHARS_PER_TOKEN characters a token); at least the first."""
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise InvalidInput.field("maxTokens", "must be a positive integer")
    found = await search(
        deps, caller, project_id=project_id, query=query, limit=limit, mode="context"
    )
    if max_tokens is None:
        text = "\n\n".join(r.observation.content for r in found if r.observation.content)
        return Context(results=found, context=text)
    budget = max_tokens * CHARS_PER_TOKEN
    blocks: list[str] = []
    used = -2  # blocks are joined by a blank line: two characters each after the first
    for result in found:
        title = result.observation.title or result.observation.type or "Observation"
        block = f"## {title}\n{result.excerpt}"
        if used + 2 + len(block) > budget:
            if not blocks:  # the best one, cut to the budget, rather than nothing
                blocks.append(block[: budget - 1] + "…")
            break
        blocks.append(block)
        used += 2 + len(block)
    return Context(results=found[: len(blocks)], context="\n\n".join(blocks))


MAX_RECENT_LIMIT = 100


async def recent(
    deps: Deps, caller: Caller, *, project_id: str, limit: int = 20, kind: str | None = None
) -> list[Observation]:
    """The newest observations of a project (newest ``created_at`` first), for
    session-start context without a query; only those of ``kind`` when given. Audited
    like a search (mode ``recent``)."""
    require(caller.scopes, Need.READ)
    _check_limit(limit, MAX_RECENT_LIMIT)
    if not isinstance(project_id, str) or not project_id.strip():
        raise InvalidInput.field("project_id", "must be a non-empty string")
    wanted = None if kind is None else parse_kind(kind)
    if kind is not None and wanted is None:
        raise InvalidInput.field("kind", KIND_RULE)
    async with deps.storage.unit_of_work() as uow:
        await require_project(uow, caller, project_id)
        rows, _ = await uow.observations.list(
            caller.team_id, project_id, Page(limit=limit), kind=wanted
        )
        found = list(rows)
        await audit(
            uow,
            deps,
            caller,
            "observation.read",
            project_id=project_id,
            read=True,
            details={
                "mode": "recent",
                "limit": limit,
                **({"kind": wanted} if wanted is not None else {}),
                "resultCount": len(found),
                "observationIds": [o.id for o in found],
            },
        )
    return found


async def get_memory(deps: Deps, caller: Caller, memory_id: str) -> Observation:
    """One observation of the caller's team (and project, for a project key); anything
    else, missing or not, is "Memory not found"."""
    require(caller.scopes, Need.READ)
    if not isinstance(memory_id, str) or not memory_id.strip():
        raise NotFound("Memory not found")
    async with deps.storage.unit_of_work() as uow:
        if caller.project_id is not None:
            found = await uow.observations.get(caller.team_id, caller.project_id, memory_id)
        else:
            found = await uow.observations.get_in_team(caller.team_id, memory_id)
        if found is None or not caller.scope.admits(found.team_id, found.project_id):
            raise NotFound("Memory not found")
        await audit(
            uow,
            deps,
            caller,
            "observation.read",
            project_id=found.project_id,
            resource_id=found.id,
            read=True,
            details={"mode": "get", "resultCount": 1, "observationIds": [found.id]},
        )
    return found


async def get_event(deps: Deps, caller: Caller, event_id: str) -> AgentEvent:
    require(caller.scopes, Need.READ_EVENTS)
    async with deps.storage.unit_of_work() as uow:
        event = await uow.events.get(caller.team_id, event_id)
    if event is None or not caller.scope.admits(event.team_id, event.project_id):
        raise NotFound("Event not found")
    return event


async def event_observations(
    deps: Deps, caller: Caller, event_id: str
) -> list[tuple[Observation, ObservationSource]]:
    require(caller.scopes, Need.READ)
    async with deps.storage.unit_of_work() as uow:
        event = await uow.events.get(caller.team_id, event_id)
        if event is None or not caller.scope.admits(event.team_id, event.project_id):
            raise NotFound("Event not found")
        pairs = await uow.observations.list_for_source(
            caller.team_id, event.project_id, ObservationSourceType.AGENT_EVENT.value, event.id
        )
        await audit(
            uow,
            deps,
            caller,
            "observation.read",
            project_id=event.project_id,
            resource_id=event.id,
            read=True,
            details={
                "mode": "event_observations",
                "eventId": event.id,
                "resultCount": len(pairs),
                "observationIds": [o.id for o, _ in pairs],
            },
        )
    return list(pairs)
