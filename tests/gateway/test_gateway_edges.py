"""Edges of the HTTP surface: HEAD checks, null stream, management errors, internal errors, number fields,
and the model-list refresh for unknown models."""

import httpx

from sollol_core.sim import SimNodeSpec

from helpers import CHAT_MODEL, USER


def test_head_checks_answer_like_ollama(sim_cluster, gateway, client):
    http = client(gateway(sim_cluster(n=1).addresses))
    assert http.head("/").status_code == 200  # the ollama command line's heartbeat
    assert http.head("/api/version").status_code == 200
    assert http.get("/").text == "Ollama is running"


def test_null_stream_means_the_default(sim_cluster, gateway, client):
    http = client(gateway(sim_cluster(n=1).addresses))
    r = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": None})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert len([line for line in r.text.splitlines() if line]) > 1  # streamed, as Ollama's default


def test_management_error_is_passed_on_once_and_not_held_against_the_host(sim_cluster, gateway, client):
    sim = sim_cluster(n=1)
    sollol = gateway(sim.addresses, max_retries=3)
    http = client(sollol)
    node = sim.nodes[0]
    calls_before = node.requests_served
    r = http.request("DELETE", "/api/delete", json={"model": "no-such-model"},
                     headers={"X-SOLLOL-Host": sim.addresses[0]})
    assert r.status_code == 404 and "not found" in r.json()["error"]
    assert node.requests_served - calls_before == 1  # asked once, not retried
    assert sollol.registry.get(sim.addresses[0]).state.value == "healthy"


def test_an_internal_error_still_answers_in_ollamas_shape(sim_cluster, gateway, client, monkeypatch):
    sollol = gateway(sim_cluster(n=1).addresses)

    async def broken(call, pinned=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(sollol.proxy, "forward", broken)
    http = client(sollol)
    r = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER})
    assert r.status_code == 500 and r.json() == {"error": "internal error: RuntimeError: boom"}
    monkeypatch.undo()
    assert http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False}).status_code == 200


def test_number_fields_are_not_truncated(sim_cluster, gateway, client):
    sim = sim_cluster(n=1)
    sollol = gateway(sim.addresses)
    http = client(sollol)
    host = sim.addresses[0]
    for bad in (1.9, True, "2"):
        r = http.patch(f"/api/hosts/{host}", json={"priority": bad})
        assert r.status_code == 400 and "whole number" in r.json()["error"]
    assert http.patch(f"/api/hosts/{host}", json={"priority": 2.0}).json()["priority"] == 2
    r = http.put("/api/routing", json={"weights": []})
    assert r.status_code == 400 and "weights must be an object" in r.json()["error"]


def test_unknown_model_requests_share_one_model_list_refresh(sim_cluster, gateway):
    sim = sim_cluster(SimNodeSpec(name="a", latency_ms=1), SimNodeSpec(name="b", latency_ms=1, seed=1))
    sollol = gateway(sim.addresses)
    served = [n.requests_served for n in sim.nodes]
    with httpx.Client(base_url=sollol.gateway_url, timeout=10, trust_env=False) as http:
        for _ in range(10):
            r = http.post("/api/chat", json={"model": "no-such-model", "messages": USER})
            assert r.status_code == 404 and r.json()["error"] == "model 'no-such-model' not found on any host"
    extra = [n.requests_served - s for n, s in zip(sim.nodes, served)]
    assert all(e <= 2 for e in extra), extra  # one /api/tags + /api/ps round for ten requests, not ten


def test_a_host_answering_an_odd_listing_is_left_out_of_the_unions(sim_cluster, gateway, client):
    sim = sim_cluster(n=2)
    sollol = gateway(sim.addresses)
    http = client(sollol)

    async def odd_listing(host, path, timeout):  # e.g. a proxy in front of one host answering a JSON list
        if host == sim.addresses[0]:
            return ["not", "a", "listing"]
        return await real(host, path, timeout)

    real = sollol.executor.get_json
    sollol.executor.get_json = odd_listing
    try:
        for path, key in (("/api/tags", "models"), ("/api/ps", "models"), ("/v1/models", "data")):
            r = http.get(path)
            assert r.status_code == 200, (path, r.text)
            assert r.json()[key], path  # the other host's entries are still there
        assert {m["host"] for m in http.get("/api/ps").json()["models"]} == {sim.addresses[1]}
        assert all(m["hosts"] == [sim.addresses[1]] for m in http.get("/api/tags").json()["models"])
    finally:
        sollol.executor.get_json = real
