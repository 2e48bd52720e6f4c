"""The gateway queue through the gateway: slots, waits, 503 with Retry-After in each API's shape, client keys."""

import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import CHAT_MODEL, USER, settled, wait_until


def chat(http, **extra):
    return http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False} | extra)


class PeakWatcher:
    """Samples each node's requests in progress (queued inside it or served) every millisecond."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.peak = [0] * len(nodes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for i, n in enumerate(self.nodes):
                self.peak[i] = max(self.peak[i], n.in_flight)
            time.sleep(0.001)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_never_more_in_flight_than_slots_and_the_rest_wait_in_the_gateway(sim_cluster, gateway, client):
    sim = sim_cluster(n=2, latency_ms=150, capacity=8)
    sollol = gateway(sim.addresses, default_num_parallel=1)
    http = client(sollol)
    with PeakWatcher(sim.nodes) as watch, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: chat(http), range(6)))
    assert [r.status_code for r in answers] == [200] * 6
    assert watch.peak == [1, 1]  # without the queue the nodes would hold 3 each
    records = [r for r in settled(sollol) if r.endpoint == "/api/chat"]
    assert sum(1 for r in records if r.wait_ms > 50) >= 3  # they waited in the gateway, not inside a host
    stats = http.get("/api/stats").json()
    assert stats["queue"]["admitted"] >= 6 and all(h["slots"] == 1 for h in stats["hosts"])
    assert all(h["slots_in_use"] == 0 for h in stats["hosts"])
    text = http.get("/metrics").text
    assert 'sollol_queue_wait_seconds_count{priority="interactive"} 6.0' in text


@pytest.mark.parametrize("path, body, shape", [
    ("/api/chat", {"model": CHAT_MODEL, "messages": USER, "stream": False}, "ollama"),
    ("/v1/chat/completions", {"model": CHAT_MODEL, "messages": USER}, "openai"),
])
def test_queue_timeout_is_503_with_retry_after_in_the_apis_shape(sim_cluster, gateway, client, path, body, shape):
    sim = sim_cluster(n=1, latency_ms=1500, capacity=4)
    sollol = gateway(sim.addresses, default_num_parallel=1, queue={"interactive_timeout_s": 0.3})
    http = client(sollol)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(http.post, path, json=body)
        wait_until(lambda: sim.nodes[0].in_flight == 1, what="the first request to hold the host's one slot")
        second = http.post(path, json=body)
        assert first.result().status_code == 200
    assert second.status_code == 503 and int(second.headers["retry-after"]) >= 1
    error = second.json()["error"]
    message = error if shape == "ollama" else error["message"]
    assert "retry later" in message
    assert len(sim.nodes[0].received) == 1  # the refused request cost the host nothing
    stats = http.get("/api/stats").json()["queue"]
    assert sum(stats["rejected"].values()) == 1


def test_client_leaving_while_queued_costs_no_host_anything(sim_cluster, gateway, client):
    sim = sim_cluster(n=1, latency_ms=800, capacity=4)
    # one slot told, not a default to learn from: no probe may send the second request to the host
    sollol = gateway(sim.addresses, host_settings={sim.addresses[0]: {"num_parallel": 1}})
    http = client(sollol)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(chat, http)
        wait_until(lambda: sim.nodes[0].in_flight == 1, what="the first request to hold the host's one slot")
        # a client that sends its request and hangs up once it is queued (no timer: the machine's speed
        # decides nothing)
        body = json.dumps({"model": CHAT_MODEL, "messages": USER, "stream": False}).encode()
        host, port = sollol.gateway_url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port))) as impatient:
            impatient.sendall(b"POST /api/chat HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: "
                              b"application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            wait_until(lambda: sollol.queue.total == 1, what="the second request to wait in the gateway queue")
        wait_until(lambda: sollol.queue.stats.cancelled == 1, what="the queued request to leave")
        assert sollol.queue.total == 0
        wait_until(lambda: any(r.status == 499 and "waited in the gateway queue" in (r.error or "")
                               for r in sollol.recent_requests()), what="the departure in the request log")
        assert first.result().status_code == 200
    time.sleep(0.1)
    assert len(sim.nodes[0].received) == 1  # only the first ever reached the host


def test_priority_header_and_classes_in_the_log(sim_cluster, gateway, client):
    sim = sim_cluster(n=1)
    sollol = gateway(sim.addresses)
    http = client(sollol)
    assert chat(http, keep_alive="5m").status_code == 200
    r = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False},
                  headers={"X-SOLLOL-Priority": "batch"})
    assert r.status_code == 200
    bad = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER}, headers={"X-SOLLOL-Priority": "now"})
    assert bad.status_code == 400 and "X-SOLLOL-Priority" in bad.json()["error"]
    records = [r for r in settled(sollol) if r.endpoint == "/api/chat" and r.status == 200]
    assert [r.priority for r in records] == ["interactive", "batch"]
    assert records[0].client == "127.0.0.1"


def test_api_keys_missing_wrong_right_and_never_logged(sim_cluster, gateway, client, caplog):
    sim = sim_cluster(n=1)
    secret = "sk-live-7f3a9c"
    sollol = gateway(sim.addresses, api_keys={secret: {"name": "team-a", "priority": "high"},
                                              "sk-bulk-1": {"name": "bulk", "priority": "batch"}})
    http = client(sollol)
    caplog.set_level(logging.DEBUG)
    missing = chat(http)
    assert missing.status_code == 401 and "API key" in missing.json()["error"]
    v1 = http.post("/v1/chat/completions", json={"model": CHAT_MODEL, "messages": USER})
    assert v1.status_code == 401 and v1.json()["error"]["type"] == "authentication_error"
    wrong = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False},
                      headers={"Authorization": "Bearer sk-nope"})
    assert wrong.status_code == 401
    right = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False},
                      headers={"Authorization": f"Bearer {secret}"})
    assert right.status_code == 200
    anthropic_style = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False},
                                headers={"x-api-key": "sk-bulk-1"})
    assert anthropic_style.status_code == 200
    records = settled(sollol)
    ok = [r for r in records if r.status == 200 and r.endpoint == "/api/chat"]
    assert [(r.client, r.priority) for r in ok] == [("team-a", "high"), ("bulk", "batch")]
    stats = http.get("/api/stats").text
    metrics = http.get("/metrics").text
    assert 'client="team-a"' in metrics and '"team-a"' in stats
    assert secret not in stats and secret not in metrics and secret not in caplog.text and secret not in repr(records)


def test_unlimited_hosts_keep_todays_behaviour(sim_cluster, gateway, client):
    """No slots configured: nothing waits in the gateway, the host queues as before."""
    sim = sim_cluster(n=1, latency_ms=100, capacity=8)
    sollol = gateway(sim.addresses)
    http = client(sollol)
    with PeakWatcher(sim.nodes) as watch, ThreadPoolExecutor(4) as pool:
        assert [r.status_code for r in pool.map(lambda _: chat(http), range(4))] == [200] * 4
    assert watch.peak[0] >= 3
    assert all(r.wait_ms == 0 for r in settled(sollol))


@pytest.mark.parametrize("preempt", [True, False])
def test_a_waiting_high_request_takes_the_slot_of_a_batch_request_not_yet_answered(sim_cluster, gateway, client,
                                                                                   preempt):
    sim = sim_cluster(n=1, latency_ms=1200, capacity=4)
    sollol = gateway(sim.addresses, default_num_parallel=1, queue={"preempt_batch": preempt})
    http = client(sollol)
    finished: dict[str, float] = {}

    def send(name, priority, n):
        r = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": f"q{n}"}],
                                         "stream": False}, headers={"X-SOLLOL-Priority": priority})
        finished[name] = time.monotonic()
        return r.status_code

    with ThreadPoolExecutor(2) as pool:
        bulk = pool.submit(send, "batch", "batch", 1)
        wait_until(lambda: sim.nodes[0].in_flight == 1, what="the batch request on the host")
        urgent = pool.submit(send, "high", "high", 2)
        assert (bulk.result(), urgent.result()) == (200, 200)
    stats = http.get("/api/stats").json()["queue"]
    if preempt:  # the batch request gave up its slot and went back to the queue: the high one finished first
        assert finished["high"] < finished["batch"] and stats["preempted"] == 1
        assert len([b for p, b in sim.nodes[0].received if p == "/api/chat"]) == 3  # batch, high, batch again
        host = sollol.registry.get(sim.addresses[0])
        assert host.failures_total == 0 and host.state.value == "healthy"
    else:
        assert finished["batch"] < finished["high"] and stats["preempted"] == 0
