"""Supersession in the in-memory adapter, as ``adapters/sqlalchemy/supersession.py`` does it.

Units of work here are serial, so no lock is needed; a passage's weight is not stored but
read from its observation at query time (``ranking.SUPERSEDED_WEIGHT`` when superseded).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

import attrs

from claude_mem_core.adapters.memory_state import in_scope
from claude_mem_core.domain import ranking
from claude_mem_core.domain.models import Observation
from claude_mem_core.domain.supersession import current


def weight(observation: Observation) -> float:
    """The weight of the observation's passages in search."""
    return 1.0 if observation.superseded_by is None else ranking.SUPERSEDED_WEIGHT


def supersede(
    tx: Any, team_id: str, project_id: str, subjects: Collection[str], *, at: datetime
) -> list[tuple[str, str]]:
    wanted = {s for s in subjects if s}
    groups: dict[str, list[tuple[str, datetime]]] = {}
    for o in tx.read("observations").values():
        if in_scope(o, team_id, project_id) and o.subject in wanted and o.superseded_by is None:
            groups.setdefault(o.subject, []).append((o.id, o.created_at))
    marked: list[tuple[str, str]] = []
    for rows in groups.values():
        keeper = current(rows)
        for old, _ in rows:
            if old != keeper:
                row = tx.read("observations")[old]
                tx.write("observations")[old] = attrs.evolve(
                    row, superseded_by=keeper, superseded_at=at
                )
                marked.append((old, keeper))
    return sorted(marked)


def restore(tx: Any, team_id: str, project_id: str, erased: Iterable[str], *, at: datetime) -> None:
    gone = set(erased)
    again = [
        o
        for o in tx.read("observations").values()
        if in_scope(o, team_id, project_id) and o.superseded_by in gone
    ]
    for o in again:
        tx.write("observations")[o.id] = attrs.evolve(o, superseded_by=None, superseded_at=None)
    subjects = {o.subject for o in again if o.subject is not None}
    supersede(tx, team_id, project_id, subjects, at=at)
