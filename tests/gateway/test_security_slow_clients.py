"""Slow and idle clients, through the real app on 127.0.0.1: the settings reach the gateway's server, a head
that never ends and a body that trickles are cut, an idle connection is closed before any request and
between requests, and connections beyond max_connections get 503."""

from __future__ import annotations

import socket
import time

import pytest

from sollol_core.http.server import ConnectionLimits

pytestmark = pytest.mark.timeout(60)

FAST = dict(header_timeout_s=0.4, body_timeout_s=0.4, body_min_bytes_per_s=100_000.0, idle_timeout_s=0.5)


def address(sollol) -> tuple[str, int]:
    host, port = sollol.gateway_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the gateway sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data, time.monotonic() - started


@pytest.fixture
def stack(sim_cluster, gateway):
    cluster = sim_cluster(n=1, latency_ms=1, tokens=2)
    sollol = gateway(cluster.addresses, **FAST)
    return cluster, sollol


def test_the_settings_reach_the_gateways_server(stack):
    _, sollol = stack
    assert sollol._server.limits == ConnectionLimits(header_timeout_s=0.4, body_timeout_s=0.4,
                                                     body_min_bytes_per_s=100_000.0, idle_timeout_s=0.5,
                                                     max_connections=1024)


def test_a_head_that_never_ends_is_cut(stack):
    _, sollol = stack
    with socket.create_connection(address(sollol), timeout=5) as sock:
        sock.sendall(b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        for _ in range(3):
            time.sleep(0.1)
            sock.sendall(b"a")  # bytes keep coming, the head never completes
        data, took = read_until_closed(sock, 5)
    assert data.startswith(b"HTTP/1.1 408") and took < 3
    assert sollol._server.cut.get("head", 0) >= 1


def test_a_body_that_trickles_is_cut(stack):
    cluster, sollol = stack
    with socket.create_connection(address(sollol), timeout=5) as sock:
        sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 5000\r\n\r\n{")
        started = time.monotonic()
        try:
            while time.monotonic() - started < 5:
                sock.sendall(b" ")  # one byte every 50 ms: 20 B/s against 100,000 B/s
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        _, _ = read_until_closed(sock, 2)
        took = time.monotonic() - started
    assert took < 4, "a trickling body held its connection"
    assert sollol._server.cut.get("body", 0) >= 1
    assert cluster.nodes[0].received == []


def test_an_idle_connection_is_closed_before_any_request_and_between_requests(stack):
    _, sollol = stack
    with socket.create_connection(address(sollol), timeout=5) as sock:
        data, took = read_until_closed(sock, 5)
    assert data == b"" and took < 3
    with socket.create_connection(address(sollol), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data, took = read_until_closed(sock, 5)
    assert data.startswith(b"HTTP/1.1 200") and b"Ollama is running" in data and took < 3
    assert sollol._server.cut.get("idle", 0) >= 2


def test_connections_beyond_max_connections_get_503(sim_cluster, gateway):
    cluster = sim_cluster(n=1, latency_ms=1, tokens=2)
    sollol = gateway(cluster.addresses, max_connections=3)
    held = [socket.create_connection(address(sollol), timeout=5) for _ in range(3)]
    try:
        time.sleep(0.1)
        with socket.create_connection(address(sollol), timeout=5) as extra:
            data, _ = read_until_closed(extra, 5)
        assert data.startswith(b"HTTP/1.1 503") and b"retry-after" in data.lower()
        held[0].sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # the ones let in are served
        assert held[0].recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()
    assert sollol._server.refused >= 1
