"""Rebuilding the search index from the stored observations and their source events.

Passages keep the terms the tokenizer produced when they were written. When the tokenizer
changes what a word becomes (``domain/words.py``, ``domain/tokens.py``), queries would look up
terms the stored passages do not hold; a migration then rebuilds every project's passages
and statistics with :func:`rebuild_search_index`, in batches, on a synchronous connection.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

BATCH = 500  # observations read, and their passages written, per round trip
# Observation columns of later revisions: the reindexing revisions (0008, 0009) run before
# they exist, and passages do not depend on them.
_ADDED_AFTER_REINDEX = frozenset(
    {"fingerprint", "occurrences", "superseded_by", "superseded_at", "subject"}
)


def rebuild_search_index(bind: sa.Connection) -> int:
    """Drop every passage (with its statistics and anything keyed by it) and index every
    observation again with the current tokenizer. Returns the passages written."""
    tables = set(sa.inspect(bind).get_table_names())
    # Rows keyed by a passage go first (a later revision may add such a table).
    for name in ("search_vectors", "search_passages", "search_terms", "search_stats"):
        if name in tables:
            bind.execute(sa.text(f"DELETE FROM {name}"))
    return index_observations(bind)


def index_observations(bind: sa.Connection) -> int:
    """Index every stored observation, with the text of its source events, as the
    generation pipeline does (``domain.passages.passages_for``)."""
    # The metadata's tables read rows with their types (JSON, UTC timestamps) as the
    # adapter does.
    from claude_mem_core.adapters.sqlalchemy import tables
    from claude_mem_core.adapters.sqlalchemy.passage_writes import add_passages_sync
    from claude_mem_core.adapters.sqlalchemy.rows import event_from_row, observation_from_row
    from claude_mem_core.domain.passages import passages_for

    observations = tables.observations
    sources = tables.observation_sources
    events = tables.agent_events
    written = 0
    last = ""
    while True:
        rows = (
            bind.execute(
                sa.select(*(c for c in observations.c if c.key not in _ADDED_AFTER_REINDEX))
                .where(observations.c.id > last)
                .order_by(observations.c.id)
                .limit(BATCH)
            )
            .mappings()
            .all()
        )
        if not rows:
            return written
        last = rows[-1]["id"]
        linked: dict[str, list[Any]] = {}
        for event in (
            bind.execute(
                sa.select(events, sources.c.observation_id.label("linked_observation_id"))
                .join(sources, sources.c.agent_event_id == events.c.id)
                .where(sources.c.observation_id.in_([row["id"] for row in rows]))
                .order_by(events.c.created_at, events.c.id)
            )
            .mappings()
            .all()
        ):
            linked.setdefault(event["linked_observation_id"], []).append(event_from_row(event))
        batch = []
        for row in rows:
            observation = observation_from_row(row)
            batch.extend(passages_for([observation], linked.get(observation.id, [])))
        add_passages_sync(bind, batch)
        written += len(batch)
