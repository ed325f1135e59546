"""Provider rate limits shared by every worker.

Revision ID: 0019
Revises: 0018
Create Date: 2027-01-16

* ``provider_rate_windows``: the calls started per provider and UTC minute, counted with
  one guarded UPDATE (``calls < limit``) before each call, so workers together never
  start more than ``CLAUDE_MEM_PROVIDER_RPM`` allows in a minute. Rows older than an hour
  are removed as new windows open.

Numbers and provider names only, no content. Downgrading drops the table: limits are
then not enforced by an older claude-mem (which knows no such setting).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the type in tables.py: a migration must not change when app code does.
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "provider_rate_windows",
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("window_start", TIMESTAMP, nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("provider", "window_start", name=op.f("pk_provider_rate_windows")),
    )


def downgrade() -> None:
    op.drop_table("provider_rate_windows")
