"""Prometheus exposition on the gateway's /metrics and on the metrics server's own port."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sollol_core.sim import SimNodeSpec

from helpers import CHAT_MODEL, EMBED_MODEL, USER, settled, wait_until

pytestmark = pytest.mark.timeout(60)

CHAT = {"model": CHAT_MODEL, "messages": USER, "stream": False}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted label pairs): value} of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(parsed: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in parsed, f"{name}{labels} not exposed"
    return parsed[key]


@pytest.fixture
def traffic(sim_cluster, gateway, client):
    """Node a fails once, then b serves 3 chats, 1 embed and 1 stream; one unknown model (404)."""
    cluster = sim_cluster(n=2, tokens=3)
    a, b = cluster.nodes
    sollol = gateway(cluster.addresses, routing_strategy="priority")
    sollol.set_priority(b.address, 1)
    http = client(sollol)
    a.failure_rate = 1.0
    for _ in range(3):
        assert http.post("/api/chat", json=CHAT).status_code == 200
    assert http.post("/api/embed", json={"model": EMBED_MODEL, "input": "x"}).status_code == 200
    assert http.post("/api/generate", json={"model": CHAT_MODEL, "prompt": "x"}).status_code == 200
    assert http.post("/api/chat", json=CHAT | {"model": "unknown-model"}).status_code == 404
    settled(sollol)
    return cluster, sollol, http


def check_exposition(text: str, a: str, b: str) -> None:
    parsed = samples(text)
    assert value(parsed, "sollol_requests_total", endpoint="/api/chat", status="success") == 3
    assert value(parsed, "sollol_requests_total", endpoint="/api/chat", status="client_error") == 1
    assert value(parsed, "sollol_requests_total", endpoint="/api/embed", status="success") == 1
    assert value(parsed, "sollol_requests_total", endpoint="/api/generate", status="success") == 1
    assert value(parsed, "sollol_request_latency_seconds_count", endpoint="/api/chat") == 4
    assert value(parsed, "sollol_request_latency_seconds_sum", endpoint="/api/chat") > 0
    assert value(parsed, "sollol_request_latency_seconds_bucket", endpoint="/api/chat", le="+Inf") == 4
    assert value(parsed, "sollol_host_latency_ms", host=b) > 0
    assert value(parsed, "sollol_host_success_rate", host=b) == 1.0
    assert value(parsed, "sollol_host_success_rate", host=a) < 1.0  # its one failure counted
    assert value(parsed, "sollol_worker_failures_total", host=a) == 1
    assert ("sollol_worker_failures_total", (("host", b),)) not in parsed
    assert value(parsed, "sollol_active_requests") == 0
    assert value(parsed, "sollol_retries_total", endpoint="/api/chat") == 1


def test_gateway_metrics_after_traffic(traffic):
    cluster, sollol, http = traffic
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    check_exposition(r.text, *cluster.addresses)


def test_metrics_server_port_after_traffic(traffic):
    cluster, sollol, http = traffic
    assert sollol.metrics_url.startswith("http://127.0.0.1:") and sollol.metrics_url.endswith("/metrics")
    port = int(sollol.metrics_url.rsplit(":", 1)[1].split("/")[0])
    assert port != int(sollol.gateway_url.rsplit(":", 1)[1])
    with httpx.Client(timeout=10, trust_env=False) as m:
        r = m.get(sollol.metrics_url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        check_exposition(r.text, *cluster.addresses)
        assert samples(m.get(f"http://127.0.0.1:{port}/").text) == samples(r.text)
    assert sollol.get_status()["components"]["metrics"]["state"] == "ready"


def test_active_requests_counts_an_open_stream(sim_cluster, gateway, client):
    cluster = sim_cluster(SimNodeSpec(name="a", latency_ms=1, tokens=30, tokens_per_s=20))  # ~1.5 s
    sollol = gateway(cluster.addresses)
    http = client(sollol)
    with httpx.Client(base_url=sollol.gateway_url, timeout=20, trust_env=False) as streamer:
        with streamer.stream("POST", "/api/chat", json={"model": CHAT_MODEL, "messages": USER}) as r:
            lines = r.iter_lines()
            assert json.loads(next(lines))["done"] is False
            parsed = samples(http.get("/metrics").text)
            assert value(parsed, "sollol_active_requests") == 1
            assert value(parsed, "sollol_host_in_flight", host=cluster.addresses[0]) == 1
            assert json.loads(list(x for x in lines if x.strip())[-1])["done"] is True
    wait_until(lambda: value(samples(http.get("/metrics").text), "sollol_active_requests") == 0,
               what="the stream to be counted as finished")
    parsed = samples(http.get("/metrics").text)
    assert value(parsed, "sollol_requests_total", endpoint="/api/chat", status="success") == 1
    assert value(parsed, "sollol_time_to_first_token_seconds_count", endpoint="/api/chat") == 1


def test_metrics_port_in_use_leaves_the_gateway_serving(sim_cluster, gateway, client):
    cluster = sim_cluster(n=1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        sollol = gateway(cluster.addresses, metrics_port=port)
        component = sollol.get_status()["components"]["metrics"]
        assert component["state"] == "failed" and str(port) in component["detail"]
        assert sollol.get_status()["metrics_url"] is None
        http = client(sollol)
        assert http.post("/api/chat", json=CHAT).status_code == 200
        assert "sollol_requests_total" in http.get("/metrics").text


def test_metrics_disabled_keeps_gateway_metrics(sim_cluster, gateway, client):
    cluster = sim_cluster(n=1)
    sollol = gateway(cluster.addresses, metrics_enabled=False)
    assert sollol.metrics_url == "" and "metrics" not in sollol.get_status()["components"]
    assert client(sollol).get("/metrics").status_code == 200


def test_rejected_input_is_counted_and_logged(sim_cluster, gateway, client):
    sollol = gateway(sim_cluster(n=1).addresses)
    http = client(sollol)
    assert http.post("/api/chat", content=b"{not json").status_code == 400
    assert http.patch("/api/hosts/nosuch:1", json={"priority": 1}).status_code == 404
    record = sollol.recent_requests()[-2]
    assert (record.endpoint, record.status, record.host) == ("/api/chat", 400, "")
    assert "invalid JSON" in record.error
    assert sollol.recent_requests()[-1].endpoint == "/api/hosts/{host}"  # the route, not one label per host
    text = http.get("/metrics").text
    assert 'sollol_requests_total{endpoint="/api/chat",status="client_error"} 1.0' in text
    assert 'sollol_requests_total{endpoint="/api/hosts/{host}",status="client_error"} 1.0' in text
