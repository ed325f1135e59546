"""Passages written for search on PostgreSQL and SQLite (the model of ``domain/ranking.py``).

A passage row holds its weighted term frequencies (``tf``, JSON), its length and its
distinct terms (``terms``); the project's statistics (passages, total length, document
frequency per term) are counted in ``search_stats`` / ``search_terms`` in the same
transaction. PostgreSQL writers pick one of :data:`PG_SHARDS` rows at random per statement,
so concurrent writers of one project seldom wait on the same row; terms are upserted in
sorted order, so two writers never lock rows in opposite orders. Searching them is
:mod:`claude_mem_core.adapters.sqlalchemy.search`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection

from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy.driver import driver_sql
from claude_mem_core.domain import ranking
from claude_mem_core.domain.passages import Passage

PG_SHARDS = 8


def _lexeme(term: str) -> str:
    """A quoted lexeme of tsvector and tsquery input (``'`` doubled, ``\\`` escaped), so
    PostgreSQL takes the term as it is, without parsing or stemming it."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_literal(terms: Sequence[str]) -> str:
    every = "".join(terms)
    if "'" in every or "\\" in every:  # rare: escape each term as it needs
        return " ".join(_lexeme(term) for term in terms)
    return "'" + "' '".join(terms) + "'" if terms else ""


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
                # PostgreSQL's index of the terms that can carry a query alone (see
                # _pg_search_sql); SQLite scores every match and keeps none.
                "terms_hi": tsvector_literal(ranking.high_impact_terms(p.tf, p.length))
                if postgres
                else None,
            }
        )
    return rows


