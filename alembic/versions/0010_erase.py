"""Erase: projects can be marked deleted, and erased events are remembered.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08

``services/erase.py`` removes an event, a session or a whole project with everything derived
from them. Two things of it need the schema:

* ``projects.deleted_at`` / ``projects.purged_at``: erasing a project marks it deleted in
  one short transaction (from then on it is missing to every read and refuses writes), then
  purges its rows in bounded batches and records when that ended. The row itself stays,
  with its audit trail.
* ``erased_events``: the idempotency key of each erased event that came with a
  ``sourceEventId`` (a hash of team, project, source and that id: no content), so a replay
  of it is refused instead of storing the content again.

Downgrading finishes what it would otherwise undo: the projects marked deleted are
deleted with all their rows (an older schema could not tell them from live ones), and the
remembered keys are dropped (a replay of an erased event would then be stored again).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the type in tables.py: a migration must not change when app code does.
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ADD COLUMN on both databases (SQLite rebuilding ``projects`` in batch mode
    # would drop the table every other one references).
    op.add_column("projects", sa.Column("deleted_at", TIMESTAMP, nullable=True))
    op.add_column("projects", sa.Column("purged_at", TIMESTAMP, nullable=True))
    op.create_table(
        "erased_events",
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("source_adapter", sa.Text(), nullable=False),
        sa.Column("source_event_id", sa.Text(), nullable=True),
        sa.Column("erased_at", TIMESTAMP, nullable=False, server_default=sa.func.now()),
        sa.ForeignKeyConstraint(
            ["project_id", "team_id"],
            ["projects.id", "projects.team_id"],
            name="fk_erased_events_project_scope",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "team_id", "project_id", "idempotency_key", name=op.f("pk_erased_events")
        ),
    )


def downgrade() -> None:
    op.drop_table("erased_events")
    # Every row of a project marked deleted goes with it (the foreign keys cascade).
    op.execute("DELETE FROM projects WHERE deleted_at IS NOT NULL")
    op.drop_column("projects", "purged_at")
    op.drop_column("projects", "deleted_at")
