"""The tenancy rule has one statement in Python (``TenantScope.admits``) and one in SQL
(``tenant_filter.admitted``, and ``bound`` for statements built once): for any rows and any
scope, they select the same rows, on SQLite and on PostgreSQL. NULL team or project ids
are among the rows (team-less audit rows, team-wide keys), since that is where SQL's
three-valued logic could part ways."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from claude_mem_core.adapters.sqlalchemy.tenant_filter import admitted, bound, of_tenant
from claude_mem_core.domain.tenancy import TenantScope

TEAMS = ["team-a", "team-b", "team-c"]
PROJECTS = ["p-1", "p-2", "p-3", "p-4"]

_metadata = sa.MetaData()
rows_table = sa.Table(
    "tenant_filter_rows",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("team_id", sa.Text, nullable=True),
    sa.Column("project_id", sa.Text, nullable=True),
    prefixes=["TEMPORARY"],
)

team_ids = st.one_of(st.none(), st.sampled_from(TEAMS))
project_ids = st.one_of(st.none(), st.sampled_from(PROJECTS))
rows_of = st.lists(st.tuples(team_ids, project_ids), max_size=30)
scopes = st.builds(TenantScope, team_ids, project_ids)


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def connection(request: pytest.FixtureRequest) -> Iterator[sa.Connection]:
    if request.param == "sqlite":
        engine = sa.create_engine("sqlite://")
    else:
        engine = sa.create_engine(request.getfixturevalue("postgres_base_url"))
    with engine.connect() as conn:
        # A temporary table lives and dies with this connection: nothing is left behind.
        _metadata.create_all(conn)
        conn.commit()
        yield conn
    engine.dispose()


def _selected(
    conn: sa.Connection,
    rows: list[tuple[str | None, str | None]],
    where: sa.ColumnElement[bool],
    params: dict[str, str] | None = None,
) -> set[int]:
    conn.execute(sa.delete(rows_table))
    if rows:
        conn.execute(
            sa.insert(rows_table),
            [{"id": i, "team_id": t, "project_id": p} for i, (t, p) in enumerate(rows)],
        )
    stmt = sa.select(rows_table.c.id).where(where)
    found = {int(i) for i in conn.execute(stmt, params or {}).scalars()}
    conn.rollback()
    return found


@given(rows=rows_of, scope=scopes)
def test_sql_clause_selects_the_rows_the_predicate_admits(
    connection: sa.Connection, rows: list[tuple[str | None, str | None]], scope: TenantScope
) -> None:
    expected = {i for i, (team, project) in enumerate(rows) if scope.admits(team, project)}
    assert _selected(connection, rows, admitted(scope, rows_table.c)) == expected
    if scope.team_id is not None:  # a statement built once always names a team
        params = {"team_id": scope.team_id}
        if scope.project_id is not None:
            params["project_id"] = scope.project_id
        project = None if scope.project_id is None else "project_id"
        clause = bound(rows_table.c, project=project)
        assert _selected(connection, rows, clause, params) == expected


@given(rows=rows_of, team=st.sampled_from(TEAMS), project=st.sampled_from(PROJECTS))
def test_one_project_of_one_team_is_that_scope(
    connection: sa.Connection, rows: list[tuple[str | None, str | None]], team: str, project: str
) -> None:
    scope = TenantScope(team, project)
    expected = {i for i, row in enumerate(rows) if row == (team, project)}
    assert {i for i, (t, p) in enumerate(rows) if scope.admits(t, p)} == expected
    assert _selected(connection, rows, of_tenant(team, project, rows_table.c)) == expected


def test_a_caller_outside_the_team_or_the_project_admits_nothing_of_it() -> None:
    team_key = TenantScope("team-a")
    project_key = TenantScope("team-a", "p-1")
    assert team_key.admits("team-a", "p-1") and team_key.admits("team-a", "p-2")
    assert not team_key.admits("team-b", "p-1")
    assert project_key.admits("team-a", "p-1")
    assert not project_key.admits("team-a", "p-2")
    assert not project_key.admits("team-b", "p-1")
    assert not project_key.admits(None, "p-1")
