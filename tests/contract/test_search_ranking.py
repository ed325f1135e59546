"""Search returns exactly the brute-force ranking, on generated corpora.

The PostgreSQL adapter never scores every match (cached statistics, candidate windows
planned ahead and an exactness check, see ``adapters/sqlalchemy/search.py``); SQLite scores
all matches in SQL. Both must give, for any corpus, query and limit, the rows a brute-force
ranking gives: every row of the project scored by the sum of the idf of the terms it
matches (matching decided by the backend itself, one term at a time), higher scores first,
then newer ``updated_at``, then ``id`` in byte order. The corpora are built to stress the
edges: few words (many ties), few timestamps (ties broken by ids that mix case, digits and
punctuation, whose byte order differs from most collations), a second project as large,
and the PostgreSQL knobs (window sizes, planning, GIN or recency scans, score predicates,
the fallback statement) drawn per example.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.sqlalchemy import search
from claude_mem_core.adapters.sqlalchemy.storage import SqlAlchemyStorage
from claude_mem_core.domain.models import Observation, ObservationKind, Project, Team
from claude_mem_core.domain.search import SearchQuery, parse_query

VOCABULARY = ["login", "redirect", "cache", "token", "schema", "deploy", "parser", "worker"]
FILLER = ["the", "with", "src", "file"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_run = itertools.count()

row_strategy = st.tuples(
    st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=5),
    st.integers(0, 3),  # updated_at: four distinct moments, so many ties
    st.text(alphabet="aAbBzZ09_-.", min_size=1, max_size=6),  # id suffix
)
query_strategy = st.lists(
    st.sampled_from([*VOCABULARY, "missing", "the"]), min_size=1, max_size=5
).map(" ".join)
KNOBS = (
    "FIRST_WINDOW_FACTOR",
    "MIN_FIRST_WINDOW",
    "MAX_PLANNED_WINDOWS",
    "MAX_STATEMENTS",
    "RECENCY_SCAN_ROWS",
    "MAX_WINNING_SETS",
    "MAX_DENSITY_TERMS",
)
knobs_strategy = st.fixed_dictionaries(
    {
        "FIRST_WINDOW_FACTOR": st.sampled_from([1, 4]),
        "MIN_FIRST_WINDOW": st.sampled_from([1, 32]),
        "MAX_PLANNED_WINDOWS": st.sampled_from([1, 2, 5]),
        "MAX_STATEMENTS": st.sampled_from([1, 2, 4]),
        "RECENCY_SCAN_ROWS": st.sampled_from([0, 5_000, 10**9]),
        "MAX_WINNING_SETS": st.sampled_from([0, 32]),
        "MAX_DENSITY_TERMS": st.sampled_from([0, 10]),
    }
)


@pytest.fixture
def sql_url(storage_url: str) -> str:
    if storage_url.startswith("memory"):
        pytest.skip("the in-memory adapter ranks with its own stemmer; see its own tests")
    return storage_url


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


@pytest.fixture
def window_knobs(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Module knobs of the PostgreSQL search, restored after the test."""
    original = {name: getattr(search, name) for name in KNOBS}
    yield original
    for name, value in original.items():
        monkeypatch.setattr(search, name, value)


async def _seed(
    storage: SqlAlchemyStorage, rows: Sequence[tuple[list[str], int, str]], run: int
) -> tuple[str, str]:
    team = Team(id=f"team-{run}", name=f"team {run}", created_at=T0, updated_at=T0)
    projects = [
        Project(id=f"p{n}-{run}", team_id=team.id, name=f"p{n}", created_at=T0, updated_at=T0)
        for n in range(2)
    ]
    async with storage.unit_of_work() as uow:
        await uow.teams.add(team)
        for project in projects:
            await uow.projects.add(project)
        seen: set[str] = set()
        for n, (words, moment, suffix) in enumerate(rows):
            for project in projects:  # the neighbour gets the same rows, shifted
                ident = f"{suffix}~{n}~{run}" if project is projects[0] else f"{project.id}-{n}"
                if ident in seen:
                    continue
                seen.add(ident)
                at = T0 + timedelta(minutes=moment if project is projects[0] else (moment + n) % 4)
                await uow.observations.add(
                    Observation(
                        id=ident,
                        team_id=team.id,
                        project_id=project.id,
                        kind=ObservationKind.MANUAL,
                        content=" ".join([*words, *FILLER[: n % 4]]),
                        facts=tuple(words[: n % 3]),
                        metadata={"n": n, "words": words} if n % 2 else {},
                        created_at=at,
                        updated_at=at,
                    )
                )
    return team.id, projects[0].id


