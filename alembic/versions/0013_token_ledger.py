"""Token ledger: one row per paid provider call.

Revision ID: 0013
Revises: 0012
Create Date: 2027-01-11

``services/usage.py`` writes a row for every call to a provider that is not the offline
one (project, provider, model, input and output tokens, the cost estimated from
``domain/prices.py``, the job or jobs it was made for), so ``GET /v1/usage`` and
``claude-mem usage`` can say what generation cost. Ids and numbers only, no content: an
erased job's rows stay (they are the bill), as an erased project's do (its row stays too).

Downgrading drops the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the type in tables.py: a migration must not change when app code does.
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "token_ledger",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=True),
        sa.Column("job_count", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("called_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id", "team_id"],
            ["projects.id", "projects.team_id"],
            name="fk_token_ledger_project_scope",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_ledger")),
    )
    op.create_index(
        "idx_token_ledger_scope_time", "token_ledger", ["team_id", "project_id", "called_at"]
    )


def downgrade() -> None:
    op.drop_index("idx_token_ledger_scope_time", table_name="token_ledger")
    op.drop_table("token_ledger")
