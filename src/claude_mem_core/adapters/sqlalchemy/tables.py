"""SQLAlchemy Core table definitions: the schema both SQLite and PostgreSQL are migrated to.

This metadata is the reference that ``alembic/versions`` must reproduce; a test compares the
two with alembic autogenerate on both databases. Two parts differ on SQLite and are
filtered out of its comparison by :func:`include_object`: ``observations.content_search``
(a generated tsvector on PostgreSQL, an unused NULL column on SQLite) and its GIN index
(PostgreSQL only). SQLite's full-text index
is the ``observations_fts`` FTS5 table plus its triggers, which exist only in the migration
(``schema_compare.include_name`` keeps autogenerate from trying to drop them).

Composite foreign keys such as ``(project_id, team_id) -> projects(id, team_id)`` make the
database itself prove that a child row's project belongs to its team.
"""

from __future__ import annotations

import sqlalchemy as sa

from claude_mem_core.adapters.sqlalchemy import (
    budget_tables,
    feed_tables,
    schema_columns,
    search_tables,
)
from claude_mem_core.adapters.sqlalchemy.schema_columns import (
    EMPTY_ARRAY,
    UTCDateTime,
    created_updated,
    json_column,
    one_of,
    project_scope_fk,
    team_fk,
    timestamp,
)

# The whole schema is read from here (alembic, the repositories as ``t.<table>``): its
# metadata, and the search index's tables, defined in their own module.
metadata = schema_columns.metadata
search_passages = search_tables.search_passages
search_stats = search_tables.search_stats
search_terms = search_tables.search_terms
search_vectors = search_tables.search_vectors

JOB_STATUSES = ("queued", "processing", "completed", "failed", "cancelled")
JOB_SOURCE_TYPES = ("agent_event", "session_summary", "observation_reindex")
OBSERVATION_SOURCE_TYPES = (*JOB_SOURCE_TYPES, "manual")
JOB_EVENT_TYPES = (
    "queued",
    "enqueued",
    "processing",
    "retry_scheduled",
    "completed",
    "failed",
    "cancelled",
)
SESSION_STATUSES = ("idle", "processing", "completed", "failed")


teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    json_column("metadata"),
    *created_updated(),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("team_id", sa.Text, team_fk(), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    json_column("metadata"),
    *created_updated(),
    # Erasing a project (revision 0010) marks it deleted at once (it is then missing to
    # every read, see ``live_project``), then purges its rows in batches and records when
    # that ended. The row stays, with its audit trail.
    timestamp("deleted_at", nullable=True),
    timestamp("purged_at", nullable=True),
    # Days its events are kept (revision 0012, ``services/retention.py``); NULL: until erased.
    sa.Column("retain_days", sa.Integer, nullable=True),
    # Target of every composite "project belongs to team" foreign key.
    sa.UniqueConstraint("id", "team_id"),
    sa.Index("idx_projects_team", "team_id", "id"),
)

