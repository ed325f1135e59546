"""Duplicate observations stored once, and superseded ones marked.

Revision ID: 0016
Revises: 0015
Create Date: 2027-01-13

``observations`` gains:

* ``fingerprint``: the hash of a generated observation's normalised meaning
  (``domain/fingerprint.py``), unique per team and project where set, so two workers
  writing the same fact at once end with one row (the loser links its event to the
  winner's). Rows stored before this revision keep NULL: they never deduplicate, and
  nothing is rewritten under a running server. Memories and summaries have none either.
* ``occurrences``: how many times the fact was generated (1 for every existing row).
* ``superseded_by`` / ``superseded_at``: the newer observation that replaced this one,
  and when. History stays readable; search ranks superseded rows lower.

Downgrading drops the four columns and the index.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the type in tables.py: a migration must not change when app code does.
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("observations", sa.Column("fingerprint", sa.Text(), nullable=True))
    op.add_column(
        "observations",
        sa.Column("occurrences", sa.Integer(), nullable=False, server_default=sa.text("1")),
    )
    op.add_column("observations", sa.Column("superseded_by", sa.Text(), nullable=True))
    op.add_column("observations", sa.Column("superseded_at", TIMESTAMP, nullable=True))
    op.create_index(
        "idx_observations_fingerprint_scope",
        "observations",
        ["team_id", "project_id", "fingerprint"],
        unique=True,
        postgresql_where=sa.text("fingerprint IS NOT NULL"),
        sqlite_where=sa.text("fingerprint IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("idx_observations_fingerprint_scope", table_name="observations")
    for column in ("superseded_at", "superseded_by", "occurrences", "fingerprint"):
        op.drop_column("observations", column)
