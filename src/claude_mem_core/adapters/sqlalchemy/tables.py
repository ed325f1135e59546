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

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from claude_mem_core.adapters.sqlalchemy import budget_tables, feed_tables

# Names are part of the schema (alembic compares and drops by name), so every constraint
# gets a deterministic one. All rendered names stay within PostgreSQL's 63 characters.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

FTS_TABLE = "search_fts"
PASSAGE_TERMS_INDEX = "idx_search_passages_terms"
PASSAGE_HIGH_IMPACT_INDEX = "idx_search_passages_terms_hi"
PASSAGE_ORIGINS = ("observation", "event")


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz``. SQLite has no timestamp type: SQLAlchemy stores a
    fixed-width text with microseconds and no offset, so values are normalised to UTC before
    writing and tagged UTC after reading. Either way a value reads back equal to what was
    written, and text ordering matches time ordering on SQLite.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # Naive values are taken as UTC: the domain only ever produces aware UTC datetimes.
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # Defensive: a raw string can only come from a row written outside SQLAlchemy.
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


# ``none_as_null``: Python ``None`` must be SQL NULL (e.g. ``last_error``), not JSON null.
JSONType = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True), "postgresql"
)

EMPTY_OBJECT = sa.text("'{}'")
EMPTY_ARRAY = sa.text("'[]'")

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


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _ts(name: str, *, nullable: bool = False, default_now: bool = False) -> sa.Column[datetime]:
    return sa.Column(
        name,
        UTCDateTime(),
        nullable=nullable,
        server_default=sa.func.now() if default_now else None,
    )


def _created_updated() -> list[sa.Column[datetime]]:
    return [_ts("created_at", default_now=True), _ts("updated_at", default_now=True)]


def _json(name: str, default: sa.TextClause | None = EMPTY_OBJECT) -> sa.Column[Any]:
    return sa.Column(name, JSONType, nullable=default is None, server_default=default)


def _team_fk(ondelete: str = "CASCADE") -> sa.ForeignKey:
    return sa.ForeignKey("teams.id", ondelete=ondelete)


def _project_scope_fk(table: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["project_id", "team_id"],
        ["projects.id", "projects.team_id"],
        name=f"fk_{table}_project_scope",
        ondelete=ondelete,
    )


teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    _json("metadata"),
    *_created_updated(),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("team_id", sa.Text, _team_fk(), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    _json("metadata"),
    *_created_updated(),
    # Erasing a project (revision 0010) marks it deleted at once (it is then missing to
    # every read, see ``live_project``), then purges its rows in batches and records when
    # that ended. The row stays, with its audit trail.
    _ts("deleted_at", nullable=True),
    _ts("purged_at", nullable=True),
    # Days its events are kept (revision 0012, ``services/retention.py``); NULL: until erased.
    sa.Column("retain_days", sa.Integer, nullable=True),
    # Target of every composite "project belongs to team" foreign key.
    sa.UniqueConstraint("id", "team_id"),
    sa.Index("idx_projects_team", "team_id", "id"),
)

