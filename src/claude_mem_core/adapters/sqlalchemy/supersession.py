"""Supersession on PostgreSQL and SQLite (the rule: ``domain/supersession.py``).

``supersede`` applies the rule to some subjects in the caller's transaction: of each
subject's current observations (``superseded_by IS NULL``), all but the newest are marked
superseded by it, and their passages' ``weight`` becomes ``ranking.SUPERSEDED_WEIGHT``.

Two writers storing observations of one subject at once must end with one current
observation. On SQLite writers are serial (``BEGIN IMMEDIATE``). On PostgreSQL each
subject is locked first (a transaction-scoped advisory lock, subjects in sorted order);
the read that follows is a new statement, so under READ COMMITTED it sees every
observation committed by the lock's previous holder, whose own read could not see ours:
whichever commits last marks the other. Every writer takes these locks before any other
write of its transaction (the generation's store before completing its job, an erase
before removing anything), so they never close a cycle with row locks.

``restore`` is the erase's part: the observations that erased ones had superseded are
current again, and the rule is applied to their subjects anew (of several, the newest
stays current).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.connection import _Db
from claude_mem_core.adapters.sqlalchemy.passage_writes import change_stamp
from claude_mem_core.adapters.sqlalchemy.tenant_filter import of_tenant
from claude_mem_core.domain import ranking
from claude_mem_core.domain.supersession import current

CHUNK = 500


def _chunks(ids: Sequence[str]) -> list[list[str]]:
    return [list(ids[n : n + CHUNK]) for n in range(0, len(ids), CHUNK)]


def lock_key(team_id: str, project_id: str, subject: str) -> int:
    """The advisory lock of one subject of one project (a signed 64-bit integer; two
    subjects sharing one only wait for each other)."""
    digest = hashlib.blake2b(
        f"{team_id}\x00{project_id}\x00{subject}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock(db: _Db, team_id: str, project_id: str, subjects: Collection[str]) -> None:
    """Hold these subjects until the transaction ends (PostgreSQL; re-entrant)."""
    if not subjects or db.dialect != dialects.POSTGRES:
        return  # SQLite: the writer holds the database already
    await db.begin_writes()  # a transaction-scoped lock needs the transaction
    for key in sorted({lock_key(team_id, project_id, s) for s in subjects}):
        await db.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


async def set_weight(
    db: _Db, team_id: str, project_id: str, observation_ids: Sequence[str], weight: float
) -> None:
    """Set the ranking weight of these observations' passages (and stamp the project's
    statistics when one changed: search snapshots must see it)."""
    p = t.search_passages.c
    changed = 0
    for chunk in _chunks(sorted(set(observation_ids))):
        result = await db.execute(
            sa.update(t.search_passages)
            .where(
                p.observation_id.in_(chunk),
                of_tenant(team_id, project_id, p),
                p.weight != weight,
            )
            .values(weight=weight, changed=change_stamp(db.dialect))
        )
        changed += max(int(result.rowcount or 0), 0)
    if changed and db.dialect == dialects.POSTGRES:
        # No passage was added or removed: stamp one statistics row (the lowest shard) so
        # the project's change stamp moves all the same.
        st = t.search_stats.c
        lowest = (
            sa.select(sa.func.min(st.shard))
            .where(of_tenant(team_id, project_id, st))
            .scalar_subquery()
        )
        await db.execute(
            sa.update(t.search_stats)
            .where(of_tenant(team_id, project_id, st), st.shard == lowest)
            .values(changes=change_stamp(db.dialect))
        )


async def weigh(db: _Db, team_id: str, project_id: str, observation_ids: Sequence[str]) -> None:
    """Set these observations' passages' weight from whether each is superseded."""
    o = t.observations.c
    superseded = await _set_among(db, team_id, project_id, observation_ids, o.id, o.superseded_by)
    await set_weight(db, team_id, project_id, sorted(superseded), ranking.SUPERSEDED_WEIGHT)
    rest = sorted(set(observation_ids) - superseded)
    await set_weight(db, team_id, project_id, rest, 1.0)


async def supersede(
    db: _Db, team_id: str, project_id: str, subjects: Collection[str], *, at: datetime
) -> list[tuple[str, str]]:
    """Apply the rule to ``subjects``; the (superseded, current) pairs marked, sorted."""
    wanted = sorted({s for s in subjects if s})
    if not wanted:
        return []
    await lock(db, team_id, project_id, wanted)
    o = t.observations.c
    groups: dict[str, list[tuple[str, datetime]]] = {}
    for chunk in _chunks(wanted):
        # Locked: an observation an erase is removing meanwhile is waited for, then skipped.
        current_rows = sa.select(o.id, o.subject, o.created_at).where(
            of_tenant(team_id, project_id, o),
            o.subject.in_(chunk),
            o.superseded_by.is_(None),
        )
        for row in await db.all(db.locked(current_rows)):
            groups.setdefault(row["subject"], []).append((row["id"], row["created_at"]))
    marked: list[tuple[str, str]] = []
    for rows in groups.values():
        keeper = current(rows)
        older = sorted(i for i, _ in rows if i != keeper)
        for chunk in _chunks(older):
            await db.execute(
                sa.update(t.observations)
                .where(
                    o.id.in_(chunk),
                    of_tenant(team_id, project_id, o),
                    o.superseded_by.is_(None),
                )
                .values(superseded_by=keeper, superseded_at=at)
            )
        marked += [(i, keeper) for i in older]
    await set_weight(db, team_id, project_id, [i for i, _ in marked], ranking.SUPERSEDED_WEIGHT)
    return sorted(marked)


async def lock_subjects_of(
    db: _Db, team_id: str, project_id: str, observation_ids: Sequence[str]
) -> None:
    """An erase's first lock: the subjects of the observations it removes, taken before
    it writes anything, as writers take theirs (``ObservationRepository.lock_subjects``)."""
    if db.dialect != dialects.POSTGRES:
        return
    o = t.observations.c
    subjects = await _set_among(db, team_id, project_id, observation_ids, o.subject, o.subject)
    await lock(db, team_id, project_id, subjects)


async def restore(
    db: _Db, team_id: str, project_id: str, erased: Sequence[str], *, at: datetime
) -> None:
    """Make current again the observations that the ``erased`` ones superseded (after
    those were removed, in the erase's transaction), then apply the rule to their
    subjects."""
    o = t.observations.c
    rows: list[Any] = []
    for chunk in _chunks(sorted(set(erased))):
        rows += await db.all(
            sa.select(o.id, o.subject).where(
                of_tenant(team_id, project_id, o), o.superseded_by.in_(chunk)
            )
        )
    if not rows:
        return
    subjects = sorted({r["subject"] for r in rows if r["subject"] is not None})
    await lock(db, team_id, project_id, subjects)
    ids = sorted(r["id"] for r in rows)
    for chunk in _chunks(ids):
        await db.execute(
            sa.update(t.observations)
            .where(o.id.in_(chunk), of_tenant(team_id, project_id, o))
            .values(superseded_by=None, superseded_at=None)
        )
    await set_weight(db, team_id, project_id, ids, 1.0)
    await supersede(db, team_id, project_id, subjects, at=at)


async def _set_among(
    db: _Db,
    team_id: str,
    project_id: str,
    observation_ids: Sequence[str],
    value: sa.ColumnElement[Any],
    present: sa.ColumnElement[Any],
) -> set[str]:
    """``value`` of those of the project's observations in ``observation_ids`` whose
    ``present`` column is set, read in chunks of ids."""
    o = t.observations.c
    found: set[str] = set()
    for chunk in _chunks(sorted(set(observation_ids))):
        rows = await db.all(
            sa.select(value.label("value")).where(
                o.id.in_(chunk),
                of_tenant(team_id, project_id, o),
                present.is_not(None),
            )
        )
        found.update(row["value"] for row in rows)
    return found
