"""Searching PostgreSQL through snapshots held in the server's memory.

A search first ranks with the project's :class:`ProjectSnapshot` (numpy, no database),
then sends one statement that reads the hits' rows and evidence by id, writes the read's
audit row, and checks the project's **change stamp**: the sum of its ``search_stats``
rows' ``changes`` (every writer of passages, weights or statistics sets its row's to its
own transaction id: revision 0021), their passage count and their number. When the stamp
is still the snapshot's, the ranking is the project's current one and the rows are
returned; otherwise nothing was written and the caller runs the SQL search, which writes
the audit row itself. Either way the read is audited once, durably, before the response,
and sees every write committed before it started.

Snapshots load in the background, each in one ``REPEATABLE READ`` transaction (so the
stamp read with them describes them), the first time a project is searched and after a
search finds one stale; meanwhile searches take the SQL path. Reloads of a project whose
snapshot keeps going stale back off, so a project written to without pause costs about
what it cost before. Snapshots are kept while they fit a budget of postings (LRU); a
project larger than the budget is always searched in SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from claude_mem_core.adapters.sqlalchemy import search as search_sql
from claude_mem_core.adapters.sqlalchemy.driver import driver_sql
from claude_mem_core.adapters.sqlalchemy.resident_index import (
    ChangedPassage,
    Ints,
    Posting,
    ProjectSnapshot,
    RankedHit,
    Version,
    norm_of,
)
from claude_mem_core.domain import ranking
from claude_mem_core.domain.tokens import Query

_log = logging.getLogger(__name__)

Scope = tuple[str, str]

# Postings (and passages) held across all snapshots: about 12 bytes each.
DEFAULT_BUDGET = 8_000_000
# A snapshot found stale is brought up to date after at least this long, and after four
# times its last load's duration: a project written to without pause costs little.
MIN_REFRESH_SECONDS = 0.2
# After a write here, a snapshot of the project is brought up to date this much later (a
# burst of writes costs one refresh).
WRITE_NUDGE_SECONDS = 0.5

# A project's change stamp (resident_index.Version), over its statistics rows.
_STAMP = (
    "coalesce(sum(changes), 0)::bigint AS c, coalesce(sum(passages), 0)::bigint AS n, "
    "count(*)::bigint AS r"
)
_VERSION_SQL = (
    f"SELECT {_STAMP}, pg_snapshot_xmin(pg_current_snapshot())::text::bigint "
    "FROM search_stats WHERE team_id = :team_id AND project_id = :project_id"
)
_PASSAGE_COLUMNS = (
    "SELECT p.id, p.observation_id, p.origin = 'event', p.length, p.weight, o.kind, "
    "o.updated_at{more} FROM search_passages p JOIN observations o ON o.id = p.observation_id "
    "AND o.team_id = p.team_id AND o.project_id = p.project_id "
    "WHERE p.team_id = :team_id AND p.project_id = :project_id"
)
_PASSAGES_SQL = _PASSAGE_COLUMNS.format(more="") + " ORDER BY p.id"
# What changed since a snapshot: through the (project, changed) index.
_CHANGED_SQL = _PASSAGE_COLUMNS.format(more=", p.tf::text") + " AND p.changed >= :since"
# Each term's passage ids and frequencies as packed big-endian arrays: a few rows of
# bytes instead of one Python object per posting. Unordered (both aggregates see the rows
# in one order): sorting them costs PostgreSQL as much as the rest, and ranking does not
# need postings in order.
_POSTINGS_SQL = (
    "SELECT e.key, string_agg(int8send(p.id), ''::bytea), "
    "string_agg(float8send(e.value::float8), ''::bytea) "
    "FROM search_passages p CROSS JOIN LATERAL jsonb_each_text(p.tf) AS e(key, value) "
    "WHERE p.team_id = :team_id AND p.project_id = :project_id GROUP BY e.key"
)


@attrs.define
class _Passages:
    ids: list[int] = attrs.Factory(list)
    owner: list[int] = attrs.Factory(list)
    event: list[bool] = attrs.Factory(list)
    lengths: list[int] = attrs.Factory(list)
    weights: list[float] = attrs.Factory(list)
    observation_at: dict[str, int] = attrs.Factory(dict)
    kinds: list[str] = attrs.Factory(list)
    updated: list[int] = attrs.Factory(list)

    def add(self, row: Sequence[Any]) -> None:
        pid, oid, is_event, length, weight, kind, at = row
        position = self.observation_at.get(oid)
        if position is None:
            position = self.observation_at[oid] = len(self.kinds)
            self.kinds.append(kind)
            self.updated.append(ranking.epoch_micros(at))
        self.ids.append(pid)
        self.owner.append(position)
        self.event.append(bool(is_event))
        self.lengths.append(length)
        self.weights.append(float(weight))


async def _rows(
    conn: AsyncConnection, sql: str, scope: Mapping[str, Any], batch: int
) -> AsyncIterator[Sequence[Any]]:
    """The rows of ``sql``, converted in batches; the loop runs between batches, so a
    large project's load never holds it long. (Read whole, not through a server-side
    cursor: a load cancelled mid-way then leaves nothing open.)"""
    result = await conn.execute(sa.text(sql), scope)
    for part in result.partitions(batch):
        for row in part:
            yield row
        await asyncio.sleep(0)


def _posting(passage_ids: Ints, packed_ids: bytes, packed_frequencies: bytes) -> Posting | None:
    term_ids = np.frombuffer(packed_ids, dtype=">i8").astype(np.int64)
    frequency = np.frombuffer(packed_frequencies, dtype=">f8").astype(np.float64)
    if not len(passage_ids):
        return None
    at = np.searchsorted(passage_ids, term_ids)
    # A passage whose observation is gone is not in the snapshot.
    known = (at < len(passage_ids)) & (
        passage_ids[np.minimum(at, len(passage_ids) - 1)] == term_ids
    )
    if not known.any():
        return None
    return Posting(at=at[known].astype(np.int64), frequency=frequency[known])


async def _stamp(conn: AsyncConnection, scope: Mapping[str, str]) -> tuple[Version, int]:
    row = (await conn.execute(sa.text(_VERSION_SQL), scope)).one()
    return (int(row[0]), int(row[1]), int(row[2])), int(row[3])


async def load_snapshot(engine: AsyncEngine, team_id: str, project_id: str) -> ProjectSnapshot:
    """The project's snapshot, read in one REPEATABLE READ transaction."""
    scope = {"team_id": team_id, "project_id": project_id}
    passages = _Passages()
    postings: dict[str, Posting] = {}
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            version, xmin = await _stamp(conn, scope)
            # No statistics: nothing written yet, or a project being erased (its
            # statistics go first, its passages later), which finds nothing, as in SQL.
            if version[2]:
                async for row in _rows(conn, _PASSAGES_SQL, scope, 5000):
                    passages.add(row)
            passage_ids = np.array(passages.ids, dtype=np.int64)
            if len(passage_ids):
                async for term, packed_ids, packed_frequencies in _rows(
                    conn, _POSTINGS_SQL, scope, 2000
                ):
                    posting = _posting(passage_ids, bytes(packed_ids), bytes(packed_frequencies))
                    if posting is not None:
                        postings[str(term)] = posting
    kind_codes: dict[str, int] = {}
    return ProjectSnapshot(
        version=version,
        xmin=xmin,
        passage_ids=passage_ids,
        passage_observation=np.array(passages.owner, dtype=np.int64),
        passage_norm=norm_of(np.array(passages.lengths, dtype=np.float64)),
        passage_event=np.where(np.array(passages.event, dtype=bool), ranking.EVENT_FACTOR, 1.0),
        passage_weight=np.array(passages.weights, dtype=np.float64),
        observation_ids=tuple(passages.observation_at),
        observation_kind=np.array(
            [kind_codes.setdefault(k, len(kind_codes)) for k in passages.kinds], dtype=np.int64
        ),
        kind_codes=kind_codes,
        observation_updated=np.array(passages.updated, dtype=np.int64),
        postings=postings,
        passage_at={pid: n for n, pid in enumerate(passages.ids)},
        observation_at=passages.observation_at,
    )


