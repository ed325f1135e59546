"""The token ledger (issue #16, item 4) through the use cases, on every storage backend:
every paid provider call writes one row with its tokens and estimated cost, whatever
becomes of its answer; the offline provider writes none; reports sum by day, model and
project, never across tenants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters.inprocess_queue import InProcessQueue
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.domain.prices import estimate_cost
from claude_mem_core.errors import InvalidInput, NotFound
from claude_mem_core.ports.provider import GenerationRequest
from claude_mem_core.ports.storage import Storage
from claude_mem_core.services import usage
from claude_mem_core.services.context import Caller
from claude_mem_core.testing.fakes import FixedClock, ScriptedProvider

OBSERVATION = """<observation>
  <type>change</type>
  <title>Edited the redirect check</title>
  <narrative>Three edits to the auth middleware.</narrative>
</observation>"""


class Anthropic(ScriptedProvider):
    """A scripted provider that says it is Anthropic's, so its calls have a list price."""

    name = "anthropic"


def _answer(request: GenerationRequest) -> str:
    return OBSERVATION if request.purpose == "observations" else "not xml at all"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 6, 1, 12, tzinfo=UTC))


@pytest.fixture
def provider() -> Anthropic:
    return Anthropic(default=_answer, model="claude-sonnet-4-5-20250929")


@pytest.fixture
async def mem(storage: Storage, clock: FixedClock, provider: Anthropic) -> Memory:
    return Memory(storage=storage, queue=InProcessQueue(), provider=provider, clock=clock)


@pytest.fixture
async def scope(mem: Memory) -> Scope:
    team, project = await mem.ensure_project("acme", "app")
    return Scope(team_id=team.id, project_id=project.id)


async def _tool_use(mem: Memory, scope: Scope, n: int, session_id: str | None = None) -> None:
    await mem.ingest(
        scope,
        event_type="tool_use",
        session_id=session_id,
        payload={"tool_name": "Edit", "tool_input": {"file_path": f"src/f{n}.py"}},
    )


async def test_each_paid_call_is_in_the_ledger_with_its_tokens_and_cost(
    mem: Memory, scope: Scope, provider: Anthropic
) -> None:
    for n in range(3):
        await _tool_use(mem, scope, n)
    await mem.drain()
    assert len(provider.requests) == 3

    report = await mem.usage_report(scope, days=1, group_by="model")

    assert [r.group for r in report.rows] == ["anthropic/claude-sonnet-4-5-20250929"]
    row = report.rows[0]
    sent = sum(len(r.prompt) // 4 for r in provider.requests)
    answered = 3 * (len(OBSERVATION) // 4)
    assert (row.calls, row.input_tokens, row.output_tokens) == (3, sent, answered)
    assert row.cost_usd == pytest.approx(estimate_cost("anthropic", provider.model, sent, answered))
    assert row.cost_usd == pytest.approx((sent * 3.0 + answered * 15.0) / 1e6)
    assert row.unpriced_calls == 0
    assert report.total.calls == 3


async def test_a_call_whose_answer_is_unusable_is_still_billed(mem: Memory, scope: Scope) -> None:
    session = (await mem.start_session(scope, external_session_id="s")).session
    await _tool_use(mem, scope, 1, session.id)
    await mem.end_session(scope, session.id)
    await mem.drain()  # the summary's answer does not parse: the job fails, the call cost
    report = await mem.usage_report(scope, days=1, group_by="model")
    assert report.total.calls == 2


async def test_reports_group_by_day_and_project_and_stay_in_the_team(
    mem: Memory, scope: Scope, clock: FixedClock, storage: Storage, provider: Anthropic
) -> None:
    team, other_project = await mem.ensure_project("acme", "other")
    other = Scope(team_id=team.id, project_id=other_project.id)
    await _tool_use(mem, scope, 1)
    await mem.drain()
    clock.advance(timedelta(days=1).total_seconds())
    await _tool_use(mem, scope, 2)
    await _tool_use(mem, other, 3)
    await mem.drain()
    _, stranger_project = await mem.ensure_project("globex", "app")

    by_day = await mem.usage_report(scope, days=7, group_by="day")
    assert [(r.group, r.calls) for r in by_day.rows] == [("2026-06-01", 1), ("2026-06-02", 1)]

    team_wide = Caller(team_id=team.id, scopes={"jobs:read"})
    by_project = await usage.report(mem.deps, team_wide, days=7, group_by="project")
    assert sorted((r.group, r.calls) for r in by_project.rows) == sorted(
        [(scope.project_id, 2), (other.project_id, 1)]
    )
    recent = await usage.report(mem.deps, team_wide, days=1, group_by="project")
    assert recent.total.calls == 2  # the first day's call is outside the last day

    with pytest.raises(NotFound):
        await usage.report(mem.deps, team_wide, project_id=stranger_project.id)
    project_key = Caller(team_id=team.id, project_id=scope.project_id, scopes={"memories:read"})
    assert (await usage.report(mem.deps, project_key, group_by="project")).total.calls == 2
    with pytest.raises(NotFound):
        await usage.report(mem.deps, project_key, project_id=other.project_id)


async def test_unknown_models_are_counted_not_priced(storage: Storage, clock: FixedClock) -> None:
    provider = Anthropic(default=_answer, model="claude-from-the-future")
    mem = Memory(storage=storage, queue=InProcessQueue(), provider=provider, clock=clock)
    team, project = await mem.ensure_project("acme", "app")
    scope = Scope(team_id=team.id, project_id=project.id)
    await _tool_use(mem, scope, 1)
    await mem.drain()
    total = (await mem.usage_report(scope, days=1)).total
    assert (total.calls, total.unpriced_calls, total.cost_usd) == (1, 1, 0.0)


async def test_the_offline_provider_writes_nothing(storage: Storage, clock: FixedClock) -> None:
    mem = Memory(storage=storage, queue=InProcessQueue(), provider=OfflineProvider(), clock=clock)
    team, project = await mem.ensure_project("acme", "app")
    scope = Scope(team_id=team.id, project_id=project.id)
    await _tool_use(mem, scope, 1)
    assert await mem.drain() == 1
    assert (await mem.usage_report(scope, days=1)).rows == []


@pytest.mark.parametrize(
    ("days", "group_by", "field"),
    [(0, "day", "days"), (367, "day", "days"), ("7", "day", "days"), (7, "week", "groupBy")],
)
async def test_bad_report_arguments_name_the_field(
    mem: Memory, scope: Scope, days: object, group_by: object, field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        await mem.usage_report(scope, days=days, group_by=group_by)  # type: ignore[arg-type]
    assert raised.value.issues[0].path == field