def statistics(passages: Sequence[Passage]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows ``passages`` add to ``search_stats`` and ``search_terms`` (without their
    shard), sorted: counts, total and smallest length per project, and the most passages of
    one observation; document frequency and largest weighted frequency per term (these
    bound scores: see :func:`_pg_search_sql`). An observation's passages are written
    together, once (when it is stored), so the count of one write is the observation's."""
    projects: dict[tuple[str, str], dict[str, Any]] = {}
    # Per project, per term: [document frequency, largest weighted frequency].
    counts: dict[tuple[str, str], dict[str, list[float]]] = {}
    per_observation = Counter((p.team_id, p.project_id, p.observation_id) for p in passages)
    for p in passages:
        scope = (p.team_id, p.project_id)
        row = projects.get(scope)
        if row is None:
            row = projects[scope] = {"team_id": p.team_id, "project_id": p.project_id}
            row.update(passages=0, tokens=0, min_length=p.length, max_passages=1)
            counts[scope] = {}
        row["passages"] += 1
        row["tokens"] += p.length
        row["min_length"] = min(row["min_length"], p.length)
        row["max_passages"] = max(row["max_passages"], per_observation[(*scope, p.observation_id)])
        of_scope = counts[scope]
        for term, f in p.tf.items():
            entry = of_scope.get(term)
            if entry is None:
                of_scope[term] = [1, f]
            else:
                entry[0] += 1
                if f > entry[1]:
                    entry[1] = f
    term_rows = [
        {"team_id": team_id, "project_id": project_id, "term": term, "df": int(df), "max_tf": f}
        for team_id, project_id in sorted(counts)
        for term, (df, f) in sorted(counts[(team_id, project_id)].items())
    ]
    return [projects[k] for k in sorted(projects)], term_rows


_PASSAGE_COLUMNS = "team_id, project_id, observation_id, origin, event_id, ordinal, text, "
_PASSAGE_COLUMNS += "length, tf, terms, terms_hi"


# The id of the writing transaction: a ``search_stats`` row's change stamp (revision 0021).
PG_CHANGE_STAMP = "pg_current_xact_id()::text::bigint"


def change_stamp(dialect: str) -> sa.ColumnElement[int]:
    """The change stamp a writer sets on the statistics row it writes (0 on SQLite, which
    has no snapshot to tell)."""
    if dialect == dialects.POSTGRES:
        return sa.literal_column(PG_CHANGE_STAMP, sa.BigInteger)
    return sa.literal(0, sa.BigInteger)


def pg_passage_ctes(passages: str, stats: str, terms: str, when: str, *, revision: int = 21) -> str:
    """The data-modifying CTEs (``pa``, ``pa_stats``, ``pa_terms``) that write passages and
    count them in the statistics, given the SQL of their JSON parameters
    (:func:`pg_passage_params`; rows read over the tables' own row types) and a condition
    (``when``): for :func:`add_passages`, and for a job's step in one statement
    (``JobRepo.advance``). The statistics row written takes the transaction's change
    stamp. ``revision``: the schema written to (older ones for migrations that reindex).
    Kept short: psycopg caches the conversion of statements up to 4 kB only."""

    def rows(table: str, param: str) -> str:
        return f"json_populate_recordset(NULL::{table}, CAST({param} AS json)) WHERE {when}"

    columns = "team_id, project_id, shard, passages, tokens, min_length"
    values = columns
    updates = (
        "passages = search_stats.passages + excluded.passages, "
        "tokens = search_stats.tokens + excluded.tokens, "
        "min_length = least(search_stats.min_length, excluded.min_length)"
    )
    passage_columns = _PASSAGE_COLUMNS
    if revision >= 5:
        columns += ", max_passages"
        values += ", max_passages"
        updates += ", max_passages = greatest(search_stats.max_passages, excluded.max_passages)"
    else:
        passage_columns = passage_columns.replace(", terms_hi", "")
    passage_values = passage_columns
    if revision >= 21:
        passage_columns += ", changed"
        passage_values += f", {PG_CHANGE_STAMP}"
        columns += ", changes"
        values += f", {PG_CHANGE_STAMP}"
        updates += ", changes = excluded.changes"
    return (
        f"pa AS (INSERT INTO search_passages ({passage_columns}) SELECT {passage_values} "
        f"FROM {rows('search_passages', passages)} RETURNING 1), "
        f"pa_stats AS (INSERT INTO search_stats ({columns}) SELECT {values} "
        f"FROM {rows('search_stats', stats)} "
        f"ON CONFLICT (team_id, project_id, shard) DO UPDATE SET {updates} RETURNING 1), "
        f"pa_terms AS (INSERT INTO search_terms SELECT * FROM {rows('search_terms', terms)} "
        "ON CONFLICT (team_id, project_id, term, shard) DO UPDATE SET "
        "df = search_terms.df + excluded.df, "
        "max_tf = greatest(search_terms.max_tf, excluded.max_tf) RETURNING 1)"
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def pg_passage_params(passages: Sequence[Passage]) -> dict[str, Any]:
    """The parameters of :func:`pg_passage_ctes`: rows as JSON, statistics sorted (terms
    are locked in one order by every writer) on one shard, drawn at random."""
    stats, terms = statistics(passages)
    shard = random.randrange(PG_SHARDS)
    return {
        "passages": _json(passage_rows(passages, postgres=True)),
        "passage_stats": _json([{**row, "shard": shard} for row in stats]),
        "passage_terms": _json([{**row, "shard": shard} for row in terms]),
    }


def _pg_add_passages(revision: int = 21) -> str:
    ctes = pg_passage_ctes(
        "%(passages)s", "%(passage_stats)s", "%(passage_terms)s", "true", revision=revision
    )
    return f"WITH {ctes} SELECT count(*) FROM pa"


PG_ADD_PASSAGES = _pg_add_passages()

_SQLITE_PASSAGE_INSERT = sa.text(
    "INSERT INTO search_passages (team_id, project_id, observation_id, origin, event_id, "
    "ordinal, text, length, tf, terms) VALUES (:team_id, :project_id, :observation_id, "
    ":origin, :event_id, :ordinal, :text, :length, :tf, :terms)"
)
_SQLITE_STATS_UPSERT = sa.text(
    "INSERT INTO search_stats (team_id, project_id, shard, passages, tokens, min_length, "
    "max_passages) VALUES (:team_id, :project_id, 0, :passages, :tokens, :min_length, "
    ":max_passages) ON CONFLICT (team_id, project_id, shard) DO UPDATE SET "
    "passages = passages + excluded.passages, tokens = tokens + excluded.tokens, "
    "min_length = min(min_length, excluded.min_length), "
    "max_passages = max(max_passages, excluded.max_passages)"
)
_SQLITE_STATS_UPSERT_0003 = sa.text(
    "INSERT INTO search_stats (team_id, project_id, shard, passages, tokens, min_length) "
    "VALUES (:team_id, :project_id, 0, :passages, :tokens, :min_length) "
    "ON CONFLICT (team_id, project_id, shard) DO UPDATE SET "
    "passages = passages + excluded.passages, tokens = tokens + excluded.tokens, "
    "min_length = min(min_length, excluded.min_length)"
)
_SQLITE_TERMS_UPSERT = sa.text(
    "INSERT INTO search_terms (team_id, project_id, term, shard, df, max_tf) "
    "VALUES (:team_id, :project_id, :term, 0, :df, :max_tf) "
    "ON CONFLICT (team_id, project_id, term, shard) DO UPDATE SET "
    "df = df + excluded.df, max_tf = max(max_tf, excluded.max_tf)"
)


def sqlite_passage_writes(passages: Sequence[Passage]) -> list[tuple[sa.TextClause, Any]]:
    """SQLite: the statements (with their parameter lists) that write passages and count
    them in the statistics. PostgreSQL does it in one: ``PG_ADD_PASSAGES``."""
    stats, terms = statistics(passages)
    rows = passage_rows(passages, postgres=False)
    for row in rows:
        row["tf"] = _json(row["tf"])
    return [
        (_SQLITE_PASSAGE_INSERT, rows),
        (_SQLITE_STATS_UPSERT, stats),
        (_SQLITE_TERMS_UPSERT, terms),
    ]


def add_passages_sync(conn: sa.Connection, passages: Sequence[Passage]) -> None:
    """:func:`add_passages` on a synchronous connection, for migrations: on revision 0003's
    schema (its own backfill) without the columns later revisions add and fill in
    (``search_stats.max_passages``, ``search_passages.terms_hi``)."""
    if not passages:
        return
    present = {c["name"] for c in sa.inspect(conn).get_columns("search_stats")}
    current = "max_passages" in present
    if conn.dialect.name == dialects.POSTGRES:
        # Rows are read over the table's own row type: a key it lacks is ignored.
        revision = 21 if "changes" in present else 5 if current else 3
        conn.exec_driver_sql(_pg_add_passages(revision), pg_passage_params(passages))
        return
    for statement, rows in sqlite_passage_writes(passages):
        if statement is _SQLITE_STATS_UPSERT and not current:
            statement = _SQLITE_STATS_UPSERT_0003
        if rows:
            conn.execute(statement, rows)


async def add_passages(conn: AsyncConnection, passages: Sequence[Passage]) -> None:
    """Write passages and count them in their projects' statistics (the caller's
    transaction: PostgreSQL's unit of work has opened it before calling)."""
    if not passages:
        return
    try:
        if conn.dialect.name == dialects.POSTGRES:
            await driver_sql(conn, PG_ADD_PASSAGES, pg_passage_params(passages), rows=False)
            return
        for statement, params in sqlite_passage_writes(passages):
            if params:  # a passage with no term has no term rows (a memory of "!!!")
                await conn.execute(statement, params)
    except (exc.SQLAlchemyError, OSError) as e:
        raise dialects.translate_error(e, not_found="observation must exist in scope") from e
