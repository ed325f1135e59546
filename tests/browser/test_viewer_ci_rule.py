"""Without Chromium the browser tests skip, and under CI=true that skip fails the run, as a
missing PostgreSQL or Redis does (tests/conftest.py).

An inner pytest session (pytester, in-process) gets copies of the suite's conftest and of
this folder's, with ``CLAUDE_MEM_TEST_CHROMIUM`` naming a file that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent
INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
addopts = --strict-markers -ra -p no:cacheprovider
markers =
    postgres: needs PostgreSQL
    redis: needs Redis
    browser: needs Chromium
"""
INNER_TEST = """
import pytest

pytestmark = pytest.mark.browser

def test_drives_a_browser(chromium):
    assert chromium is not None
"""


@pytest.fixture
def inner(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[pytest.Pytester]:
    monkeypatch.setenv("CLAUDE_MEM_TEST_CHROMIUM", str(tmp_path / "no-chromium-here"))
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)
    pytester.makeini(INI)
    pytester.makeconftest((HERE.parent / "conftest.py").read_text(encoding="utf-8"))
    browser = pytester.mkpydir("browser_tests")
    for name in ("conftest.py", "viewerkit.py"):
        (browser / name).write_text((HERE / name).read_text(encoding="utf-8"), encoding="utf-8")
    (browser / "__init__.py").unlink()  # laid out as tests/browser is: no package
    (browser / "test_inner_browser.py").write_text(INNER_TEST, encoding="utf-8")
    profile = settings.get_current_profile_name()
    try:
        yield pytester
    finally:
        settings.load_profile(profile)


def test_a_missing_chromium_is_a_plain_skip_outside_ci(inner: pytest.Pytester) -> None:
    result = inner.runpytest()
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*Chromium not found at *no-chromium-here*"])


def test_a_missing_chromium_fails_under_ci(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = inner.runpytest()
    result.assert_outcomes(errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*1 tests were skipped*Chromium not found*"])
