"""Change stamps, so a search snapshot held in memory can tell that it is still the
project's state, and read only what changed since.

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
in SQL only).

``search_passages.changed`` is the id of the transaction that wrote the passage or last
changed its weight, indexed with the project: a snapshot taken when the oldest running
transaction was ``x`` is brought up to date by reading the passages whose ``changed`` is
at least ``x`` (every transaction that committed after it has an id of at least ``x``).
Existing passages start at 0. Downgrading drops both columns and the index.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


CHANGED_INDEX = "idx_search_passages_changed"


def upgrade() -> None:
    # Plain ADD COLUMN (a constant default): SQLite keeps the tables, and their triggers.
    zero = sa.text("0")
    op.add_column(
        "search_stats", sa.Column("changes", sa.BigInteger(), nullable=False, server_default=zero)
    )
    op.add_column(
        "search_passages",
        sa.Column("changed", sa.BigInteger(), nullable=False, server_default=zero),
    )
    op.create_index(CHANGED_INDEX, "search_passages", ["team_id", "project_id", "changed"])


def downgrade() -> None:
    op.drop_index(CHANGED_INDEX, table_name="search_passages")
    with op.batch_alter_table("search_passages") as batch:
        batch.drop_column("changed")
    with op.batch_alter_table("search_stats") as batch:
        batch.drop_column("changes")
