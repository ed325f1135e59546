"""Search terms fold words onto their abbreviations: every passage is indexed again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

The tokenizer now folds a word and the abbreviation programmers use for it into one term
("repository", "repos" and ``REPO_ROOT``'s "repo"; "environment" and ``os.environ``; see
``ABBREVIATIONS`` in ``claude_mem_core.domain.words``). Passages written before hold the
old terms, which queries no longer look up, so every project's passages and statistics are
rebuilt from the stored observations and their source events. The downgrade rebuilds them
too: with the tokenizer installed then, whichever that is.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from claude_mem_core.adapters.sqlalchemy.reindex import rebuild_search_index

    rebuild_search_index(op.get_bind())


def downgrade() -> None:
    from claude_mem_core.adapters.sqlalchemy.reindex import rebuild_search_index

    rebuild_search_index(op.get_bind())
