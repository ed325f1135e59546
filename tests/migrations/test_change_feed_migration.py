"""Revision 0011 (change feed): its triggers record writes on SQLite and PostgreSQL, and
downgrading removes them with the table (writes then go on as before)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from claude_mem_core import migrations
from claude_mem_core.adapters.sqlalchemy import dialects


async def _run(url: str, fn: Any) -> Any:
    engine = dialects.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _write(conn: sa.Connection, suffix: str) -> None:
    params = {"e": f"e-{suffix}", "j": f"j-{suffix}", "o": f"o-{suffix}", "at": datetime.now(UTC)}
    conn.execute(
        sa.text(
            "INSERT INTO agent_events (id, project_id, team_id, source_adapter,"
            " idempotency_key, event_type, occurred_at)"
            " VALUES (:e, 'p', 't', 'api', :e, 'tool_use', :at)"
        ),
        params,
    )
    conn.execute(
        sa.text(
            "INSERT INTO observation_generation_jobs (id, project_id, team_id, agent_event_id,"
            " source_type, source_id, job_type, idempotency_key)"
            " VALUES (:j, 'p', 't', :e, 'agent_event', :e, 'observation_generate_for_event', :j)"
        ),
        params,
    )
    # A status change is recorded; an update that keeps the status is not.
    conn.execute(
        sa.text("UPDATE observation_generation_jobs SET status = 'processing' WHERE id = :j"),
        params,
    )
    conn.execute(
        sa.text("UPDATE observation_generation_jobs SET attempts = 1 WHERE id = :j"), params
    )
    conn.execute(
        sa.text(
            "INSERT INTO observations (id, project_id, team_id, kind, content)"
            " VALUES (:o, 'p', 't', 'summary', 'done')"
        ),
        params,
    )


def _feed(conn: sa.Connection) -> list[tuple[str, str]]:
    rows = conn.execute(sa.text("SELECT kind, row_id FROM change_feed ORDER BY position"))
    return [(r[0], r[1]) for r in rows]


def _tables(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


async def test_change_feed_revision_up_and_down(empty_url: str) -> None:
    await migrations.upgrade(empty_url, "0010")

    def seed(conn: sa.Connection) -> None:
        conn.execute(sa.text("INSERT INTO teams (id, name) VALUES ('t', 't')"))
        conn.execute(sa.text("INSERT INTO projects (id, team_id, name) VALUES ('p', 't', 'p')"))

    await _run(empty_url, seed)
    await migrations.upgrade(empty_url, "0011")
    await _run(empty_url, lambda c: _write(c, "1"))
    assert await _run(empty_url, _feed) == [
        ("event", "e-1"),
        ("job", "j-1"),
        ("job", "j-1"),
        ("summary", "o-1"),
    ]

    await migrations.downgrade(empty_url, "0010")
    assert "change_feed" not in await _run(empty_url, _tables)
    await _run(empty_url, lambda c: _write(c, "2"))  # no trigger left behind

    await migrations.upgrade(empty_url)
    assert await migrations.current_revision(empty_url) == migrations.HEAD_REVISION
    await _run(empty_url, lambda c: _write(c, "3"))
    assert [row for _, row in await _run(empty_url, _feed)] == ["e-3", "j-3", "j-3", "o-3"]
