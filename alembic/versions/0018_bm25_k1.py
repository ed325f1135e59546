"""BM25's k1 goes from 1.2 to 2.0: PostgreSQL's high-impact terms are computed again.

Revision ID: 0018
Revises: 0017
Create Date: 2027-01-15

A term's factor in a passage depends on k1 (``ranking.term_factor``), and PostgreSQL keeps
the terms whose factor reaches ``ranking.HIGH_IMPACT`` in ``search_passages.terms_hi``,
which its search prunes by (a passage whose terms are not there is bounded as if none
were high-impact). Those sets were computed with k1 1.2; with 2.0 a term said twice in a
passage of the pivot length reaches the threshold. Every passage's set is computed again
from its frequencies and length, with the constants frozen here, in float8 as the writer
computes them. SQLite keeps no such column. Downgrading computes them with k1 1.2.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _recompute(k1: float) -> str:
    """ranking.term_factor(f, length) >= 1.5 with b 0.75 and pivot 150, as at this revision."""
    return f"""
UPDATE search_passages SET terms_hi = array_to_tsvector(ARRAY(
  SELECT t.key FROM jsonb_each_text(tf::jsonb) AS t
  WHERE t.value::float8 * {k1 + 1.0!r}::float8
        / (t.value::float8 + {k1!r}::float8
           * (1.0::float8 - 0.75::float8 + 0.75::float8 * length::float8 / 150.0::float8))
        >= 1.5::float8
))
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_recompute(2.0))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_recompute(1.2))
