"""BM25 search on PostgreSQL and SQLite: the model of ``domain/ranking.py`` over the
passages :mod:`claude_mem_core.adapters.sqlalchemy.passage_writes` keeps with their
statistics.

One statement on PostgreSQL (statistics, idf, candidates through the GIN index, BM25 per
passage, the best ``limit`` observations whole with their best passages). On SQLite, the
statistics are read first (idf is computed in Python: not every SQLite build has ``ln``),
then one statement does the rest, candidates through FTS5. Both compute the same formula
in double precision; scores agree with the in-memory adapter's to rounding.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection

from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy import tables as t
from claude_mem_core.adapters.sqlalchemy.driver import driver_sql
from claude_mem_core.adapters.sqlalchemy.passage_writes import _lexeme
from claude_mem_core.domain import ranking
from claude_mem_core.domain.tokens import Query
from claude_mem_core.ports.search import Evidence

# A query's shape: each query term as the indexes of its whole and of its parts.
Shape = tuple[tuple[int, tuple[int, ...]], ...]

_OBSERVATION_COLUMNS = [c.name for c in t.observations.columns]


# --------------------------------------------------------------------------- searching


def _shape(query: Query) -> tuple[list[str], Shape]:
    """The query's distinct strings, and each query term as (whole, parts) indexes."""
    strings = ranking.query_strings(query)
    index = {s: i for i, s in enumerate(strings)}
    return strings, tuple((index[q.term], tuple(index[p] for p in q.parts)) for q in query.terms)


def _score_sql(terms: Shape, count: int, idf: str) -> str:
    """The BM25 sum of ``domain/ranking.py`` over columns ``f0 …`` (NULL: string absent)."""

    def matched(whole: int, parts: tuple[int, ...]) -> str:
        if not parts:
            return f"f{whole} IS NOT NULL"
        every = " AND ".join(f"f{p} IS NOT NULL" for p in parts)
        return f"(f{whole} IS NOT NULL OR ({every}))"

    k1, b = repr(ranking.K1), repr(ranking.B)
    norm = f"{k1} * (1.0 - {b} + {b} * length / {ranking.PIVOT_LENGTH!r})"
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


def _fts5_query(strings: list[str], terms: Shape) -> str:
    # A quoted string is always a phrase to FTS5: user text never becomes query syntax.
    phrases = ['"' + s.replace('"', '""') + '"' for s in strings]
    return _match_expression(phrases, terms, "OR", "AND")


_EVENT = f"(CASE WHEN origin = 'event' THEN {ranking.EVENT_FACTOR!r} ELSE 1.0 END)"

# Statements depend on the query's shape only (its strings are parameters): built once.
MAX_CACHED_SHAPES = 2_000


def _scored(source: str, score: str) -> str:
    """The passages of ``source`` (with frequencies ``f0 …``) with their positive scores,
    each multiplied by its passage's weight last (as ``ranking.passage_score`` does)."""
    return (
        f"SELECT id, observation_id, score FROM (SELECT c.id, c.observation_id, "
        f"{score} * {_EVENT} * c.weight AS score FROM {source} c CROSS JOIN w) AS s "
        "WHERE score > 0"
    )


def _best_sql(scored: str, name: str) -> str:
    """CTEs ``{name}_nth`` and ``{name}``: each observation of ``scored`` with its score,
    :func:`ranking.observation_score` added in the same order as Python adds it."""
    terms = ["max(CASE WHEN nth = 1 THEN score END)"] + [
        f"{ranking.SUPPORT_WEIGHT!r} * coalesce(max(CASE WHEN nth = {n} THEN score END), 0.0)"
        for n in range(2, ranking.EVIDENCE_PASSAGES + 1)
    ]
    return f"""{name}_nth AS (
  SELECT observation_id, score,
         row_number() OVER (PARTITION BY observation_id ORDER BY score DESC, id) AS nth
  FROM {scored}
), {name} AS (
  SELECT observation_id, {" + ".join(terms)} AS score FROM {name}_nth
  WHERE nth <= {ranking.EVIDENCE_PASSAGES} GROUP BY observation_id
)"""


