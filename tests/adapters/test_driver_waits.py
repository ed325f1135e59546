"""psycopg's asyncio waits without the 0.1 s wake-up (``driver.ASYNC_WAIT_INTERVAL_S``).

Importing the SQL adapter raises the interval at which psycopg re-arms a wait while a
statement runs, so a long statement costs no loop wake-ups. What the short interval
would otherwise be needed for still works: a wait given a timeout ends on time, and a
statement whose task is cancelled ends at once and leaves the connection usable.
"""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest

from claude_mem_core.adapters.sqlalchemy import driver
from claude_mem_core.testing import databases

pytestmark = pytest.mark.postgres

psycopg = pytest.importorskip("psycopg")


def test_the_wait_interval_is_raised() -> None:
    parameters = inspect.signature(psycopg.AsyncConnection.wait).parameters
    assert parameters["interval"].default == driver.ASYNC_WAIT_INTERVAL_S


async def test_a_wait_with_a_timeout_still_ends_on_time(postgres_base_url: str) -> None:
    url = databases.url_on_maintenance_db(postgres_base_url)
    async with await psycopg.AsyncConnection.connect(
        databases._libpq(url), autocommit=True
    ) as conn:
        await conn.execute("LISTEN cm_test_driver_waits")
        started = time.monotonic()
        received = [n async for n in conn.notifies(timeout=0.3)]
        assert received == []
        assert time.monotonic() - started < 5.0


async def test_a_cancelled_statement_ends_at_once(postgres_base_url: str) -> None:
    url = databases.url_on_maintenance_db(postgres_base_url)
    async with await psycopg.AsyncConnection.connect(
        databases._libpq(url), autocommit=True
    ) as conn:
        task = asyncio.ensure_future(conn.execute("SELECT pg_sleep(30)"))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 5.0
        cursor = await conn.execute("SELECT 1")
        assert await cursor.fetchall() == [(1,)]
