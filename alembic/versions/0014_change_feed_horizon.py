"""The change feed is pruned; its horizon says how far.

Revision ID: 0014
Revises: 0013
Create Date: 2027-01-12

The change feed (revision 0011) gained a row per change for ever. The worker's upkeep (and
the embedded loop) now removes rows older than ``CLAUDE_MEM_STREAM_RETAIN_HOURS``, and
``change_feed_horizon`` (one row) keeps the newest position removed: a stream asked to
resume from a cursor below it could miss changes, so it is answered 410 and the client
starts again without a cursor. Created at (0, 0): nothing pruned.

Downgrading drops the horizon (the feed keeps what was not pruned).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the type in tables.py: a migration must not change when app code does.
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    horizon = op.create_table(
        "change_feed_horizon",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column("pruned_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_feed_horizon")),
    )
    op.bulk_insert(horizon, [{"id": 1, "txid": 0, "serial": 0, "pruned_at": None}])


def downgrade() -> None:
    op.drop_table("change_feed_horizon")
