"""The unit of work of the SQLAlchemy storage: one connection and one transaction
(:class:`_UnitOfWorkContext` commits on a normal exit, rolls back on an exception and
returns the connection to the pool in the mode the pool expects), and
:class:`SqlAlchemyUnitOfWork`, every repository over that one connection (:class:`_Db`)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.adapters.sqlalchemy.audit import AuditRepo
from claude_mem_core.adapters.sqlalchemy.budgets import BudgetRepo, ProviderPauseRepo
from claude_mem_core.adapters.sqlalchemy.connection import _Db
from claude_mem_core.adapters.sqlalchemy.erasure import ErasureRepo
from claude_mem_core.adapters.sqlalchemy.events import EventRepo
from claude_mem_core.adapters.sqlalchemy.export_reads import ExportReadRepo
from claude_mem_core.adapters.sqlalchemy.jobs import JobEventRepo, JobRepo
from claude_mem_core.adapters.sqlalchemy.ledger import LedgerRepo
from claude_mem_core.adapters.sqlalchemy.observations import ObservationRepo, SourceRepo
from claude_mem_core.adapters.sqlalchemy.provider_rates import ProviderRateRepo
from claude_mem_core.adapters.sqlalchemy.search_index import SearchIndexRepo
from claude_mem_core.adapters.sqlalchemy.sessions import SessionRepo
from claude_mem_core.adapters.sqlalchemy.tenancy import ApiKeyRepo, ProjectRepo, TeamRepo
from claude_mem_core.adapters.sqlalchemy.vectors import SearchVectorRepo
from claude_mem_core.ports.clock import Clock
from claude_mem_core.ports.storage import UnitOfWork

if TYPE_CHECKING:
    from claude_mem_core.adapters.sqlalchemy.resident_search import ResidentSearch


class SqlAlchemyUnitOfWork:
    def __init__(
        self,
        conn: AsyncConnection,
        dialect_name: str,
        driver: Any | None = None,
        clock: Clock | None = None,
        resident: ResidentSearch | None = None,
    ) -> None:
        db = _Db(conn, dialect_name, driver, clock)
        self.teams = TeamRepo(db)
        self.projects = ProjectRepo(db)
        self.api_keys = ApiKeyRepo(db)
        self.sessions = SessionRepo(db)
        self.events = EventRepo(db)
        self.jobs = JobRepo(db)
        self.job_events = JobEventRepo(db)
        self.observations = ObservationRepo(db)
        self.sources = SourceRepo(db)
        self.search = SearchIndexRepo(db, resident)
        self.audit = AuditRepo(db)
        self.vectors = SearchVectorRepo(db)
        self.erasure = ErasureRepo(db)
        self.ledger = LedgerRepo(db)
        self.budgets = BudgetRepo(db)
        self.provider_pauses = ProviderPauseRepo(db)
        self.provider_rates = ProviderRateRepo(db)
        self.exports = ExportReadRepo(db)


class _UnitOfWorkContext(AbstractAsyncContextManager[UnitOfWork]):
    """Commit on normal exit, roll back on an exception; the connection always returns."""

    def __init__(
        self,
        engine: AsyncEngine,
        dialect_name: str,
        clock: Clock | None = None,
        *,
        resident: ResidentSearch | None = None,
    ) -> None:
        self._resident = resident
        self._engine = engine
        self._dialect = dialect_name
        self._clock = clock
        self._conn: AsyncConnection | None = None
        self._driver: Any | None = None

    async def __aenter__(self) -> UnitOfWork:
        try:
            conn = await self._engine.connect()
        except (exc.SQLAlchemyError, OSError) as e:
            raise dialects.translate_error(e) from e
        driver: Any | None = None
        try:
            _transaction = await conn.begin()
            if self._dialect == dialects.POSTGRES:
                # Autocommit until the first write (see _Db._before); psycopg sends no
                # BEGIN (and COMMIT is a no-op) while it is on.
                psycopg_conn: Any = (await conn.get_raw_connection()).driver_connection
                await psycopg_conn.set_autocommit(True)
                driver = psycopg_conn
        except (exc.SQLAlchemyError, OSError) as e:
            await conn.close()
            raise dialects.translate_error(e) from e
        except Exception:
            await conn.close()
            raise
        self._conn, self._driver = conn, driver
        return SqlAlchemyUnitOfWork(conn, self._dialect, driver, self._clock, self._resident)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        conn, self._conn = self._conn, None
        driver, self._driver = self._driver, None
        if conn is None:  # pragma: no cover - __aenter__ failed
            return False
        try:
            if exc_type is None:
                try:
                    await conn.commit()
                except (exc.SQLAlchemyError, OSError) as e:
                    raise dialects.translate_error(e) from e
            else:
                await conn.rollback()
        finally:
            if driver is not None and not driver.closed:
                try:  # back to the pool in the mode every other user expects
                    await driver.set_autocommit(False)
                except Exception:  # pragma: no cover - a broken connection
                    await conn.invalidate()
            await conn.close()
        return False
