"""search_passages.terms_hi: each passage's high-impact terms, indexed (PostgreSQL).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Lengths are now normalised against a fixed pivot (``ranking.PIVOT_LENGTH``), so a term's
factor in a passage is fixed when the passage is written. The terms whose factor reaches
``ranking.HIGH_IMPACT`` get their own GIN index on PostgreSQL: a query first reads the
passages where one of its words is high-impact (few), and reads every match only when
those cannot settle the top (see ``_pg_search_sql``). SQLite scores every match and keeps
the column empty. Existing passages are filled in from their frequencies and length.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "idx_search_passages_terms_hi"
# ranking.term_factor(f, length) >= ranking.HIGH_IMPACT, with the model's constants as they
# were at this revision (K1 1.2, B 0.75, pivot 150, threshold 1.5).
_BACKFILL = """
UPDATE search_passages SET terms_hi = array_to_tsvector(ARRAY(
  SELECT t.key FROM jsonb_each_text(tf) AS t
  WHERE t.value::float8 * 2.2 / (t.value::float8 + 1.2 * (1.0 - 0.75 + 0.75 * length / 150.0))
        >= 1.5
))
"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    column_type = postgresql.TSVECTOR() if postgres else sa.Text()
    # A plain ADD COLUMN on both (batch mode's copy of the table would drop SQLite's FTS
    # triggers on it).
    op.add_column("search_passages", sa.Column("terms_hi", column_type, nullable=True))
    if postgres:
        op.execute(_BACKFILL)
        op.create_index(INDEX, "search_passages", ["terms_hi"], postgresql_using="gin")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(INDEX, table_name="search_passages")
    # SQLite 3.35+ drops a column in place, triggers kept.
    op.execute("ALTER TABLE search_passages DROP COLUMN terms_hi")
