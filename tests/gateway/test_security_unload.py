"""An unload through /api/chat or /api/generate (keep_alive 0, no prompt: what `ollama stop` sends) unloads the
model on every host: the client is identified first, and beyond loopback it is the operator's action unless
management_open says otherwise. Through the real app; the models stay loaded on every refusal."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(60)

KEY, TOKEN = "sk-unload-client-3b9", "tok-unload-op-55e"
MODEL = "llama3.2:latest"
UNLOADS = [("/api/generate", {"model": "llama3.2", "keep_alive": 0}),
           ("/api/chat", {"model": "llama3.2", "messages": [], "keep_alive": "0s"})]


@pytest.fixture
def stack(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2, latency_ms=1, tokens=2)
    sollol = gateway(cluster.addresses, api_keys={KEY: {"name": "c"}})
    return cluster, sollol, client(sollol)


def loaded(cluster) -> list[bool]:
    return [MODEL in node.loaded for node in cluster.nodes]


def test_an_unload_needs_the_key_first(stack):
    cluster, _, http = stack
    for path, body in UNLOADS:
        r = http.post(path, json=body)
        assert r.status_code == 401, path
    assert loaded(cluster) == [True, True] and all(n.received == [] for n in cluster.nodes)


def test_on_loopback_a_client_may_unload(stack):
    cluster, _, http = stack
    r = http.post("/api/generate", json=UNLOADS[0][1], headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and loaded(cluster) == [False, False]


def test_beyond_loopback_an_unload_is_the_operators(stack):
    cluster, sollol, http = stack
    sollol.config.gateway_host = "192.0.2.10"  # what the gateway decides by (RFC 5737: nothing binds it)
    key = {"Authorization": f"Bearer {KEY}"}
    for path, body in UNLOADS:
        r = http.post(path, json=body, headers=key)
        assert r.status_code == 403 and "admin_token" in r.json()["error"], path
    sollol.config.admin_token = TOKEN
    for path, body in UNLOADS:
        r = http.post(path, json=body, headers=key)
        assert r.status_code == 401 and "for the operator" in r.json()["error"], path
    assert loaded(cluster) == [True, True] and all(n.received == [] for n in cluster.nodes)
    # a chat that is not an unload still goes through with the key alone
    r = http.post("/api/chat", json={"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}],
                                     "stream": False}, headers=key)
    assert r.status_code == 200
    r = http.post("/api/generate", json=UNLOADS[0][1], headers=key | {"X-SOLLOL-Token": TOKEN})
    assert r.status_code == 200 and loaded(cluster) == [False, False]


def test_management_open_lets_a_client_unload_beyond_loopback(stack):
    cluster, sollol, http = stack
    sollol.config.gateway_host = "192.0.2.10"
    sollol.config.management_open = True
    assert http.post("/api/chat", json=UNLOADS[1][1]).status_code == 401  # still a client: a key
    r = http.post("/api/chat", json=UNLOADS[1][1], headers={"x-api-key": KEY})
    assert r.status_code == 200 and loaded(cluster) == [False, False]
