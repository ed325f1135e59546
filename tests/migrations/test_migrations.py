"""Alembic history of the SQL storage, on SQLite and PostgreSQL."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from claude_mem_core import migrations
from claude_mem_core.adapters.sqlalchemy import (
    SqlAlchemyStorage,
    dialects,
    schema_compare,
    search_tables,
    tables,
)
from claude_mem_core.errors import SchemaNotReady
from claude_mem_core.testing import databases

APP_TABLES = set(tables.metadata.tables)


async def _table_names(url: str) -> set[str]:
    engine = dialects.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def _sync_call(url: str, fn: Any) -> Any:
    engine = dialects.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def test_head_constant_matches_the_scripts() -> None:
    assert migrations.head_revision() == migrations.HEAD_REVISION


def test_scripts_are_found_from_the_package() -> None:
    location = migrations.script_location()
    assert (location / "env.py").is_file()
    assert (location / "versions").is_dir()


def test_constraint_names_fit_postgres_identifiers() -> None:
    # Longer names would be truncated by PostgreSQL and differ from SQLite's, so alembic
    # would see phantom renames.
    for table in tables.metadata.tables.values():
        items: list[sa.Constraint | sa.Index] = [*table.constraints, *table.indexes]
        for item in items:
            assert isinstance(item.name, str), f"unnamed {item!r} on {table.name}"
            assert len(item.name) <= 63, item.name


@pytest.mark.slow
async def test_upgrade_downgrade_upgrade(empty_url: str) -> None:
    assert await migrations.current_revision(empty_url) is None
    await migrations.upgrade(empty_url)
    assert await migrations.current_revision(empty_url) == migrations.HEAD_REVISION
    assert await _table_names(empty_url) >= APP_TABLES

    await migrations.downgrade(empty_url, "base")
    assert await migrations.current_revision(empty_url) is None
    assert await _table_names(empty_url) <= {"alembic_version"}

    await migrations.upgrade(empty_url)
    await migrations.upgrade(empty_url)  # idempotent at head
    assert await migrations.current_revision(empty_url) == migrations.HEAD_REVISION


async def test_metadata_matches_the_migrated_database(migrated_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    def diff(conn: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": schema_compare.include_name,
                "include_object": schema_compare.make_include_object(conn.dialect.name),
            },
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "cannot compare computed column"
            return list(compare_metadata(context, tables.metadata))

    assert await _sync_call(migrated_url, diff) == []


async def test_check_schema_refuses_an_empty_database(empty_url: str) -> None:
    storage = SqlAlchemyStorage.from_url(empty_url)
    try:
        with pytest.raises(SchemaNotReady, match="claude-mem migrate"):
            await storage.check_schema()
    finally:
        await storage.close()


async def test_check_schema_refuses_an_outdated_database(migrated_url: str) -> None:
    storage = SqlAlchemyStorage.from_url(migrated_url)
    try:
        await storage.check_schema()  # at head: fine
        async with storage.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '0000'"))
        with pytest.raises(SchemaNotReady, match=r"0000.*claude-mem migrate"):
            await storage.check_schema()
    finally:
        await storage.close()


@pytest.mark.postgres
async def test_gin_index_exists_and_serves_search(postgres_base_url: str) -> None:
    url = await databases.create_postgres_database(postgres_base_url)
    try:

        def inspect(conn: sa.Connection) -> tuple[Any, str]:
            indexdef = conn.execute(
                sa.text(
                    "SELECT indexdef FROM pg_indexes "
                    "WHERE tablename = 'search_passages' AND indexname = :name"
                ),
                {"name": search_tables.PASSAGE_TERMS_INDEX},
            ).scalar_one_or_none()
            conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(
                conn.execute(
                    sa.text(
                        "EXPLAIN SELECT id FROM search_passages WHERE terms @@ $$'login'$$::tsquery"
                    )
                ).scalars()
            )
            return indexdef, plan

        indexdef, plan = await _sync_call(url, inspect)
        assert indexdef is not None and "USING gin (terms)" in indexdef
        assert search_tables.PASSAGE_TERMS_INDEX in plan
    finally:
        await databases.drop_postgres_database(url)


@pytest.mark.sqlite
async def test_fts5_index_follows_the_passages(tmp_path: Path) -> None:
    url = await databases.migrated_sqlite_url(tmp_path)

    def check(conn: sa.Connection) -> None:
        triggers = set(
            conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars()
        )
        # (The change feed's triggers, revision 0011, are checked by its own test.)
        assert {t for t in triggers if t.startswith("search_")} == {
            "search_fts_insert",
            "search_fts_delete",
        }
        conn.execute(sa.text("INSERT INTO teams (id, name) VALUES ('t', 't')"))
        conn.execute(sa.text("INSERT INTO projects (id, team_id, name) VALUES ('p', 't', 'p')"))
        conn.execute(
            sa.text(
                "INSERT INTO observations (id, team_id, project_id, content) "
                "VALUES ('o', 't', 'p', 'fixed auth/middleware.py')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO search_passages (team_id, project_id, observation_id, origin, "
                "length, tf, terms) VALUES ('t', 'p', 'o', 'observation', 4, '{}', "
                "'fix auth/middleware.py auth middlewar py')"
            )
        )

        def hits(term: str) -> list[int]:
            return list(
                conn.execute(
                    sa.text("SELECT rowid FROM search_fts WHERE search_fts MATCH :q"),
                    {"q": f'"{term}"'},
                ).scalars()
            )

        # Whitespace is the only separator: a path is one term, as Python made it.
        assert len(hits("auth/middleware.py")) == 1 and len(hits("middlewar")) == 1
        assert hits("middleware.py") == []
        conn.execute(sa.text("DELETE FROM projects WHERE id = 'p'"))  # cascades
        assert hits("auth/middleware.py") == []

    await _sync_call(url, check)


async def test_upgrade_indexes_stored_observations_with_their_events(empty_url: str) -> None:
    """Revision 0003 indexes what 0002 stored: an observation is found by its own words
    and by the words of the event it was made from, ranked by the statistics it counted."""
    from claude_mem_core.domain.tokens import parse_query

    await migrations.upgrade(empty_url, "0002")
    engine = dialects.create_engine(empty_url, poolclass=sa.pool.NullPool)
    try:
        async with engine.begin() as conn:
            for sql in (
                "INSERT INTO teams (id, name) VALUES ('t', 't')",
                "INSERT INTO projects (id, team_id, name) VALUES ('p', 't', 'p')",
                "INSERT INTO agent_events (id, team_id, project_id, source_adapter, "
                "idempotency_key, event_type, payload, occurred_at, received_at) VALUES "
                "('e', 't', 'p', 'api', 'k', 'tool_use', "
                """'{"tool_name": "Bash", "tool_response": "FAILED test_redirect_loop"}', """
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                "INSERT INTO observations (id, team_id, project_id, title, content, facts) "
                "VALUES ('o', 't', 'p', 'Ran the tests', 'Ran the test suite', '[\"a fact\"]')",
                "INSERT INTO observations (id, team_id, project_id, title, content) "
                "VALUES ('o2', 't', 'p', 'Read docs', 'Looked at the README')",
                "INSERT INTO observation_sources (id, observation_id, team_id, project_id, "
                "source_type, source_id, agent_event_id) "
                "VALUES ('s', 'o', 't', 'p', 'agent_event', 'e', 'e')",
            ):
                await conn.execute(sa.text(sql))
    finally:
        await engine.dispose()
    await migrations.upgrade(empty_url)
    storage = SqlAlchemyStorage.from_url(empty_url)
    try:
        async with storage.unit_of_work() as uow:
            by_event = await uow.search.search("t", "p", parse_query("test_redirect_loop"), limit=5)
            by_own = await uow.search.search("t", "p", parse_query("README"), limit=5)
    finally:
        await storage.close()
    assert [h.observation.id for h in by_event] == ["o"]
    assert by_event[0].observation.facts == ("a fact",)
    assert by_event[0].evidence[0].event_id == "e"
    assert [h.observation.id for h in by_own] == ["o2"]


async def test_any_kind_upgrade_keeps_rows_and_downgrade_restores_the_check(
    empty_url: str,
) -> None:
    """Revision 0004 drops the check of the three known kinds without touching a row (on
    SQLite nothing referencing an observation is deleted); the downgrade makes other
    kinds ``manual`` and checks again."""
    await migrations.upgrade(empty_url, "0003")
    insert = (
        "INSERT INTO observations (id, team_id, project_id, kind, content) "
        "VALUES (:id, 't', 'p', :kind, 'x')"
    )
    engine = dialects.create_engine(empty_url, poolclass=sa.pool.NullPool)

    async def count(conn: Any, table: str) -> int:
        return int((await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one())

    try:
        async with engine.begin() as conn:
            for sql in (
                "INSERT INTO teams (id, name) VALUES ('t', 't')",
                "INSERT INTO projects (id, team_id, name) VALUES ('p', 't', 'p')",
                "INSERT INTO observation_sources (id, observation_id, team_id, project_id, "
                "source_type, source_id) VALUES ('s', 'o', 't', 'p', 'manual', 'k')",
                "INSERT INTO search_passages (team_id, project_id, observation_id, origin, "
                "length, tf, terms) VALUES ('t', 'p', 'o', 'observation', 1, '{}', 'x')",
            ):
                if "observation_sources" in sql:
                    await conn.execute(sa.text(insert), {"id": "o", "kind": "manual"})
                await conn.execute(sa.text(sql))
        with pytest.raises(sa.exc.IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(sa.text(insert), {"id": "o2", "kind": "decision"})
        await migrations.upgrade(empty_url)
        async with engine.begin() as conn:
            for table in ("observations", "observation_sources", "search_passages"):
                assert await count(conn, table) == 1, table
            await conn.execute(sa.text(insert), {"id": "o2", "kind": "team:infra/decision"})
        await migrations.downgrade(empty_url, "0003")
        async with engine.begin() as conn:
            kinds = await conn.execute(sa.text("SELECT id, kind FROM observations ORDER BY id"))
            assert [tuple(r) for r in kinds] == [("o", "manual"), ("o2", "manual")]
            assert await count(conn, "observation_sources") == 1
        with pytest.raises(sa.exc.IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(sa.text(insert), {"id": "o3", "kind": "decision"})
        await migrations.upgrade(empty_url)
        assert await migrations.current_revision(empty_url) == migrations.HEAD_REVISION
    finally:
        await engine.dispose()


async def test_max_passages_upgrade_counts_each_projects_largest_observation(
    empty_url: str,
) -> None:
    """Revision 0005 gives every project the most passages one of its observations has
    (what bounds PostgreSQL's pruning), from the passages already stored; a downgrade drops
    the column and an upgrade counts again."""
    await migrations.upgrade(empty_url, "0004")
    statements = [
        "INSERT INTO teams (id, name) VALUES ('t', 't')",
        "INSERT INTO projects (id, team_id, name) VALUES ('p1', 't', 'p1'), ('p2', 't', 'p2')",
    ]
    for oid, project_id, passages in (("a", "p1", 3), ("b", "p1", 1), ("c", "p2", 1)):
        statements.append(
            "INSERT INTO observations (id, team_id, project_id, content) "
            f"VALUES ('{oid}', 't', '{project_id}', '{oid}')"
        )
        statements.extend(
            "INSERT INTO search_passages (team_id, project_id, observation_id, origin, ordinal, "
            f"length, tf, terms) VALUES ('t', '{project_id}', '{oid}', "
            f"'{'event' if n else 'observation'}', {n}, 1, '{{\"text\": 1}}', 'text')"
            for n in range(passages)
        )
        statements.append(
            "INSERT INTO search_stats (team_id, project_id, shard, passages, tokens, min_length) "
            f"VALUES ('t', '{project_id}', {passages}, {passages}, {passages}, 1)"
        )
    engine = dialects.create_engine(empty_url, poolclass=sa.pool.NullPool)
    try:
        async with engine.begin() as conn:
            for sql in statements:
                await conn.execute(sa.text(sql))
    finally:
        await engine.dispose()

    def counts(conn: sa.Connection) -> dict[str, int]:
        rows = conn.execute(
            sa.text("SELECT project_id, max(max_passages) FROM search_stats GROUP BY project_id")
        )
        return {str(p): int(n) for p, n in rows}

    # Up to 0005 only: a later revision rebuilds passages from observations, and these
    # passages are made up.
    await migrations.upgrade(empty_url, "0005")
    assert await _sync_call(empty_url, counts) == {"p1": 3, "p2": 1}
    await migrations.downgrade(empty_url, "0004")
    await migrations.upgrade(empty_url, "0005")
    assert await _sync_call(empty_url, counts) == {"p1": 3, "p2": 1}


@pytest.mark.parametrize(
    ("before", "old_term", "other_term", "content", "by_code", "by_word"),
    [
        # 0008: "repository" folds onto "repo" (REPO_ROOT's part).
        ("0007", "repository", "root", "Found the repository root", "REPO_ROOT", "repositories"),
        # 0009: a logger's "WRN" folds onto "warning".
        ("0008", "warning", "entry", "Warning: invalid entry", "WRN", "warnings"),
    ],
)
async def test_abbreviation_upgrade_reindexes_passages_written_with_old_terms(
    empty_url: str,
    before: str,
    old_term: str,
    other_term: str,
    content: str,
    by_code: str,
    by_word: str,
) -> None:
    """Revisions 0008 and 0009 rebuild passages whose terms predate a folding: a passage
    stored with the old term (``repository``, ``warning``) is found by its abbreviation
    ("REPO_ROOT", "WRN") afterwards, and the statistics count it once."""
    from claude_mem_core.domain.tokens import parse_query

    await migrations.upgrade(empty_url, before)
    engine = dialects.create_engine(empty_url, poolclass=sa.pool.NullPool)
    try:
        async with engine.begin() as conn:
            for sql, params in (
                ("INSERT INTO teams (id, name) VALUES ('t', 't')", {}),
                ("INSERT INTO projects (id, team_id, name) VALUES ('p', 't', 'p')", {}),
                (
                    "INSERT INTO observations (id, team_id, project_id, title, content) "
                    "VALUES ('o', 't', 'p', :content, :content)",
                    {"content": content},
                ),
                # What the tokenizer wrote before the revision: the word itself.
                (
                    "INSERT INTO search_passages (team_id, project_id, observation_id, origin, "
                    "length, tf, terms) VALUES ('t', 'p', 'o', 'observation', 2, :tf, :terms)",
                    {
                        "tf": f'{{"{old_term}": 1.0, "{other_term}": 1.0}}',
                        "terms": f"{old_term} {other_term}",
                    },
                ),
                (
                    "INSERT INTO search_stats (team_id, project_id, shard, passages, tokens, "
                    "min_length, max_passages) VALUES ('t', 'p', 0, 1, 2, 2, 1)",
                    {},
                ),
                (
                    "INSERT INTO search_terms (team_id, project_id, term, shard, df, max_tf) "
                    "VALUES ('t', 'p', :term, 0, 1, 1.0)",
                    {"term": old_term},
                ),
            ):
                await conn.execute(sa.text(sql), params)
    finally:
        await engine.dispose()

    # Today's search cannot read this schema (later revisions add observation columns), so
    # what it would match is checked on the terms: the stored term is the word, and the
    # query's is the abbreviation (neither it whole nor all of its parts are stored).
    def stored_terms(conn: sa.Connection) -> set[str]:
        return set(str(conn.execute(sa.text("SELECT terms FROM search_passages")).scalar()).split())

    held = await _sync_call(empty_url, stored_terms)
    assert not any(
        t.term in held or (t.parts and set(t.parts) <= held) for t in parse_query(by_code).terms
    )

    await migrations.upgrade(empty_url)
    storage = SqlAlchemyStorage.from_url(empty_url)
    try:
        async with storage.unit_of_work() as uow:
            code_hits = await uow.search.search("t", "p", parse_query(by_code), limit=5)
            word_hits = await uow.search.search("t", "p", parse_query(by_word), limit=5)
    finally:
        await storage.close()
    assert [h.observation.id for h in code_hits] == ["o"]
    assert [h.observation.id for h in word_hits] == ["o"]

    def counts(conn: sa.Connection) -> tuple[Any, ...]:
        passages = conn.execute(sa.text("SELECT count(*) FROM search_passages")).scalar()
        stats = conn.execute(sa.text("SELECT sum(passages) FROM search_stats")).scalar()
        old = conn.execute(
            sa.text("SELECT count(*) FROM search_terms WHERE term = :term"), {"term": old_term}
        ).scalar()
        return passages, stats, old

    assert await _sync_call(empty_url, counts) == (1, 1, 0)


async def test_search_vectors_upgrade_adds_an_empty_table_and_downgrade_keeps_passages(
    empty_url: str,
) -> None:
    """Revision 0007 adds ``search_vectors`` (empty: the backfill fills it), whose rows go
    with their passage; its downgrade drops only that table."""
    await migrations.upgrade(empty_url, "0006")
    engine = dialects.create_engine(empty_url, poolclass=sa.pool.NullPool)

    async def count(conn: Any, table: str) -> int:
        return int((await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one())

    try:
        async with engine.begin() as conn:
            for sql in (
                "INSERT INTO teams (id, name) VALUES ('t', 't')",
                "INSERT INTO projects (id, team_id, name) VALUES ('p', 't', 'p')",
                "INSERT INTO observations (id, team_id, project_id, content) "
                "VALUES ('o', 't', 'p', 'x'), ('o2', 't', 'p', 'y')",
                "INSERT INTO search_passages (team_id, project_id, observation_id, origin, "
                "length, tf, terms) VALUES ('t', 'p', 'o', 'observation', 1, '{}', 'x'), "
                "('t', 'p', 'o2', 'observation', 1, '{}', 'y')",
            ):
                await conn.execute(sa.text(sql))
        await migrations.upgrade(empty_url, "0007")
        async with engine.begin() as conn:
            assert await count(conn, "search_vectors") == 0
            await conn.execute(
                sa.text(
                    "INSERT INTO search_vectors (passage_id, model, team_id, project_id, "
                    "observation_id, vector) SELECT id, 'm', team_id, project_id, "
                    "observation_id, :vector FROM search_passages"
                ),
                {"vector": b"\x00\x00\x80\x3f"},
            )
            await conn.execute(sa.text("DELETE FROM observations WHERE id = 'o2'"))
            rows = await conn.execute(sa.text("SELECT observation_id, vector FROM search_vectors"))
            assert [(r[0], bytes(r[1])) for r in rows] == [("o", b"\x00\x00\x80\x3f")]
        await migrations.downgrade(empty_url, "0006")
        assert "search_vectors" not in await _table_names(empty_url)
        async with engine.begin() as conn:
            assert await count(conn, "search_passages") == 1
    finally:
        await engine.dispose()
