"""The suite-wide network guard (tests/conftest.py) refuses every non-loopback address.

Refused addresses are documentation ranges (RFC 5737 / RFC 3849) and the real system call
is replaced by a recording stub whenever a refusal is expected, so even a broken guard
sends no packet anywhere.
"""

from __future__ import annotations

import _socket
import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

REMOTE_V4 = "192.0.2.1"  # TEST-NET-1, never routed
REMOTE_V6 = "2001:db8::1"  # documentation prefix


class Stubbed:
    """Replaces the guard's forwarding targets; records whether they were reached."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def connect(self, sock: socket.socket, address: Any) -> None:
        self.calls.append(("connect", address))

    def connect_ex(self, sock: socket.socket, address: Any) -> int:
        self.calls.append(("connect_ex", address))
        return 0

    def sendto(self, sock: socket.socket, data: Any, *args: Any) -> int:
        self.calls.append(("sendto", args[-1]))
        return len(data)


@pytest.fixture
def stubbed(network_guard: Any, monkeypatch: pytest.MonkeyPatch) -> Stubbed:
    stub = Stubbed()
    monkeypatch.setattr(network_guard, "real_connect", stub.connect)
    monkeypatch.setattr(network_guard, "real_connect_ex", stub.connect_ex)
    monkeypatch.setattr(network_guard, "real_sendto", stub.sendto)
    return stub


@pytest.fixture
def loopback_server() -> Iterator[tuple[str, int]]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        yield srv.getsockname()
    finally:
        srv.close()


def test_guard_is_installed(network_guard: Any) -> None:
    assert network_guard.installed
    assert socket.socket.connect is not _socket.socket.connect
    assert socket.socket.connect_ex is not _socket.socket.connect_ex


@pytest.mark.parametrize(
    ("family", "address"),
    [
        (socket.AF_INET, ("127.0.0.1", 5432)),
        (socket.AF_INET, ("127.1.2.3", 80)),
        (socket.AF_INET, ("localhost", 6379)),
        (socket.AF_INET, ("LOCALHOST.", 6379)),
        (socket.AF_INET, ("0.0.0.0", 80)),
        (socket.AF_INET6, ("::1", 80, 0, 0)),
        (socket.AF_INET6, ("::ffff:127.0.0.1", 80, 0, 0)),
        (socket.AF_UNIX, "/var/run/postgresql/.s.PGSQL.5432"),
        (socket.AF_UNIX, b"\0abstract"),
    ],
)
def test_allowed_addresses(network_guard: Any, family: int, address: Any) -> None:
    assert network_guard.is_allowed(family, address)
    network_guard.check(family, address)


@pytest.mark.parametrize(
    ("family", "address"),
    [
        (socket.AF_INET, (REMOTE_V4, 443)),
        (socket.AF_INET, ("10.0.0.1", 5432)),
        (socket.AF_INET, ("172.17.0.2", 6379)),
        (socket.AF_INET, ("192.168.1.1", 80)),
        (socket.AF_INET, ("api.anthropic.com", 443)),
        (socket.AF_INET, ("localhost.example.com", 443)),
        (socket.AF_INET6, (REMOTE_V6, 443, 0, 0)),
        (socket.AF_INET6, ("::ffff:192.0.2.1", 443, 0, 0)),
    ],
)
def test_refused_addresses(network_guard: Any, family: int, address: Any) -> None:
    assert not network_guard.is_allowed(family, address)
    with pytest.raises(RuntimeError, match="tests must not reach the network"):
        network_guard.check(family, address)


def test_extra_networks_are_opt_in(network_guard: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import ipaddress

    monkeypatch.setattr(network_guard, "extra_networks", [ipaddress.ip_network("172.17.0.0/16")])
    assert network_guard.is_allowed(socket.AF_INET, ("172.17.0.2", 6379))
    assert not network_guard.is_allowed(socket.AF_INET, ("172.18.0.2", 6379))


def test_loopback_connect_works(loopback_server: tuple[str, int]) -> None:
    with socket.create_connection(loopback_server, timeout=2):
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        assert sock.connect_ex(loopback_server) == 0


def test_socket_connect_refused(stubbed: Stubbed) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with pytest.raises(RuntimeError, match=r"tests must not reach the network: \('192\.0"):
            sock.connect((REMOTE_V4, 443))
        with pytest.raises(RuntimeError, match="tests must not reach the network"):
            sock.connect_ex((REMOTE_V4, 443))
    with (
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock,
        pytest.raises(RuntimeError, match="tests must not reach the network"),
    ):
        sock.connect((REMOTE_V6, 443))
    assert stubbed.calls == []


def test_create_connection_refused(stubbed: Stubbed) -> None:
    with pytest.raises(RuntimeError, match="tests must not reach the network"):
        socket.create_connection((REMOTE_V4, 443), timeout=1)
    assert stubbed.calls == []


def test_udp_sendto_refused(stubbed: Stubbed) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(RuntimeError, match="tests must not reach the network"):
            sock.sendto(b"x", (REMOTE_V4, 53))
        with pytest.raises(RuntimeError, match="tests must not reach the network"):
            sock.sendto(b"x", 0, (REMOTE_V4, 53))
    assert stubbed.calls == []


def test_stub_is_reached_for_loopback(stubbed: Stubbed) -> None:
    """Sanity check of the stub itself: allowed addresses are forwarded."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.connect(("127.0.0.1", 9))
    assert stubbed.calls == [("connect", ("127.0.0.1", 9))]


async def test_asyncio_open_connection_refused(stubbed: Stubbed) -> None:
    with pytest.raises(RuntimeError, match="tests must not reach the network"):
        await asyncio.wait_for(asyncio.open_connection(REMOTE_V4, 443), timeout=5)
    assert stubbed.calls == []


async def test_asyncio_sock_connect_refused(stubbed: Stubbed) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        with pytest.raises(RuntimeError, match="tests must not reach the network"):
            await asyncio.wait_for(loop.sock_connect(sock, (REMOTE_V4, 443)), timeout=5)
    assert stubbed.calls == []


async def test_asyncio_loopback_works(loopback_server: tuple[str, int]) -> None:
    host, port = loopback_server
    _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=5)
    writer.close()
    await writer.wait_closed()
