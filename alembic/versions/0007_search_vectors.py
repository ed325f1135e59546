"""search_vectors: an embedding per search passage and model (optional semantic recall).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

When an embeddings endpoint is configured (``CLAUDE_MEM_EMBEDDINGS_URL``), passages get a
vector each, and search fuses the cosine ranking of its keyword candidates with their BM25
ranking (``services/embedding.py``). Vectors are little-endian float32 bytes
(``domain.fusion.pack_vector``): a plain BLOB / bytea, no vector extension. The key is
(passage, model), since vectors of different models are not comparable; the foreign key
removes a passage's vectors with it. The table starts empty: the backfill
(``claude-mem embeddings backfill``, or the worker) fills it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "search_vectors",
        sa.Column(
            "passage_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("observation_id", sa.Text(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["passage_id"],
            ["search_passages.id"],
            name=op.f("fk_search_vectors_passage_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("passage_id", "model", name=op.f("pk_search_vectors")),
    )
    op.create_index("idx_search_vectors_observation", "search_vectors", ["observation_id", "model"])


def downgrade() -> None:
    op.drop_index("idx_search_vectors_observation", table_name="search_vectors")
    op.drop_table("search_vectors")
