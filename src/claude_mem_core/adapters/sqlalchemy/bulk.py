"""PostgreSQL's many-rows-in-one-parameter inserts: the rows go as one JSON array
(``json_to_recordset``), so a statement has one fixed text whatever the row count and is
converted and prepared once. :class:`_Bulk` keeps one table's statement per column list,
``BULK_*`` are the tables written this way, ``_rows_json`` encodes rows (timestamps as the
column type stores them) and ``_pg_recordset`` is the ``FROM`` source the one-statement
writes read their rows from."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from claude_mem_core.adapters.sqlalchemy import tables as t

_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def _pg_rows_insert(
    table: sa.Table,
    names: Sequence[str],
    *,
    conflict: str = "",
    computed: Mapping[str, str] | None = None,
) -> sa.TextClause:
    """PostgreSQL: insert many rows from ONE parameter, a JSON array of row objects.

    ``INSERT … SELECT … FROM json_to_recordset(:rows)`` has one fixed text whatever the
    row count, so psycopg converts it once and the server prepares it once; a multi-row
    ``VALUES`` has a new text (and 10-20 parameters per row, each parsed and adapted on
    the client) for every batch size. Rows go in in array order (``computed`` columns are
    SQL expressions over the row ``r``), and ``RETURNING id`` names the rows inserted.
    """
    columns = {c.key: c for c in table.columns}
    quote = _PG_DIALECT.identifier_preparer.quote
    extra = dict(computed or {})
    definitions = ", ".join(f"{quote(n)} {columns[n].type.compile(_PG_DIALECT)}" for n in names)
    targets = ", ".join(quote(n) for n in [*names, *extra])
    values = ", ".join([*(f"r.{quote(n)}" for n in names), *extra.values()])
    return sa.text(
        f"INSERT INTO {quote(table.name)} ({targets}) SELECT {values} "
        f"FROM ROWS FROM (json_to_recordset(CAST(:rows AS json)) AS ({definitions})) "
        f"WITH ORDINALITY AS r({', '.join(quote(n) for n in names)}, ord) "
        f"ORDER BY r.ord {conflict} RETURNING id"
    )


def _json_default(value: object) -> str:
    if isinstance(value, datetime):  # as UTCDateTime stores it
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _rows_json(rows: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(rows, default=_json_default, separators=(",", ":"))


def _params_json(rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, str]:
    return {param: _rows_json(values) for param, values in rows.items()}


@attrs.frozen
class _Bulk:
    """How to insert many rows of one table on PostgreSQL (see :func:`_pg_rows_insert`);
    the statement is built from the first row's keys and kept."""

    table: sa.Table
    conflict: str = ""
    computed: Mapping[str, str] = attrs.field(factory=dict)
    statements: dict[tuple[str, ...], sa.TextClause] = attrs.field(factory=dict, eq=False)

    def statement(self, names: Sequence[str]) -> sa.TextClause:
        key = tuple(n for n in names if n in self.table.c)
        stmt = self.statements.get(key)
        if stmt is None:
            stmt = self.statements[key] = _pg_rows_insert(
                self.table, key, conflict=self.conflict, computed=self.computed
            )
        return stmt


_JE = t.observation_generation_job_events.name
BULK_EVENTS = _Bulk(t.agent_events, "ON CONFLICT (idempotency_key) DO NOTHING")
BULK_JOBS = _Bulk(t.observation_generation_jobs, "ON CONFLICT DO NOTHING")
BULK_JOB_EVENTS = _Bulk(
    t.observation_generation_job_events,
    "ON CONFLICT (generation_job_id, seq) DO NOTHING",
    # In one statement every new event of a job gets the same seq: all but the first are
    # left out by the conflict and inserted again (JobEventRepo.add_many).
    {
        "seq": f"(SELECT coalesce(max(s.seq), 0) + 1 FROM {_JE} AS s"
        " WHERE s.generation_job_id = r.generation_job_id)"
    },
)
# Either unique key (generation key, fingerprint) taken: the caller reads the stored row.
BULK_OBSERVATIONS = _Bulk(t.observations, "ON CONFLICT DO NOTHING")
BULK_SOURCES = _Bulk(
    t.observation_sources, "ON CONFLICT (observation_id, source_type, source_id) DO NOTHING"
)
BULK_AUDIT = _Bulk(t.audit_log)


def _pg_recordset(table: sa.Table, names: Sequence[str], param: str, link: str = "") -> str:
    """``FROM`` source of rows given as one JSON array parameter (see :func:`_pg_rows_insert`);
    ``link`` names an extra text field the rows carry without inserting it."""
    columns = {c.key: c for c in table.columns}
    quote = _PG_DIALECT.identifier_preparer.quote
    fields = [f"{quote(n)} {columns[n].type.compile(_PG_DIALECT)}" for n in names]
    aliases = [quote(n) for n in names]
    if link:
        fields.append(f"{link} text")
        aliases.append(link)
    return (
        f"ROWS FROM (json_to_recordset(CAST(:{param} AS json)) AS ({', '.join(fields)})) "
        f"WITH ORDINALITY AS r({', '.join(aliases)}, ord)"
    )
