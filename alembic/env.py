"""Alembic environment for claude-mem (async engines: aiosqlite and psycopg).

Two ways in:

* ``claude_mem_core.migrations`` (``claude-mem migrate``, tests) opens the connection itself
  and passes it as ``config.attributes["connection"]``; migrations run on it synchronously
  inside its ``run_sync``, and the caller commits.
* The ``alembic`` command line: the URL comes from ``config.attributes["url"]``, the
  ``sqlalchemy.url`` option or ``CLAUDE_MEM_DATABASE_URL``, and this module drives an async
  engine with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import os

import sqlalchemy as sa
from alembic import context

from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy.schema_compare import include_name, make_include_object
from claude_mem_core.adapters.sqlalchemy.tables import metadata

config = context.config

# Any constant works; it only has to be the same for every claude-mem process.
_MIGRATION_LOCK_KEY = 0x636C6D656D  # "clmem"


def _url() -> str:
    url = (
        config.attributes.get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("CLAUDE_MEM_DATABASE_URL")
    )
    if not url:
        raise SystemExit("set CLAUDE_MEM_DATABASE_URL (or pass a URL) to run migrations")
    return str(url)


def _configure(**kwargs: object) -> None:
    dialect_name = kwargs.pop("dialect_name")
    context.configure(
        target_metadata=metadata,
        include_name=include_name,
        include_object=make_include_object(str(dialect_name)),
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def do_run_migrations(connection: sa.Connection) -> None:
    _configure(connection=connection, dialect_name=connection.dialect.name)
    with context.begin_transaction():
        if connection.dialect.name == dialects.POSTGRES:
            # Two processes migrating at once would race on DDL; the second waits here
            # and then finds nothing left to do. Released at commit.
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = dialects.create_engine(_url(), poolclass=sa.pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    url = dialects.normalize_url(_url())
    _configure(url=url, literal_binds=True, dialect_name=url.get_backend_name())
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
elif (shared := config.attributes.get("connection")) is not None:
    do_run_migrations(shared)
else:
    asyncio.run(run_async_migrations())