def _ranking_sql(
    score: str,
    lookups: str,
    matches: str,
    param: Callable[[str], str],
    byte_order: str,
    columns: str,
    *,
    tail: str | None = None,
    kinded: bool = False,
) -> str:
    """From ``cand`` (candidate passages with their frequencies ``f0 …``) and ``w`` (idf
    and average length) to the result rows; the same SQL on both backends.

    Every candidate is scored once (``scored`` is materialised: its expression names each
    frequency several times). Observations score as :func:`ranking.observation_score`
    does; they are read for the tie order only where the score reaches the ``limit``-th
    best. The evidence is every passage of the returned observations that ``matches`` the
    query."""
    # With a kind, observations of other kinds leave the ranking (scores and statistics
    # stay the project's); the top is cut from those left.
    kept = (
        f", kept AS (SELECT b.* FROM best b JOIN observations o ON o.id = b.observation_id "
        f"WHERE o.kind = {param('kind')})"
        if kinded
        else ""
    )
    ranked = "kept" if kinded else "best"
    return f"""scored AS MATERIALIZED ({_scored("cand", score)}
), {_best_sql("scored", "best")}{kept}, cut AS (
  SELECT score FROM {ranked} ORDER BY score DESC LIMIT 1 OFFSET {param("cut")}
), top AS (
  SELECT b.observation_id, b.score, o.updated_at FROM {ranked} b
  JOIN observations o ON o.id = b.observation_id
  WHERE b.score >= coalesce((SELECT score FROM cut), 0)
  ORDER BY b.score DESC, o.updated_at DESC, o.id{byte_order} LIMIT {param("limit")}
), top_passages AS MATERIALIZED (
  SELECT p.id, p.observation_id, p.origin, p.length, p.weight, {lookups}
  FROM search_passages p JOIN top ON top.observation_id = p.observation_id WHERE {matches}
), evidence AS (
  SELECT s.observation_id, s.id, s.score,
         row_number() OVER (PARTITION BY s.observation_id ORDER BY s.score DESC, s.id) AS nth
  FROM ({_scored("top_passages", score)}) AS s
)
{_result_sql(param, byte_order, columns) if tail is None else tail}"""


_RESULT_ORDER = "top.score DESC, o.updated_at DESC, o.id{byte_order}, e.nth"


def _result_sql(
    param: Callable[[str], str], byte_order: str, columns: str, *, numbered: bool = False
) -> str:
    """The result rows: each hit's observation once per evidence passage, in rank order
    (or numbered ``rn`` in that order, for a statement that goes on after them)."""
    order = _RESULT_ORDER.format(byte_order=byte_order)
    head = f"row_number() OVER (ORDER BY {order}) AS rn, " if numbered else ""
    return f"""SELECT {head}top.score, e.score AS passage_score, p.text AS evidence,
       p.event_id AS evidence_event_id, {columns}
FROM top JOIN evidence e ON e.observation_id = top.observation_id AND e.nth <= {param("evidence")}
JOIN search_passages p ON p.id = e.id JOIN observations o ON o.id = top.observation_id
{"" if numbered else f"ORDER BY {order}"}"""


_COLUMNS = ", ".join(f'o."{name}"' for name in _OBSERVATION_COLUMNS)
# PostgreSQL: JSON columns as text, decoded by _pg_found (the usual empty values without
# the parser): cheaper than psycopg's decoding of every jsonb value.
_JSON_COLUMNS = frozenset(c.name for c in t.observations.columns if isinstance(c.type, sa.JSON))
_PG_COLUMNS = ", ".join(
    f'o."{name}"::text AS "{name}"' if name in _JSON_COLUMNS else f'o."{name}"'
    for name in _OBSERVATION_COLUMNS
)


