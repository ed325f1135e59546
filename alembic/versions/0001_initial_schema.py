"""Initial schema: tenants, keys, audit, sessions, events, jobs, observations.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Full-text search differs per backend:

* PostgreSQL: ``observations.content_search``, a generated STORED tsvector, with a GIN index.
* SQLite: the FTS5 table ``observations_fts`` (porter stemming), kept in sync with
  ``observations`` by three triggers. It is a regular (content-storing) FTS5 table keyed by
  ``observation_id``, not an external-content table on ``observations.rowid``: rowids of a
  table with a text primary key may change on VACUUM, which would silently detach the index.
  Any later migration that lets batch mode recreate ``observations`` must recreate these
  triggers (batch recreation drops them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in tables.py: a migration must not change when app code does.
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)

TABLES = (
    "teams",
    "projects",
    "team_members",
    "api_keys",
    "server_sessions",
    "agent_events",
    "audit_log",
    "observation_generation_jobs",
    "observation_generation_job_events",
    "observations",
    "observation_sources",
)

# Path separators become spaces so "auth/middleware.py" indexes "middleware" (tables.py).
CONTENT_SEARCH_SQL = "to_tsvector('english'::regconfig, translate(content, '/\\._:-', '      '))"

FTS_STATEMENTS = (
    "CREATE VIRTUAL TABLE observations_fts USING fts5("
    "content, observation_id UNINDEXED, tokenize = 'porter unicode61')",
    "CREATE TRIGGER observations_fts_insert AFTER INSERT ON observations BEGIN "
    "INSERT INTO observations_fts (content, observation_id) VALUES (new.content, new.id); "
    "END",
    # observation_id is UNINDEXED, so this delete scans the FTS table; observations are
    # only ever deleted by cascades from a team or project, which is rare.
    "CREATE TRIGGER observations_fts_delete AFTER DELETE ON observations BEGIN "
    "DELETE FROM observations_fts WHERE observation_id = old.id; "
    "END",
    "CREATE TRIGGER observations_fts_update AFTER UPDATE OF id, content ON observations BEGIN "
    "DELETE FROM observations_fts WHERE observation_id = old.id; "
    "INSERT INTO observations_fts (content, observation_id) VALUES (new.content, new.id); "
    "END",
)
FTS_DROP_STATEMENTS = (
    "DROP TRIGGER IF EXISTS observations_fts_update",
    "DROP TRIGGER IF EXISTS observations_fts_delete",
    "DROP TRIGGER IF EXISTS observations_fts_insert",
    "DROP TABLE IF EXISTS observations_fts",
)


def content_search_column() -> sa.Column[Any]:
    if op.get_bind().dialect.name == "postgresql":
        return sa.Column(
            "content_search",
            postgresql.TSVECTOR(),
            sa.Computed(CONTENT_SEARCH_SQL, persisted=True),
            nullable=True,
        )
    # SQLite searches through observations_fts; the column only keeps the table shape
    # the same on both backends, and stays NULL.
    return sa.Column("content_search", sa.Text(), nullable=True)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "teams",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("metadata", JSON_TYPE, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("metadata", JSON_TYPE, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_projects_team_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("id", "team_id", name=op.f("uq_projects_id_team_id")),
    )
    op.create_index("idx_projects_team", "projects", ["team_id", "id"], unique=False)
    op.create_table(
        "team_members",
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("metadata", JSON_TYPE, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_team_members_team_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("team_id", "user_id", name=op.f("pk_team_members")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=True),
        sa.Column("project_id", sa.Text(), nullable=True),
        sa.Column("actor_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("scopes", JSON_TYPE, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "project_id IS NULL OR team_id IS NOT NULL", name=op.f("ck_api_keys_project_needs_team")
        ),
        sa.ForeignKeyConstraint(
            ["project_id", "team_id"],
            ["projects.id", "projects.team_id"],
            name="fk_api_keys_project_scope",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_api_keys_team_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(
        "idx_api_keys_team_created", "api_keys", ["team_id", "created_at"], unique=False
    )
    op.create_table(
        "server_sessions",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("external_session_id", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("content_session_id", sa.Text(), nullable=True),
        sa.Column("agent_id", sa.Text(), nullable=True),
        sa.Column("agent_type", sa.Text(), nullable=True),
        sa.Column("platform_source", sa.Text(), nullable=True),
        sa.Column("generation_status", sa.Text(), server_default=sa.text("'idle'"), nullable=False),
        sa.Column("metadata", JSON_TYPE, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("started_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("last_generated_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "generation_status IN ('idle', 'processing', 'completed', 'failed')",
            name=op.f("ck_server_sessions_generation_status"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id", "team_id"],
            ["projects.id", "projects.team_id"],
            name="fk_server_sessions_project_scope",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_server_sessions_team_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_server_sessions")),
        sa.UniqueConstraint(
            "project_id",
            "external_session_id",
            name=op.f("uq_server_sessions_project_id_external_session_id"),
        ),
    )
    op.create_index(
        "idx_server_sessions_project_idempotency",
        "server_sessions",
        ["project_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_table(
        "agent_events",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("server_session_id", sa.Text(), nullable=True),
        sa.Column("source_adapter", sa.Text(), nullable=False),
        sa.Column("source_event_id", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("payload", JSON_TYPE, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("metadata", JSON_TYPE, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("received_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id", "team_id"],
            ["projects.id", "projects.team_id"],
            name="fk_agent_events_project_scope",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["server_session_id"],
            ["server_sessions.id"],
            name=op.f("fk_agent_events_server_session_id"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_agent_events_team_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_events")),
        sa.UniqueConstraint(
            "id", "project_id", "team_id", name=op.f("uq_agent_events_id_project_id_team_id")
        ),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_agent_events_idempotency_key")),
    )
    op.create_index(
        "idx_agent_events_project_session",
        "agent_events",
        ["project_id", "server_session_id", "occurred_at"],
        unique=False,
    )
    op.create_index(
        "idx_agent_events_team_project",
        "agent_events",
        ["team_id", "project_id", "occurred_at"],
        unique=False,
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=True),
        sa.Column("project_id", sa.Text(), nullable=True),
        sa.Column("actor_id", sa.Text(), nullable=True),
        sa.Column("api_key_id", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("resource_type", sa.Text(), nullable=False),
        sa.Column("resource_id", sa.Text(), nullable=True),
        sa.Column("details", JSON_TYPE, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "project_id IS NULL OR team_id IS NOT NULL",
            name=op.f("ck_audit_log_project_needs_team"),
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_audit_log_api_key_id"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id", "team_id"],
            ["projects.id", "projects.team_id"],
            name="fk_audit_log_project_scope",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_audit_log_team_id"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(
        "idx_audit_log_scope_created",
        "audit_log",
        ["project_id", "team_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "idx_audit_log_team_created", "audit_log", ["team_id", "created_at"], unique=False
    )
    op.create_table(
        "observation_generation_jobs",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("agent_event_id", sa.Text(), nullable=True),
        sa.Column("source_type", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=False),
        sa.Column("server_session_id", sa.Text(), nullable=True),
        sa.Column("job_type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("transport_id", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default=sa.text("3"), nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=True),
        sa.Column("locked_at", TIMESTAMP, nullable=True),
        sa.Column("locked_by", sa.Text(), nullable=True),
        sa.Column("completed_at", TIMESTAMP, nullable=True),
        sa.Column("failed_at", TIMESTAMP, nullable=True),
        sa.Column("cancelled_at", TIMESTAMP, nullable=True),
        sa.Column("last_error", JSON_TYPE, nullable=True),
        sa.Column("payload", JSON_TYPE, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "(source_type = 'agent_event' AND agent_event_id IS NOT NULL"
            " AND source_id = agent_event_id)"
            " OR (source_type = 'session_summary' AND agent_event_id IS NULL"
            " AND server_session_id IS NOT NULL AND source_id = server_session_id)"
            " OR (source_type = 'observation_reindex' AND agent_event_id IS NULL)",
            name=op.f("ck_observation_generation_jobs_source_model"),
        ),
        sa.CheckConstraint(
            "source_type IN ('agent_event', 'session_summary', 'observation_reindex')",
            name=op.f("ck_observation_generation_jobs_source_type"),
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_observation_generation_jobs_status"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_event_id", "project_id", "team_id"],
            ["agent_events.id", "agent_events.project_id", "agent_events.team_id"],
            name="fk_observation_generation_jobs_event_scope",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id", "team_id"],
            ["projects.id", "projects.team_id"],
            name="fk_observation_generation_jobs_project_scope",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["server_session_id"],
            ["server_sessions.id"],
            name=op.f("fk_observation_generation_jobs_server_session_id"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_observation_generation_jobs_team_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observation_generation_jobs")),
        sa.UniqueConstraint(
            "id",
            "project_id",
            "team_id",
            name=op.f("uq_observation_generation_jobs_id_project_id_team_id"),
        ),
        sa.UniqueConstraint(
            "idempotency_key", name=op.f("uq_observation_generation_jobs_idempotency_key")
        ),
        sa.UniqueConstraint(
            "transport_id", name=op.f("uq_observation_generation_jobs_transport_id")
        ),
    )
    op.create_index(
        "idx_observation_jobs_event",
        "observation_generation_jobs",
        ["agent_event_id"],
        unique=False,
    )
    op.create_index(
        "idx_observation_jobs_source",
        "observation_generation_jobs",
        ["source_type", "source_id"],
        unique=False,
    )
    op.create_index(
        "idx_observation_jobs_source_scope",
        "observation_generation_jobs",
        ["team_id", "project_id", "source_type", "source_id", "job_type"],
        unique=True,
    )
    op.create_index(
        "idx_observation_jobs_status_next_attempt",
        "observation_generation_jobs",
        ["status", "next_attempt_at", "created_at"],
        unique=False,
    )
    op.create_index(
        "idx_observation_jobs_team_project",
        "observation_generation_jobs",
        ["team_id", "project_id", "status", "created_at"],
        unique=False,
    )
    op.create_table(
        "observation_generation_job_events",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("generation_job_id", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("status_after", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("details", JSON_TYPE, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "event_type IN ('queued', 'enqueued', 'processing', 'retry_scheduled', 'completed',"
            " 'failed', 'cancelled')",
            name=op.f("ck_observation_generation_job_events_event_type"),
        ),
        sa.CheckConstraint(
            "status_after IN ('queued', 'processing', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_observation_generation_job_events_status_after"),
        ),
        sa.ForeignKeyConstraint(
            ["generation_job_id", "project_id", "team_id"],
            [
                "observation_generation_jobs.id",
                "observation_generation_jobs.project_id",
                "observation_generation_jobs.team_id",
            ],
            name="fk_observation_generation_job_events_job_scope",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observation_generation_job_events")),
        sa.UniqueConstraint(
            "generation_job_id",
            "seq",
            name=op.f("uq_observation_generation_job_events_generation_job_id_seq"),
        ),
    )
    op.create_index(
        "idx_observation_job_events_job_created",
        "observation_generation_job_events",
        ["generation_job_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "observations",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("server_session_id", sa.Text(), nullable=True),
        sa.Column("kind", sa.Text(), server_default=sa.text("'observation'"), nullable=False),
        sa.Column("type", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("subtitle", sa.Text(), nullable=True),
        sa.Column("narrative", sa.Text(), nullable=True),
        sa.Column("facts", JSON_TYPE, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("concepts", JSON_TYPE, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("files_read", JSON_TYPE, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("files_modified", JSON_TYPE, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        content_search_column(),
        sa.Column("generation_key", sa.Text(), nullable=True),
        sa.Column("metadata", JSON_TYPE, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("created_by_job_id", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('observation', 'summary', 'manual')", name=op.f("ck_observations_kind")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_job_id"],
            ["observation_generation_jobs.id"],
            name=op.f("fk_observations_created_by_job_id"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id", "team_id"],
            ["projects.id", "projects.team_id"],
            name="fk_observations_project_scope",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["server_session_id"],
            ["server_sessions.id"],
            name=op.f("fk_observations_server_session_id"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_observations_team_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observations")),
        sa.UniqueConstraint(
            "id", "project_id", "team_id", name=op.f("uq_observations_id_project_id_team_id")
        ),
    )
    if postgres:
        op.create_index(
            "idx_observations_content_search",
            "observations",
            ["content_search"],
            unique=False,
            postgresql_using="gin",
        )
    op.create_index(
        "idx_observations_generation_key_scope",
        "observations",
        ["team_id", "project_id", "generation_key"],
        unique=True,
        postgresql_where=sa.text("generation_key IS NOT NULL"),
        sqlite_where=sa.text("generation_key IS NOT NULL"),
    )
    op.create_index("idx_observations_job", "observations", ["created_by_job_id"], unique=False)
    op.create_index(
        "idx_observations_project_session",
        "observations",
        ["project_id", "server_session_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "idx_observations_team_project",
        "observations",
        ["team_id", "project_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "observation_sources",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("observation_id", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("agent_event_id", sa.Text(), nullable=True),
        sa.Column("generation_job_id", sa.Text(), nullable=True),
        sa.Column("source_type", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=False),
        sa.Column("metadata", JSON_TYPE, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "(source_type = 'agent_event' AND agent_event_id IS NOT NULL"
            " AND agent_event_id = source_id)"
            " OR (source_type <> 'agent_event' AND agent_event_id IS NULL)",
            name=op.f("ck_observation_sources_agent_event_source"),
        ),
        sa.CheckConstraint(
            "source_type <> 'manual' OR generation_job_id IS NULL",
            name=op.f("ck_observation_sources_manual_without_job"),
        ),
        sa.CheckConstraint(
            "source_type IN ('agent_event', 'session_summary', 'observation_reindex', 'manual')",
            name=op.f("ck_observation_sources_source_type"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_event_id", "project_id", "team_id"],
            ["agent_events.id", "agent_events.project_id", "agent_events.team_id"],
            name="fk_observation_sources_event_scope",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["generation_job_id"],
            ["observation_generation_jobs.id"],
            name=op.f("fk_observation_sources_generation_job_id"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["observation_id", "project_id", "team_id"],
            ["observations.id", "observations.project_id", "observations.team_id"],
            name="fk_observation_sources_observation_scope",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observation_sources")),
        sa.UniqueConstraint(
            "observation_id",
            "source_type",
            "source_id",
            name=op.f("uq_observation_sources_observation_id_source_type_source_id"),
        ),
    )
    op.create_index(
        "idx_observation_sources_event", "observation_sources", ["agent_event_id"], unique=False
    )
    op.create_index(
        "idx_observation_sources_source",
        "observation_sources",
        ["source_type", "source_id"],
        unique=False,
    )
    if not postgres:
        for statement in FTS_STATEMENTS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in FTS_DROP_STATEMENTS:
            op.execute(statement)
    # Children first; dropping a table drops its indexes and constraints with it.
    for table in reversed(TABLES):
        op.drop_table(table)
