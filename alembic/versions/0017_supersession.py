"""Supersession: the subject of an observation, and a ranking weight per passage.

Revision ID: 0017
Revises: 0016
Create Date: 2027-01-14

* ``observations.subject``: the key of what a generated observation that modified files is
  about (``domain/supersession.py``); a newer observation of the same subject supersedes
  the older ones (``superseded_by`` / ``superseded_at``, revision 0016). Indexed per team
  and project where set, so finding a subject's current observation is one lookup. Rows
  stored before this revision keep NULL: they are never superseded (nothing is rewritten
  under a running server).
* ``search_passages.weight``: multiplied into the passage's score (1 for every existing
  passage; ``ranking.SUPERSEDED_WEIGHT`` for a superseded observation's).

Downgrading drops both columns and the index.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("observations", sa.Column("subject", sa.Text(), nullable=True))
    op.create_index(
        "idx_observations_subject_scope",
        "observations",
        ["team_id", "project_id", "subject"],
        postgresql_where=sa.text("subject IS NOT NULL"),
        sqlite_where=sa.text("subject IS NOT NULL"),
    )
    op.add_column(
        "search_passages",
        sa.Column("weight", sa.Float(), nullable=False, server_default=sa.text("1.0")),
    )


def downgrade() -> None:
    op.drop_column("search_passages", "weight")
    op.drop_index("idx_observations_subject_scope", table_name="observations")
    op.drop_column("observations", "subject")
