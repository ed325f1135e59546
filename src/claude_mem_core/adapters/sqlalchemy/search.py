"""Ranked full-text search over observations, on PostgreSQL (tsvector + GIN) and SQLite (FTS5).

The ranking is the same on both backends: a row matches if it contains any term of the
query; its score is the sum, over the terms it matches, of the term's BM25-style idf
(:func:`idf`, counted within the project); higher scores first, then newer rows
(``updated_at`` descending), then ``id`` in byte order.

SQLite scores every match in one statement (FTS5 finds them; projects are small there).

PostgreSQL never reads every match. Three things make that possible:

* **Cached statistics.** The idf of a term needs the project's row count and the term's
  document frequency, both a scan of the project. They are cached in the process, per
  engine, for :data:`STATS_TTL_SECONDS`: *the weights of a search are those of the
  project as it was at most that long ago* (each term's count and frequency come from the
  same snapshot). Matching itself is always live: a row written a moment ago is found at
  once, only the weights of its terms may lag. Tests that need fresh weights call
  :func:`clear_caches`. Term → tsquery conversions (``plainto_tsquery``, a pure function
  of the term) are cached without expiry.
* **Bounded candidate windows, exact results.** With the weights known, the score of a
  row depends only on *which* terms it matches, so "rows scoring more than ``T``" is a
  tsquery: the OR of the minimal term sets whose weights sum to more than ``T``. The
  search reads the newest ``n`` rows scoring more than ``T`` (``T = 0`` first: any match),
  keeps the best ``limit`` candidates, raises ``T`` to the score of the ``limit``-th and
  reads again, until a window comes back short (every row above ``T`` has been seen) or
  no term set can beat ``T``. Each window stops early on the recency index
  (``idx_observations_search_recency``), or, when its tsquery is rare, the planner takes
  the GIN index instead. Why this is exact: after a window with threshold ``T`` ending at
  row ``r``, every row newer than ``r`` scoring more than ``T`` has been seen; a row never
  seen therefore scores at most the final threshold, and if it ties the ``limit``-th
  candidate it is older than it (so ranks after it). After :data:`MAX_STATEMENTS`
  statements every match is ranked in one statement (still exact, just not bounded).
  ``tests/contract/test_search_ranking.py`` checks the results against a brute-force
  ranking on generated corpora.
* **One statement, usually.** The windows a search is expected to need are planned ahead
  from the cached statistics (the share of rows each term set should hold, were terms
  independent) and read by one ``UNION ALL`` statement, which also reads its own best
  ``limit`` rows whole. :func:`_settled` then checks, from what the windows returned, that
  no unread row can beat the ``limit``-th candidate; a plan that guessed short only costs
  another statement. Plans and their SQL text are cached per scope, terms and statistics;
  the text names the scope as literals (no parameter, so the server plans a prepared
  statement once), and a text this process has run before is prepared at its first use
  on each connection.

On PostgreSQL the statements of this module are run straight on the psycopg connection
(:func:`driver_sql`): SQLAlchemy's execution layer costs more CPU per statement than the rest
of a search's Python. Whenever something listens to the engine's cursor events or echoes
its statements, they go through SQLAlchemy instead, so that listeners see them.
"""

from __future__ import annotations

import json
import math
import re
import time
import weakref
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine, RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from claude_mem_core import errors
from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.domain.search import SearchQuery

# How long cached per-project statistics (row count, document frequencies) are used.
STATS_TTL_SECONDS = 30.0
# Statements of windows before the remaining candidates are ranked in one statement.
MAX_STATEMENTS = 4
# Windows planned ahead into one statement, and the safety margin of that plan.
MAX_PLANNED_WINDOWS = 5
PLAN_MARGIN = 1.5
# The first window reads this many times ``limit`` rows, and at least MIN_FIRST_WINDOW.
FIRST_WINDOW_FACTOR = 4
MIN_FIRST_WINDOW = 32
# Above this many minimal winning term sets, a window filters on the score itself.
MAX_WINNING_SETS = 32
# Read the recency index rather than GIN when a window should end within this many rows.
RECENCY_SCAN_ROWS = 5_000
# Beyond this many terms windows are not planned ahead (2**n term sets).
MAX_DENSITY_TERMS = 10
# Entries kept per engine before a cache is emptied (a bound, not an eviction policy).
MAX_CACHE_ENTRIES = 20_000

