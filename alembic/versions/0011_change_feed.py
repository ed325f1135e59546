"""The change feed: what commits, in an order a stream can resume from.

Revision ID: 0011
Revises: 0010
Create Date: 2027-01-10

``GET /v1/stream`` sends new events, observations, summaries and job status changes as
they commit, and a client that reconnects with the last id it got must miss nothing. A
timestamp or a plain serial cannot say "after this": concurrent transactions commit out of
the order they took them. So:

* ``change_feed`` holds one row per change (serial ``position``, team, project, kind, the
  row's id, time), written by triggers in the writing transaction: the write paths (multi-CTE
  statements among them) stay as they are, and a feed row commits exactly when its row does.
  References only: the stream reads the row when it sends, so an erased row is never sent.
* On PostgreSQL the row also holds the writer's transaction id (``pg_current_xact_id()``).
  A reader takes only rows of transactions below ``pg_snapshot_xmin(pg_current_snapshot())``
  (all of them have ended, so none can add a row later) and orders them by (txid, position).
  The triggers are per statement with transition tables: one insert per statement, however
  many rows it wrote; a job's row is added when its ``status`` changes.
* SQLite has one writer at a time, so ``position`` (AUTOINCREMENT: never reused) is commit
  order; its triggers are per row (SQLite has no statement triggers).

Downgrading drops the triggers, their functions and the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the type in tables.py: a migration must not change when app code does.
TIMESTAMP = sa.DateTime(timezone=True)

OBSERVATION_KIND = "CASE WHEN {row}.kind = 'summary' THEN 'summary' ELSE 'observation' END"

# (table, trigger and function name, the kind written: SQL over the new row ``{row}``)
INSERTS = (
    ("agent_events", "change_feed_events", "'event'"),
    ("observations", "change_feed_observations", OBSERVATION_KIND),
    ("observation_generation_jobs", "change_feed_jobs", "'job'"),
)
JOB_STATUS = "change_feed_job_status"
JOBS = "observation_generation_jobs"


def _postgres_upgrade() -> None:
    for table, name, kind in INSERTS:
        op.execute(
            f"""
            CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE writer bigint := pg_current_xact_id()::text::bigint;
            BEGIN
                INSERT INTO change_feed (txid, team_id, project_id, kind, row_id)
                SELECT writer, n.team_id, n.project_id, {kind.format(row="n")}, n.id
                FROM new_rows AS n;
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            f"CREATE TRIGGER {name} AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
    op.execute(
        f"""
        CREATE FUNCTION {JOB_STATUS}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO change_feed (txid, team_id, project_id, kind, row_id)
            SELECT pg_current_xact_id()::text::bigint, n.team_id, n.project_id, 'job', n.id
            FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
            WHERE o.status IS DISTINCT FROM n.status;
            RETURN NULL;
        END $$
        """
    )
    # Transition tables allow no column list (UPDATE OF status): the function compares.
    op.execute(
        f"CREATE TRIGGER {JOB_STATUS} AFTER UPDATE ON {JOBS}"
        " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
        f" FOR EACH STATEMENT EXECUTE FUNCTION {JOB_STATUS}()"
    )


def _sqlite_upgrade() -> None:
    for table, name, kind in INSERTS:
        op.execute(
            f"CREATE TRIGGER {name} AFTER INSERT ON {table} BEGIN"
            " INSERT INTO change_feed (team_id, project_id, kind, row_id)"
            f" VALUES (NEW.team_id, NEW.project_id, {kind.format(row='NEW')}, NEW.id); END"
        )
    op.execute(
        f"CREATE TRIGGER {JOB_STATUS} AFTER UPDATE OF status ON {JOBS}"
        " WHEN OLD.status IS NOT NEW.status BEGIN"
        " INSERT INTO change_feed (team_id, project_id, kind, row_id)"
        " VALUES (NEW.team_id, NEW.project_id, 'job', NEW.id); END"
    )


def upgrade() -> None:
    op.create_table(
        "change_feed",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("txid", sa.BigInteger(), nullable=True),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("row_id", sa.Text(), nullable=False),
        sa.Column("changed_at", TIMESTAMP, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_change_feed")),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_change_feed_txid_position", "change_feed", ["txid", "position"])
    if op.get_bind().dialect.name == "postgresql":
        _postgres_upgrade()
    else:
        _sqlite_upgrade()


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, name, _ in (*INSERTS, (JOBS, JOB_STATUS, "")):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_index("idx_change_feed_txid_position", table_name="change_feed")
    op.drop_table("change_feed")
