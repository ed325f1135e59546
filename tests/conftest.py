"""Suite-wide test plumbing.

* Hypothesis profiles (``dev`` default, ``fast``, ``ci``).
* A network guard: sockets may only reach loopback addresses and unix sockets.
* Service fixtures: ``postgres_base_url`` and ``redis_url``, which skip when the service
  is not reachable, and the ``postgres`` / ``redis`` markers, which request them.
* Under ``CI=true`` a skip caused by a missing PostgreSQL or Redis is turned into a
  failure, so a CI run can never go green without having talked to the real services.

Everything here is cheap: no service is contacted unless a test asks for it, and each
reachability probe runs once per session.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Generator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import settings

# --------------------------------------------------------------------------- CI detection

_TRUTHY = {"1", "true", "yes", "on"}


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in _TRUTHY


# --------------------------------------------------------------------------- Hypothesis

# deadline=None everywhere: async database work is bursty and a deadline turns a slow
# fsync into a flaky failure.
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("fast", max_examples=10, deadline=None)
settings.register_profile(
    "ci",
    max_examples=100,
    derandomize=True,
    deadline=None,
    print_blob=True,
)
settings.load_profile("ci" if running_in_ci() else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


# --------------------------------------------------------------------------- network guard

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _extra_allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Networks a developer allowed on top of loopback (e.g. a service in a container)."""
    raw = os.environ.get("CLAUDE_MEM_TEST_ALLOWED_HOSTS", "")
    return [
        ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip()
    ]


class NetworkGuard:
    """Refuses socket connections to anything but loopback and unix sockets.

    Installed by patching ``socket.socket.connect``, ``connect_ex`` and ``sendto``. That also
    covers ``socket.create_connection`` and asyncio's selector loop (``sock_connect`` and
    ``open_connection`` end in ``sock.connect`` on a non-blocking ``socket.socket``) and
    every pure-Python client built on them (redis-py, aiohttp). C libraries that open their
    own sockets (libpq under psycopg) are not seen here; the service fixtures check their
    URLs with :meth:`check` instead.

    The check runs *before* the real system call, so a refused address sees no traffic.
    ``real_connect`` / ``real_connect_ex`` / ``real_sendto`` are the calls the guard forwards
    to; tests replace them with stubs to prove the guard refuses without any risk of
    sending a packet.
    """

    def __init__(self) -> None:
        self.real_connect: Callable[[socket.socket, Any], None] = socket.socket.connect
        self.real_connect_ex: Callable[[socket.socket, Any], int] = socket.socket.connect_ex
        self.real_sendto: Callable[..., int] = socket.socket.sendto
        self.extra_networks = _extra_allowed_networks()
        self._saved: dict[str, Any] = {}
        self.installed = False

    # -- policy
    def is_allowed(self, family: int, address: Any) -> bool:
        if family not in (socket.AF_INET, socket.AF_INET6):
            return True  # AF_UNIX paths, abstract sockets, netlink: never leave the machine
        if not isinstance(address, tuple) or not address:
            return False
        host = address[0]
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if not isinstance(host, str):
            return False
        return self.host_is_allowed(host)

    def host_is_allowed(self, host: str) -> bool:
        name = host.strip("[]").split("%", 1)[0].rstrip(".").lower()
        if name in _LOCAL_NAMES or name.endswith(".localhost"):
            return True
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            return False  # any other host name: refuse without resolving it
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_loopback or ip.is_unspecified:  # 0.0.0.0 / :: connect to this host on Linux
            return True
        return any(ip in net for net in self.extra_networks)

    def check(self, family: int, address: Any) -> None:
        if not self.is_allowed(family, address):
            raise RuntimeError(f"tests must not reach the network: {address!r}")

    def check_socket(self, sock: socket.socket, address: Any) -> None:
        try:
            self.check(sock.family, address)
        except RuntimeError:
            # socket.create_connection() only closes its socket on OSError; close it here
            # so a refusal is one clear error, not that plus a ResourceWarning.
            sock.close()
            raise

    # -- patching
    def install(self) -> None:
        if self.installed:
            return
        guard = self

        def connect(sock: socket.socket, address: Any) -> None:
            guard.check_socket(sock, address)
            return guard.real_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            guard.check_socket(sock, address)
            return guard.real_connect_ex(sock, address)

        def sendto(sock: socket.socket, data: Any, *args: Any) -> int:
            if args:  # sendto(data, address) or sendto(data, flags, address)
                guard.check_socket(sock, args[-1])
            return guard.real_sendto(sock, data, *args)

        for name, fn in (("connect", connect), ("connect_ex", connect_ex), ("sendto", sendto)):
            self._saved[name] = vars(socket.socket).get(name)
            setattr(socket.socket, name, fn)
        self.installed = True

    def uninstall(self) -> None:
        if not self.installed:
            return
        for name, previous in self._saved.items():
            if previous is None:
                delattr(socket.socket, name)
            else:
                setattr(socket.socket, name, previous)
        self._saved.clear()
        self.installed = False


@pytest.fixture(scope="session", autouse=True)
def network_guard() -> Iterator[NetworkGuard]:
    guard = NetworkGuard()
    guard.install()
    try:
        yield guard
    finally:
        guard.uninstall()


