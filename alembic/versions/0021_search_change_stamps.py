"""search_stats.changes: a change stamp, so a search snapshot held in memory can tell
that it is still the project's state.

Revision ID: 0021
Revises: 0020
Create Date: 2027-01-24

Every writer of a project's passages, their weights or its statistics sets the
``changes`` of the statistics row it writes to its own transaction id (PostgreSQL's
``pg_current_xact_id()``). The sum of a project's rows' stamps, with their passage count
and their number, then differs after any committed change, which is what
``adapters/sqlalchemy/resident_search.py`` checks in the statement that returns a
search's rows. Existing rows start at 0: a snapshot is only ever loaded after this
revision, so it records the stamps as they are. SQLite keeps the column at 0 (it searches
in SQL only). Downgrading drops the column.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("search_stats") as batch:
        batch.add_column(
            sa.Column("changes", sa.BigInteger(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("search_stats") as batch:
        batch.drop_column("changes")