Found = list[tuple[Mapping[str, Any], float, list[Evidence]]]

_PG_NAMES = ("score", "passage_score", "evidence", "evidence_event_id", *_OBSERVATION_COLUMNS)
_PG_JSON_AT = tuple(n for n, name in enumerate(_PG_NAMES) if name in _JSON_COLUMNS)
_PG_ID_AT = _PG_NAMES.index("id")


def _pg_found(raw: Sequence[Sequence[Any]]) -> Found:
    """The result rows (in :data:`_PG_NAMES` order) as hits: one per observation, its
    evidence passages from its consecutive rows. Runs per row of every search, so the
    observation's columns are named and decoded once per hit, not once per passage."""
    found: Found = []
    last: Any = None
    for values in raw:
        evidence = Evidence(text=values[2], event_id=values[3], score=float(values[1]))
        if found and values[_PG_ID_AT] == last:
            found[-1][2].append(evidence)
            continue
        last = values[_PG_ID_AT]
        decoded = list(values)
        for n in _PG_JSON_AT:  # a fresh empty value each: callers may mutate them
            text = decoded[n]
            if text is not None:
                decoded[n] = [] if text == "[]" else {} if text == "{}" else json.loads(text)
        found.append((dict(zip(_PG_NAMES, decoded, strict=True)), float(values[0]), [evidence]))
    return found


# Above this many query terms the pairs of terms are not enumerated (no pruning).
MAX_PRUNED_TERMS = 8


def pruned(terms: Shape) -> bool:
    return 1 <= len(terms) <= MAX_PRUNED_TERMS


def _pg_term_tsqueries(quoted: list[str], terms: Shape) -> list[str]:
    """Each query term's own tsquery: the term, or all of its parts."""
    return [_match_expression(quoted, (term,), "|", "&") for term in terms]


def _pg_high_tsqueries(quoted: list[str], terms: Shape) -> list[str]:
    """Per query term: passages holding one of its strings among their high-impact
    terms."""
    return [" | ".join(quoted[i] for i in (w, *ps)) for w, ps in terms]


def _pg_tsquery_all(quoted: list[str], terms: Shape) -> str:
    """Passages matching every query term."""
    return " & ".join(f"({q})" for q in _pg_term_tsqueries(quoted, terms))


def _pg_pairs_tsquery(quoted: list[str], terms: Shape) -> str:
    """Passages matching at least two query terms."""
    each = [f"({q})" for q in _pg_term_tsqueries(quoted, terms)]
    return " | ".join(f"({a} & {b})" for n, a in enumerate(each) for b in each[n + 1 :])


@lru_cache(maxsize=MAX_CACHED_SHAPES)
def _pg_tsquery_templates(count: int, terms: Shape) -> tuple[tuple[str, str], ...]:
    """The tsquery parameters of a shape's statement, each as a ``str.format`` template
    over the quoted strings (``{0}`` …): the structure is the shape's, built once; a query
    only fills in its lexemes (the templates hold no other braces)."""
    slots = [f"{{{i}}}" for i in range(count)]
    names = [("tsquery", _match_expression(slots, terms, "|", "&"))]
    if pruned(terms):
        names += [
            ("pairs", _pg_pairs_tsquery(slots, terms)),
            ("every", _pg_tsquery_all(slots, terms)),
            ("high", " | ".join(slots)),
            *((f"h{j}", q) for j, q in enumerate(_pg_high_tsqueries(slots, terms))),
            *((f"q{j}", q) for j, q in enumerate(_pg_term_tsqueries(slots, terms))),
        ]
    return tuple(names)


