"""Under CI=true a skip caused by a missing PostgreSQL/Redis fails the run (tests/conftest.py).

Each test runs a small inner pytest session (pytester, in-process) whose conftest is a copy
of the suite's real one, with the service URLs pointed at closed loopback ports.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py").read_text(encoding="utf-8")
CLOSED_PG = "postgresql+psycopg://postgres@127.0.0.1:1/postgres"
CLOSED_REDIS = "redis://127.0.0.1:1/0"

# Import the drivers here, before any pytester snapshot of sys.modules: pytester drops the
# modules an inner run imported, and a re-imported psycopg no longer matches the exception
# classes of its (not re-imported) C extension.
for _driver in ("psycopg", "redis"):
    with contextlib.suppress(ImportError):
        importlib.import_module(_driver)

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
addopts = --strict-markers -ra -p no:cacheprovider
markers =
    postgres: needs PostgreSQL
    redis: needs Redis
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.Pytester]:
    """A pytester dir with the suite's conftest; services point at closed ports."""
    monkeypatch.setenv("CLAUDE_MEM_TEST_POSTGRES_URL", CLOSED_PG)
    monkeypatch.setenv("CLAUDE_MEM_TEST_REDIS_URL", CLOSED_REDIS)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    # The inner conftest loads a Hypothesis profile into this very process: put ours back.
    profile = settings.get_current_profile_name()
    try:
        yield pytester
    finally:
        settings.load_profile(profile)


SERVICE_TESTS = """
import pytest

@pytest.mark.postgres
def test_pg(postgres_base_url):
    pass

@pytest.mark.redis
def test_redis():
    pass

def test_fixture_only(redis_url):
    pass

def test_plain():
    pass
"""


def test_service_skips_are_plain_skips_outside_ci(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_services=SERVICE_TESTS)
    result = inner.runpytest()
    result.assert_outcomes(passed=1, skipped=3)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["*PostgreSQL not reachable at postgresql+psycopg://postgres@127.0.0.1:1/postgres*"]
    )
    result.stdout.fnmatch_lines(["*Redis not reachable at redis://127.0.0.1:1/0*"])
    result.stdout.no_fnmatch_line("*CI requires PostgreSQL/Redis*")


def test_service_skips_fail_under_ci(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    inner.makepyfile(test_services=SERVICE_TESTS)
    result = inner.runpytest()
    # A skip raised by a fixture happens at setup, so it is reported as an error.
    result.assert_outcomes(passed=1, errors=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*CI requires PostgreSQL/Redis; 3 tests were skipped: *test_pg*PostgreSQL not reachable*"]
    )


def test_explicit_skip_mentioning_a_service_fails_under_ci(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    inner.makepyfile(
        """
        import pytest

        def test_skip_in_body():
            pytest.skip("redis went away")

        @pytest.mark.skipif(True, reason="no PostgreSQL here")
        def test_skipif():
            pass

        @pytest.mark.redis
        @pytest.mark.skip(reason="unrelated reason, but the test is marked redis")
        def test_marked_skip():
            pass
        """
    )
    result = inner.runpytest()
    result.assert_outcomes(failed=1, errors=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*CI requires PostgreSQL/Redis; 3 tests were skipped*"])


def test_other_skips_and_xfails_stay_under_ci(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.skip(reason="needs Windows")
        def test_windows():
            pass

        @pytest.mark.xfail(reason="known Redis stream quirk", strict=True)
        def test_xfail():
            raise AssertionError

        def test_ok():
            pass
        """
    )
    result = inner.runpytest()
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)
    assert result.ret == pytest.ExitCode.OK


def test_module_level_service_skip_fails_under_ci(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    inner.makepyfile(
        """
        import pytest

        pytest.skip("PostgreSQL driver missing", allow_module_level=True)

        def test_never():
            pass
        """
    )
    result = inner.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error
    result.stdout.fnmatch_lines(["*CI requires PostgreSQL/Redis*PostgreSQL driver missing*"])


def test_remote_service_url_is_refused(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libpq opens its own sockets, so the fixture checks the URL against the guard."""
    monkeypatch.setenv("CLAUDE_MEM_TEST_POSTGRES_URL", "postgresql+psycopg://u@192.0.2.1/db")
    monkeypatch.setenv("CLAUDE_MEM_TEST_REDIS_URL", "redis://example.com:6379/0")
    inner.makepyfile(
        """
        def test_pg(postgres_base_url):
            pass

        def test_redis(redis_url):
            pass
        """
    )
    result = inner.runpytest()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*RuntimeError: tests must not reach the network: ('192.0.2.1', 5432)",
            "*RuntimeError: tests must not reach the network: ('example.com', 6379)",
        ],
    )


@pytest.mark.parametrize(
    ("ci", "env_profile", "expected"),
    [("true", "", "ci"), ("true", "fast", "ci"), ("", "fast", "fast"), ("", "", "dev")],
)
def test_hypothesis_profile_choice(
    inner: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    ci: str,
    env_profile: str,
    expected: str,
) -> None:
    if ci:
        monkeypatch.setenv("CI", ci)
    if env_profile:
        monkeypatch.setenv("HYPOTHESIS_PROFILE", env_profile)
    inner.makepyfile(
        f"""
        from hypothesis import settings

        def test_profile():
            assert settings.get_current_profile_name() == {expected!r}
            assert settings.default.deadline is None
        """
    )
    result = inner.runpytest()
    result.assert_outcomes(passed=1)


def test_ci_profile_settings() -> None:
    ci = settings.get_profile("ci")
    assert ci.max_examples == 100
    assert ci.derandomize
    assert ci.deadline is None
    assert ci.print_blob
    assert settings.get_profile("dev").max_examples == 50
    assert settings.get_profile("fast").max_examples == 10


@pytest.mark.postgres
@pytest.mark.redis
def test_real_services_answer(postgres_base_url: str, redis_url: str) -> None:
    """The suite's own services, through the network guard (skipped locally when absent)."""
    import psycopg
    import redis

    libpq_url = re.sub(r"^postgresql\+\w+://", "postgresql://", postgres_base_url)
    with psycopg.connect(libpq_url, connect_timeout=2) as conn:
        row = conn.execute("SELECT 1").fetchone()
    assert row == (1,)
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        assert client.ping()
    finally:
        client.close()
