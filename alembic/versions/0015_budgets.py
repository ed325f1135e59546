"""Per-project budgets and a shared provider pause.

Revision ID: 0015
Revises: 0014
Create Date: 2027-01-13

* ``project_budgets``: a project's budget (``services/budgets.py``): a limit in tokens
  (input + output) and/or in estimated US dollars, per UTC ``day`` or ``month``.
* ``budget_periods``: one counter row per project and period: what was spent (settled
  calls), what is reserved by calls in flight, and how many calls were settled. Workers
  reserve an estimate with one guarded UPDATE before calling the provider, so every
  worker sees the same remainder.
* ``provider_pauses``: until when a provider asked every caller to wait (a 429 with
  ``retry-after``), shared by all workers.

Numbers only, no content. Downgrading drops the three tables: budgets are forgotten and
held jobs are called at their next attempt.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the type in tables.py: a migration must not change when app code does.
TIMESTAMP = sa.DateTime(timezone=True)


def _project_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["project_id", "team_id"],
        ["projects.id", "projects.team_id"],
        name=f"fk_{table}_project_scope",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "project_budgets",
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("period", sa.Text(), nullable=False),
        sa.Column("token_limit", sa.BigInteger(), nullable=True),
        sa.Column("usd_limit", sa.Float(), nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        _project_fk("project_budgets"),
        sa.PrimaryKeyConstraint("team_id", "project_id", name=op.f("pk_project_budgets")),
    )
    op.create_table(
        "budget_periods",
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("period_start", TIMESTAMP, nullable=False),
        sa.Column("spent_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("spent_usd", sa.Float(), nullable=False, server_default="0"),
        sa.Column("reserved_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("reserved_usd", sa.Float(), nullable=False, server_default="0"),
        sa.Column("in_flight", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("calls", sa.Integer(), nullable=False, server_default="0"),
        _project_fk("budget_periods"),
        sa.PrimaryKeyConstraint(
            "team_id", "project_id", "period_start", name=op.f("pk_budget_periods")
        ),
    )
    op.create_table(
        "provider_pauses",
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("paused_until", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("provider", name=op.f("pk_provider_pauses")),
    )


def downgrade() -> None:
    op.drop_table("provider_pauses")
    op.drop_table("budget_periods")
    op.drop_table("project_budgets")
