"""The web viewer in headless Chromium against a real ``claude-mem serve``: sign in (and a
wrong key), a new observation appearing without reload (the live stream), search with the
matched words marked, a session's timeline, a failed job retried from the page, stats, and
stored markup shown as text."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from viewerkit import Server, screenshot, sign_in, start_server, stop_server

from claude_mem_core.testing.fake_llm import FakeLLMServer, Reply, Status

pytestmark = pytest.mark.browser

SCRIPT = "<script>alert(1)</script>"
# Would set a flag if it were ever parsed as HTML rather than shown as text.
IMG = '<img src="x" onerror="window.__injected = true">'


def now_ms() -> int:
    return int(time.time() * 1000)


def post_event(server: Server, payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {
        "projectId": server.project_id,
        "sourceType": "hook",
        "eventType": "tool_use",
        "occurredAtEpoch": now_ms(),
        "payload": payload,
        **fields,
    }
    reply = server.call("POST", "/v1/events?wait=true", body)
    assert reply.status == 201, reply.body
    assert reply.body["generationJob"]["status"] == "completed", reply.body
    return dict(reply.body["event"])


def wait_for_job(server: Server, job_id: str, status: str, timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = server.call("GET", f"/v1/jobs/{job_id}").body["generationJob"]
        if job["status"] == status:
            return dict(job)
        assert time.monotonic() < deadline, f"job {job_id} stayed {job['status']}"
        time.sleep(0.1)


def assert_clean(page: Any) -> None:
    """No script error, no dialog, nothing injected. (Refused API calls log "Failed to load
    resource" in the console; those are expected, and shown on the page.)"""
    problems = page.problems
    assert problems.dialogs == []
    assert [e for e in problems.errors if "Failed to load resource" not in e] == []
    assert page.evaluate("window.__injected === undefined")


# -- sign in -------------------------------------------------------------------------------


def test_a_wrong_key_is_refused_clearly_and_kept_nowhere(page: Any, server: Server) -> None:
    page.goto(server.url("/viewer/"))
    screenshot(page, "sign-in")
    page.get_by_label("API key").fill("cmem_not_a_real_key")
    page.get_by_role("button", name="Sign in").click()
    alert = page.locator("#sign-in-error")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("That key was refused")
    expect(alert).to_contain_text("403")
    assert page.evaluate("sessionStorage.length") == 0
    expect(page.get_by_label("API key")).to_have_value("")
    assert "cmem_not_a_real_key" not in page.url
    assert_clean(page)


def test_sign_in_lists_projects_and_sign_out_forgets_the_key(page: Any, server: Server) -> None:
    sign_in(page, server)
    expect(page.get_by_label("Project")).to_contain_text(server.project_name)
    stored = page.evaluate("Object.values(sessionStorage)")
    assert server.keys["full"] in stored  # in this tab's storage, and only there:
    assert page.context.cookies() == []
    assert server.keys["full"] not in page.url
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert_clean(page)


# -- live ----------------------------------------------------------------------------------


def test_a_new_observation_appears_without_reload(page: Any, server: Server) -> None:
    sign_in(page, server)
    expect(page.locator("#live-status")).to_have_text("Live")
    page.evaluate("window.__sameDocument = true")
    marker = f"live-{uuid.uuid4().hex[:8]}"
    post_event(
        server,
        {"tool_name": "Bash", "tool_input": {"command": f"echo {marker}"}, "tool_response": "ok"},
    )
    fresh = page.locator("#live-list li.fresh", has_text=marker)
    expect(fresh).to_be_visible()
    assert page.evaluate("window.__sameDocument === true")  # no reload happened
    screenshot(page, "live")
    assert_clean(page)


# -- search --------------------------------------------------------------------------------


def test_search_shows_the_excerpt_with_the_term_marked(page: Any, server: Server) -> None:
    post_event(
        server,
        {
            "tool_name": "Bash",
            "tool_input": {"command": "pytest -k zanzibar_checkout"},
            "tool_response": "3 passed: the zanzibar_checkout flow is fixed",
        },
    )
    sign_in(page, server)
    page.get_by_role("tab", name="Search").click()
    page.get_by_label("Search the memory").fill("zanzibar_checkout")
    page.get_by_role("button", name="Search", exact=True).click()
    hit = page.locator("#search-results li.hit").first
    expect(hit).to_be_visible()
    expect(hit.locator(".item-title")).to_contain_text("pytest -k zanzibar_checkout")
    expect(hit.locator(".excerpt mark").first).to_have_text("zanzibar_checkout")
    assert "**" not in hit.locator(".excerpts").inner_text()
    screenshot(page, "search")
    assert_clean(page)


# -- stored markup -------------------------------------------------------------------------


def test_stored_markup_is_shown_as_text_and_never_runs(page: Any, server: Server) -> None:
    memory = server.call(
        "POST",
        "/v1/memories",
        {"projectId": server.project_id, "content": f"Careful: {SCRIPT} and {IMG}"},
    )
    assert memory.status == 201, memory.body
    post_event(
        server,
        {"tool_name": "Bash", "tool_input": {"command": "cat page.html"}, "tool_response": SCRIPT},
    )
    sign_in(page, server)
    live = page.locator("#live-list")
    expect(live.locator("li", has_text=f"Careful: {SCRIPT}")).to_be_visible()
    expect(live.locator("li", has_text="cat page.html")).to_contain_text(SCRIPT)
    assert page.locator("#live-list script, #live-list img").count() == 0
    page.get_by_role("tab", name="Search").click()
    page.get_by_label("Search the memory").fill("alert")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#search-results li.hit").first).to_be_visible()
    assert page.locator("#search-results script, #search-results img").count() == 0
    assert_clean(page)


# -- sessions ------------------------------------------------------------------------------


def test_a_session_timeline_shows_prompt_tool_use_observations_and_summary(
    page: Any, server: Server
) -> None:
    started = server.call(
        "POST",
        "/v1/sessions/start",
        {"projectId": server.project_id, "externalSessionId": f"s-{uuid.uuid4().hex}"},
    )
    assert started.status == 201, started.body
    session_id = started.body["session"]["id"]
    post_event(
        server,
        {"prompt": "Fix the login redirect loop"},
        eventType="user_prompt",
        serverSessionId=session_id,
    )
    post_event(
        server,
        {
            "tool_name": "Edit",
            "tool_input": {"file_path": "auth/redirect.py", "old_string": "a", "new_string": "b"},
            "tool_response": f"edited {SCRIPT}",
        },
        serverSessionId=session_id,
    )
    ended = server.call("POST", f"/v1/sessions/{session_id}/end")
    assert ended.status == 200, ended.body
    wait_for_job(server, ended.body["generationJob"]["id"], "completed")

    sign_in(page, server)
    page.get_by_role("tab", name="Sessions").click()
    page.locator(f'button.session-button[data-id="{session_id}"]').click()
    timeline = page.locator("#timeline")
    steps = timeline.locator("ol.steps > li")
    expect(steps).to_have_count(2)
    expect(steps.nth(0)).to_contain_text("Prompt")
    expect(steps.nth(0)).to_contain_text("Fix the login redirect loop")
    expect(steps.nth(1)).to_contain_text("Tool use: Edit")
    expect(steps.nth(1)).to_contain_text(f"edited {SCRIPT}")
    expect(steps.nth(1).locator("li.observation")).to_contain_text("auth/redirect.py")
    expect(timeline.locator(".summary li.observation")).to_have_count(1)
    assert timeline.locator("script").count() == 0
    screenshot(page, "sessions")
    assert_clean(page)


# -- stats ---------------------------------------------------------------------------------


def test_stats_count_events_and_observations_per_day(page: Any, server: Server) -> None:
    post_event(server, {"tool_name": "Read", "tool_input": {"file_path": "README.md"}})
    jobs = server.call("GET", f"/v1/projects/{server.project_id}/jobs?limit=200").body
    event_jobs = [j for j in jobs["jobs"] if j["sourceType"] == "agent_event"]
    sign_in(page, server)
    page.get_by_role("tab", name="Stats").click()
    events_total = page.locator("#stats .totals div", has_text="Events").locator("dd")
    expect(events_total).to_have_text(str(len(event_jobs)))
    events_table = page.locator("#stats table", has_text="Events per day")
    today = page.evaluate(
        "(() => { const d = new Date(); const p = (n) => String(n).padStart(2, '0');"
        " return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`; })()"
    )
    row = events_table.locator("tbody tr", has_text=today)
    expect(row.locator("td.num")).to_have_text(str(len(event_jobs)))
    expect(page.locator("#stats table", has_text="Observations per day")).to_contain_text(today)
    screenshot(page, "stats")
    assert_clean(page)


# -- jobs: a real failure, retried from the page ------------------------------------------

OBSERVATION_XML = (
    "<observation><type>discovery</type><title>Recovered on retry</title>"
    "<narrative>The provider answered the second time.</narrative></observation>"
)


@pytest.fixture(scope="module")
def failing_provider() -> Iterator[FakeLLMServer]:
    """An OpenAI-compatible stand-in on loopback that answers 500 until told otherwise."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakeLLMServer()
    fake.openai.default = Status(status=500, message="upstream exploded")
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture(scope="module")
def failing_server(
    tmp_path_factory: pytest.TempPathFactory, failing_provider: FakeLLMServer
) -> Iterator[Server]:
    running = start_server(
        Path(tmp_path_factory.mktemp("viewer-failing")),
        CLAUDE_MEM_SERVER_PROVIDER=f"openai-compatible:fake-model@{failing_provider.openai_base_url}",
        CLAUDE_MEM_MAX_ATTEMPTS="1",
    )
    try:
        yield running
    finally:
        stop_server(running)


def test_a_failed_job_shows_its_error_and_is_retried_from_the_page(
    page: Any, failing_server: Server, failing_provider: FakeLLMServer
) -> None:
    reply = failing_server.call(
        "POST",
        "/v1/events?wait=true",
        {
            "projectId": failing_server.project_id,
            "sourceType": "hook",
            "eventType": "tool_use",
            "occurredAtEpoch": now_ms(),
            "payload": {"tool_name": "Bash", "tool_input": {"command": "make deploy"}},
        },
    )
    job = reply.body["generationJob"]
    assert job["status"] == "failed", reply.body

    sign_in(page, failing_server)
    page.get_by_role("tab", name="Jobs").click()
    page.get_by_label("Status").select_option("failed")
    row = page.locator(f'#jobs-body tr[data-id="{job["id"]}"]')
    expect(row.locator(".job-error")).to_contain_text("500")
    screenshot(page, "jobs")

    failing_provider.openai.default = Reply(text=OBSERVATION_XML)
    page.get_by_label("Status").select_option("")
    row.get_by_role("button", name="Retry").click()
    expect(page.locator("#jobs-status-line")).to_contain_text("queued again")
    wait_for_job(failing_server, job["id"], "completed")
    # The stream brings the job's completion to the open page.
    expect(row).to_have_attribute("data-status", "completed")
    expect(row.get_by_role("button", name="Retry")).to_have_count(0)
    observations = failing_server.call(
        "GET", f"/v1/events/{reply.body['event']['id']}/observations"
    ).body["observations"]
    assert [o["title"] for o in observations] == ["Recovered on retry"]
    usage = observations[0]["metadata"]["usage"]
    assert usage["inputTokens"] > 0

    # Stats: the tokens that generation reported (the failed call reported none).
    page.get_by_role("tab", name="Stats").click()
    for label, spent in (
        ("Input tokens", usage["inputTokens"]),
        ("Output tokens", usage["outputTokens"]),
    ):
        shown = page.locator("#stats .totals div", has_text=label).locator("dd")
        expect(shown).not_to_have_text("")
        assert int(re.sub(r"\D", "", shown.inner_text())) == spent
    assert_clean(page)


def test_a_key_without_write_scope_sees_jobs_but_no_retry_button(
    page: Any, failing_server: Server
) -> None:
    sign_in(page, failing_server, key="reader")
    page.get_by_role("tab", name="Jobs").click()
    expect(page.locator("#jobs-scope")).to_contain_text("not retry or cancel")
    expect(page.locator("#jobs-body tr").first).to_be_visible()
    assert page.locator("#jobs-body button").count() == 0
    # The API agrees: retrying with this key is refused.
    jobs = failing_server.call("GET", "/v1/jobs", key="reader").body["jobs"]
    refused = failing_server.call("POST", f"/v1/jobs/{jobs[0]['id']}/retry", key="reader")
    assert refused.status == 403
    assert_clean(page)


# -- keyboard ------------------------------------------------------------------------------


def test_the_viewer_works_from_the_keyboard(page: Any, server: Server) -> None:
    page.goto(server.url("/viewer/"))
    page.keyboard.press("Tab")  # the skip link first
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "api-key"
    page.keyboard.type(server.keys["full"])
    page.keyboard.press("Enter")
    live_tab = page.get_by_role("tab", name="Live")
    expect(live_tab).to_have_attribute("aria-selected", "true")
    live_tab.focus()
    # A visible focus ring, not the browser default alone.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name="Search")).to_be_focused()
    expect(page.locator("#view-search")).to_be_visible()
    page.keyboard.press("Tab")  # from the tab list into the search field
    expect(page.get_by_label("Search the memory")).to_be_focused()
    assert_clean(page)
