"""Throwaway SQL databases for tests: a fresh, migrated database per test, cheaply.

Migrating is the slow part (about a second), so it happens once per process: PostgreSQL
tests clone a migrated template database with ``CREATE DATABASE … TEMPLATE`` (about 0.1 s),
SQLite tests copy a migrated file. Templates are dropped when the process exits (also
after a crash of the test run's event loop: the cleanup is a synchronous ``atexit`` hook).

Only databases this module created are ever dropped: names start with ``cm_test_`` or
``cm_tpl_`` and carry a random suffix.

Typical fixtures::

    @pytest.fixture
    async def pg_storage(postgres_base_url):          # from tests/conftest.py
        url = await create_postgres_database(postgres_base_url)
        storage = SqlAlchemyStorage.from_url(url)
        yield storage
        await storage.close()
        await drop_postgres_database(url)

    @pytest.fixture
    async def sqlite_storage(tmp_path):
        storage = SqlAlchemyStorage.from_url(await migrated_sqlite_url(tmp_path))
        yield storage
        await storage.close()
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
POSTGRES_URL_ENV = "CLAUDE_MEM_TEST_POSTGRES_URL"

_NAME = re.compile(r"^cm_(test|tpl)_[a-z0-9_]+$")
_CONNECT_TIMEOUT_S = 3

_pg_templates: dict[str, str] = {}  # base URL -> template database name
_sqlite_template: Path | None = None


def postgres_base_url() -> str:
    """SQLAlchemy URL of the server tests may create databases on (env or local default)."""
    return os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL


def _libpq(url: str, database: str | None = None) -> str:
    """SQLAlchemy URL -> libpq URI, optionally pointing at another database."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def _with_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _quote(name: str) -> str:
    if not _NAME.match(name):  # only ever our own generated names reach DDL
        raise ValueError(f"refusing to touch database {name!r}: not a claude-mem test database")
    return f'"{name}"'


async def postgres_available(url: str) -> bool:
    import psycopg

    try:
        conn = await psycopg.AsyncConnection.connect(
            _libpq(url), connect_timeout=_CONNECT_TIMEOUT_S
        )
    except (psycopg.Error, OSError):
        return False
    try:
        await conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    finally:
        await conn.close()
    return True


async def _admin_execute(base_url: str, sql: str) -> None:
    import psycopg

    # CREATE/DROP DATABASE cannot run inside a transaction block.
    conn = await psycopg.AsyncConnection.connect(
        _libpq(base_url), autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S
    )
    try:
        await conn.execute(sql.encode())
    finally:
        await conn.close()


async def create_postgres_database(base_url: str, *, migrated: bool = True) -> str:
    """Create a uniquely named database and return its URL.

    ``migrated`` (the default) clones the per-process template that is already at the
    migration head; ``migrated=False`` gives an empty database (for migration tests).
    """
    template = await _postgres_template(base_url) if migrated else None
    return await _create_database(base_url, template)


async def _create_database(base_url: str, template: str | None) -> str:
    name = f"cm_test_{secrets.token_hex(6)}"
    sql = f"CREATE DATABASE {_quote(name)}"
    if template is not None:
        sql += f" TEMPLATE {_quote(template)}"
    await _admin_execute(base_url, sql)
    return _with_database(base_url, name)


async def drop_postgres_database(url: str) -> None:
    """Drop a database made by this module (``WITH (FORCE)`` ends leftover sessions)."""
    from sqlalchemy.engine import make_url

    name = make_url(url).database or ""
    await _admin_execute(
        url_on_maintenance_db(url), f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)"
    )


def url_on_maintenance_db(url: str) -> str:
    """The same server, database ``postgres``: where CREATE/DROP DATABASE are issued from."""
    return _with_database(url, "postgres")


async def _postgres_template(base_url: str) -> str:
    template = _pg_templates.get(base_url)
    if template is None:
        template = await _make_postgres_template(base_url)
        _pg_templates[base_url] = template
    return template


async def _make_postgres_template(base_url: str) -> str:
    from sqlalchemy.engine import make_url

    from claude_mem_core import migrations

    url = await _create_database(base_url, None)
    name = str(make_url(url).database)
    template = name.replace("cm_test_", "cm_tpl_", 1)
    try:
        await migrations.upgrade(url)
        # The migration's engine is disposed (NullPool), so no session is left open on the
        # template: CREATE DATABASE … TEMPLATE fails while any session is connected.
        await _admin_execute(
            base_url, f"ALTER DATABASE {_quote(name)} RENAME TO {_quote(template)}"
        )
    except BaseException:
        await _admin_execute(base_url, f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
        raise
    atexit.register(_drop_template_sync, base_url, template)
    return template


def _drop_template_sync(base_url: str, template: str) -> None:
    import psycopg

    try:
        with psycopg.connect(
            _libpq(base_url), autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S
        ) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {_quote(template)} WITH (FORCE)".encode())
    except psycopg.Error:
        pass  # the server went away first; nothing else to clean up


async def migrated_sqlite_url(tmp_path: Path | str) -> str:
    """``sqlite+aiosqlite:///…`` URL of a migrated database file inside ``tmp_path``."""
    global _sqlite_template
    from claude_mem_core import migrations

    if _sqlite_template is None:
        directory = Path(tempfile.mkdtemp(prefix="cm_sqlite_tpl_"))
        atexit.register(shutil.rmtree, directory, True)
        template = directory / "template.db"
        await migrations.upgrade(sqlite_url(template))
        _sqlite_template = template
    target = Path(tmp_path) / f"claude-mem-{secrets.token_hex(4)}.db"
    # The template's engine is disposed, so its WAL is checkpointed into the main file.
    shutil.copyfile(_sqlite_template, target)
    return sqlite_url(target)


def sqlite_url(path: Path | str) -> str:
    return f"sqlite+aiosqlite:///{Path(path).resolve()}"


__all__ = [
    "DEFAULT_POSTGRES_URL",
    "create_postgres_database",
    "drop_postgres_database",
    "migrated_sqlite_url",
    "postgres_available",
    "postgres_base_url",
    "sqlite_url",
]
