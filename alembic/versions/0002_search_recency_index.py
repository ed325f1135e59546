"""Search: a recency index for bounded candidate windows, a short GIN pending list.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

PostgreSQL search ranks a project's matches by the idf of the terms they match, newer first
among equal scores, and reads candidates newest first in small windows (see
``claude_mem_core.adapters.sqlalchemy.search``). ``idx_observations_search_recency`` serves
those windows in exactly the ranking's tie order: ``updated_at`` descending, then ``id`` in
byte order (``COLLATE "C"``, the order Python compares strings in, whatever the database's
default collation). SQLite searches through FTS5 and does not use it; it gets the same
index (its default BINARY collation already is byte order) only so that the schema
comparison of both backends sees the index the metadata declares.

The GIN index keeps at most 64 kB of pending entries (``gin_pending_list_limit``, 4 MB by
default) on PostgreSQL. Every GIN search reads the whole pending list, about 70 µs per 8 kB
page: up to 35 ms per search with the default, after a burst of inserts. Inserting costs
the same either way (the list is merged into the tree when full, in smaller batches).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "idx_observations_search_recency"
GIN_INDEX = "idx_observations_content_search"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    collate = ' COLLATE "C"' if postgres else ""
    op.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON observations "
        f"(team_id, project_id, updated_at DESC, id{collate})"
    )
    if postgres:
        op.execute(f"ALTER INDEX {GIN_INDEX} SET (gin_pending_list_limit = 64)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER INDEX {GIN_INDEX} RESET (gin_pending_list_limit)")
    op.execute(f"DROP INDEX IF EXISTS {INDEX}")
