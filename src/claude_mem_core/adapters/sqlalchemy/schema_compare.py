"""What alembic's comparison of the database with ``tables.metadata`` leaves out (the
autogenerate check of ``tests/migrations`` and ``alembic/env.py``): objects the migrations
manage themselves, outside the metadata."""

from __future__ import annotations

from typing import Any

from claude_mem_core.adapters.sqlalchemy.search_tables import (
    FTS_TABLE,
    PASSAGE_HIGH_IMPACT_INDEX,
    PASSAGE_TERMS_INDEX,
)

# What differs on SQLite; see include_object.
_POSTGRES_ONLY = {("index", PASSAGE_TERMS_INDEX), ("index", PASSAGE_HIGH_IMPACT_INDEX)}


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic filter for reflected names: the FTS5 table and its shadow tables are
    managed by the migration, not by this metadata."""
    return not (type_ == "table" and name is not None and name.startswith(FTS_TABLE))


def make_include_object(dialect_name: str) -> Any:
    """Alembic filter hiding the GIN index of passages from the SQLite comparison."""

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        if dialect_name != "postgresql" and (type_, name) in _POSTGRES_ONLY:
            return False
        return include_name(name, type_, None)

    return include_object


__all__ = ["include_name", "make_include_object"]