# The audit row of the read, written by the search's own statement: its details gain the
# result count and ids in rank order; nothing is written when the caller's key no longer
# works (``audited`` is then 0 and the read is refused). One row always comes back, so
# that ``audited`` is seen when nothing matched.
def pg_audit_insert(details: str, when: str = "true") -> str:
    """The read's audit row, inserted by a search statement (psycopg parameters: the
    values of ``_audit_values``, ``id`` as ``audit_id``): ``details`` is its SQL; nothing
    is inserted unless ``when`` holds and the caller's key still works."""
    return f"""INSERT INTO audit_log (id, team_id, project_id, actor_id, api_key_id, action,
    resource_type, resource_id, details, created_at)
  SELECT %(audit_id)s, %(team_id)s, %(project_id)s, %(actor_id)s, %(api_key_id)s::text,
    %(action)s, %(resource_type)s, %(resource_id)s, {details}, %(created_at)s::timestamptz
  WHERE ({when}) AND (%(api_key_id)s::text IS NULL OR EXISTS (SELECT 1 FROM api_keys AS k
    WHERE k.id = %(api_key_id)s::text AND k.revoked_at IS NULL
    AND (k.expires_at IS NULL OR k.expires_at > now())))
  RETURNING 1"""


_PG_AUDIT_DETAILS = """%(details)s::jsonb || jsonb_build_object(
      'resultCount', (SELECT count(*) FROM top), 'observationIds', coalesce((SELECT
      jsonb_agg(observation_id ORDER BY score DESC, updated_at DESC, observation_id COLLATE "C")
      FROM top), '[]'::jsonb))"""

_PG_AUDITED_TAIL = f""", res AS ({
    _result_sql(lambda n: f"%({n})s", ' COLLATE "C"', _PG_COLUMNS, numbered=True)
}), aud AS (
  {pg_audit_insert(_PG_AUDIT_DETAILS)}
)
SELECT (SELECT count(*) FROM aud) AS audited, res.* FROM (SELECT 1) AS one
LEFT JOIN res ON true ORDER BY res.rn"""


