"""One guard for every route, through the real app on 127.0.0.1: with api_keys set every client route needs a
key, with admin_token set every operator route needs the token (loopback included), the public routes say
nothing about the hosts, and a key is checked before the body is read."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from helpers import CHAT_MODEL, EMBED_MODEL, USER, settled

pytestmark = pytest.mark.timeout(90)

KEY, OTHER_KEY, TOKEN = "sk-team-a-4f1c9e", "sk-team-b-77d2aa", "tok-operator-91b3"
KEYS = {KEY: {"name": "team-a"}, OTHER_KEY: {"name": "team-b", "priority": "batch"}}
AUTH = {"Authorization": f"Bearer {KEY}"}
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}

# every client route, as a client calls it
CLIENT_CALLS = [
    ("POST", "/api/chat", {"model": CHAT_MODEL, "messages": USER, "stream": False}),
    ("POST", "/api/generate", {"model": CHAT_MODEL, "prompt": "hi", "stream": False}),
    ("POST", "/api/embed", {"model": EMBED_MODEL, "input": "hi"}),
    ("POST", "/api/embeddings", {"model": EMBED_MODEL, "prompt": "hi"}),
    ("POST", "/api/show", {"model": CHAT_MODEL}),
    ("GET", "/api/tags", None), ("HEAD", "/api/tags", None), ("GET", "/api/ps", None),
    ("GET", "/api/version", None),
    ("POST", "/v1/chat/completions", {"model": CHAT_MODEL, "messages": USER}),
    ("POST", "/v1/completions", {"model": CHAT_MODEL, "prompt": "hi"}),
    ("POST", "/v1/embeddings", {"model": EMBED_MODEL, "input": "hi"}),
    ("POST", "/v1/responses", {"model": CHAT_MODEL, "input": "hi"}),
    ("POST", "/v1/messages", {"model": CHAT_MODEL, "max_tokens": 8, "messages": USER}),
    ("GET", "/v1/models", None), ("GET", f"/v1/models/{CHAT_MODEL}", None),
    ("POST", "/api/embed/batch", {"model": EMBED_MODEL, "docs": ["a"]}),
    ("GET", "/api/batch-status", None), ("GET", "/api/batch/0123abcd", None),
    ("GET", "/openapi.json", None), ("GET", "/docs", None),
]
OPERATOR_CALLS = [("GET", "/api/stats", None), ("GET", "/metrics", None),
                  ("PUT", "/api/routing", {"strategy": "p2c"}), ("POST", "/api/batch/trigger", None),
                  ("POST", "/api/copy", {"source": CHAT_MODEL, "destination": "c"})]


@pytest.fixture
def keyed(sim_cluster, gateway, client, tmp_path):
    cluster = sim_cluster(n=2, latency_ms=1, tokens=2)
    sollol = gateway(cluster.addresses, api_keys=KEYS, admin_token=TOKEN, batch_db=str(tmp_path / "b.db"),
                     autobatch_enabled=False)
    return cluster, sollol, client(sollol)


def state(cluster, sollol) -> tuple:
    return (sollol.registry.addresses(), sollol.router.strategy_name, [sorted(n.models) for n in cluster.nodes],
            [sorted(n.loaded) for n in cluster.nodes], sollol.batch.status()["jobs_total"])


def request(http, method, path, body, headers=None):
    return http.request(method, path, json=body, headers=headers or {})


def test_without_a_key_every_client_route_is_refused_and_nothing_happens(keyed):
    cluster, sollol, http = keyed
    before = state(cluster, sollol)
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"x-api-key": "nope"}, {"Authorization": KEY}):
        for method, path, body in CLIENT_CALLS:
            r = request(http, method, path, body, headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            if method != "HEAD":
                assert KEY not in r.text and "sk-wrong" not in r.text
    assert all(n.received == [] for n in cluster.nodes)  # nothing reached a host
    assert state(cluster, sollol) == before
    assert not Path(sollol.config.batch_db).exists()  # no keyless batch was stored


def test_with_a_key_every_client_route_answers(keyed):
    cluster, sollol, http = keyed
    for method, path, body in CLIENT_CALLS:
        r = request(http, method, path, body, AUTH)
        assert r.status_code in (200, 404), (method, path, r.status_code, r.text[:200])  # 404: no such job
    r = http.get("/api/batch/0123abcd", headers={"x-api-key": OTHER_KEY})
    assert r.status_code == 404
    records = [r for r in settled(sollol) if r.endpoint == "/api/chat" and r.status == 200]
    assert [r.client for r in records] == ["team-a"]


def test_the_operator_token_is_required_everywhere_once_set_loopback_included(keyed):
    cluster, sollol, http = keyed
    assert sollol.config.is_loopback_only()
    before = state(cluster, sollol)
    for headers in ({}, AUTH, {"Authorization": "Bearer wrong"}, {"X-SOLLOL-Token": KEY}):
        for method, path, body in OPERATOR_CALLS:
            r = request(http, method, path, body, headers)
            assert r.status_code == 401 and "admin_token" in r.text, (method, path, headers, r.text)
    assert state(cluster, sollol) == before
    assert request(http, "GET", "/api/stats", None, OPERATOR).status_code == 200
    assert request(http, "GET", "/metrics", None, {"X-SOLLOL-Token": TOKEN}).status_code == 200
    r = request(http, "PUT", "/api/routing", {"strategy": "p2c"}, OPERATOR)
    assert r.status_code == 200 and sollol.router.strategy_name == "p2c"
    # the token also opens the client routes (the operator is a client too)
    assert request(http, "GET", "/api/tags", None, OPERATOR).status_code == 200


def test_the_public_routes_say_nothing_about_the_hosts(keyed):
    cluster, sollol, http = keyed
    assert http.get("/").status_code == 200 and http.head("/").status_code == 200
    for headers in ({}, AUTH):
        r = http.get("/api/health", headers=headers)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        assert all(a not in r.text for a in cluster.addresses)
    full = http.get("/api/health", headers=OPERATOR).json()
    assert set(full["hosts"]) == set(cluster.addresses)


def test_on_loopback_without_a_token_the_operator_routes_stay_open(sim_cluster, gateway, client):
    cluster = sim_cluster(n=1, latency_ms=1, tokens=2)
    sollol = gateway(cluster.addresses, api_keys=KEYS)
    http = client(sollol)
    assert http.get("/api/stats").status_code == 200
    assert set(http.get("/api/health").json()["hosts"]) == set(cluster.addresses)
    assert http.get("/api/tags").status_code == 401  # client routes still need a key


def test_beyond_loopback_without_a_token_the_operator_routes_are_off(keyed):
    cluster, sollol, http = keyed
    sollol.config.admin_token = None
    sollol.config.gateway_host = "192.0.2.10"  # what the gateway decides by (nothing binds it: RFC 5737)
    before = state(cluster, sollol)
    for method, path, body in OPERATOR_CALLS:
        r = request(http, method, path, body, AUTH)
        assert r.status_code == 403 and "admin_token" in r.text, (method, path)
    assert state(cluster, sollol) == before
    assert http.get("/api/health").json() == {"status": "ok"}
    assert request(http, "GET", "/api/tags", None, AUTH).status_code == 200


def test_management_open_makes_management_a_client_action(keyed):
    cluster, sollol, http = keyed
    sollol.config.management_open = True
    before = state(cluster, sollol)
    r = request(http, "POST", "/api/copy", {"source": CHAT_MODEL, "destination": "c"})
    assert r.status_code == 401 and state(cluster, sollol) == before  # still a client's: a key is needed
    r = request(http, "POST", "/api/copy", {"source": CHAT_MODEL, "destination": "c"}, AUTH)
    assert r.status_code == 200 and all("c:latest" in n.models for n in cluster.nodes)
    assert request(http, "PUT", "/api/routing", {"strategy": "p2c"}, AUTH).status_code == 401


def test_the_key_is_checked_before_the_body_is_read(keyed):
    """A keyless request announcing a large body is refused at once, without the gateway waiting for (or
    buffering) the body; its connection is then closed."""
    cluster, sollol, _ = keyed
    host, port = sollol.gateway_url.removeprefix("http://").rsplit(":", 1)
    for path in ("/api/chat", "/api/embed/batch", "/v1/chat/completions"):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: 30000000\r\n\r\n{{\"model\":".encode())
            started = time.monotonic()
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 401"), (path, answer[:200])
            assert time.monotonic() - started < 2
            assert b"connection: close" in answer.lower()
    assert all(n.received == [] for n in cluster.nodes)


def test_the_metrics_port_needs_the_token_once_set(keyed):
    _, sollol, http = keyed
    url = sollol.metrics_url
    assert url.startswith("http://127.0.0.1:")
    assert http.get(url).status_code == 401
    assert http.get(url, headers={"Host": "evil.example"} | OPERATOR).status_code == 403
    r = http.get(url, headers=OPERATOR)
    assert r.status_code == 200 and "sollol_requests_total" in r.text
