"""Dedup of generated observations: the same fact generated twice is stored once.

The storage adapters do the race-safe part: an observation whose fingerprint
(``domain/fingerprint.py``) a stored row of its project holds is not inserted, and the add
answers the stored row (``ObservationRepository.add``; a unique index on PostgreSQL and
SQLite). The generation use case then links its source event to that row as to a new one
and counts the occurrence; these helpers say which drafts to store and what to count.

Only generated observations carry a fingerprint. Memories (``POST /v1/memories``) are
stored as sent, every time, as the wire's reference does; summaries are one per session.
"""

from __future__ import annotations

from collections.abc import Sequence

from claude_mem_core.domain.models import Observation


def unique_drafts(
    drafts: Sequence[tuple[int, Observation]],
) -> list[tuple[int, Observation]]:
    """The drafts of one provider answer, the first of each fingerprint only: one answer
    saying the same thing twice is one occurrence of it, from one source."""
    seen: set[str] = set()
    kept: list[tuple[int, Observation]] = []
    for index, draft in drafts:
        if draft.fingerprint is not None:
            if draft.fingerprint in seen:
                continue
            seen.add(draft.fingerprint)
        kept.append((index, draft))
    return kept


def repeats(
    drafts: Sequence[Observation], added: Sequence[tuple[Observation, bool]]
) -> dict[str, int]:
    """The stored observations that drafts matched by fingerprint, with how many each: one
    more occurrence per draft. A draft answered with the row of its own generation key is
    a replay of the same job, not a new occurrence."""
    counts: dict[str, int] = {}
    for draft, (stored, new) in zip(drafts, added, strict=True):
        if not new and stored.generation_key != draft.generation_key:
            counts[stored.id] = counts.get(stored.id, 0) + 1
    return counts
