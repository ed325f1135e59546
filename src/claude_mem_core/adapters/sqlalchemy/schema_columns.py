"""The schema's shared metadata and the column kinds its tables are made of: constraint
names, a UTC timestamp that reads back equal on SQLite and PostgreSQL, JSON (JSONB on
PostgreSQL), and the foreign keys that tie a row to its team and project. Every table module
(``tables.py``, ``search_tables.py``, ``budget_tables.py``, ``feed_tables.py``) defines its
tables on this :data:`metadata`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

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


def one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def timestamp(
    name: str, *, nullable: bool = False, default_now: bool = False
) -> sa.Column[datetime]:
    return sa.Column(
        name,
        UTCDateTime(),
        nullable=nullable,
        server_default=sa.func.now() if default_now else None,
    )


def created_updated() -> list[sa.Column[datetime]]:
    return [timestamp("created_at", default_now=True), timestamp("updated_at", default_now=True)]


def json_column(name: str, default: sa.TextClause | None = EMPTY_OBJECT) -> sa.Column[Any]:
    return sa.Column(name, JSONType, nullable=default is None, server_default=default)


def team_fk(ondelete: str = "CASCADE") -> sa.ForeignKey:
    return sa.ForeignKey("teams.id", ondelete=ondelete)


def project_scope_fk(table: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["project_id", "team_id"],
        ["projects.id", "projects.team_id"],
        name=f"fk_{table}_project_scope",
        ondelete=ondelete,
    )