@lru_cache(maxsize=MAX_CACHED_SHAPES)
def _pg_search_sql(count: int, terms: Shape, audited: bool = False, kinded: bool = False) -> str:
    """PostgreSQL: one statement. Exact, and bounded where query terms are common.

    With one to :data:`MAX_PRUNED_TERMS` query terms, a few passages are scored first
    (``a``): those holding one of the query's strings among their high-impact terms
    (``terms_hi``: its factor reaches ``ranking.HIGH_IMPACT``; a GIN index of its own), and
    with two or more terms those matching at least two of them. ``θ`` is the ``limit``-th
    best observation score among them (a lower bound of the true one: more passages only
    raise a score). A passage outside ``a`` matches a single query term and holds none of
    its strings as high-impact, so it scores at most that term's bound: the smaller of its
    strings' idf times ``HIGH_IMPACT`` and their idf times the factor of their largest
    frequency at the project's shortest length (``passage_writes.statistics``); an
    observation scores at most ``1 + SUPPORT_WEIGHT * (n - 1)`` times its best passage,
    ``n`` the most passages one observation of the project has, at most ``EVIDENCE_PASSAGES``
    (``support`` below). So an observation whose passages outside ``a`` all
    match terms whose bound times that factor is below ``θ`` cannot reach the top, and
    those terms' other passages are not read (a term-at-a-time MaxScore): a common word
    alone reads its high-impact passages, not every passage holding it. Where a term was
    skipped and an observation may have several passages, every observation that was read
    is completed with all its matching passages (through its own index), so the ranking is
    exact; every observation returned has its matching passages as evidence. A passage's
    weight (at most 1: ``ranking.SUPERSEDED_WEIGHT``) is in every score, θ's included, and
    only lowers it, so the unweighted bounds still hold.
    """
    lookups = ", ".join(f"(p.tf ->> %(s{i})s)::float8 AS f{i}" for i in range(count))
    joins = " ".join(f"LEFT JOIN d AS d{i} ON d{i}.term = %(s{i})s" for i in range(count))
    idfs = ", ".join(
        f"ln(1.0 + (st.n - coalesce(d{i}.df, 0) + 0.5) / (coalesce(d{i}.df, 0) + 0.5)) AS idf{i}, "
        f"coalesce(d{i}.max_tf, 0) AS mx{i}"
        for i in range(count)
    )
    k1, b = repr(ranking.K1), repr(ranking.B)
    bounds = ", ".join(
        f"idf{i} * mx{i} * {ranking.K1 + 1.0!r} / "
        f"greatest(mx{i} + {k1} * (1.0 - {b} + {b} * minlen / {ranking.PIVOT_LENGTH!r}), 1e-9) "
        f"AS ub{i}"
        for i in range(count)
    )

    # A passage outside ``a`` matches one query term at most and holds none of the query's
    # strings among its high-impact terms: each string it counts adds less than its idf
    # times HIGH_IMPACT. Both bounds hold; the smaller is kept.
    def term_bound(j: int, whole: int, parts: tuple[int, ...]) -> str:
        own = list(dict.fromkeys((whole, *parts)))
        factor = " + ".join(f"ub{i}" for i in own)
        high = f"{ranking.HIGH_IMPACT!r} * (" + " + ".join(f"idf{i}" for i in own) + ")"
        return f"{factor} AS ubq{j}, least({factor}, {high}) AS ubl{j}"

    term_bounds = ", ".join(term_bound(j, w, ps) for j, (w, ps) in enumerate(terms))
    # A passage outside ``a`` that matches two or more terms (with three or more, ``a``
    # holds those matching every term, and those with a high-impact query string) matches
    # all terms but one at most, and each string it counts adds less than its idf times
    # HIGH_IMPACT; nor can it score more than every term's bound together.
    if len(terms) > 2:
        sums = [
            "(" + " + ".join(f"idf{i}" for i in dict.fromkeys((w, *ps))) + ")" for w, ps in terms
        ]
        but_one = f"{' + '.join(sums)} - least({', '.join(sums)})"
        every = " + ".join(" + ".join(f"ub{i}" for i in dict.fromkeys((w, *ps))) for w, ps in terms)
        term_bounds += f", least({ranking.HIGH_IMPACT!r} * ({but_one}), {every}) AS ubp"
    score = _score_sql(terms, count, "w.idf{i}")
    scope = "p.team_id = %(team_id)s AND p.project_id = %(project_id)s"
    matches = f"{scope} AND p.terms @@ %(tsquery)s::tsquery"
    select = (
        f"SELECT p.id, p.observation_id, p.origin, p.length, p.weight, {lookups} "
        "FROM search_passages p"
    )
    ranked = _ranking_sql(
        score,
        lookups,
        matches,
        lambda n: f"%({n})s",
        ' COLLATE "C"',
        _PG_COLUMNS,
        tail=_PG_AUDITED_TAIL if audited else None,
        kinded=kinded,
    )
    # The bounds compare with the limit-th score of every kind: with a kind asked for,
    # every match is scored.
    if pruned(terms) and not kinded:

        def reachable(bound: str) -> str:
            return f"(SELECT t FROM theta) <= (SELECT (1.0 + support) * {bound} FROM w)"

        # Per term: its passages holding one of its strings as high-impact (bound ubq),
        # then all of them (bound ubl, which only holds for the others). With one term,
        # ``a`` holds the former already.
        branches = " UNION ".join(
            (
                f"{select} WHERE {scope} AND p.terms_hi @@ %(h{j})s::tsquery "
                f"AND {reachable(f'ubq{j}')} UNION "
                if len(terms) > 1
                else ""
            )
            + f"{select} WHERE {scope} AND p.terms @@ %(q{j})s::tsquery AND {reachable(f'ubl{j}')}"
            for j in range(len(terms))
        )
        skipped = (
            "(SELECT support FROM w) > 0 AND ("
            + " OR ".join(f"NOT {reachable(f'ubl{j}')}" for j in range(len(terms)))
            + ")"
        )
        if len(terms) > 2:
            # Passages matching every term, and those matching two with a high-impact
            # string: few, and the best; the other pairs are a branch of their own.
            first = (
                "(p.terms @@ %(pairs)s::tsquery AND p.terms_hi @@ %(high)s::tsquery) "
                "OR p.terms @@ %(every)s::tsquery"
            )
            branches += (
                f" UNION {select} WHERE {scope} AND p.terms @@ %(pairs)s::tsquery "
                f"AND {reachable('ubp')}"
            )
            skipped = skipped[:-1] + f" OR NOT {reachable('ubp')})"
        else:
            first = (
                "p.terms @@ %(pairs)s::tsquery"
                if len(terms) > 1
                else "p.terms_hi @@ %(h0)s::tsquery"
            )
        # When a term was skipped and observations have several passages, every matching
        # passage of a candidate observation, the skipped ones included, so that its score
        # (which counts its next best passages) is exact; read through the observation's
        # index, not the term index the pruning kept away from. Otherwise the candidates
        # are complete already.
        completed = (
            f"SELECT * FROM cand0 WHERE NOT ({skipped}) UNION ALL "
            f"SELECT x.* FROM (SELECT DISTINCT observation_id FROM cand0 WHERE {skipped}) AS c "
            f"CROSS JOIN LATERAL ({select} WHERE p.observation_id = c.observation_id "
            f"AND {matches}) AS x"
        )
        candidates = f"""a AS MATERIALIZED (
  {select} WHERE {scope} AND ({first})
), a_scored AS ({_scored("a", score)}), {_best_sql("a_scored", "a_best")}, theta AS (
  SELECT coalesce(
    (SELECT score FROM a_best ORDER BY score DESC LIMIT 1 OFFSET %(cut)s), 0.0) AS t
), cand0 AS MATERIALIZED (SELECT * FROM a UNION {branches}
), cand AS MATERIALIZED ({completed})"""
    else:
        candidates = f"cand AS MATERIALIZED ({select} WHERE {matches})"
    # The strings as a list of the parameters ``s0 …`` (not an array: psycopg adapts a list
    # parameter anew on every execution).
    strings = ", ".join(f"%(s{i})s" for i in range(count))
    return f"""
WITH st AS (
  SELECT coalesce(sum(passages), 0)::float8 AS n, coalesce(sum(tokens), 0)::float8 AS tokens,
         coalesce(min(min_length), 0)::float8 AS minlen,
         {ranking.SUPPORT_WEIGHT!r} * (least(coalesce(max(max_passages), 1),
           {ranking.EVIDENCE_PASSAGES}) - 1) AS support
  FROM search_stats WHERE team_id = %(team_id)s AND project_id = %(project_id)s
), d AS (
  SELECT term, sum(df)::float8 AS df, max(max_tf) AS max_tf FROM search_terms
  WHERE team_id = %(team_id)s AND project_id = %(project_id)s AND term IN ({strings})
  GROUP BY term
), w0 AS (
  SELECT st.minlen, st.support,
         {idfs}
  FROM st {joins}
), wb AS (SELECT *, {bounds} FROM w0
), w AS (SELECT *, {term_bounds} FROM wb
), {candidates}, {ranked}"""


