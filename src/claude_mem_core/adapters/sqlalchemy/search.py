"""Passages and BM25 search on PostgreSQL and SQLite: the model of ``domain/ranking.py``.

Writing: a passage row holds its weighted term frequencies (``tf``, JSON), its length and its
distinct terms (``terms``); the project's statistics (passages, total length, document
frequency per term) are counted in ``search_stats`` / ``search_terms`` in the same
transaction. PostgreSQL writers pick one of :data:`PG_SHARDS` rows at random per statement,
so concurrent writers of one project seldom wait on the same row; terms are upserted in
sorted order, so two writers never lock rows in opposite orders.

Searching: one statement on PostgreSQL (statistics, idf, candidates through the GIN index,
BM25 per passage, the best ``limit`` observations whole with their best passages). On
SQLite, the statistics are read first (idf is computed in Python: not every SQLite build has
``ln``), then one statement does the rest, candidates through FTS5. Both compute the same
formula in double precision; scores agree with the in-memory adapter's to rounding.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection

from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.driver import driver_sql
from claude_mem_core.domain import ranking
from claude_mem_core.domain.passages import Passage
from claude_mem_core.domain.tokens import Query
from claude_mem_core.ports.storage import Evidence

PG_SHARDS = 8

# A query's shape: each query term as the indexes of its whole and of its parts.
Shape = tuple[tuple[int, tuple[int, ...]], ...]

_OBSERVATION_COLUMNS = [c.name for c in t.observations.columns]


# --------------------------------------------------------------------------- writing


def _lexeme(term: str) -> str:
    """A quoted lexeme of tsvector and tsquery input (``'`` doubled, ``\\`` escaped), so
    PostgreSQL takes the term as it is, without parsing or stemming it."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_literal(terms: Sequence[str]) -> str:
    return " ".join(_lexeme(term) for term in terms)


def passage_rows(passages: Sequence[Passage], *, postgres: bool) -> list[dict[str, Any]]:
    rows = []
    for p in passages:
        terms = p.terms
        rows.append(
            {
                "team_id": p.team_id,
                "project_id": p.project_id,
                "observation_id": p.observation_id,
                "origin": str(p.origin),
                "event_id": p.event_id,
                "ordinal": p.ordinal,
                "text": p.text,
                "length": p.length,
                "tf": dict(p.tf),
                "terms": tsvector_literal(terms) if postgres else " ".join(terms),
            }
        )
    return rows


def statistics(passages: Sequence[Passage]) -> tuple[list[Any], list[Any]]:
    """Per-scope (passages, tokens) and per-(scope, term) document frequencies, sorted."""
    counts: Counter[tuple[str, str]] = Counter()
    tokens: Counter[tuple[str, str]] = Counter()
    df: Counter[tuple[str, str, str]] = Counter()
    for p in passages:
        scope = (p.team_id, p.project_id)
        counts[scope] += 1
        tokens[scope] += p.length
        for term in p.tf:
            df[(*scope, term)] += 1
    stats = [(team, project, n, tokens[(team, project)]) for (team, project), n in counts.items()]
    return sorted(stats), sorted((*key, n) for key, n in df.items())


_PASSAGE_COLUMNS = "team_id, project_id, observation_id, origin, event_id, ordinal, text, "
_PASSAGE_COLUMNS += "length, tf, terms"


def pg_passage_ctes(passages: str, stats: str, terms: str, when: str) -> str:
    """The data-modifying CTEs (``pa``, ``pa_stats``, ``pa_terms``) that write passages and
    count them in the statistics, given the SQL of their JSON parameters
    (:func:`pg_passage_params`; rows read over the tables' own row types) and a condition
    (``when``): for :func:`add_passages`, and for a job's step in one statement
    (``JobRepo.advance``). Kept short: psycopg caches the conversion of statements up to
    4 kB only."""

    def rows(table: str, param: str) -> str:
        return f"json_populate_recordset(NULL::{table}, CAST({param} AS json)) WHERE {when}"

    return (
        f"pa AS (INSERT INTO search_passages ({_PASSAGE_COLUMNS}) SELECT {_PASSAGE_COLUMNS} "
        f"FROM {rows('search_passages', passages)} RETURNING 1), "
        f"pa_stats AS (INSERT INTO search_stats SELECT * FROM {rows('search_stats', stats)} "
        "ON CONFLICT (team_id, project_id, shard) DO UPDATE SET "
        "passages = search_stats.passages + excluded.passages, "
        "tokens = search_stats.tokens + excluded.tokens RETURNING 1), "
        f"pa_terms AS (INSERT INTO search_terms SELECT * FROM {rows('search_terms', terms)} "
        "ON CONFLICT (team_id, project_id, term, shard) DO UPDATE SET "
        "df = search_terms.df + excluded.df RETURNING 1)"
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def pg_passage_params(passages: Sequence[Passage]) -> dict[str, Any]:
    """The parameters of :func:`pg_passage_ctes`: rows as JSON, statistics sorted (terms
    are locked in one order by every writer) on one shard, drawn at random."""
    stats, df = statistics(passages)
    shard = random.randrange(PG_SHARDS)
    return {
        "passages": _json(passage_rows(passages, postgres=True)),
        "passage_stats": _json(
            [
                {"team_id": a, "project_id": b, "shard": shard, "passages": n, "tokens": k}
                for a, b, n, k in stats
            ]
        ),
        "passage_terms": _json(
            [
                {"team_id": a, "project_id": b, "term": term, "shard": shard, "df": n}
                for a, b, term, n in df
            ]
        ),
    }


_PG_ADD = (
    "WITH "
    + pg_passage_ctes("%(passages)s", "%(passage_stats)s", "%(passage_terms)s", "true")
    + " SELECT count(*) FROM pa"
)

_SQLITE_PASSAGE_INSERT = sa.text(
    "INSERT INTO search_passages (team_id, project_id, observation_id, origin, event_id, "
    "ordinal, text, length, tf, terms) VALUES (:team_id, :project_id, :observation_id, "
    ":origin, :event_id, :ordinal, :text, :length, :tf, :terms)"
)
_SQLITE_STATS_UPSERT = sa.text(
    "INSERT INTO search_stats (team_id, project_id, shard, passages, tokens) "
    "VALUES (:team, :project, 0, :n, :tokens) ON CONFLICT (team_id, project_id, shard) "
    "DO UPDATE SET passages = passages + excluded.passages, tokens = tokens + excluded.tokens"
)
_SQLITE_TERMS_UPSERT = sa.text(
    "INSERT INTO search_terms (team_id, project_id, term, shard, df) "
    "VALUES (:team, :project, :term, 0, :df) ON CONFLICT (team_id, project_id, term, shard) "
    "DO UPDATE SET df = df + excluded.df"
)


async def add_passages(conn: AsyncConnection, passages: Sequence[Passage]) -> None:
    """Write passages and count them in their projects' statistics (the caller's
    transaction: PostgreSQL's unit of work has opened it before calling)."""
    if not passages:
        return
    try:
        if conn.dialect.name == dialects.POSTGRES:
            await driver_sql(conn, _PG_ADD, pg_passage_params(passages), rows=False)
            return
        stats, df = statistics(passages)
        rows = passage_rows(passages, postgres=False)
        for row in rows:
            row["tf"] = _json(row["tf"])
        await conn.execute(_SQLITE_PASSAGE_INSERT, rows)
        await conn.execute(
            _SQLITE_STATS_UPSERT,
            [{"team": a, "project": b, "n": n, "tokens": k} for a, b, n, k in stats],
        )
        await conn.execute(
            _SQLITE_TERMS_UPSERT,
            [{"team": a, "project": b, "term": term, "df": n} for a, b, term, n in df],
        )
    except (exc.SQLAlchemyError, OSError) as e:
        raise dialects.translate_error(e, not_found="observation must exist in scope") from e


# --------------------------------------------------------------------------- searching


def _shape(query: Query) -> tuple[list[str], Shape]:
    """The query's distinct strings, and each query term as (whole, parts) indexes."""
    strings = ranking.query_strings(query)
    index = {s: i for i, s in enumerate(strings)}
    return strings, tuple((index[q.term], tuple(index[p] for p in q.parts)) for q in query.terms)


def _score_sql(terms: Shape, count: int, idf: str, avgdl: str) -> str:
    """The BM25 sum of ``domain/ranking.py`` over columns ``f0 …`` (NULL: string absent)."""

    def matched(whole: int, parts: tuple[int, ...]) -> str:
        if not parts:
            return f"f{whole} IS NOT NULL"
        every = " AND ".join(f"f{p} IS NOT NULL" for p in parts)
        return f"(f{whole} IS NOT NULL OR ({every}))"

    k1, b = repr(ranking.K1), repr(ranking.B)
    norm = f"{k1} * (1.0 - {b} + {b} * length / {avgdl})"
    pieces = []
    for i in range(count):
        gates = [matched(w, ps) for w, ps in terms if i == w or i in ps]
        gate = " OR ".join(gates)
        pieces.append(
            f"CASE WHEN f{i} IS NOT NULL AND ({gate}) "
            f"THEN {idf.format(i=i)} * f{i} * {ranking.K1 + 1.0!r} / (f{i} + {norm}) "
            "ELSE 0.0 END"
        )
    return "(" + " + ".join(pieces) + ")"


def _match_expression(quoted: list[str], terms: Shape, any_op: str, all_op: str) -> str:
    """ "Any query term": each term whole, or all of its parts (``quoted``: the strings as
    the backend's query syntax quotes them; the operators its OR and AND)."""
    alternatives = []
    for whole, parts in terms:
        if parts:
            every = f" {all_op} ".join(quoted[p] for p in parts)
            alternatives.append(f"({quoted[whole]} {any_op} ({every}))")
        else:
            alternatives.append(quoted[whole])
    return f" {any_op} ".join(alternatives)


def _pg_tsquery(strings: list[str], terms: Shape) -> str:
    return _match_expression([_lexeme(s) for s in strings], terms, "|", "&")


def _fts5_query(strings: list[str], terms: Shape) -> str:
    # A quoted string is always a phrase to FTS5: user text never becomes query syntax.
    phrases = ['"' + s.replace('"', '""') + '"' for s in strings]
    return _match_expression(phrases, terms, "OR", "AND")


_EVENT = f"(CASE WHEN origin = 'event' THEN {ranking.EVENT_FACTOR!r} ELSE 1.0 END)"

# Statements depend on the query's shape only (its strings are parameters): built once.
MAX_CACHED_SHAPES = 2_000


@lru_cache(maxsize=MAX_CACHED_SHAPES)
def _pg_search_sql(count: int, terms: Shape) -> str:
    lookups = ", ".join(f"(p.tf ->> %(s{i})s)::float8 AS f{i}" for i in range(count))
    idfs = ", ".join(
        f"ln(1.0 + (st.n - coalesce(d{i}.df, 0) + 0.5) / (coalesce(d{i}.df, 0) + 0.5)) AS idf{i}"
        for i in range(count)
    )
    joins = " ".join(f"LEFT JOIN d AS d{i} ON d{i}.term = %(s{i})s" for i in range(count))
    score = _score_sql(terms, count, "w.idf{i}", "w.avgdl")
    columns = ", ".join(f'o."{name}"' for name in _OBSERVATION_COLUMNS)
    return f"""
WITH st AS (
  SELECT coalesce(sum(passages), 0)::float8 AS n, coalesce(sum(tokens), 0)::float8 AS tokens
  FROM search_stats WHERE team_id = %(team_id)s AND project_id = %(project_id)s
), d AS (
  SELECT term, sum(df)::float8 AS df FROM search_terms
  WHERE team_id = %(team_id)s AND project_id = %(project_id)s AND term = ANY(%(strings)s)
  GROUP BY term
), w AS (
  SELECT greatest(st.tokens / greatest(st.n, 1.0), 1.0) AS avgdl, {idfs} FROM st {joins}
), cand AS (
  SELECT p.id, p.observation_id, p.origin, p.length, {lookups}
  FROM search_passages p
  WHERE p.team_id = %(team_id)s AND p.project_id = %(project_id)s
    AND p.terms @@ %(tsquery)s::tsquery
), scored AS (
  SELECT c.id, c.observation_id, {score} * {_EVENT} AS score FROM cand c CROSS JOIN w
), ranked AS (
  SELECT observation_id, id, score,
         row_number() OVER (PARTITION BY observation_id ORDER BY score DESC, id) AS nth
  FROM scored WHERE score > 0
), top AS (
  SELECT r.observation_id, r.score FROM ranked r JOIN observations o ON o.id = r.observation_id
  WHERE r.nth = 1 ORDER BY r.score DESC, o.updated_at DESC, o.id COLLATE "C" LIMIT %(limit)s
)
SELECT top.score, r.score AS passage_score, p.text AS evidence,
       p.event_id AS evidence_event_id, {columns}
FROM top JOIN ranked r ON r.observation_id = top.observation_id AND r.nth <= %(evidence)s
JOIN search_passages p ON p.id = r.id JOIN observations o ON o.id = top.observation_id
ORDER BY top.score DESC, o.updated_at DESC, o.id COLLATE "C", r.nth
"""


@lru_cache(maxsize=MAX_CACHED_SHAPES)
def _sqlite_search_sql(count: int, terms: Shape) -> sa.TextualSelect:
    lookups = ", ".join(f"json_extract(p.tf, :path{i}) AS f{i}" for i in range(count))
    score = _score_sql(terms, count, ":idf{i}", ":avgdl")
    columns = ", ".join(f'o."{name}"' for name in _OBSERVATION_COLUMNS)
    return sa.text(f"""
WITH cand AS (
  SELECT p.id, p.observation_id, p.origin, p.length, {lookups}
  FROM search_passages p
  WHERE p.id IN (SELECT rowid FROM search_fts WHERE search_fts MATCH :match)
    AND p.team_id = :team_id AND p.project_id = :project_id
), scored AS (
  SELECT id, observation_id, {score} * {_EVENT} AS score FROM cand
), ranked AS (
  SELECT observation_id, id, score,
         row_number() OVER (PARTITION BY observation_id ORDER BY score DESC, id) AS nth
  FROM scored WHERE score > 0
), top AS (
  SELECT r.observation_id, r.score FROM ranked r JOIN observations o ON o.id = r.observation_id
  WHERE r.nth = 1 ORDER BY r.score DESC, o.updated_at DESC, o.id LIMIT :limit
)
SELECT top.score, r.score AS passage_score, p.text AS evidence,
       p.event_id AS evidence_event_id, {columns}
FROM top JOIN ranked r ON r.observation_id = top.observation_id AND r.nth <= :evidence
JOIN search_passages p ON p.id = r.id JOIN observations o ON o.id = top.observation_id
ORDER BY top.score DESC, o.updated_at DESC, o.id, r.nth
""").columns(
        sa.column("score", sa.Float),
        sa.column("passage_score", sa.Float),
        sa.column("evidence", sa.Text),
        sa.column("evidence_event_id", sa.Text),
        *(sa.column(c.name, c.type) for c in t.observations.columns),
    )


_SQLITE_STATISTICS = sa.text(
    "SELECT coalesce(sum(passages), 0), coalesce(sum(tokens), 0) FROM search_stats "
    "WHERE team_id = :team_id AND project_id = :project_id"
)


def _sqlite_frequencies(count: int) -> sa.TextClause:
    names = ", ".join(f":s{i}" for i in range(count))
    return sa.text(
        "SELECT term, sum(df) FROM search_terms WHERE team_id = :team_id "
        f"AND project_id = :project_id AND term IN ({names}) GROUP BY term"
    )


def _json_path(term: str) -> str:
    return '$."' + term + '"'


async def search(
    conn: AsyncConnection, team_id: str, project_id: str, query: Query, limit: int
) -> list[tuple[Mapping[str, Any], float, list[Evidence]]]:
    """The best ``limit`` observations as (row, score, its best passages, best first)."""
    strings, terms = _shape(query)
    if not strings or limit <= 0:
        return []
    scope = {"team_id": team_id, "project_id": project_id}
    try:
        if conn.dialect.name == dialects.POSTGRES:
            if "\x00" in team_id or "\x00" in project_id:
                return []  # no stored id holds NUL (the driver refuses such a parameter)
            params: dict[str, Any] = {
                **scope,
                "strings": strings,
                "tsquery": _pg_tsquery(strings, terms),
                "limit": limit,
                "evidence": ranking.EVIDENCE_PASSAGES,
                **{f"s{i}": s for i, s in enumerate(strings)},
            }
            sql = _pg_search_sql(len(strings), terms)
            raw = await driver_sql(conn, sql, params)
            names = [
                "score",
                "passage_score",
                "evidence",
                "evidence_event_id",
                *_OBSERVATION_COLUMNS,
            ]
            rows: list[Mapping[str, Any]] = [dict(zip(names, r, strict=True)) for r in raw]
        else:
            n, tokens = (await conn.execute(_SQLITE_STATISTICS, scope)).one()
            if not n:
                return []
            lookup = {**scope, **{f"s{i}": s for i, s in enumerate(strings)}}
            result = await conn.execute(_sqlite_frequencies(len(strings)), lookup)
            df: dict[str, int] = {str(term): int(n) for term, n in result.all()}
            params = {
                **scope,
                "match": _fts5_query(strings, terms),
                "limit": limit,
                "evidence": ranking.EVIDENCE_PASSAGES,
                "avgdl": ranking.average_length(int(n), int(tokens)),
                **{f"path{i}": _json_path(s) for i, s in enumerate(strings)},
                **{f"idf{i}": ranking.idf(n, df.get(s, 0)) for i, s in enumerate(strings)},
            }
            ranked = await conn.execute(_sqlite_search_sql(len(strings), terms), params)
            rows = [dict(r) for r in ranked.mappings()]
    except (exc.SQLAlchemyError, OSError) as e:
        raise dialects.translate_error(e) from e
    found: list[tuple[Mapping[str, Any], float, list[Evidence]]] = []
    for r in rows:
        evidence = Evidence(
            text=r["evidence"], event_id=r["evidence_event_id"], score=float(r["passage_score"])
        )
        if found and found[-1][0]["id"] == r["id"]:
            found[-1][2].append(evidence)
        else:
            found.append((r, float(r["score"]), [evidence]))
    return found
