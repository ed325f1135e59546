"""Schema migrations (alembic) for the SQL storage, usable from async code.

``claude-mem migrate`` calls :func:`upgrade`; ``SqlAlchemyStorage.check_schema`` calls
:func:`require_head` so a server refuses to start on an unmigrated or outdated database.

The alembic scripts live in the repository's ``alembic/`` directory; wheels carry a copy at
``claude_mem_core/_alembic`` (hatch ``force-include``). The package copy wins when present.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_mem_core import errors

if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.config import Config

# The newest revision in alembic/versions. Bump it with every new migration (a test checks
# that it matches the scripts), so check_schema needs no file access at run time.
HEAD_REVISION = "0021"

MIGRATE_HINT = "run `claude-mem migrate`"


def script_location() -> Path:
    """The directory holding ``env.py`` and ``versions/``."""
    here = Path(__file__).resolve().parent
    candidates = (here / "_alembic", here.parents[1] / "alembic")
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    raise errors.ConfigurationError(
        "migration scripts not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); reinstall claude-mem"
    )


def alembic_config(url: str | None = None) -> Config:
    try:
        from alembic.config import Config
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise errors.MissingExtra("Database migrations", "sqlite") from e
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    if url is not None:
        # attributes, not set_main_option: a password may contain '%' (ini interpolation).
        config.attributes["url"] = url
    return config


def head_revision() -> str | None:
    """The head according to the scripts on disk (tests compare it with HEAD_REVISION)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (idempotent)."""
    await _run_command(url, "upgrade", revision)


async def downgrade(url: str, revision: str = "base") -> None:
    await _run_command(url, "downgrade", revision)


async def current_revision(url: str) -> str | None:
    """The revision the database is at, ``None`` when it was never migrated."""
    from sqlalchemy import exc, pool

    from claude_mem_core.adapters.sqlalchemy import dialects

    engine = dialects.create_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(revision_of)
    except (exc.SQLAlchemyError, OSError) as e:
        raise dialects.translate_error(e) from e
    finally:
        await engine.dispose()


def revision_of(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def require_head(current: str | None) -> None:
    """Raise ``SchemaNotReady`` unless ``current`` is the revision this code expects."""
    if current == HEAD_REVISION:
        return
    if current is None:
        raise errors.SchemaNotReady(f"The database has no claude-mem schema; {MIGRATE_HINT}")
    raise errors.SchemaNotReady(
        f"The database schema is at revision {current}, this claude-mem needs {HEAD_REVISION}; "
        f"{MIGRATE_HINT} (or upgrade claude-mem if the database is newer)"
    )


async def _run_command(url: str, name: str, revision: str) -> None:
    from alembic import command
    from sqlalchemy import exc, pool

    from claude_mem_core.adapters.sqlalchemy import dialects

    config = alembic_config(url)

    def run(connection: sa.Connection) -> None:
        # env.py runs the migrations on this connection instead of opening its own, which
        # would need a second event loop.
        config.attributes["connection"] = connection
        fn: Any = getattr(command, name)
        fn(config, revision)

    engine = dialects.create_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(run)
            await conn.commit()
    except (exc.SQLAlchemyError, OSError) as e:
        raise dialects.translate_error(e) from e
    finally:
        await engine.dispose()


__all__ = [
    "HEAD_REVISION",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "require_head",
    "revision_of",
    "script_location",
    "upgrade",
]