@lru_cache(maxsize=MAX_CACHED_SHAPES)
def _sqlite_search_sql(count: int, terms: Shape, kinded: bool = False) -> sa.TextualSelect:
    """SQLite: every matching passage is scored (embedded projects are small)."""
    lookups = ", ".join(f"json_extract(p.tf, :path{i}) AS f{i}" for i in range(count))
    score = _score_sql(terms, count, ":idf{i}")
    matches = (
        "p.id IN (SELECT rowid FROM search_fts WHERE search_fts MATCH :match) "
        "AND p.team_id = :team_id AND p.project_id = :project_id"
    )
    ranked = _ranking_sql(
        score, lookups, matches, lambda name: f":{name}", "", _COLUMNS, kinded=kinded
    )
    return sa.text(f"""
WITH w AS (SELECT 1 AS scored_once), cand AS MATERIALIZED (
  SELECT p.id, p.observation_id, p.origin, p.length, p.weight, {lookups}
  FROM search_passages p WHERE {matches}
), {ranked}""").columns(
        sa.column("score", sa.Float),
        sa.column("passage_score", sa.Float),
        sa.column("evidence", sa.Text),
        sa.column("evidence_event_id", sa.Text),
        *(sa.column(c.name, c.type) for c in t.observations.columns),
    )


