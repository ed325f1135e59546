"""Search over passages with BM25 statistics; the old observation-level indexes go.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

Search now ranks passages (an observation's own fields, and the text of the events it was
made from) with BM25F, on both backends from the same terms, produced by the tokenizer in
``claude_mem_core.domain.tokens`` (see ``domain/passages.py`` and ``domain/ranking.py``):

* ``search_passages``: one row per passage with its weighted term frequencies (``tf``), its
  length, and its distinct terms (``terms``): a tsvector with a GIN index on PostgreSQL; on
  SQLite the terms joined by spaces, indexed by the FTS5 table ``search_fts`` (external
  content: the index only, the terms are read from ``search_passages``), kept in sync by
  triggers. Its tokenizer splits on whitespace only (every other category is a token
  character), so FTS5 sees exactly the terms Python produced.
* ``search_stats`` and ``search_terms``: passages, terms and document frequencies per
  project, kept by the writers (no scan at query time).

Gone: ``observations.content_search`` (PostgreSQL's generated tsvector and its GIN index),
``idx_observations_search_recency`` and SQLite's ``observations_fts`` with its triggers.
Existing observations are indexed here, with the text of their source events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FTS_TOKENIZER = "unicode61 remove_diacritics 0 categories 'L* N* Co M* P* S*'"
FTS_STATEMENTS = (
    "CREATE VIRTUAL TABLE search_fts USING fts5(terms, content='search_passages', "
    f"content_rowid='id', tokenize=\"{FTS_TOKENIZER}\")",
    "CREATE TRIGGER search_fts_insert AFTER INSERT ON search_passages BEGIN "
    "INSERT INTO search_fts (rowid, terms) VALUES (new.id, new.terms); END",
    "CREATE TRIGGER search_fts_delete AFTER DELETE ON search_passages BEGIN "
    "INSERT INTO search_fts (search_fts, rowid, terms) VALUES ('delete', old.id, old.terms); "
    "END",
)
OLD_FTS_DROP = (
    "DROP TRIGGER IF EXISTS observations_fts_update",
    "DROP TRIGGER IF EXISTS observations_fts_delete",
    "DROP TRIGGER IF EXISTS observations_fts_insert",
    "DROP TABLE IF EXISTS observations_fts",
)
# What revision 0001 created on SQLite, for the downgrade.
_OLD_FTS_CREATE = (
    "CREATE VIRTUAL TABLE observations_fts USING fts5("
    "content, observation_id UNINDEXED, tokenize = 'porter unicode61')",
    "CREATE TRIGGER observations_fts_insert AFTER INSERT ON observations BEGIN "
    "INSERT INTO observations_fts (content, observation_id) VALUES (new.content, new.id); "
    "END",
    "CREATE TRIGGER observations_fts_delete AFTER DELETE ON observations BEGIN "
    "DELETE FROM observations_fts WHERE observation_id = old.id; "
    "END",
    "CREATE TRIGGER observations_fts_update AFTER UPDATE OF id, content ON observations BEGIN "
    "DELETE FROM observations_fts WHERE observation_id = old.id; "
    "INSERT INTO observations_fts (content, observation_id) VALUES (new.content, new.id); "
    "END",
)


def _json_type() -> Any:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.execute("DROP INDEX IF EXISTS idx_observations_search_recency")
    if postgres:
        op.execute("ALTER TABLE observations DROP COLUMN IF EXISTS content_search")
    else:
        for statement in OLD_FTS_DROP:
            op.execute(statement)
        op.execute("ALTER TABLE observations DROP COLUMN content_search")
    op.create_table(
        "search_passages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("observation_id", sa.Text(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=True),
        sa.Column("ordinal", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("tf", _json_type(), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("terms", postgresql.TSVECTOR().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.CheckConstraint(
            "origin IN ('observation', 'event')", name=op.f("ck_search_passages_origin")
        ),
        sa.ForeignKeyConstraint(
            ["observation_id", "project_id", "team_id"],
            ["observations.id", "observations.project_id", "observations.team_id"],
            name="fk_search_passages_observation_scope",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_passages")),
    )
    op.create_index(
        "idx_search_passages_observation", "search_passages", ["observation_id"], unique=False
    )
    if postgres:
        op.create_index(
            "idx_search_passages_terms",
            "search_passages",
            ["terms"],
            unique=False,
            postgresql_using="gin",
        )
    for name, extra in (
        ("search_stats", []),
        ("search_terms", [sa.Column("term", sa.Text(), nullable=False)]),
    ):
        columns: list[Any] = [
            sa.Column("team_id", sa.Text(), nullable=False),
            sa.Column("project_id", sa.Text(), nullable=False),
            *extra,
            sa.Column("shard", sa.SmallInteger(), nullable=False),
        ]
        if name == "search_stats":
            columns += [
                sa.Column("passages", sa.BigInteger(), nullable=False),
                sa.Column("tokens", sa.BigInteger(), nullable=False),
                sa.Column("min_length", sa.BigInteger(), nullable=False),
            ]
        else:
            columns += [
                sa.Column("df", sa.BigInteger(), nullable=False),
                sa.Column("max_tf", sa.Float(), nullable=False),
            ]
        key = ["team_id", "project_id", *(["term"] if extra else []), "shard"]
        op.create_table(
            name,
            *columns,
            sa.ForeignKeyConstraint(
                ["project_id", "team_id"],
                ["projects.id", "projects.team_id"],
                name=f"fk_{name}_project_scope",
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint(*key, name=op.f(f"pk_{name}")),
        )
    if not postgres:
        for statement in FTS_STATEMENTS:
            op.execute(statement)
    _backfill(bind)


def _backfill(bind: Any) -> None:
    """Index the observations stored before this revision, with their source events (as the
    generation pipeline indexes new ones)."""
    from claude_mem_core.adapters.sqlalchemy.reindex import index_observations

    index_observations(bind)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if not postgres:
        op.execute("DROP TRIGGER IF EXISTS search_fts_delete")
        op.execute("DROP TRIGGER IF EXISTS search_fts_insert")
        op.execute("DROP TABLE IF EXISTS search_fts")
    op.drop_table("search_terms")
    op.drop_table("search_stats")
    op.drop_table("search_passages")
    if postgres:
        op.execute(
            "ALTER TABLE observations ADD COLUMN content_search tsvector GENERATED ALWAYS AS "
            "(to_tsvector('english'::regconfig, translate(content, '/\\._:-', '      '))) STORED"
        )
        op.execute(
            "CREATE INDEX idx_observations_content_search ON observations USING gin "
            "(content_search) WITH (gin_pending_list_limit = 64)"
        )
    else:
        op.execute("ALTER TABLE observations ADD COLUMN content_search TEXT")
        for statement in _OLD_FTS_CREATE:
            op.execute(statement)
        op.execute(
            "INSERT INTO observations_fts (content, observation_id) "
            "SELECT content, id FROM observations"
        )
    collate = ' COLLATE "C"' if postgres else ""
    op.execute(
        "CREATE INDEX IF NOT EXISTS idx_observations_search_recency ON observations "
        f"(team_id, project_id, updated_at DESC, id{collate})"
    )
