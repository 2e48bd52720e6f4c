"""Learned slots and runner identity through the gateway, on simulated nodes that report their timings and
reload on other runner options as Ollama does."""

from __future__ import annotations

import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sollol_core.sim import SimNodeSpec
from sollol_core.sim.node import RUNNER_DEFAULTS

from helpers import CHAT_MODEL, USER, settled, wait_until

pytestmark = pytest.mark.timeout(90)

MODEL = "llama3.2:latest"
CHAT = {"model": CHAT_MODEL, "messages": USER, "stream": False}


def spec(name: str, slots: int, **kw) -> SimNodeSpec:
    base = dict(name=name, latency_ms=150, tokens=1, tokens_per_s=0, num_parallel=slots, models=[MODEL],
                seed=slots)
    return SimNodeSpec(**(base | kw))


def clients(url: str, n: int, each: int, bodies=None) -> list[int]:
    """n clients, each sending `each` chats one after another; the statuses."""
    statuses: list[int] = []

    def run(i: int) -> None:
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as c:
            for k in range(each):
                body = bodies[(i + k) % len(bodies)] if bodies else CHAT
                statuses.append(c.post("/api/chat", json=body).status_code)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def num_ctx(node) -> int:
    """The num_ctx of the runner a node has loaded (loaded at start: the defaults)."""
    return node.runners.get(MODEL, RUNNER_DEFAULTS)["num_ctx"]


def learned(sollol, address: str):
    rows = [r for r in sollol.views.host_views() if r.host == address][0].slot_learning
    return next((r.slots for r in rows if r.applies), None)


def test_unconfigured_hosts_learn_their_slots_and_requests_wait_in_the_gateway(sim_cluster, gateway):
    cluster = sim_cluster(spec("one", 1), spec("two", 2))
    one, two = cluster.addresses
    sollol = gateway(cluster.addresses)
    assert sollol.slots.limit(one, CHAT_MODEL) is None  # nothing configured, nothing learned: unlimited
    assert all(s == 200 for s in clients(sollol.gateway_url, 6, 5))
    assert (learned(sollol, one), learned(sollol, two)) == (1, 2)
    assert sollol.slots.limit(one, CHAT_MODEL) == 1 and sollol.slots.limit(two, CHAT_MODEL) == 2
    settled(sollol)
    # once learned, what the nodes cannot run at once waits in the gateway: the next round queues nowhere else
    waits = []
    for node in cluster.nodes:
        node.prefills.clear()
    assert all(s == 200 for s in clients(sollol.gateway_url, 6, 3))
    records = [r for r in sollol.recent_requests()[-18:]]
    waits = [r.wait_ms for r in records]
    assert max(waits) > 50  # some waited in the gateway ...
    probes = sum(1 for r in records if r.placement.startswith("probe"))
    assert probes <= 6  # ... and a few went one above the learned slots to see whether the host had more
    stats = httpx.get(sollol.gateway_url + "/api/stats", trust_env=False).json()
    row = {h["host"]: h for h in stats["hosts"]}
    assert row[one]["slots_learned"] and row[one]["slots"] == 1
    assert row[one]["slots_by_model"][0]["learned"] is True and row[one]["slots_by_model"][0]["limit"] == 1
    evidence = row[one]["slot_learning"][0]
    assert evidence["slots"] == 1 and evidence["waited"] >= 1 and evidence["model"] == MODEL
    metrics = httpx.get(sollol.gateway_url + "/metrics", trust_env=False).text
    got = {(s.name, s.labels.get("host")): s.value for f in text_string_to_metric_families(metrics)
           for s in f.samples if s.name == "sollol_slots_learned"}
    assert got == {("sollol_slots_learned", one): 1.0, ("sollol_slots_learned", two): 2.0}


def test_a_configured_num_parallel_wins_and_a_restart_forgets_what_was_learned(sim_cluster, gateway):
    cluster = sim_cluster(spec("one", 1), spec("two", 1))
    one, two = cluster.addresses
    sollol = gateway(cluster.addresses, host_settings={two: {"num_parallel": 3}}, unhealthy_recheck_interval=0.2)
    for _ in range(4):  # on a loaded machine an answer stretched by its scheduling may take another round to outvote
        assert all(s == 200 for s in clients(sollol.gateway_url, 6, 3))
        if learned(sollol, one) == 1:
            break
    assert learned(sollol, one) == 1
    assert sollol.slots.limit(two, CHAT_MODEL) == 3 and learned(sollol, two) is None  # configured: it holds
    settled(sollol)
    cluster.kill(0)
    cluster.revive(0)  # a restarted Ollama
    sollol.registry.record_failure(one, "connection refused")  # as a request would find it
    wait_until(lambda: sollol.registry.get(one).available, what="the node to be readmitted")
    assert learned(sollol, one) is None and sollol.slots.limit(one, CHAT_MODEL) is None


def test_each_runner_finds_its_host_and_the_config_makes_one_runner_for_all(sim_cluster, gateway):
    cluster = sim_cluster(spec("a", 2, load_ms=200, latency_ms=30), spec("b", 2, load_ms=200, latency_ms=30))
    bodies = [CHAT | {"options": {"num_ctx": n}} for n in (2048, 4096)]
    sollol = gateway(cluster.addresses)
    assert all(s == 200 for s in clients(sollol.gateway_url, 2, 3, bodies))  # warm-up: each finds a runner
    settled(sollol)
    warm = sum(n.reloads for n in cluster.nodes)
    assert all(s == 200 for s in clients(sollol.gateway_url, 4, 4, bodies))
    settled(sollol)
    assert sum(n.reloads for n in cluster.nodes) == warm  # no reload after the warm-up
    assert sorted(num_ctx(n) for n in cluster.nodes) == [2048, 4096]
    stats = httpx.get(sollol.gateway_url + "/api/stats", trust_env=False).json()
    options = sorted(h["runners"][0]["options"] for h in stats["hosts"])
    assert options in (["defaults", "num_ctx=4096"], ["num_ctx=2048", "num_ctx=4096"])

    sollol.control.update_config(models={CHAT_MODEL: {"num_ctx": 8192}})
    before = [len(n.received) for n in cluster.nodes]
    assert all(s == 200 for s in clients(sollol.gateway_url, 4, 3, bodies))
    records = settled(sollol)[-12:]
    served = {r.host for r in records}
    # one runner for every client: the hosts that served run 8192 (a host left with its old runner takes
    # requests only where a reload costs less than waiting for a matching slot)
    assert all(num_ctx(n) == 8192 for n in cluster.nodes if n.address in served)
    assert all(r.placement.startswith("num_ctx ") and "→ 8192 (config models.llama3.2:latest)" in r.placement
               for r in records)
    sent = [body for node, n in zip(cluster.nodes, before) for _, body in node.received[n:]]
    assert len(sent) == 12 and all(b["options"]["num_ctx"] == 8192 for b in sent)
    metrics = httpx.get(sollol.gateway_url + "/metrics", trust_env=False).text
    reloads = [s for f in text_string_to_metric_families(metrics) for s in f.samples
               if s.name == "sollol_model_reloads_total"]
    assert reloads and {s.labels["cause"] for s in reloads} <= {"options", "cold", "unknown"}
    assert sum(s.value for s in reloads if s.labels["cause"] == "options") >= 1  # the switch to 8192