async def refresh_snapshot(
    engine: AsyncEngine, snapshot: ProjectSnapshot, team_id: str, project_id: str
) -> ProjectSnapshot | None:
    """``snapshot`` brought up to date by reading only the passages written or reweighted
    since it was read; None when only a full load can (passages were removed)."""
    scope = {"team_id": team_id, "project_id": project_id}
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            version, xmin = await _stamp(conn, scope)
            if version == snapshot.version:
                return snapshot
            if not version[2] or version[1] < snapshot.passages:
                return None
            changed = [
                ChangedPassage(
                    id=pid,
                    observation_id=oid,
                    event=bool(is_event),
                    length=length,
                    weight=float(weight),
                    kind=kind,
                    updated=ranking.epoch_micros(at),
                    frequencies=json.loads(tf),
                )
                async for pid, oid, is_event, length, weight, kind, at, tf in _rows(
                    conn, _CHANGED_SQL, {**scope, "since": snapshot.xmin}, 2000
                )
            ]
    return snapshot.updated(changed, version, xmin)


@attrs.define
class _Entry:
    snapshot: ProjectSnapshot | None = None
    loading: asyncio.Task[None] | None = None
    stale: bool = True
    # When a reload may start (monotonic seconds), and how long the last load took.
    next_load: float = 0.0
    load_seconds: float = 0.0
    # A load is scheduled for later.
    nudged: bool = False


