"""Supersession of generated observations, as the generation use case stores them.

The rule is ``domain/supersession.py``'s; storage applies it race-safely
(``ObservationRepository.supersede``). These helpers give each draft its subject, lock the
subjects before the store's other writes, and apply the rule to the rows the store
inserted. A draft answered with a stored row (a replay, or the same fact again: dedup)
supersedes nothing: the stored row already had its turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from claude_mem_core.domain.models import Observation
from claude_mem_core.domain.supersession import subject_of
from claude_mem_core.ports.storage import UnitOfWork


def with_subjects(drafts: Sequence[tuple[int, Observation]]) -> list[tuple[int, Observation]]:
    """The drafts, each with its subject (None for those that modified no file)."""
    return [(index, attrs.evolve(draft, subject=subject_of(draft))) for index, draft in drafts]


def subjects(observations: Sequence[Observation]) -> list[str]:
    return sorted({o.subject for o in observations if o.subject is not None})


async def lock(
    uow: UnitOfWork, team_id: str, project_id: str, drafts: Sequence[Observation]
) -> None:
    """Lock the drafts' subjects: first in the unit of work (see ``lock_subjects``)."""
    wanted = subjects(drafts)
    if wanted:
        await uow.observations.lock_subjects(team_id, project_id, wanted)


async def apply(
    uow: UnitOfWork,
    team_id: str,
    project_id: str,
    inserted: Sequence[Observation],
    *,
    at: datetime,
) -> None:
    """Apply the rule to the subjects of the rows just inserted."""
    wanted = subjects(inserted)
    if wanted:
        await uow.observations.supersede(team_id, project_id, wanted, at=at)