team_members = sa.Table(
    "team_members",
    metadata,
    sa.Column("team_id", sa.Text, team_fk(), primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, nullable=False),
    json_column("metadata"),
    *created_updated(),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("team_id", sa.Text, team_fk(), nullable=True),
    sa.Column("project_id", sa.Text, nullable=True),
    sa.Column("actor_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=True),
    json_column("scopes", EMPTY_ARRAY),
    timestamp("revoked_at", nullable=True),
    timestamp("expires_at", nullable=True),
    timestamp("last_used_at", nullable=True),
    *created_updated(),
    sa.CheckConstraint("project_id IS NULL OR team_id IS NOT NULL", name="project_needs_team"),
    project_scope_fk("api_keys"),
    sa.Index("idx_api_keys_team_created", "team_id", "created_at"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("team_id", sa.Text, team_fk("SET NULL"), nullable=True),
    sa.Column("project_id", sa.Text, nullable=True),
    sa.Column("actor_id", sa.Text, nullable=True),
    sa.Column(
        "api_key_id", sa.Text, sa.ForeignKey("api_keys.id", ondelete="SET NULL"), nullable=True
    ),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("resource_type", sa.Text, nullable=False),
    sa.Column("resource_id", sa.Text, nullable=True),
    json_column("details"),
    timestamp("created_at", default_now=True),
    sa.CheckConstraint("project_id IS NULL OR team_id IS NOT NULL", name="project_needs_team"),
    project_scope_fk("audit_log", ondelete="SET NULL"),
    sa.Index("idx_audit_log_scope_created", "project_id", "team_id", "created_at"),
    sa.Index("idx_audit_log_team_created", "team_id", "created_at"),
)

server_sessions = sa.Table(
    "server_sessions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("team_id", sa.Text, team_fk(), nullable=False),
    sa.Column("external_session_id", sa.Text, nullable=True),
    sa.Column("idempotency_key", sa.Text, nullable=True),
    sa.Column("content_session_id", sa.Text, nullable=True),
    sa.Column("agent_id", sa.Text, nullable=True),
    sa.Column("agent_type", sa.Text, nullable=True),
    sa.Column("platform_source", sa.Text, nullable=True),
    sa.Column("generation_status", sa.Text, nullable=False, server_default=sa.text("'idle'")),
    json_column("metadata"),
    timestamp("started_at", default_now=True),
    timestamp("ended_at", nullable=True),
    timestamp("last_generated_at", nullable=True),
    *created_updated(),
    sa.CheckConstraint(one_of("generation_status", SESSION_STATUSES), name="generation_status"),
    sa.UniqueConstraint("project_id", "external_session_id"),
    project_scope_fk("server_sessions"),
    sa.Index(
        "idx_server_sessions_project_idempotency",
        "project_id",
        "idempotency_key",
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
    ),
)

agent_events = sa.Table(
    "agent_events",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("team_id", sa.Text, team_fk(), nullable=False),
    sa.Column(
        "server_session_id",
        sa.Text,
        sa.ForeignKey("server_sessions.id", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column("source_adapter", sa.Text, nullable=False),
    sa.Column("source_event_id", sa.Text, nullable=True),
    sa.Column("idempotency_key", sa.Text, nullable=False, unique=True),
    sa.Column("event_type", sa.Text, nullable=False),
    json_column("payload"),
    json_column("metadata"),
    timestamp("occurred_at"),
    timestamp("received_at", default_now=True),
    timestamp("created_at", default_now=True),
    # Target of the jobs' composite foreign key: "this event is in this scope".
    sa.UniqueConstraint("id", "project_id", "team_id"),
    project_scope_fk("agent_events"),
    sa.Index("idx_agent_events_project_session", "project_id", "server_session_id", "occurred_at"),
    sa.Index("idx_agent_events_team_project", "team_id", "project_id", "occurred_at"),
)

observation_generation_jobs = sa.Table(
    "observation_generation_jobs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("team_id", sa.Text, team_fk(), nullable=False),
    sa.Column("agent_event_id", sa.Text, nullable=True),
    sa.Column("source_type", sa.Text, nullable=False),
    sa.Column("source_id", sa.Text, nullable=False),
    sa.Column(
        "server_session_id",
        sa.Text,
        sa.ForeignKey("server_sessions.id", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column("job_type", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'queued'")),
    sa.Column("idempotency_key", sa.Text, nullable=False, unique=True),
    # The reference calls this bullmq_job_id; the wire layer maps the name.
    sa.Column("transport_id", sa.Text, nullable=True, unique=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default=sa.text("3")),
    timestamp("next_attempt_at", nullable=True),
    timestamp("locked_at", nullable=True),
    sa.Column("locked_by", sa.Text, nullable=True),
    timestamp("completed_at", nullable=True),
    timestamp("failed_at", nullable=True),
    timestamp("cancelled_at", nullable=True),
    json_column("last_error", None),
    json_column("payload"),
    *created_updated(),
    sa.CheckConstraint(one_of("source_type", JOB_SOURCE_TYPES), name="source_type"),
    sa.CheckConstraint(one_of("status", JOB_STATUSES), name="status"),
    sa.CheckConstraint(
        "(source_type = 'agent_event' AND agent_event_id IS NOT NULL"
        " AND source_id = agent_event_id)"
        " OR (source_type = 'session_summary' AND agent_event_id IS NULL"
        " AND server_session_id IS NOT NULL AND source_id = server_session_id)"
        " OR (source_type = 'observation_reindex' AND agent_event_id IS NULL)",
        name="source_model",
    ),
    sa.UniqueConstraint("id", "project_id", "team_id"),
    sa.ForeignKeyConstraint(
        ["agent_event_id", "project_id", "team_id"],
        ["agent_events.id", "agent_events.project_id", "agent_events.team_id"],
        name="fk_observation_generation_jobs_event_scope",
        ondelete="CASCADE",
    ),
    project_scope_fk("observation_generation_jobs"),
    sa.Index(
        "idx_observation_jobs_source_scope",
        "team_id",
        "project_id",
        "source_type",
        "source_id",
        "job_type",
        unique=True,
    ),
    sa.Index("idx_observation_jobs_status_next_attempt", "status", "next_attempt_at", "created_at"),
    sa.Index("idx_observation_jobs_team_project", "team_id", "project_id", "status", "created_at"),
    sa.Index("idx_observation_jobs_event", "agent_event_id"),
    sa.Index("idx_observation_jobs_source", "source_type", "source_id"),
)

observations = sa.Table(
    "observations",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("team_id", sa.Text, team_fk(), nullable=False),
    sa.Column(
        "server_session_id",
        sa.Text,
        sa.ForeignKey("server_sessions.id", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column("kind", sa.Text, nullable=False, server_default=sa.text("'observation'")),
    sa.Column("type", sa.Text, nullable=True),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("subtitle", sa.Text, nullable=True),
    sa.Column("narrative", sa.Text, nullable=True),
    json_column("facts", EMPTY_ARRAY),
    json_column("concepts", EMPTY_ARRAY),
    json_column("files_read", EMPTY_ARRAY),
    json_column("files_modified", EMPTY_ARRAY),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("generation_key", sa.Text, nullable=True),
    json_column("metadata"),
    sa.Column(
        "created_by_job_id",
        sa.Text,
        sa.ForeignKey("observation_generation_jobs.id", ondelete="SET NULL"),
        nullable=True,
    ),
    *created_updated(),
    # Revision 0016: dedup (``domain/fingerprint.py``, NULL never dedups) and supersession.
    sa.Column("fingerprint", sa.Text, nullable=True),
    sa.Column("occurrences", sa.Integer, nullable=False, server_default=sa.text("1")),
    sa.Column("superseded_by", sa.Text, nullable=True),
    timestamp("superseded_at", nullable=True),
    sa.Column("subject", sa.Text, nullable=True),  # revision 0017 (domain/supersession.py)
    # ``kind``: any kind string (revision 0004 dropped the check of the three known kinds).
    # Target of the sources' composite foreign key.
    sa.UniqueConstraint("id", "project_id", "team_id"),
    project_scope_fk("observations"),
    sa.Index(
        "idx_observations_generation_key_scope",
        "team_id",
        "project_id",
        "generation_key",
        unique=True,
        postgresql_where=sa.text("generation_key IS NOT NULL"),
        sqlite_where=sa.text("generation_key IS NOT NULL"),
    ),
    sa.Index(
        "idx_observations_fingerprint_scope",
        "team_id",
        "project_id",
        "fingerprint",
        unique=True,
        postgresql_where=sa.text("fingerprint IS NOT NULL"),
        sqlite_where=sa.text("fingerprint IS NOT NULL"),
    ),
    sa.Index("idx_observations_project_session", "project_id", "server_session_id", "created_at"),
    sa.Index("idx_observations_team_project", "team_id", "project_id", "created_at"),
    sa.Index(
        "idx_observations_subject_scope",
        *("team_id", "project_id", "subject"),
        postgresql_where=sa.text("subject IS NOT NULL"),
        sqlite_where=sa.text("subject IS NOT NULL"),
    ),
    sa.Index("idx_observations_job", "created_by_job_id"),
)

observation_sources = sa.Table(
    "observation_sources",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("observation_id", sa.Text, nullable=False),
    sa.Column("team_id", sa.Text, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("agent_event_id", sa.Text, nullable=True),
    sa.Column(
        "generation_job_id",
        sa.Text,
        sa.ForeignKey("observation_generation_jobs.id", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column("source_type", sa.Text, nullable=False),
    sa.Column("source_id", sa.Text, nullable=False),
    json_column("metadata"),
    timestamp("created_at", default_now=True),
    sa.CheckConstraint(one_of("source_type", OBSERVATION_SOURCE_TYPES), name="source_type"),
    sa.CheckConstraint(
        "(source_type = 'agent_event' AND agent_event_id IS NOT NULL"
        " AND agent_event_id = source_id)"
        " OR (source_type <> 'agent_event' AND agent_event_id IS NULL)",
        name="agent_event_source",
    ),
    sa.CheckConstraint(
        "source_type <> 'manual' OR generation_job_id IS NULL", name="manual_without_job"
    ),
    sa.UniqueConstraint("observation_id", "source_type", "source_id"),
    # The tenant columns plus these composite keys make a link's scope provable in SQL
    # (the reference derives it through the observation only).
    sa.ForeignKeyConstraint(
        ["observation_id", "project_id", "team_id"],
        ["observations.id", "observations.project_id", "observations.team_id"],
        name="fk_observation_sources_observation_scope",
        ondelete="CASCADE",
    ),
    sa.ForeignKeyConstraint(
        ["agent_event_id", "project_id", "team_id"],
        ["agent_events.id", "agent_events.project_id", "agent_events.team_id"],
        name="fk_observation_sources_event_scope",
        ondelete="CASCADE",
    ),
    sa.Index("idx_observation_sources_event", "agent_event_id"),
    sa.Index("idx_observation_sources_source", "source_type", "source_id"),
)

observation_generation_job_events = sa.Table(
    "observation_generation_job_events",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("generation_job_id", sa.Text, nullable=False),
    sa.Column("team_id", sa.Text, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False),
    # Per-job insertion counter: several log lines often share one millisecond (queued and
    # enqueued in one transaction), and "oldest first" must still mean insertion order.
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("status_after", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default=sa.text("0")),
    json_column("details"),
    timestamp("created_at", default_now=True),
    sa.CheckConstraint(one_of("event_type", JOB_EVENT_TYPES), name="event_type"),
    sa.CheckConstraint(one_of("status_after", JOB_STATUSES), name="status_after"),
    sa.UniqueConstraint("generation_job_id", "seq"),
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
    sa.Index("idx_observation_job_events_job_created", "generation_job_id", "created_at"),
)

# The idempotency keys of erased events (revision 0010): a replay of one (same team,
# project, source and ``sourceEventId``) is refused instead of storing the content again.
# No content: the key is a hash of those ids; the source ids are kept to say which.
erased_events = sa.Table(
    "erased_events",
    metadata,
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, primary_key=True),
    sa.Column("idempotency_key", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("source_adapter", sa.Text, nullable=False),
    sa.Column("source_event_id", sa.Text, nullable=True),
    timestamp("erased_at", default_now=True),
    project_scope_fk("erased_events"),
)


token_ledger = sa.Table(
    # One row per paid provider call (revision 0013, ``services/usage.py``): ids and numbers.
    "token_ledger",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("team_id", sa.Text, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("job_id", sa.Text, nullable=True),  # no foreign key: the bill outlives the job
    sa.Column("job_count", sa.Integer, nullable=False, server_default="1"),
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=True),
    sa.Column("input_tokens", sa.BigInteger, nullable=True),
    sa.Column("output_tokens", sa.BigInteger, nullable=True),
    sa.Column("cost_usd", sa.Float, nullable=True),
    timestamp("called_at"),
    project_scope_fk("token_ledger"),
    sa.Index("idx_token_ledger_scope_time", "team_id", "project_id", "called_at"),
)

# Budgets and provider pauses (revision 0015): defined in their own module, on this metadata.
_budget_tables = budget_tables.define(metadata, timestamp, project_scope_fk, UTCDateTime)
project_budgets, budget_periods, provider_pauses = _budget_tables
provider_rate_windows = budget_tables.define_rates(metadata, UTCDateTime)  # revision 0019
budget_reservations = budget_tables.define_reservations(  # revision 0020
    metadata, timestamp, project_scope_fk, UTCDateTime
)


def live_project(table: sa.Table) -> sa.ColumnElement[bool]:
    """True for a row of ``table`` (with ``team_id`` and ``project_id``) whose project is
    not marked deleted: a lookup of the project's primary key in the same statement."""
    p = projects.c
    return ~sa.exists().where(
        p.id == table.c.project_id, p.team_id == table.c.team_id, p.deleted_at.is_not(None)
    )


# The change feed (revision 0011) and its horizon (0014): in their own module, on this metadata.
change_feed, change_feed_horizon = feed_tables.define(metadata, timestamp)
