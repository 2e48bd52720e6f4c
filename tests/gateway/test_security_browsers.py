"""Browsers, through the real app on 127.0.0.1: a page on another site cannot change the cluster (Origin, and
the JSON content type a form cannot send), a name that rebinds to 127.0.0.1 is refused (Host), and CORS
preflights are answered for the listed origins only."""

from __future__ import annotations

import pytest

from helpers import CHAT_MODEL, USER

pytestmark = pytest.mark.timeout(60)

EVIL = "http://evil.example"
NEW_HOST = {"host": "10.9.9.9:11434"}  # never contacted: the request is refused first


@pytest.fixture
def stack(sim_cluster, gateway, client):
    cluster = sim_cluster(n=1, latency_ms=1, tokens=2)
    sollol = gateway(cluster.addresses)
    return cluster, sollol, client(sollol)


def hosts_state(sollol) -> list[tuple[str, str]]:
    return [(h.address, h.state.value) for h in sollol.registry.hosts()]


def test_a_page_on_another_site_cannot_change_the_cluster(stack):
    cluster, sollol, http = stack
    before = hosts_state(sollol)
    address = cluster.addresses[0]
    attacks = [
        ("POST", "/api/hosts", {"Content-Type": "text/plain", "Origin": EVIL}, b'{"host": "10.9.9.9:11434"}'),
        ("POST", "/api/hosts", {"Content-Type": "application/json", "Origin": EVIL}, b'{"host": "10.9.9.9:11434"}'),
        ("POST", f"/api/hosts/{address}/drain", {"Origin": EVIL}, b""),
        ("DELETE", f"/api/hosts/{address}", {"Origin": "null"}, b""),
        ("POST", "/api/chat", {"Content-Type": "text/plain", "Origin": EVIL},
         b'{"model": "llama3.2", "messages": [], "keep_alive": 0}'),
    ]
    for method, path, headers, body in attacks:
        r = http.request(method, path, content=body, headers=headers)
        assert r.status_code == 403 and "allowed_origins" in r.json()["error"], (method, path, r.text)
        assert "access-control-allow-origin" not in r.headers
    assert hosts_state(sollol) == before
    assert "llama3.2:latest" in cluster.nodes[0].loaded and cluster.nodes[0].received == []


def test_json_routes_take_json_or_no_content_type(stack):
    cluster, sollol, http = stack
    before = hosts_state(sollol)
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        r = http.post("/api/hosts", content=b'{"host": "10.9.9.9:11434"}', headers={"Content-Type": kind})
        assert r.status_code == 415 and "application/json" in r.json()["error"], kind
        r = http.post("/v1/chat/completions", content=b"{}", headers={"Content-Type": kind})
        assert r.status_code == 415 and r.json()["error"]["message"], kind  # in OpenAI's shape
    r = http.post(f"/api/hosts/{cluster.addresses[0]}/drain", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert hosts_state(sollol) == before
    body = b'{"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": false}'
    assert http.post("/api/chat", content=body).status_code == 200  # no content type at all
    assert http.post("/api/chat", content=body, headers={"Content-Type": "Application/JSON; charset=utf-8"}
                     ).status_code == 200


def test_a_name_that_rebinds_to_loopback_is_refused(stack):
    cluster, sollol, http = stack
    port = sollol.gateway_url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.example.com", f"127.0.0.1.nip.io:{port}"):
        for method, path, body in (("GET", "/api/tags", None), ("GET", "/api/stats", None),
                                   ("POST", "/api/chat", {"model": CHAT_MODEL, "messages": USER, "stream": False})):
            r = http.request(method, path, json=body, headers={"Host": host})
            assert r.status_code == 403 and "allowed_hosts" in r.json()["error"], (host, path)
    assert cluster.nodes[0].received == []
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "127.1.2.3", "gpu-box.local",
                 "10.0.0.5:8000"):
        assert http.get("/api/tags", headers={"Host": host}).status_code == 200, host
    sollol.update_config(allowed_hosts=["llm.example.com", ".corp.example"])  # live
    for host in ("llm.example.com", "a.corp.example:443", "corp.example"):
        assert http.get("/api/tags", headers={"Host": host}).status_code == 200, host
    assert http.get("/api/tags", headers={"Host": "evil.example"}).status_code == 403


def test_beyond_loopback_any_host_name_is_served(stack):
    _, sollol, http = stack
    sollol.config.gateway_host = "192.0.2.10"  # what the gateway decides by (RFC 5737: nothing binds it)
    assert http.get("/api/tags", headers={"Host": "llm.example.com"}).status_code == 200


def test_cors_preflights_and_answers_for_listed_origins_only(stack):
    _, sollol, http = stack
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    r = http.options("/api/chat", headers=preflight)
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    sollol.update_config(allowed_origins=["https://app.example"])
    r = http.options("/api/chat", headers=preflight)
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["access-control-allow-headers"] == "authorization, content-type"
    body = {"model": CHAT_MODEL, "messages": USER, "stream": False}
    for path in ("/api/chat", "/api/tags"):  # a hot route and a FastAPI one
        r = http.request("POST" if path == "/api/chat" else "GET", path, json=body if path == "/api/chat" else None,
                         headers={"Origin": "https://app.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example", path
        assert r.headers["vary"] == "Origin"
    r = http.options("/api/chat", headers=preflight | {"Origin": EVIL})
    assert r.status_code == 403
    # loopback origins are allowed by default, and the gateway's own pages (its /docs) are not cross-origin
    port = sollol.gateway_url.rsplit(":", 1)[1]
    r = http.post("/api/chat", json=body, headers={"Origin": "http://localhost:3000"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:3000"
    r = http.post("/api/chat", json=body, headers={"Origin": f"http://127.0.0.1:{port}"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    sollol.update_config(allowed_origins=["https://*.example.org"])
    assert http.options("/api/chat", headers=preflight | {"Origin": "https://x.example.org"}).status_code == 204
    assert http.options("/api/chat", headers=preflight).status_code == 403  # the old list is gone
