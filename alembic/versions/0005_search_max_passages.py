"""search_stats.max_passages: the most passages one observation of a project has.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

An observation now scores its best passage plus a share of its next best
(``ranking.observation_score``), so PostgreSQL's pruning needs to know how much those can
add: at most ``SUPPORT_WEIGHT`` times each of the next ``EVIDENCE_PASSAGES - 1``, and only
where an observation has that many passages (a project of hand-written memories has one per
observation, and prunes as before). Existing projects get their count from their passages.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL = """
UPDATE search_stats SET max_passages = coalesce((
  SELECT max(n) FROM (
    SELECT count(*) AS n FROM search_passages p
    WHERE p.team_id = search_stats.team_id AND p.project_id = search_stats.project_id
    GROUP BY p.observation_id
  ) AS counts
), 1)
"""


def upgrade() -> None:
    with op.batch_alter_table("search_stats") as batch:
        batch.add_column(
            sa.Column("max_passages", sa.BigInteger(), nullable=False, server_default=sa.text("1"))
        )
    op.execute(_BACKFILL)


def downgrade() -> None:
    with op.batch_alter_table("search_stats") as batch:
        batch.drop_column("max_passages")
