"""A row per budget reservation, so a dead worker's reservation is given back.

Revision ID: 0020
Revises: 0019
Create Date: 2027-01-23

* ``budget_reservations``: what each paid call in flight reserved on its project's
  period counters (``budget_periods``), keyed by the job whose call it is. Settling or
  releasing a call deletes its row and gives back only what the deleted row held, so a
  second release changes nothing; when a job's lease expires (its worker died mid-call)
  the row is deleted and its reservation given back.

Numbers and ids only, no content. Reservations already counted when upgrading have no
row: they stay counted until their call settles or the period ends, as before.
Downgrading drops the table (the counters keep what is reserved at that moment).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the type in tables.py: a migration must not change when app code does.
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "budget_reservations",
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("period_start", TIMESTAMP, nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("usd", sa.Float(), nullable=False),
        sa.Column("reserved_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id", "team_id"],
            ["projects.id", "projects.team_id"],
            name="fk_budget_reservations_project_scope",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_budget_reservations")),
    )


def downgrade() -> None:
    op.drop_table("budget_reservations")