# --------------------------------------------------------------------------- services

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_PROBE_TIMEOUT_S = 2

_PG_START_HINT = (
    "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)
_REDIS_START_HINT = (
    'start it with: redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def _libpq_url(url: str) -> str:
    """``postgresql+psycopg://…`` (SQLAlchemy) -> ``postgresql://…`` (libpq)."""
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)


def _check_url_hosts(guard: NetworkGuard, url: str, default_port: int) -> None:
    parts = urlsplit(url)
    hosts = [h for h in (parts.hostname,) if h]
    hosts += [h for h in parse_qs(parts.query).get("host", []) if not h.startswith("/")]
    for host in hosts:
        guard.check(socket.AF_INET, (host, parts.port or default_port))


@pytest.fixture(scope="session")
def postgres_base_url(network_guard: NetworkGuard) -> str:
    """SQLAlchemy URL of a reachable PostgreSQL server; skips when there is none.

    Tests create their own uniquely named databases on it and drop them afterwards.
    """
    url = os.environ.get("CLAUDE_MEM_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    _check_url_hosts(network_guard, url, 5432)
    where = (
        f"PostgreSQL not reachable at {url} (set CLAUDE_MEM_TEST_POSTGRES_URL); {_PG_START_HINT}"
    )
    try:
        import psycopg
    except ImportError:
        pytest.skip(f"{where}: psycopg is not installed (pip install -e '.[dev]')")
    try:
        with psycopg.connect(_libpq_url(url), connect_timeout=_PROBE_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure of the probe means "not usable here"
        pytest.skip(f"{where}: {type(exc).__name__}: {str(exc).strip()}")
    return url


@pytest.fixture(scope="session")
def redis_url(network_guard: NetworkGuard) -> str:
    """URL of a reachable Redis server; skips when there is none.

    Tests use their own key prefix (or DB number) and never flush the whole server.
    """
    url = os.environ.get("CLAUDE_MEM_TEST_REDIS_URL") or DEFAULT_REDIS_URL
    _check_url_hosts(network_guard, url, 6379)
    where = f"Redis not reachable at {url} (set CLAUDE_MEM_TEST_REDIS_URL); {_REDIS_START_HINT}"
    try:
        import redis
    except ImportError:
        pytest.skip(f"{where}: redis-py is not installed (pip install -e '.[dev]')")
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=_PROBE_TIMEOUT_S, socket_timeout=_PROBE_TIMEOUT_S
        )
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure of the probe means "not usable here"
        pytest.skip(f"{where}: {type(exc).__name__}: {exc}")
    return url


@pytest.fixture(autouse=True)
def _service_markers(request: pytest.FixtureRequest) -> None:
    """A test marked ``postgres`` / ``redis`` is skipped when that service is absent."""
    node = request.node
    if node.get_closest_marker("postgres") is not None:
        request.getfixturevalue("postgres_base_url")
    if node.get_closest_marker("redis") is not None:
        request.getfixturevalue("redis_url")


# --------------------------------------------------------------------------- CI: no service skips

# Headless Chromium counts as a service too: the browser tests (tests/browser) skip
# without it, and CI installs it (.ci/run).
_SERVICE_MARKERS = ("postgres", "redis", "browser")
_SERVICE_WORDS = re.compile(r"postgres|psycopg|redis|chromium|playwright", re.IGNORECASE)
_CI_SKIPS_KEY = pytest.StashKey[list[str]]()


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    reason = (
        str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    )
    return reason.removeprefix("Skipped: ")


def _is_service_skip(report: pytest.TestReport | pytest.CollectReport, marked: bool) -> bool:
    if not report.skipped or hasattr(report, "wasxfail"):
        return False
    return marked or bool(_SERVICE_WORDS.search(_skip_reason(report)))


def _fail_service_skip(
    config: pytest.Config, report: pytest.TestReport | pytest.CollectReport
) -> None:
    reason = _skip_reason(report)
    report.outcome = "failed"
    report.longrepr = (
        "CI requires PostgreSQL/Redis, but this test was skipped: "
        f"{reason}\n(CI=true turns service skips into failures; see docs/development.md)"
    )
    config.stash.setdefault(_CI_SKIPS_KEY, []).append(f"{report.nodeid}: {reason}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if running_in_ci():
        marked = any(item.get_closest_marker(m) is not None for m in _SERVICE_MARKERS)
        if _is_service_skip(report, marked):
            _fail_service_skip(item.config, report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if running_in_ci() and _is_service_skip(report, marked=False):
        _fail_service_skip(collector.config, report)
    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    skipped = config.stash.get(_CI_SKIPS_KEY, [])
    if skipped:
        terminalreporter.section("CI service check", sep="=", red=True, bold=True)
        terminalreporter.write_line(
            f"CI requires PostgreSQL/Redis; {len(skipped)} tests were skipped: "
            + "; ".join(skipped[:10])
            + (" …" if len(skipped) > 10 else "")
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # The converted reports already fail the run; this is a backstop in case a plugin
    # swallowed them (e.g. a report hook that re-marks outcomes).
    if session.config.stash.get(_CI_SKIPS_KEY, []) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