Scored = tuple[RowMapping, float]

_OBS = t.observations
_RESULT_COLUMNS = [c for c in _OBS.columns if c.key != "content_search"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


async def ranked(
    conn: AsyncConnection,
    team_id: str,
    project_id: str,
    query: SearchQuery,
    limit: int,
) -> list[Scored]:
    """The best ``limit`` observations of the project for ``query``, with their scores."""
    try:
        if conn.dialect.name == dialects.POSTGRES:
            return await postgres_search(conn, team_id, project_id, query, limit)
        return await sqlite_search(conn, team_id, project_id, query, limit)
    except (exc.SQLAlchemyError, OSError) as e:
        raise dialects.translate_error(e) from e


def idf(total: int, df: int) -> float:
    """BM25's idf, always positive: rarer terms weigh more, a term in every row still counts."""
    return math.log(1.0 + (total - df + 0.5) / (df + 0.5))


def rank_key(score: float, updated_at: datetime, observation_id: str) -> tuple[float, int, str]:
    """Sort key of the ranking: score descending, newer first, then id in byte order
    (Python compares ``str`` by code point, which is UTF-8 byte order, ``COLLATE "C"``)."""
    return (-score, -((updated_at - _EPOCH) // _MICROSECOND), observation_id)


# --------------------------------------------------------------------------- caches


class _EngineCache:
    def __init__(self) -> None:
        self.tsqueries: dict[str, str] = {}
        # (team, project, tsquery) -> (fetched at, row count, document frequency)
        self.stats: dict[tuple[str, str, str], tuple[float, int, int]] = {}
        # (team, project, tsqueries, statistics, threshold, size, limit) -> windows, SQL
        self.plans: dict[Any, tuple[tuple[tuple[float, int, bool], ...], str | None]] = {}


_CACHES: weakref.WeakKeyDictionary[Engine, _EngineCache] = weakref.WeakKeyDictionary()


def _cache(conn: AsyncConnection) -> _EngineCache:
    engine = conn.sync_engine
    cache = _CACHES.get(engine)
    if cache is None:
        cache = _CACHES[engine] = _EngineCache()
    return cache


def clear_caches() -> None:
    """Forget every cached statistic and tsquery (all engines of this process)."""
    _CACHES.clear()


# --------------------------------------------------------------------------- PostgreSQL


def _sql_string(text: str) -> str:
    """A PostgreSQL string literal (``E''`` when it holds a backslash) for :func:`driver_sql`
    (``%`` doubled: the statements are run with psycopg's ``%(name)s`` placeholders)."""
    quoted = text.replace("'", "''")
    if "\\" in text:
        return ("E'" + quoted.replace("\\", "\\\\") + "'").replace("%", "%%")
    return ("'" + quoted + "'").replace("%", "%%")


def _tsquery(text: str) -> str:
    # Literals, not bound parameters: the planner must see each tsquery's selectivity to
    # choose between the recency index and GIN (a generic plan of a prepared statement
    # cannot). The text is plainto_tsquery output, never user syntax.
    return _sql_string(text) + "::tsquery"


def _float(value: float) -> str:
    return repr(float(value)) + "::float8"


_PREPARER = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]
_SELECT_LIST = ", ".join(_PREPARER.quote(c.name) for c in _RESULT_COLUMNS)
# JSON columns come back as text and are decoded here (empty arrays and objects, the usual
# values, without the parser): cheaper than psycopg's decoding of jsonb from bytes.
_JSON_COLUMNS = {c.name for c in _RESULT_COLUMNS if isinstance(c.type, sa.JSON)}
_WHOLE_LIST = ", ".join(
    f"o.{_PREPARER.quote(c.name)}{'::text' if c.name in _JSON_COLUMNS else ''} AS o_{c.name}"
    for c in _RESULT_COLUMNS
)


def _json(text: str | None) -> Any:
    if text is None:
        return None
    if text == "[]":
        return []
    if text == "{}":
        return {}
    return json.loads(text)


_PROCESSORS: dict[str, list[tuple[str, Any]]] = {}


def _processors(dialect: sa.Dialect) -> list[tuple[str, Any]]:
    """Each result column's name and result processor (``None`` when values pass as is)."""
    found = _PROCESSORS.get(dialect.name)
    if found is None:
        found = _PROCESSORS[dialect.name] = [
            (c.name, _json if c.name in _JSON_COLUMNS else c.type.result_processor(dialect, None))
            for c in _RESULT_COLUMNS
        ]
    return found


def _whole(processors: list[tuple[str, Any]], values: Sequence[Any]) -> dict[str, Any]:
    """A row read whole (``_WHOLE_LIST``) by column name, through the result processors."""
    return {
        name: value if process is None else process(value)
        for (name, process), value in zip(processors, values, strict=True)
    }


_SCOPE = "team_id = %(team_id)s AND project_id = %(project_id)s"
_RECENCY = 'updated_at DESC, id COLLATE "C"'

Params = Mapping[str, Any]


async def driver_sql(
    conn: AsyncConnection,
    sql: str,
    params: Params,
    *,
    rows: bool = True,
    prepare: bool | None = None,
) -> Sequence[Sequence[Any]]:
    """Run a PostgreSQL statement written for psycopg (``%(name)s`` placeholders; ``params``
    is a mapping, maybe empty, so ``%%`` in its literals always means ``%``); its rows as
    plain tuples (none when ``rows`` is false: a statement that returns nothing).
    ``prepare``: psycopg's (``None``: prepared after a few executions on a connection).

    Straight on the psycopg connection, unless something listens to the engine's cursor
    events or echoes statements: then through SQLAlchemy, which shows them to it
    (``exec_driver_sql`` hands the same text and parameters to the same cursor). Errors
    are raised as SQLAlchemy would raise them (``dialects.translate_error`` maps them).
    """
    sync = conn.sync_connection
    if sync is None or sync.dispatch.before_cursor_execute or sync.engine.echo:
        result = await conn.exec_driver_sql(sql, params)
        return result.all() if rows else ()
    import psycopg  # only ever reached on PostgreSQL

    # A live Connection holds its pooled connection: no await (nor greenlet hop) to reach it.
    pooled = sync.connection if not (sync.closed or sync.invalidated) else None
    driver: Any = (pooled or await conn.get_raw_connection()).driver_connection
    try:
        # Binary results: the same Python values, parsed with less work (timestamps).
        cursor = await driver.execute(sql, params, prepare=prepare, binary=True)
        found: Sequence[Sequence[Any]] = await cursor.fetchall() if rows else ()
    except psycopg.Error as e:
        raise exc.DBAPIError.instance(sql, params, e, psycopg.Error) from e
    return found


async def postgres_lexeme_queries(conn: AsyncConnection, terms: Sequence[str]) -> list[str]:
    """Each term through ``plainto_tsquery`` (never ``to_tsquery``: user text is not syntax),
    returned as tsquery text. Stop words come back empty and are dropped; terms that stem to
    the same lexemes ("fix", "fixed") count once. Conversions are cached per engine."""
    cache = _cache(conn)
    terms = [term for term in terms if term]
    missing = list(dict.fromkeys(term for term in terms if term not in cache.tsqueries))
    if missing:
        sql = "SELECT " + ", ".join(
            f"plainto_tsquery('english'::regconfig, %(term_{i})s::text)::text"
            for i in range(len(missing))
        )
        (row,) = await driver_sql(conn, sql, {f"term_{i}": term for i, term in enumerate(missing)})
        if len(cache.tsqueries) + len(missing) > MAX_CACHE_ENTRIES:
            cache.tsqueries.clear()
        cache.tsqueries.update(zip(missing, (text or "" for text in row), strict=True))
    return list(dict.fromkeys(text for term in terms if (text := cache.tsqueries[term])))


async def postgres_statistics(
    conn: AsyncConnection, team_id: str, project_id: str, tsqueries: Sequence[str]
) -> list[tuple[int, int]]:
    """Each tsquery's ``(project row count, document frequency)``, at most
    :data:`STATS_TTL_SECONDS` old (one scan of the project for those missing or expired)."""
    cache = _cache(conn)
    now = time.monotonic()
    known: dict[str, tuple[int, int]] = {}
    for q in tsqueries:
        entry = cache.stats.get((team_id, project_id, q))
        if entry is not None and now - entry[0] < STATS_TTL_SECONDS:
            known[q] = (entry[1], entry[2])
    missing = [q for q in tsqueries if q not in known]
    if missing:
        counts = ", ".join(
            f"count(*) FILTER (WHERE content_search @@ {_tsquery(q)})" for q in missing
        )
        sql = f"SELECT count(*), {counts} FROM observations WHERE {_SCOPE}"
        params = {"team_id": team_id, "project_id": project_id}
        (row,) = await driver_sql(conn, sql, params)
        total = int(row[0])
        if len(cache.stats) + len(missing) > MAX_CACHE_ENTRIES:
            cache.stats.clear()
        for i, q in enumerate(missing):
            df = int(row[1 + i])
            cache.stats[(team_id, project_id, q)] = (now, total, df)
            known[q] = (total, df)
    return [known[q] for q in tsqueries]


def canonical_score(weights: Sequence[float], matched: Sequence[int]) -> float:
    """The score of a row matching the terms ``matched`` (ascending indexes): the weights
    summed in index order, the same float operations the SQL score expression performs."""
    score = 0.0
    for i in matched:
        score += weights[i]
    return score


def winning_sets(
    weights: Sequence[float], threshold: float, cap: int = MAX_WINNING_SETS
) -> list[tuple[int, ...]] | None:
    """The minimal sets of term indexes whose score is above ``threshold``; ``None`` when
    there are more than ``cap`` of them (or too many to enumerate)."""
    m = len(weights)
    suffix = [0.0] * (m + 1)
    for i in range(m - 1, -1, -1):
        suffix[i] = suffix[i + 1] + weights[i]
    slack = 1e-9 * (suffix[0] + abs(threshold) + 1.0)
    found: list[tuple[int, ...]] = []
    budget = [20_000]

    def visit(start: int, chosen: tuple[int, ...], score: float) -> bool:
        for i in range(start, m):
            budget[0] -= 1
            if budget[0] < 0:
                return False
            here = (*chosen, i)
            total = score + weights[i]
            if total > threshold:
                minimal = all(
                    canonical_score(weights, [j for j in here if j != drop]) <= threshold
                    for drop in here
                )
                if minimal:
                    found.append(here)
                    if len(found) > cap:
                        return False
            elif total + suffix[i + 1] > threshold - slack and not visit(i + 1, here, total):
                return False
        return True

    return found if visit(0, (), 0.0) else None


def _score_sql(tsqueries: Sequence[str], weights: Sequence[float]) -> str:
    parts = [
        f"CASE WHEN content_search @@ {_tsquery(q)} THEN {_float(w)} ELSE 0::float8 END"
        for q, w in zip(tsqueries, weights, strict=True)
    ]
    return "(" + " + ".join(["0::float8", *parts]) + ")"


class _Profile:
    """Expected shares of rows per score, were terms independent (``frequencies``: each
    term's share of the project's rows). Used only to *plan* windows, never to rank."""

    def __init__(self, weights: Sequence[float], frequencies: Sequence[float]) -> None:
        m = len(weights)
        self.shares: list[tuple[float, float]] = []  # (score, share of rows matching exactly)
        for mask in range(1, 1 << m):
            matched = [i for i in range(m) if mask >> i & 1]
            share = 1.0
            for i in range(m):
                share *= frequencies[i] if mask >> i & 1 else 1.0 - frequencies[i]
            self.shares.append((canonical_score(weights, matched), share))
        self.levels = sorted({score for score, _ in self.shares})

    def above(self, threshold: float) -> float:
        return sum(share for score, share in self.shares if score > threshold)

    def at_least(self, level: float) -> float:
        return sum(share for score, share in self.shares if score >= level)


class _Window:
    """One candidate window: the newest ``size`` rows scoring above ``threshold``."""

    def __init__(self, threshold: float, size: int) -> None:
        self.threshold = threshold
        self.size = size
        self.complete = False  # came back short: every row above the threshold was read
        self.last: tuple[int, str] | None = None  # recency key of its last (oldest) row


def _plan(
    profile: _Profile | None, total: int, threshold: float, size: int, limit: int
) -> list[_Window]:
    """The window at ``threshold``, then the windows the ranking is expected to need next.

    After a window of ``size`` rows above ``T``, the ``limit``-th best candidate is
    expected to score at least the highest level ``L`` of which those rows should hold
    ``limit`` (:func:`_expected_at_least`); the next window reads rows above ``L``. A guess
    that falls short costs work, never correctness (:func:`_settled` decides), and the
    plan stops after a window expected to come back short.
    """
    windows = [_Window(threshold, size)]
    if profile is None:
        return windows
    while len(windows) < MAX_PLANNED_WINDOWS:
        current = windows[-1]
        share = profile.above(current.threshold)
        if share * total < current.size:
            break  # expected short: the ranking should be settled by then
        nxt = max(
            (
                level
                for level in profile.levels
                if level > current.threshold
                and _expected_at_least(current.size, profile.at_least(level) / share, limit)
            ),
            default=None,
        )
        if nxt is None:
            break
        windows.append(_Window(nxt, limit))
    return windows


def _expected_at_least(size: int, share: float, limit: int) -> bool:
    """Whether ``size`` rows, each one of a kind with probability ``share``, are expected
    to hold ``limit`` of that kind, :data:`PLAN_MARGIN` standard deviations to spare."""
    mean = size * share
    return mean - PLAN_MARGIN * math.sqrt(mean * max(1.0 - share, 0.0)) >= limit


def _settled(
    ranking: Sequence[tuple[tuple[float, int, str], float]],
    windows: Sequence[_Window],
    weights: Sequence[float],
    limit: int,
) -> bool:
    """Whether the best ``limit`` candidates are exactly the best ``limit`` rows.

    Each window read is a fact: every row newer than its last row (every row, if it came
    back short) scoring above its threshold was read. A row never read therefore scores at
    most ``T`` for each complete window at ``T``, and is older than the last row of each
    other window whose threshold is below its score. The ranking is settled when no unread
    row can beat the ``limit``-th candidate (score ``s``, row ``c``): none scores above
    ``s`` (no term set can, or a complete window has ``T ≤ s``), and one that ties is
    older than ``c`` (a window with ``T < s`` is complete or reached ``c``).
    """
    if len(ranking) < limit:  # fewer candidates than asked for: all matches must be read
        return any(w.complete and w.threshold <= 0.0 for w in windows)
    key, score = ranking[limit - 1]
    recency = key[1:]
    above = winning_sets(weights, score, cap=0)
    nothing_above = above is not None and not above
    if not nothing_above and not any(w.complete and w.threshold <= score for w in windows):
        return False
    return any(
        w.threshold < score and (w.complete or (w.last is not None and recency <= w.last))
        for w in windows
    )


_DENSE = " IS TRUE"  # the suffix of a condition meant for the recency index


def _condition(
    tsqueries: Sequence[str],
    weights: Sequence[float],
    profile: _Profile | None,
    total: int,
    window: _Window,
) -> str | None:
    """SQL for "scores above the window's threshold", or ``None`` if no row can.

    When the newest ``size`` such rows are expected within :data:`RECENCY_SCAN_ROWS` rows
    of the project, the tsquery is written so that only the recency index can serve it
    (``IS TRUE`` is not a GIN operator): a GIN scan would read the terms' postings in every
    project, while the recency index stops after those few rows. Rare conditions are left
    to the planner (GIN).
    """
    threshold = window.threshold
    sets = winning_sets(weights, threshold)
    if sets is None:
        any_term = " | ".join(f"({q})" for q in tsqueries)
        score = _score_sql(tsqueries, weights)
        return f"content_search @@ {_tsquery(any_term)} AND {score} > {_float(threshold)}"
    if not sets:
        return None
    text = " | ".join("(" + " & ".join(f"({tsqueries[i]})" for i in s) + ")" for s in sets)
    if profile is not None and profile.above(threshold) * RECENCY_SCAN_ROWS >= window.size:
        return f"(content_search @@ {_tsquery(text)}){_DENSE}"
    return f"content_search @@ {_tsquery(text)}"


def _flags_sql(tsqueries: Sequence[str]) -> str:
    return ", ".join(f"content_search @@ {_tsquery(q)} AS m_{i}" for i, q in enumerate(tsqueries))


def _statement(
    scope: str,
    tsqueries: Sequence[str],
    weights: Sequence[float],
    profile: _Profile | None,
    total: int,
    threshold: float,
    size: int,
    limit: int,
) -> tuple[tuple[tuple[float, int, bool], ...], str | None]:
    """The planned windows as ``(threshold, size, trivially complete)`` and the statement
    reading them all (one ``UNION ALL`` branch per window; ``None`` when none needs reading)."""
    flags = _flags_sql(tsqueries)
    shapes: list[tuple[float, int, bool]] = []
    branches: list[str] = []
    for n, window in enumerate(_plan(profile, total, threshold, size, limit)):
        condition = _condition(tsqueries, weights, profile, total, window)
        if condition is None:  # nothing can score above it: trivially complete
            shapes.append((window.threshold, window.size, True))
            break
        shapes.append((window.threshold, window.size, False))
        source = f"observations WHERE {scope} AND {condition}"
        if not condition.endswith(_DENSE):
            # A rare condition: the subquery (no row goal behind its OFFSET 0 fence) reads
            # its few matches through GIN, where ORDER BY … LIMIT alone could tempt the
            # planner into walking the recency index through the whole project.
            source = (
                "(SELECT id, updated_at, content_search FROM observations "
                f"WHERE {scope} AND {condition} OFFSET 0) AS rare"
            )
        branches.append(
            f"(SELECT {n} AS w, id, updated_at, {flags} FROM {source} "
            f"ORDER BY {_RECENCY} LIMIT {window.size})"
        )
    if not branches:
        return tuple(shapes), None
    # The best ``limit`` rows of these windows are read whole in the same statement (scored
    # as canonical_score does), so a ranking settled by this statement needs no other.
    score = " + ".join(
        ["0::float8"]
        + [f"CASE WHEN m_{i} THEN {_float(w)} ELSE 0::float8 END" for i, w in enumerate(weights)]
    )
    marks = ", ".join(f"m_{i}" for i in range(len(tsqueries)))
    sql = (
        f"WITH win AS MATERIALIZED ({' UNION ALL '.join(branches)}), "
        f"ranked AS (SELECT w, id, updated_at, {marks}, ({score}) AS score, "
        "row_number() OVER (PARTITION BY id ORDER BY w) AS nth FROM win), "
        "best AS (SELECT id FROM ranked WHERE nth = 1 "
        f"ORDER BY score DESC, {_RECENCY} LIMIT {limit}) "
        f"SELECT ranked.w, ranked.id, ranked.updated_at, {marks}, {_WHOLE_LIST} "
        "FROM ranked LEFT JOIN observations o ON o.id = CASE "
        "WHEN ranked.nth = 1 AND ranked.id IN (SELECT id FROM best) THEN ranked.id END"
    )
    return tuple(shapes), sql


# The winners, read whole when the statement that settled the ranking did not read them
# all (a ranking settled over several statements, or the fallback).
_WINNERS = (
    f"SELECT {_WHOLE_LIST} FROM observations o "
    "WHERE o.team_id = %(team_id)s AND o.project_id = %(project_id)s AND o.id = ANY(%(ids)s)"
)


async def postgres_search(
    conn: AsyncConnection, team_id: str, project_id: str, query: SearchQuery, limit: int
) -> list[Scored]:
    tsqueries = await postgres_lexeme_queries(conn, query.terms)
    if not tsqueries or limit <= 0:
        return []
    if "\x00" in team_id or "\x00" in project_id:  # as the driver refuses such a parameter
        raise errors.InvalidInput("value rejected by the database: text cannot contain NUL")
    statistics = await postgres_statistics(conn, team_id, project_id, tsqueries)
    weights = [idf(count, df) for count, df in statistics]
    total = max(count for count, _ in statistics)
    profile: _Profile | None = None  # built on the first plan not cached
    m = len(tsqueries)
    # Rows come back untyped (psycopg's own values: aware datetimes, decoded JSON); only the
    # winners go through the columns' result processors, like a typed select would.
    processors = _processors(conn.dialect)
    whole: dict[str, dict[str, Any]] = {}
    params: dict[str, Any] = {"team_id": team_id, "project_id": project_id}
    flags = _flags_sql(tsqueries)
    # id -> (rank key, score): the best ``limit`` rows read so far.
    best: dict[str, tuple[tuple[float, int, str], float]] = {}
    done: list[_Window] = []

    def ranking() -> list[tuple[tuple[float, int, str], float]]:
        return sorted(best.values(), key=lambda entry: entry[0])

    threshold, size = 0.0, max(FIRST_WINDOW_FACTOR * limit, MIN_FIRST_WINDOW)
    plans = _cache(conn).plans
    # The window statements name the scope as literals: with no parameter at all, the
    # server plans a prepared statement once and reuses that plan (with parameters it
    # would plan each of its first executions anew).
    scope = f"team_id = {_sql_string(team_id)} AND project_id = {_sql_string(project_id)}"
    for _ in range(MAX_STATEMENTS):
        # The plan depends on nothing but the scope, the terms, their statistics and the
        # window, so repeated questions reuse it, and its SQL text: a text this process
        # has run before is prepared on each connection at its first use there.
        scoped = (team_id, project_id, tuple(tsqueries), tuple(statistics))
        plan_key = (*scoped, threshold, size, limit)
        plan = plans.get(plan_key)
        repeated = plan is not None
        if plan is None:
            if profile is None and len(tsqueries) <= MAX_DENSITY_TERMS:
                shares = [df / count if count else 0.0 for count, df in statistics]
                profile = _Profile(weights, shares)
            plan = _statement(scope, tsqueries, weights, profile, total, threshold, size, limit)
            if len(plans) >= MAX_CACHE_ENTRIES:
                plans.clear()
            plans[plan_key] = plan
        shapes, statement = plan
        windows = [_Window(t, n) for t, n, _ in shapes]
        for window, (_, _, complete) in zip(windows, shapes, strict=True):
            window.complete = complete
        if statement is not None:
            rows = await driver_sql(conn, statement, {}, prepare=True if repeated else None)
            counts = [0] * len(windows)
            for row in rows:
                n, observation_id, updated_at = row[0], row[1], row[2]
                matched = list(row[3 : 3 + m])
                if row[3 + m] is not None:  # read whole: one of this statement's best
                    whole[observation_id] = _whole(processors, row[3 + m :])
                key = rank_key(
                    canonical_score(weights, [i for i, hit in enumerate(matched) if hit]),
                    updated_at,
                    observation_id,
                )
                counts[n] += 1
                last = windows[n].last
                if last is None or key[1:] > last:
                    windows[n].last = key[1:]
                if observation_id not in best:
                    best[observation_id] = (key, -key[0])
            for n, window in enumerate(windows):
                window.complete = window.complete or counts[n] < window.size
        done.extend(windows)
        kept = ranking()[:limit]
        best = {entry_id: entry for entry_id, entry in best.items() if entry in kept}
        if _settled(kept, done, weights, limit):
            break
        # Not settled: the next window reads rows above the current limit-th score.
        threshold, size = (kept[-1][1] if kept else 0.0), limit
    else:
        # Pathological: rank every match in one statement (exact, not bounded).
        order = f"{_score_sql(tsqueries, weights)} DESC, {_RECENCY}"
        condition = _condition(tsqueries, weights, None, total, _Window(0.0, limit))
        sql = (
            f"SELECT id, updated_at, {flags} FROM observations "
            f"WHERE {_SCOPE} AND {condition} ORDER BY {order} LIMIT {limit}"
        )
        best = {}
        for observation_id, updated_at, *matched in await driver_sql(conn, sql, params):
            score = canonical_score(weights, [i for i, hit in enumerate(matched) if hit])
            best[observation_id] = (rank_key(score, updated_at, observation_id), score)
    if not best:
        return []
    order_ids = sorted(best, key=lambda entry_id: best[entry_id][0])
    # Plain dicts stand in for row mappings: the caller only reads columns by name.
    by_id = {i: cast(RowMapping, whole[i]) for i in order_ids if i in whole}
    if len(by_id) < len(order_ids):  # settled by a later statement, or the fallback
        rows = await driver_sql(conn, _WINNERS, {**params, "ids": order_ids})
        read = [_whole(processors, row) for row in rows]
        by_id = {r["id"]: cast(RowMapping, r) for r in read}
    # A winner deleted in between is simply left out.
    return [(by_id[i], best[i][1]) for i in order_ids if i in by_id]


# --------------------------------------------------------------------------- SQLite

_FTS = sa.table(t.FTS_TABLE, sa.column("observation_id", sa.Text), sa.column("content", sa.Text))


def fts5_phrases(terms: Sequence[str]) -> list[str]:
    """Each term as an FTS5 string literal (embedded double quotes doubled).

    A quoted string is always a phrase of plain tokens to FTS5, so ``NEAR(``, ``*``, ``"``,
    ``OR`` or ``col:`` in user text can never become query syntax. Terms without a single
    letter or digit would be empty phrases and are dropped.
    """
    phrases = ['"' + term.replace('"', '""') + '"' for term in terms if re.search(r"[^\W_]", term)]
    return list(dict.fromkeys(phrases))


def sqlite_term_hits(phrases: Sequence[str], team_id: str, project_id: str) -> sa.Subquery:
    """One ``(observation_id, term)`` row per matching term and observation in scope.

    Each phrase is its own MATCH so the score can count which terms a row matches, the way
    the PostgreSQL query does; bm25() alone would let document length outweigh a matched
    term, and clamps very common terms to nothing.
    """
    obs = t.observations
    per_term = [
        sa.select(
            _FTS.c.observation_id.label("observation_id"), sa.literal(i, sa.Integer).label("term")
        ).where(sa.literal_column(t.FTS_TABLE).op("MATCH")(sa.bindparam(f"phrase_{i}", phrase)))
        for i, phrase in enumerate(phrases)
    ]
    union = sa.union_all(*per_term).subquery("per_term")
    return (
        sa.select(union.c.observation_id, union.c.term)
        .join(obs, obs.c.id == union.c.observation_id)
        .where(obs.c.team_id == team_id, obs.c.project_id == project_id)
        .subquery("hits")
    )


def sqlite_ranked(hits: sa.Subquery, weights: Sequence[float], limit: int) -> sa.Select[Any]:
    """Rows scored by the summed idf of the terms they match; newest first among equals."""
    obs = t.observations
    weight = sa.case(
        *(
            (hits.c.term == i, sa.bindparam(f"idf_{i}", w, type_=sa.Float))
            for i, w in enumerate(weights)
        ),
        else_=0.0,
    )
    scores = (
        sa.select(hits.c.observation_id, sa.func.sum(weight).label("score"))
        .group_by(hits.c.observation_id)
        .subquery("scores")
    )
    return (
        sa.select(*_RESULT_COLUMNS, sa.cast(scores.c.score, sa.Float).label("score"))
        .select_from(scores.join(obs, obs.c.id == scores.c.observation_id))
        .order_by(scores.c.score.desc(), obs.c.updated_at.desc(), obs.c.id)
        .limit(limit)
    )


async def sqlite_search(
    conn: AsyncConnection, team_id: str, project_id: str, query: SearchQuery, limit: int
) -> list[Scored]:
    phrases = fts5_phrases(query.terms)
    if not phrases or limit <= 0:
        return []
    hits = sqlite_term_hits(phrases, team_id, project_id)
    frequencies = sa.select(hits.c.term, sa.func.count().label("df")).group_by(hits.c.term)
    df = {int(r["term"]): int(r["df"]) for r in (await conn.execute(frequencies)).mappings()}
    if not df:
        return []
    o = t.observations
    count = sa.select(sa.func.count()).select_from(o)
    count = count.where(o.c.team_id == team_id, o.c.project_id == project_id)
    total = int((await conn.execute(count)).scalar_one())
    weights = [idf(total, df[i]) if i in df else 0.0 for i in range(len(phrases))]
    rows = (await conn.execute(sqlite_ranked(hits, weights, limit))).mappings().all()
    return [(r, float(r["score"])) for r in rows]