class ResidentSearch:
    """The snapshots of one storage's engine, and the search through them."""

    def __init__(self, engine: AsyncEngine, *, budget: int = DEFAULT_BUDGET) -> None:
        self._engine = engine
        self._budget = budget
        self._entries: OrderedDict[Scope, _Entry] = OrderedDict()
        self._too_large: set[Scope] = set()
        self._closed = False
        # Searches answered through a snapshot.
        self.answered = 0
        # Snapshots read whole, and brought up to date from what changed.
        self.loads = 0
        self.refreshes = 0

    # -- snapshots ---------------------------------------------------------------------

    def usable(self, scope: Scope) -> ProjectSnapshot | None:
        """The project's snapshot if one is loaded and not known stale; else None, and a
        load is started when one is due."""
        entry = self._entries.get(scope)
        if entry is None:
            if scope in self._too_large or self._closed:
                return None
            entry = self._entries[scope] = _Entry()
        self._entries.move_to_end(scope)
        if entry.snapshot is not None and not entry.stale:
            return entry.snapshot
        self._maybe_load(scope, entry)
        return None

    def found_stale(self, scope: Scope, snapshot: ProjectSnapshot) -> None:
        entry = self._entries.get(scope)
        if entry is not None and entry.snapshot is snapshot:
            entry.stale = True
            entry.next_load = time.monotonic() + max(MIN_REFRESH_SECONDS, 4 * entry.load_seconds)
            self._maybe_load(scope, entry)

    def written(self, team_id: str, project_id: str) -> None:
        """Passages of the project were written here: bring a snapshot of it up to date
        soon (a project searched before is kept warm while it is written to)."""
        scope = (team_id, project_id)
        entry = self._entries.get(scope)
        if entry is None or entry.snapshot is None or entry.nudged or self._closed:
            return
        entry.nudged = True
        asyncio.get_running_loop().call_later(WRITE_NUDGE_SECONDS, self._nudge, scope, entry)

    def _nudge(self, scope: Scope, entry: _Entry) -> None:
        entry.nudged = False
        if self._entries.get(scope) is entry:
            self._maybe_load(scope, entry)

    def _maybe_load(self, scope: Scope, entry: _Entry) -> None:
        if entry.loading is not None or self._closed:
            return
        wait = entry.next_load - time.monotonic()
        if wait > 0:
            if not entry.nudged:  # try again when due
                entry.nudged = True
                asyncio.get_running_loop().call_later(wait, self._nudge, scope, entry)
            return
        entry.loading = asyncio.get_running_loop().create_task(
            self._load(scope, entry), name=f"claude-mem resident load {scope[1]}"
        )

    async def _load(self, scope: Scope, entry: _Entry) -> None:
        started = time.monotonic()
        try:
            snapshot = None
            if entry.snapshot is not None:
                snapshot = await refresh_snapshot(self._engine, entry.snapshot, *scope)
                if snapshot is not None:
                    self.refreshes += 1
            if snapshot is None:
                snapshot = await load_snapshot(self._engine, *scope)
                self.loads += 1
        except asyncio.CancelledError:
            raise
        except Exception:  # the SQL path keeps answering; try again later
            _log.warning("could not load the search snapshot of a project", exc_info=True)
            entry.next_load = time.monotonic() + 30.0
            return
        finally:
            entry.loading = None
        entry.load_seconds = time.monotonic() - started
        if snapshot.size > self._budget:
            self._too_large.add(scope)
            self._entries.pop(scope, None)
            return
        entry.snapshot, entry.stale = snapshot, False
        self._evict()

    def _evict(self) -> None:
        held = sum(e.snapshot.size for e in self._entries.values() if e.snapshot is not None)
        for scope in list(self._entries):
            if held <= self._budget:
                break
            entry = self._entries[scope]
            if entry.snapshot is not None:
                held -= entry.snapshot.size
                entry.snapshot, entry.stale = None, True

    async def wait_loaded(self) -> None:
        """Wait for the loads under way (tests and benches: a known starting point)."""
        tasks = [e.loading for e in self._entries.values() if e.loading is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        tasks = [e.loading for e in self._entries.values() if e.loading is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._entries.clear()

    # -- searching ---------------------------------------------------------------------

    async def search(
        self,
        conn: AsyncConnection,
        team_id: str,
        project_id: str,
        query: Query,
        limit: int,
        *,
        audit: Mapping[str, Any] | None,
        kind: str | None,
    ) -> tuple[search_sql.Found, bool | None] | None:
        """The search through the project's snapshot, as :func:`search_sql.search` returns
        it; None when there is no current snapshot (nothing was written: search in SQL)."""
        scope = (team_id, project_id)
        snapshot = self.usable(scope)
        if snapshot is None:
            return None
        hits = snapshot.rank(query, limit, kind=kind)
        raw = await driver_sql(
            conn,
            _fetch_sql(audit is not None),
            _fetch_params(snapshot.version, team_id, project_id, hits, audit),
        )
        fresh, audited = bool(raw[0][0]), bool(raw[0][1])
        rows = [values[2:] for values in raw if values[2] is not None]
        wanted = sum(len(h.evidence) for h in hits)
        if not fresh or len(rows) != wanted:
            # Changed since the snapshot (the audit row was not written): search in SQL.
            self.found_stale(scope, snapshot)
            return None
        self.answered += 1
        return _found(hits, rows), (audited if audit is not None else None)


_FETCH_COLUMNS = "p.text, p.event_id, " + search_sql._PG_COLUMNS

_FETCH_HEAD = f"""WITH v AS (
  SELECT {_STAMP} FROM search_stats
  WHERE team_id = %(team_id)s AND project_id = %(project_id)s
), fresh AS (
  SELECT c = %(v_changes)s AND n = %(v_passages)s AND r = %(v_rows)s AS ok FROM v
)"""

_FETCH_AUDIT = f""", aud AS (
  {search_sql.pg_audit_insert("%(details)s::jsonb", "SELECT ok FROM fresh")}
)"""

_FETCH_TAIL = """, res AS (
  SELECT w.rn, {columns}
  FROM json_to_recordset(%(wanted)s::json) AS w(observation_id text, passage_id bigint, rn int)
  JOIN search_passages p ON p.id = w.passage_id AND p.observation_id = w.observation_id
    AND p.team_id = %(team_id)s AND p.project_id = %(project_id)s
  JOIN observations o ON o.id = w.observation_id AND o.team_id = %(team_id)s
    AND o.project_id = %(project_id)s
)
SELECT (SELECT ok FROM fresh), {audited}, res.* FROM (SELECT 1) AS one
LEFT JOIN res ON true ORDER BY res.rn"""


def _fetch_sql(audited: bool) -> str:
    return (
        _FETCH_HEAD
        + (_FETCH_AUDIT if audited else "")
        + _FETCH_TAIL.format(
            columns=_FETCH_COLUMNS,
            audited="(SELECT count(*) FROM aud)" if audited else "0",
        )
    )


def _fetch_params(
    version: Version,
    team_id: str,
    project_id: str,
    hits: Sequence[RankedHit],
    audit: Mapping[str, Any] | None,
) -> dict[str, Any]:
    # One JSON text: psycopg adapts a str at once, where three lists cost it a dumper each.
    pairs = [(hit.observation_id, passage_id) for hit in hits for passage_id, _ in hit.evidence]
    wanted = json.dumps(
        [
            {"observation_id": oid, "passage_id": pid, "rn": rn}
            for rn, (oid, pid) in enumerate(pairs)
        ]
    )
    params: dict[str, Any] = {
        "team_id": team_id,
        "project_id": project_id,
        "v_changes": version[0],
        "v_passages": version[1],
        "v_rows": version[2],
        "wanted": wanted,
    }
    if audit is not None:
        from psycopg.types.json import Jsonb

        params.update(audit)
        details = dict(audit["details"].obj)
        details["resultCount"] = len(hits)
        details["observationIds"] = [h.observation_id for h in hits]
        params["details"] = Jsonb(details)
    return params


def _found(hits: Sequence[RankedHit], rows: Sequence[Sequence[Any]]) -> search_sql.Found:
    """The fetched rows (``rn``, text, event id, observation columns) in the shape
    :func:`search_sql._pg_found` decodes, scores from the ranking."""
    scores = [(h.score, s) for h in hits for _, s in h.evidence]
    raw = [(scores[values[0]][0], scores[values[0]][1], *values[1:]) for values in rows]
    return search_sql._pg_found(raw)