_SQLITE_STATISTICS = sa.text(
    "SELECT coalesce(sum(passages), 0) FROM search_stats "
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
    conn: AsyncConnection,
    team_id: str,
    project_id: str,
    query: Query,
    limit: int,
    *,
    audit: Mapping[str, Any] | None = None,
    kind: str | None = None,
) -> tuple[Found, bool | None]:
    """The best ``limit`` observations as (row, score, its best passages, best first).

    With ``audit`` (the values of an audit row, ``id`` as ``audit_id``, ``details`` as
    ``Jsonb``) PostgreSQL writes the read's audit row in the search's own statement (see
    ``_PG_AUDITED_TAIL``); the second value then says whether it was written (False: the
    key no longer works). It is None where the row was not written here: the caller
    writes it."""
    strings, terms = _shape(query)
    if not strings or limit <= 0:
        return [], None
    scope = {"team_id": team_id, "project_id": project_id}
    audited: bool | None = None
    postgres = conn.dialect.name == dialects.POSTGRES
    try:
        if postgres:
            if "\x00" in team_id or "\x00" in project_id:
                return [], None  # no stored id holds NUL (the driver refuses such a parameter)
            quoted = [_lexeme(s) for s in strings]
            params: dict[str, Any] = {
                n: template.format(*quoted)
                for n, template in _pg_tsquery_templates(len(strings), terms)
            }
            params.update(scope)
            params["limit"] = limit
            params["cut"] = limit - 1
            params["evidence"] = ranking.EVIDENCE_PASSAGES
            for i, s in enumerate(strings):
                params[f"s{i}"] = s
            sql = _pg_search_sql(len(strings), terms, audit is not None, kind is not None)
            if kind is not None:
                params["kind"] = kind
            if audit is not None:
                params.update(audit)
            raw = await driver_sql(conn, sql, params)
            if audit is not None:
                audited = bool(raw[0][0])
                raw = [values[2:] for values in raw if values[1] is not None]
        else:
            n = (await conn.execute(_SQLITE_STATISTICS, scope)).scalar_one()
            if not n:
                return [], None
            lookup = {**scope, **{f"s{i}": s for i, s in enumerate(strings)}}
            result = await conn.execute(_sqlite_frequencies(len(strings)), lookup)
            df: dict[str, int] = {str(term): int(n) for term, n in result.all()}
            params = {
                **scope,
                "match": _fts5_query(strings, terms),
                "limit": limit,
                "cut": limit - 1,
                "evidence": ranking.EVIDENCE_PASSAGES,
                **{f"path{i}": _json_path(s) for i, s in enumerate(strings)},
                **{f"idf{i}": ranking.idf(n, df.get(s, 0)) for i, s in enumerate(strings)},
            }
            if kind is not None:
                params["kind"] = kind
            statement = _sqlite_search_sql(len(strings), terms, kind is not None)
            ranked = await conn.execute(statement, params)
            rows = [dict(r) for r in ranked.mappings()]
    except (exc.SQLAlchemyError, OSError) as e:
        raise dialects.translate_error(e, not_found="project_id must belong to team_id") from e
    if postgres:
        return _pg_found(raw), audited
    found: Found = []
    for r in rows:
        evidence = Evidence(
            text=r["evidence"], event_id=r["evidence_event_id"], score=float(r["passage_score"])
        )
        if found and found[-1][0]["id"] == r["id"]:
            found[-1][2].append(evidence)
        else:
            found.append((r, float(r["score"]), [evidence]))
    return found, audited
