"""Revision 0018 (k1 1.2 -> 2.0) computes PostgreSQL's high-impact terms again, so the
pruning of a database written before it stays exact (see the revision's docstring)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from claude_mem_core import migrations
from claude_mem_core.adapters.sqlalchemy import dialects
from claude_mem_core.domain import ranking

# At length 140, "twice" (f 2) reaches the threshold with k1 2.0 (1.54) but not with 1.2
# (1.40); "once" (f 1) reaches it with neither.
TF = {"twice": 2.0, "once": 1.0}
LENGTH = 140


async def _execute(url: str, *statements: str) -> list[Any]:
    engine = dialects.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        async with engine.begin() as conn:
            result: list[Any] = []
            for sql in statements:
                rows = await conn.execute(sa.text(sql))
                result = list(rows) if rows.returns_rows else []
            return result
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_the_upgrade_recomputes_high_impact_terms_with_the_new_k1(
    postgres_base_url: str,
) -> None:
    from claude_mem_core.testing import databases

    url = await databases.create_postgres_database(postgres_base_url, migrated=False)
    try:
        await migrations.upgrade(url, "0017")
        await _execute(
            url,
            "INSERT INTO teams (id, name) VALUES ('t', 't')",
            "INSERT INTO projects (id, team_id, name) VALUES ('p', 't', 'p')",
            "INSERT INTO observations (id, team_id, project_id, content) "
            "VALUES ('o', 't', 'p', 'twice twice once')",
            "INSERT INTO search_passages (team_id, project_id, observation_id, origin, ordinal, "
            "length, tf, terms, terms_hi) VALUES ('t', 'p', 'o', 'observation', 0, "
            f"{LENGTH}, '{{\"twice\": 2.0, \"once\": 1.0}}', 'once twice', '')",
        )
        select = "SELECT terms_hi::text FROM search_passages"

        await migrations.upgrade(url, "0018")
        assert ranking.high_impact_terms(TF, LENGTH) == ["twice"]  # the model of today
        assert await _execute(url, select) == [("'twice'",)]

        await migrations.downgrade(url, "0017")
        assert await _execute(url, select) == [("",)]
    finally:
        await databases.drop_postgres_database(url)
