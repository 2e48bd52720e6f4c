"""What reaches a host's request line, and what counts as loopback, through the real app on 127.0.0.1: a blob
digest ending in a line feed is refused (a full match, not `$`), a model name in a path is percent-encoded
(or, unknown, goes nowhere), the upstream client refuses a request target with a space or a control character, and a name that merely
starts with 127. is not loopback."""

from __future__ import annotations

import hashlib

import pytest

from sollol_core.config import SollolConfig, is_loopback_host

pytestmark = pytest.mark.timeout(60)

DIGEST = "sha256:" + hashlib.sha256(b"x").hexdigest()


@pytest.fixture
def stack(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2, latency_ms=1, tokens=2)
    sollol = gateway(cluster.addresses)
    return cluster, sollol, client(sollol)


def test_a_digest_ending_in_a_line_feed_is_refused(stack):
    cluster, _, http = stack
    for digest in (DIGEST + "%0A", DIGEST + "%0D%0AX-Injected:%201", DIGEST + "%20", "%0A" + DIGEST):
        assert http.head(f"/api/blobs/{digest}").status_code == 400, digest
        r = http.post(f"/api/blobs/{digest}", content=b"x")
        assert r.status_code == 400 and "sha256:<64 hex digits>" in r.json()["error"], digest
    assert all(n.received == [] for n in cluster.nodes)
    assert http.head(f"/api/blobs/{DIGEST}").status_code == 404  # a good digest still goes through


def test_a_model_name_in_a_path_never_reaches_a_request_line_raw(stack):
    cluster, _, http = stack
    r = http.get("/v1/models/llama3.2%0D%0AX-Injected:%201")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    paths = [p for n in cluster.nodes for p, _ in n.received]
    assert all("\r" not in p and "\n" not in p and " " not in p for p in paths), paths


def test_the_upstream_client_refuses_an_unsafe_request_target(stack):
    cluster, sollol, _ = stack

    async def send(path: str) -> None:
        await sollol.in_loop_executor.open(cluster.addresses[0], "GET", path, None, 5)

    for path in ("/api/tags\r\nX-Injected: 1", "/api/tags HTTP/1.0", "/api/\x00tags", "/api/t\u00e4gs"):
        with pytest.raises(ValueError, match="unsafe request target"):
            sollol.run_coroutine(send(path), timeout=10)
    assert all(n.received == [] for n in cluster.nodes)


def test_a_name_starting_with_127_is_not_loopback(stack):
    cluster, sollol, http = stack
    assert not is_loopback_host("127.0.0.1.example.com") and not is_loopback_host("127.evil.example")
    assert is_loopback_host("127.0.0.1") and is_loopback_host("127.3.2.1") and is_loopback_host("::1")
    assert not SollolConfig(gateway_host="127.0.0.1.example.com").is_loopback_only()
    sollol.config.gateway_host = "127.0.0.1.example.com"  # what the gateway decides by
    before = sollol.registry.addresses()
    r = http.post(f"/api/hosts/{cluster.addresses[0]}/drain")
    assert r.status_code == 403 and "beyond loopback" in r.json()["error"]
    assert sollol.registry.addresses() == before and sollol.registry.get(cluster.addresses[0]).state.value == "healthy"
