"""Retention: how many days a project keeps what its agents sent.

Revision ID: 0012
Revises: 0011
Create Date: 2027-01-11

``projects.retain_days`` (NULL: kept until erased by hand). ``services/retention.py``
erases, through the erase path, the sessions of such a project with no activity for that
many days, and its events without a session that are older.

Downgrading drops the setting: what was already erased stays erased, and nothing more is.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("retain_days", sa.Integer, nullable=True))


def downgrade() -> None:
    op.drop_column("projects", "retain_days")
