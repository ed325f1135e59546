"""Observations of any kind: the check of the three known kinds goes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08

A memory's ``kind`` is any short label its writer chooses (``decision``, ``note``…; the
service checks its length and characters), not only ``observation``, ``summary`` or
``manual``.

PostgreSQL drops the constraint ``ck_observations_kind``. SQLite cannot drop a constraint
in place, and copying the table (alembic's batch mode) is not safe here: dropping the old
table deletes, through ``ON DELETE CASCADE``, the rows of ``observation_sources`` and
``search_passages`` that reference it (``PRAGMA foreign_keys`` cannot be turned off inside
the migration's transaction). Removing a CHECK constraint changes nothing stored, so
SQLite's own procedure for such changes is used instead: the table's definition in the
schema is rewritten without the constraint and the schema version bumped, in the same
transaction.

The downgrade restores the check; kinds other than the three become ``manual`` first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINT = "ck_observations_kind"
KNOWN_KINDS = "kind IN ('observation', 'summary', 'manual')"
_SQLITE_CHECK = re.compile(
    r",\s*CONSTRAINT " + CONSTRAINT + r" CHECK \(kind IN \('observation', 'summary', 'manual'\)\)"
)


def _sqlite_table_sql(conn: sa.Connection) -> str:
    sql = conn.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'observations'")
    ).scalar_one()
    return str(sql)


def _sqlite_rewrite(conn: sa.Connection, sql: str) -> None:
    """Replace the table's definition (nothing stored changes), as SQLite documents for
    removing or adding CHECK constraints."""
    version = int(conn.exec_driver_sql("PRAGMA schema_version").scalar_one())
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        conn.execute(
            sa.text(
                "UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'observations'"
            ),
            {"sql": sql},
        )
        conn.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    finally:
        conn.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        op.execute(f"ALTER TABLE observations DROP CONSTRAINT IF EXISTS {CONSTRAINT}")
        return
    old = _sqlite_table_sql(conn)
    new = _SQLITE_CHECK.sub("", old, count=1)
    if new != old:
        _sqlite_rewrite(conn, new)


def downgrade() -> None:
    conn = op.get_bind()
    op.execute(f"UPDATE observations SET kind = 'manual' WHERE NOT ({KNOWN_KINDS})")
    if conn.dialect.name != "sqlite":
        op.execute(f"ALTER TABLE observations ADD CONSTRAINT {CONSTRAINT} CHECK ({KNOWN_KINDS})")
        return
    old = _sqlite_table_sql(conn)
    if CONSTRAINT in old:
        return
    marker = ", \n\tCONSTRAINT pk_observations PRIMARY KEY (id)"
    if marker not in old:  # pragma: no cover - a definition this history did not write
        raise RuntimeError("observations: unexpected table definition; cannot restore the check")
    _sqlite_rewrite(
        conn, old.replace(marker, f"{marker}, \n\tCONSTRAINT {CONSTRAINT} CHECK ({KNOWN_KINDS})", 1)
    )
