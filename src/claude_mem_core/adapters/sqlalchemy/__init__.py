"""SQLAlchemy (async Core) storage for PostgreSQL (psycopg 3) and SQLite (aiosqlite).

Importing this package needs the ``sqlite`` or ``postgres`` extra (SQLAlchemy).
"""

from claude_mem_core.adapters.sqlalchemy.storage import SqlAlchemyStorage
from claude_mem_core.adapters.sqlalchemy.unit_of_work import SqlAlchemyUnitOfWork

__all__ = ["SqlAlchemyStorage", "SqlAlchemyUnitOfWork"]
