"""The search index's tables (``domain/passages.py``, ``domain/ranking.py``): passages with
their terms, the per-project statistics and term frequencies that rank them, and the
optional embeddings of semantic recall. Defined on the schema's metadata; ``tables.py``
re-exports them with the rest of the schema."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from claude_mem_core.adapters.sqlalchemy.schema_columns import (
    json_column,
    metadata,
    one_of,
    project_scope_fk,
)

FTS_TABLE = "search_fts"
PASSAGE_TERMS_INDEX = "idx_search_passages_terms"
PASSAGE_HIGH_IMPACT_INDEX = "idx_search_passages_terms_hi"
PASSAGE_ORIGINS = ("observation", "event")

# Search (domain/passages.py, domain/ranking.py). One row per passage: its weighted term
# frequencies (``tf``), its length in terms, and its distinct terms (``terms``: a tsvector
# with a GIN index on PostgreSQL; on SQLite the terms joined by spaces, indexed by the FTS5
# table ``search_fts`` of the migration, which reads them from here).
search_passages = sa.Table(
    "search_passages",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("team_id", sa.Text, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("observation_id", sa.Text, nullable=False),
    sa.Column("origin", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=True),
    sa.Column("ordinal", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("length", sa.Integer, nullable=False),
    json_column("tf"),
    sa.Column("terms", postgresql.TSVECTOR().with_variant(sa.Text(), "sqlite"), nullable=False),
    # PostgreSQL: the terms whose factor reaches ranking.HIGH_IMPACT, GIN-indexed, so a
    # query can find its best passages without reading every match (NULL on SQLite).
    sa.Column("terms_hi", postgresql.TSVECTOR().with_variant(sa.Text(), "sqlite"), nullable=True),
    # Multiplied into the passage's score: ranking.SUPERSEDED_WEIGHT when superseded (0017).
    sa.Column("weight", sa.Float, nullable=False, server_default=sa.text("1.0")),
    # PostgreSQL: the id of the transaction that wrote the passage or last changed its
    # weight, so a search snapshot reads only what changed (revision 0021).
    sa.Column("changed", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    sa.CheckConstraint(one_of("origin", PASSAGE_ORIGINS), name="origin"),
    sa.ForeignKeyConstraint(
        ["observation_id", "project_id", "team_id"],
        ["observations.id", "observations.project_id", "observations.team_id"],
        name="fk_search_passages_observation_scope",
        ondelete="CASCADE",
    ),
    sa.Index("idx_search_passages_observation", "observation_id"),
    sa.Index(PASSAGE_TERMS_INDEX, "terms", postgresql_using="gin"),
    sa.Index(PASSAGE_HIGH_IMPACT_INDEX, "terms_hi", postgresql_using="gin"),
    sa.Index("idx_search_passages_changed", "team_id", "project_id", "changed"),
)

# Statistics of a project's passages, kept as passages are written: sums (and the least
# length, the largest frequency: they bound a term's score) over ``shard`` rows. Writers
# spread over a few rows, so concurrent writers of one project seldom wait on one lock.
search_stats = sa.Table(
    "search_stats",
    metadata,
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, primary_key=True),
    sa.Column("shard", sa.SmallInteger, primary_key=True),
    sa.Column("passages", sa.BigInteger, nullable=False),
    sa.Column("tokens", sa.BigInteger, nullable=False),
    sa.Column("min_length", sa.BigInteger, nullable=False),
    # The most passages one observation has: how much an observation's next best passages
    # can add to its best (ranking.observation_score), which bounds PostgreSQL's pruning.
    sa.Column("max_passages", sa.BigInteger, nullable=False, server_default=sa.text("1")),
    # PostgreSQL: the id of the last transaction that wrote this row, so the sum over a
    # project's rows changes with any write (a search snapshot's check, revision 0021).
    sa.Column("changes", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    project_scope_fk("search_stats"),
)

search_terms = sa.Table(
    "search_terms",
    metadata,
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, primary_key=True),
    sa.Column("term", sa.Text, primary_key=True),
    sa.Column("shard", sa.SmallInteger, primary_key=True),
    sa.Column("df", sa.BigInteger, nullable=False),
    sa.Column("max_tf", sa.Float, nullable=False),
    project_scope_fk("search_terms"),
)

# Optional semantic recall: one embedding per passage and model (vectors of different models
# are not comparable), as little-endian float32 bytes (``domain.fusion.pack_vector``; no
# vector extension needed). The scope columns are copied from the passage when the vector is
# stored; deleting a passage (or its observation, project or team) takes its vectors along.
search_vectors = sa.Table(
    "search_vectors",
    metadata,
    sa.Column(
        "passage_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.ForeignKey("search_passages.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("team_id", sa.Text, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("observation_id", sa.Text, nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),
    sa.Index("idx_search_vectors_observation", "observation_id", "model"),
)