async def _brute_force(
    storage: SqlAlchemyStorage, team_id: str, project_id: str, query: SearchQuery, limit: int
) -> list[tuple[str, float]]:
    """Every row of the project, scored term by term by the backend's own matching."""
    engine = storage.engine
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            texts = [
                (
                    await conn.execute(
                        sa.text("SELECT plainto_tsquery('english', :t)::text"), {"t": term}
                    )
                ).scalar_one()
                for term in query.terms
            ]
            terms = list(dict.fromkeys(text for text in texts if text))
            flags = ", ".join(
                f"content_search @@ CAST(:q{i} AS tsquery)" for i in range(len(terms))
            )
            sql = (
                f"SELECT id, updated_at, {flags or 'true'} FROM observations "
                "WHERE team_id = :team AND project_id = :project"
            )
            params = {f"q{i}": q for i, q in enumerate(terms)}
        else:
            terms = search.fts5_phrases(query.terms)
            flags = ", ".join(
                f"id IN (SELECT observation_id FROM observations_fts "
                f"WHERE observations_fts MATCH :q{i})"
                for i in range(len(terms))
            )
            sql = (
                f"SELECT id, updated_at, {flags or '1'} FROM observations "
                "WHERE team_id = :team AND project_id = :project"
            )
            params = {f"q{i}": q for i, q in enumerate(terms)}
        result = await conn.execute(
            sa.text(sql).columns(sa.column("id", sa.Text), sa.column("updated_at", sa.Text)),
            {**params, "team": team_id, "project": project_id},
        )
        rows = [(r[0], r[1], [bool(m) for m in r[2:]]) for r in result.all()]
    if not terms:
        return []
    total = len(rows)
    df = [sum(1 for _, _, matched in rows if matched[i]) for i in range(len(terms))]
    weights = [search.idf(total, d) for d in df]
    scored = []
    for ident, updated_at, matched in rows:
        if not any(matched):
            continue
        score = search.canonical_score(weights, [i for i, m in enumerate(matched) if m])
        moment = updated_at if isinstance(updated_at, datetime) else _parse(updated_at)
        scored.append((search.rank_key(score, moment, ident), ident, score))
    scored.sort()
    return [(ident, score) for _, ident, score in scored[:limit]]


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _comparable(ranking: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    # SQLite sums in SQL (its own order of additions); PostgreSQL's scores are computed
    # exactly as the brute force computes them.
    return [(ident, round(score, 9)) for ident, score in ranking]


@pytest.mark.slow
def test_search_equals_brute_force_ranking(
    sql_url: str,
    runner: asyncio.Runner,
    window_knobs: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = storage_from_url(sql_url)
    assert isinstance(storage, SqlAlchemyStorage)
    postgres = storage.engine.dialect.name == "postgresql"

    @settings(
        max_examples=60 if postgres else 25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        rows=st.one_of(
            st.lists(row_strategy, max_size=10), st.lists(row_strategy, min_size=40, max_size=150)
        ),
        queries=st.lists(st.tuples(query_strategy, st.integers(1, 6)), min_size=1, max_size=5),
        knobs=knobs_strategy,
    )
    def check(
        rows: list[tuple[list[str], int, str]],
        queries: list[tuple[str, int]],
        knobs: dict[str, Any],
    ) -> None:
        for name, value in {**window_knobs, **knobs}.items():
            monkeypatch.setattr(search, name, value)
        team_id, project_id = runner.run(_seed(storage, rows, next(_run)))
        for text, limit in queries:
            query = parse_query(text)
            expected = runner.run(_brute_force(storage, team_id, project_id, query, limit))

            async def found(query: SearchQuery = query, limit: int = limit) -> Any:
                async with storage.unit_of_work() as uow:
                    return await uow.observations.search(team_id, project_id, query, limit=limit)

            hits = runner.run(found())
            got = [(s.observation.id, s.score) for s in hits]
            stored = runner.run(_stored(storage, team_id, project_id, [i for i, _ in got]))
            assert [s.observation for s in hits] == stored  # whole rows, as written
            if postgres:
                assert got == expected, (text, limit)
            else:
                assert _comparable(got) == _comparable(expected), (text, limit)

    try:
        check()
    finally:
        runner.run(storage.close())


@pytest.mark.postgres
def test_postgres_weights_are_cached_but_matching_is_live(
    postgres_base_url: str, runner: asyncio.Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staleness rule: weights may be STATS_TTL_SECONDS old, new rows are found at once."""
    from claude_mem_core.testing import databases

    url = runner.run(databases.create_postgres_database(postgres_base_url))
    storage = storage_from_url(url)
    assert isinstance(storage, SqlAlchemyStorage)

    async def ranking(query: str) -> list[tuple[str, float]]:
        async with storage.unit_of_work() as uow:
            hits = await uow.observations.search(team, project, parse_query(query), limit=10)
        return [(h.observation.id, h.score) for h in hits]

    try:
        rows = [(["login"], 0, "a"), (["login", "cache"], 1, "b")]
        run = next(_run)
        team, project = runner.run(_seed(storage, rows, run))
        before = runner.run(ranking("login cache"))
        runner.run(_seed_more(storage, team, project))
        stale = runner.run(ranking("login cache"))
        # The new row is found, ranked with the cached weights (two rows, one with cache).
        a, b = f"a~0~{run}", f"b~1~{run}"
        assert [i for i, _ in stale] == [b, "late", a]
        assert dict(stale)[b] == dict(before)[b]
        monkeypatch.setattr(search, "STATS_TTL_SECONDS", 0.0)
        fresh = runner.run(ranking("login cache"))
        assert [i for i, _ in fresh] == [b, "late", a]
        assert dict(fresh)[b] != dict(before)[b]  # now counted over three rows
        expected = runner.run(_brute_force(storage, team, project, parse_query("login cache"), 10))
        assert fresh == expected
    finally:
        runner.run(storage.close())
        runner.run(databases.drop_postgres_database(url))


async def _stored(
    storage: SqlAlchemyStorage, team_id: str, project_id: str, ids: Sequence[str]
) -> list[Observation | None]:
    async with storage.unit_of_work() as uow:
        return [await uow.observations.get(team_id, project_id, i) for i in ids]


async def _seed_more(storage: SqlAlchemyStorage, team: str, project: str) -> None:
    at = T0 + timedelta(minutes=2)
    async with storage.unit_of_work() as uow:
        await uow.observations.add(
            Observation(
                id="late",
                team_id=team,
                project_id=project,
                kind=ObservationKind.MANUAL,
                content="login",
                created_at=at,
                updated_at=at,
            )
        )


@pytest.mark.postgres
def test_postgres_statements_with_and_without_cursor_listeners(
    postgres_base_url: str, runner: asyncio.Runner
) -> None:
    """Terms whose lexemes hold ``%``, quotes or backslashes are found (in a project whose id
    holds them too), whether the search
    statements run on the driver or, with a cursor listener attached, through SQLAlchemy
    (which then shows them to the listener)."""
    from sqlalchemy import event

    from claude_mem_core.testing import databases

    url = runner.run(databases.create_postgres_database(postgres_base_url))
    storage = storage_from_url(url)
    assert isinstance(storage, SqlAlchemyStorage)
    contents = [
        "see http://example.com/a%20b now",
        "path C:\\dir\\cache and it's fine",
        "plain login words",
    ]

    async def seed() -> tuple[str, str]:
        team = Team(id="team-esc", name="team esc", created_at=T0, updated_at=T0)
        # Quotes, a backslash, ``%`` and a colon in the ids: the scope is written as literals.
        project = Project(
            id="p'esc\\%(x)s:y", team_id=team.id, name="p", created_at=T0, updated_at=T0
        )
        async with storage.unit_of_work() as uow:
            await uow.teams.add(team)
            await uow.projects.add(project)
            for n, content in enumerate(contents):
                at = T0 + timedelta(minutes=n)
                await uow.observations.add(
                    Observation(
                        id=f"esc-{n}",
                        team_id=team.id,
                        project_id=project.id,
                        kind=ObservationKind.MANUAL,
                        content=content,
                        created_at=at,
                        updated_at=at,
                    )
                )
        return team.id, project.id

    async def ids(team: str, project: str, text: str) -> list[str]:
        async with storage.unit_of_work() as uow:
            hits = await uow.observations.search(team, project, parse_query(text), limit=10)
        return [h.observation.id for h in hits]

    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    questions = {
        "example.com/a%20b": ["esc-0"],
        "C:\\dir\\cache it's": ["esc-1"],
        "login %% : \\ '": ["esc-2"],
    }
    try:
        team, project = runner.run(seed())
        for _ in range(3):  # again: the statements this process ran before are prepared
            for text, expected in questions.items():
                assert runner.run(ids(team, project, text)) == expected, text
        assert seen == []
        event.listen(storage.engine.sync_engine, "before_cursor_execute", listen)
        search.clear_caches()
        for text, expected in questions.items():
            assert runner.run(ids(team, project, text)) == expected, text
        assert any("plainto_tsquery" in s for s in seen)
        assert any("WITH win AS" in s for s in seen)
    finally:
        runner.run(storage.close())
        runner.run(databases.drop_postgres_database(url))
