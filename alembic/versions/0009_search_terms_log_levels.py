"""Search terms fold log levels onto their words: every passage is indexed again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

The tokenizer now folds the log levels that Go and Rust loggers print ("WRN", "DBG") onto
"warning" and "debug" (``ABBREVIATIONS`` in ``claude_mem_core.domain.words``), so "what
warning did it print?" finds ``WRN Invalid entry``. Passages written before hold the old
terms, so every project's passages and statistics are rebuilt, as revision 0008 did.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from claude_mem_core.adapters.sqlalchemy.reindex import rebuild_search_index

    rebuild_search_index(op.get_bind())


def downgrade() -> None:
    from claude_mem_core.adapters.sqlalchemy.reindex import rebuild_search_index

    rebuild_search_index(op.get_bind())
