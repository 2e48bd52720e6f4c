"""Upstream answers read right, through the gateway over simulated nodes that answer like Ollama:
busy is not broken, a model that cannot load is about one (host, model), an error line inside a 200
stream is the host's failure in its stats, and a host that comes back takes traffic again within seconds."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sollol_core.sim import SimNodeSpec

from helpers import CHAT_MODEL, USER, settled, wait_until


def chat(http, model=CHAT_MODEL, n=0, **extra):
    messages = [{"role": "user", "content": f"question {n}: why is the sky blue"}]  # unrelated prompts
    return http.post("/api/chat", json={"model": model, "messages": messages, "stream": False} | extra)


def served_by(r) -> str:
    return r.json()["message"]["content"].split("]")[0].lstrip("[")


def test_busy_500_requeues_and_the_host_is_not_blamed(sim_cluster, gateway, client):
    sim = sim_cluster(SimNodeSpec(name="a", latency_ms=5, tokens_per_s=0, seed=1),
                      SimNodeSpec(name="b", latency_ms=5, tokens_per_s=0, seed=2))
    sollol = gateway(sim.addresses)
    http = client(sollol)
    sim.nodes[0].busy_500 = True
    answers = [chat(http, n=i) for i in range(12)]
    assert [r.status_code for r in answers] == [200] * 12 and {served_by(r) for r in answers} == {"b"}
    assert any(path == "/api/chat" for path, _ in sim.nodes[0].received)  # a was asked, and said busy
    a = sollol.registry.get(sim.addresses[0])
    assert a.state.value == "healthy" and a.failures_total == 0  # busy is not broken
    assert sollol.slots.limit(sim.addresses[0], CHAT_MODEL) is not None  # its slot estimate dropped


def test_max_queue_503_waits_in_the_gateway_and_every_request_is_answered(sim_cluster, gateway, client):
    # one slot inside the host and no room to wait there: Ollama answers "server busy" beyond it
    sim = sim_cluster(SimNodeSpec(name="a", latency_ms=150, tokens_per_s=0, num_parallel=1, max_queue=0))
    sollol = gateway(sim.addresses)  # SOLLOL was not told the slots: it learns from the busy answers
    http = client(sollol)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: chat(http, n=i), range(4)))
    assert [r.status_code for r in answers] == [200] * 4
    host = sollol.registry.get(sim.addresses[0])
    assert host.state.value == "healthy" and host.failures_total == 0
    busy = [body for path, body in sim.nodes[0].received if path == "/api/chat"]
    assert len(busy) > 4  # some were answered busy and sent again once a slot freed


def test_a_model_that_cannot_load_is_tried_elsewhere_and_the_host_keeps_its_other_models(sim_cluster, gateway,
                                                                                          client):
    models = ["llama3.2:latest", "qwen2.5:0.5b"]
    sim = sim_cluster(SimNodeSpec(name="a", latency_ms=5, tokens_per_s=0, models=models, seed=1),
                      SimNodeSpec(name="b", latency_ms=400, tokens_per_s=0, models=models, seed=2))
    sollol = gateway(sim.addresses)
    http = client(sollol)
    sim.nodes[0].load_failure = "llama3.2:latest"
    a = sim.addresses[0]
    answers = [chat(http, n=i) for i in range(4)]  # unrelated prompts: a is tried for one of them
    assert [r.status_code for r in answers] == [200] * 4 and {served_by(r) for r in answers} == {"b"}
    assert sollol.registry.get(a).state.value == "healthy"
    assert sollol.slots.is_unfit(a, CHAT_MODEL)
    tried = sum(1 for path, body in sim.nodes[0].received if path == "/api/chat" and body["model"] == CHAT_MODEL)
    assert all(served_by(chat(http, n=10 + i)) == "b" for i in range(3))  # not asked again for a while
    assert sum(1 for path, body in sim.nodes[0].received
               if path == "/api/chat" and body["model"] == CHAT_MODEL) == tried
    other = [chat(http, model="qwen2.5:0.5b", n=20 + i) for i in range(4)]
    assert "a" in {served_by(r) for r in other}  # the fast host still serves its other model
    stats = http.get("/api/stats").json()
    assert next(h for h in stats["hosts"] if h["host"] == a)["unfit_models"] == ["llama3.2:latest"]


def test_error_line_inside_a_200_stream_counts_against_the_host(sim_cluster, gateway, client):
    sim = sim_cluster(SimNodeSpec(name="a", latency_ms=5, tokens=6, tokens_per_s=0))
    sollol = gateway(sim.addresses)
    http = client(sollol)
    sim.nodes[0].error_line_mid_stream = True
    with http.stream("POST", "/api/chat", json={"model": CHAT_MODEL, "messages": USER}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert r.status_code == 200 and "error" in lines[-1] and "error" not in lines[0]
    record = settled(sollol)[-1]
    assert record.status == 502 and "inside the stream" in record.error
    host = sollol.registry.get(sim.addresses[0])
    assert host.failures_total == 1 and host.state.value == "healthy"  # counted, not taken out


def test_a_host_that_comes_back_takes_traffic_again_within_seconds(sim_cluster, gateway, client):
    sim = sim_cluster(SimNodeSpec(name="a", latency_ms=20, tokens_per_s=0, seed=1),
                      SimNodeSpec(name="b", latency_ms=20, tokens_per_s=0, seed=2))
    sollol = gateway(sim.addresses, unhealthy_recheck_interval=0.3)
    http = client(sollol)
    stop = threading.Event()
    served: list[tuple[float, str]] = []

    def load():
        while not stop.is_set():
            r = chat(http, n=len(served))
            if r.status_code == 200:
                served.append((time.monotonic(), served_by(r)))

    workers = [threading.Thread(target=load, daemon=True) for _ in range(8)]
    for w in workers:
        w.start()
    try:
        time.sleep(0.5)
        sim.kill(0)
        wait_until(lambda: sollol.registry.get(sim.addresses[0]).state.value == "unhealthy", what="a taken out")
        time.sleep(0.5)
        sim.revive(0)  # cold: no model loaded, as a restarted Ollama
        wait_until(lambda: sollol.registry.get(sim.addresses[0]).state.value == "healthy", what="a re-admitted")
        back = time.monotonic()
        wait_until(lambda: any(t > back and who == "a" for t, who in served), timeout=5,
                   what="the re-admitted host to serve again")
        first = min(t for t, who in served if t > back and who == "a")
        assert first - back < 5.0
    finally:
        stop.set()
        for w in workers:
            w.join(5)