team_members = sa.Table(
    "team_members",
    metadata,
    sa.Column("team_id", sa.Text, _team_fk(), primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, nullable=False),
    _json("metadata"),
    *_created_updated(),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("team_id", sa.Text, _team_fk(), nullable=True),
    sa.Column("project_id", sa.Text, nullable=True),
    sa.Column("actor_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=True),
    _json("scopes", EMPTY_ARRAY),
    _ts("revoked_at", nullable=True),
    _ts("expires_at", nullable=True),
    _ts("last_used_at", nullable=True),
    *_created_updated(),
    sa.CheckConstraint("project_id IS NULL OR team_id IS NOT NULL", name="project_needs_team"),
    _project_scope_fk("api_keys"),
    sa.Index("idx_api_keys_team_created", "team_id", "created_at"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("team_id", sa.Text, _team_fk("SET NULL"), nullable=True),
    sa.Column("project_id", sa.Text, nullable=True),
    sa.Column("actor_id", sa.Text, nullable=True),
    sa.Column(
        "api_key_id", sa.Text, sa.ForeignKey("api_keys.id", ondelete="SET NULL"), nullable=True
    ),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("resource_type", sa.Text, nullable=False),
    sa.Column("resource_id", sa.Text, nullable=True),
    _json("details"),
    _ts("created_at", default_now=True),
    sa.CheckConstraint("project_id IS NULL OR team_id IS NOT NULL", name="project_needs_team"),
    _project_scope_fk("audit_log", ondelete="SET NULL"),
    sa.Index("idx_audit_log_scope_created", "project_id", "team_id", "created_at"),
    sa.Index("idx_audit_log_team_created", "team_id", "created_at"),
)

server_sessions = sa.Table(
    "server_sessions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("team_id", sa.Text, _team_fk(), nullable=False),
    sa.Column("external_session_id", sa.Text, nullable=True),
    sa.Column("idempotency_key", sa.Text, nullable=True),
    sa.Column("content_session_id", sa.Text, nullable=True),
    sa.Column("agent_id", sa.Text, nullable=True),
    sa.Column("agent_type", sa.Text, nullable=True),
    sa.Column("platform_source", sa.Text, nullable=True),
    sa.Column("generation_status", sa.Text, nullable=False, server_default=sa.text("'idle'")),
    _json("metadata"),
    _ts("started_at", default_now=True),
    _ts("ended_at", nullable=True),
    _ts("last_generated_at", nullable=True),
    *_created_updated(),
    sa.CheckConstraint(_in("generation_status", SESSION_STATUSES), name="generation_status"),
    sa.UniqueConstraint("project_id", "external_session_id"),
    _project_scope_fk("server_sessions"),
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
    sa.Column("team_id", sa.Text, _team_fk(), nullable=False),
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
    _json("payload"),
    _json("metadata"),
    _ts("occurred_at"),
    _ts("received_at", default_now=True),
    _ts("created_at", default_now=True),
    # Target of the jobs' composite foreign key: "this event is in this scope".
    sa.UniqueConstraint("id", "project_id", "team_id"),
    _project_scope_fk("agent_events"),
    sa.Index("idx_agent_events_project_session", "project_id", "server_session_id", "occurred_at"),
    sa.Index("idx_agent_events_team_project", "team_id", "project_id", "occurred_at"),
)

observation_generation_jobs = sa.Table(
    "observation_generation_jobs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("team_id", sa.Text, _team_fk(), nullable=False),
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
    _ts("next_attempt_at", nullable=True),
    _ts("locked_at", nullable=True),
    sa.Column("locked_by", sa.Text, nullable=True),
    _ts("completed_at", nullable=True),
    _ts("failed_at", nullable=True),
    _ts("cancelled_at", nullable=True),
    _json("last_error", None),
    _json("payload"),
    *_created_updated(),
    sa.CheckConstraint(_in("source_type", JOB_SOURCE_TYPES), name="source_type"),
    sa.CheckConstraint(_in("status", JOB_STATUSES), name="status"),
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
    _project_scope_fk("observation_generation_jobs"),
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
    sa.Column("team_id", sa.Text, _team_fk(), nullable=False),
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
    _json("facts", EMPTY_ARRAY),
    _json("concepts", EMPTY_ARRAY),
    _json("files_read", EMPTY_ARRAY),
    _json("files_modified", EMPTY_ARRAY),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("generation_key", sa.Text, nullable=True),
    _json("metadata"),
    sa.Column(
        "created_by_job_id",
        sa.Text,
        sa.ForeignKey("observation_generation_jobs.id", ondelete="SET NULL"),
        nullable=True,
    ),
    *_created_updated(),
    # Revision 0016: dedup (``domain/fingerprint.py``, NULL never dedups) and supersession.
    sa.Column("fingerprint", sa.Text, nullable=True),
    sa.Column("occurrences", sa.Integer, nullable=False, server_default=sa.text("1")),
    sa.Column("superseded_by", sa.Text, nullable=True),
    _ts("superseded_at", nullable=True),
    sa.Column("subject", sa.Text, nullable=True),  # revision 0017 (domain/supersession.py)
    # ``kind``: any kind string (revision 0004 dropped the check of the three known kinds).
    # Target of the sources' composite foreign key.
    sa.UniqueConstraint("id", "project_id", "team_id"),
    _project_scope_fk("observations"),
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
    _json("tf"),
    sa.Column("terms", postgresql.TSVECTOR().with_variant(sa.Text(), "sqlite"), nullable=False),
    # PostgreSQL: the terms whose factor reaches ranking.HIGH_IMPACT, GIN-indexed, so a
    # query can find its best passages without reading every match (NULL on SQLite).
    sa.Column("terms_hi", postgresql.TSVECTOR().with_variant(sa.Text(), "sqlite"), nullable=True),
    # Multiplied into the passage's score: ranking.SUPERSEDED_WEIGHT when superseded (0017).
    sa.Column("weight", sa.Float, nullable=False, server_default=sa.text("1.0")),
    # PostgreSQL: the id of the transaction that wrote the passage or last changed its
    # weight, so a search snapshot reads only what changed (revision 0021).
    sa.Column("changed", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    sa.CheckConstraint(_in("origin", PASSAGE_ORIGINS), name="origin"),
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
    _project_scope_fk("search_stats"),
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
    _project_scope_fk("search_terms"),
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
    _json("metadata"),
    _ts("created_at", default_now=True),
    sa.CheckConstraint(_in("source_type", OBSERVATION_SOURCE_TYPES), name="source_type"),
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
    _json("details"),
    _ts("created_at", default_now=True),
    sa.CheckConstraint(_in("event_type", JOB_EVENT_TYPES), name="event_type"),
    sa.CheckConstraint(_in("status_after", JOB_STATUSES), name="status_after"),
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
    _ts("erased_at", default_now=True),
    _project_scope_fk("erased_events"),
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
    _ts("called_at"),
    _project_scope_fk("token_ledger"),
    sa.Index("idx_token_ledger_scope_time", "team_id", "project_id", "called_at"),
)

# Budgets and provider pauses (revision 0015): defined in their own module, on this metadata.
_budget_tables = budget_tables.define(metadata, _ts, _project_scope_fk, UTCDateTime)
project_budgets, budget_periods, provider_pauses = _budget_tables
provider_rate_windows = budget_tables.define_rates(metadata, UTCDateTime)  # revision 0019
budget_reservations = budget_tables.define_reservations(  # revision 0020
    metadata, _ts, _project_scope_fk, UTCDateTime
)


def live_project(table: sa.Table) -> sa.ColumnElement[bool]:
    """True for a row of ``table`` (with ``team_id`` and ``project_id``) whose project is
    not marked deleted: a lookup of the project's primary key in the same statement."""
    p = projects.c
    return ~sa.exists().where(
        p.id == table.c.project_id, p.team_id == table.c.team_id, p.deleted_at.is_not(None)
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

# The change feed (revision 0011) and its horizon (0014): in their own module, on this metadata.
change_feed, change_feed_horizon = feed_tables.define(metadata, _ts)
