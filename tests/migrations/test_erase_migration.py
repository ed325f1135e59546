"""Revision 0010 (erase): up and down on SQLite and PostgreSQL, with rows in place."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from claude_mem_core import migrations
from claude_mem_core.adapters.sqlalchemy import SqlAlchemyStorage, dialects


async def _run(url: str, fn: Any) -> Any:
    engine = dialects.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _shape(conn: sa.Connection) -> tuple[set[str], set[str]]:
    inspector = sa.inspect(conn)
    return set(inspector.get_table_names()), {c["name"] for c in inspector.get_columns("projects")}


def _seed(conn: sa.Connection) -> None:
    conn.execute(sa.text("INSERT INTO teams (id, name) VALUES ('t', 't')"))
    for project in ("live", "dead"):
        conn.execute(
            sa.text("INSERT INTO projects (id, team_id, name) VALUES (:p, 't', :p)"), {"p": project}
        )
        conn.execute(
            sa.text(
                "INSERT INTO agent_events (id, project_id, team_id, source_adapter, "
                "source_event_id, idempotency_key, event_type, occurred_at) "
                "VALUES (:id, :p, 't', 'api', 'client-1', :key, 'tool_use', :at)"
            ),
            {"id": f"e-{project}", "p": project, "key": f"k-{project}", "at": datetime.now(UTC)},
        )


def _events(conn: sa.Connection) -> set[str]:
    return set(conn.execute(sa.text("SELECT id FROM agent_events")).scalars())


async def test_erase_revision_up_and_down(empty_url: str) -> None:
    await migrations.upgrade(empty_url, "0009")
    await _run(empty_url, _seed)
    tables, columns = await _run(empty_url, _shape)
    assert "erased_events" not in tables and "deleted_at" not in columns

    await migrations.upgrade(empty_url, "0010")
    assert await migrations.current_revision(empty_url) == "0010"
    tables, columns = await _run(empty_url, _shape)
    assert "erased_events" in tables and {"deleted_at", "purged_at"} <= columns

    # Erase through the storage (which speaks the newest schema, so the later revisions go
    # on too): one event remembered, one project marked deleted.
    await migrations.upgrade(empty_url)
    at = datetime(2026, 12, 8, tzinfo=UTC)
    storage = SqlAlchemyStorage.from_url(empty_url)
    try:
        async with storage.unit_of_work() as uow:
            removed = await uow.erasure.erase_events("t", "live", ["e-live"], at=at)
            assert removed.events == 1
            assert await uow.erasure.mark_project_deleted("t", "dead", at=at)
        async with storage.unit_of_work() as uow:
            assert await uow.erasure.erased_keys("t", "live", ["k-live"]) == {"k-live"}
            assert await uow.projects.get("t", "dead") is None
            assert await uow.projects.get("t", "live") is not None
    finally:
        await storage.close()

    await _run(
        empty_url,
        lambda c: c.execute(
            sa.text(
                "INSERT INTO agent_events (id, project_id, team_id, source_adapter, "
                "idempotency_key, event_type, occurred_at) "
                "VALUES ('e-new', 'live', 't', 'api', 'k-new', 'tool_use', :at)"
            ),
            {"at": at},
        ),
    )
    # Down: the remembered keys go, and a project marked deleted goes with all its rows.
    await migrations.downgrade(empty_url, "0009")
    assert await migrations.current_revision(empty_url) == "0009"
    tables, columns = await _run(empty_url, _shape)
    assert "erased_events" not in tables and not {"deleted_at", "purged_at"} & columns
    projects = await _run(
        empty_url, lambda c: set(c.execute(sa.text("SELECT id FROM projects")).scalars())
    )
    assert projects == {"live"}
    assert await _run(empty_url, _events) == {"e-new"}

    await migrations.upgrade(empty_url)
    assert await migrations.current_revision(empty_url) == migrations.HEAD_REVISION
    tables, columns = await _run(empty_url, _shape)
    assert "erased_events" in tables and "deleted_at" in columns
