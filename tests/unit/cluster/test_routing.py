"""Routing strategies and the model-aware filter: deterministic for given stats."""

import random

import pytest

from sollol_core.cluster.hosts import HostRegistry
from sollol_core.cluster.routing import P2CStrategy, Router, make_strategy, performance_score, performance_terms
from sollol_core.config import RoutingWeights
from sollol_core.errors import NoHostForModel


def registry(*addresses):
    reg = HostRegistry()
    for a in addresses:
        reg.add(a)
    return reg


def order(router, model=None, exclude=frozenset()):
    return [h.address for h in router.route(model, exclude)]


def test_performance_terms_normalised_and_weighted():
    reg = registry("a:1")
    h = reg.get("a:1")
    h.cpu_load, h.gpu_free_mem, h.priority, h.latency_ms, h.success_rate, h.in_flight = 0.5, 3072.0, 2, 250.0, 0.9, 4
    terms = performance_terms(h, RoutingWeights())
    assert terms == pytest.approx({
        "cpu_load": 0.3 * 0.5,
        "gpu_free_mem": 0.2 * (1 / (1 + 3.0)),
        "priority": 0.1 * 0.2,
        "latency": 0.2 * 0.25,
        "success_rate": 0.2 * 0.1,
        "in_flight": 0.2 * 4 * 0.25,
    })
    h.weight = 2.0
    score, _ = performance_score(h, RoutingWeights())
    assert score == pytest.approx(sum(terms.values()) / 2)


def test_service_time_leaves_out_the_prefill_its_answers_reported():
    reg = registry("a:1")
    reg.record_success("a:1", 900.0, prefill_ms=780.0)  # a cold 12k-char prompt: most of it was prefill
    h = reg.get("a:1")
    assert h.latency_ms == pytest.approx(900.0) and h.service_ms == pytest.approx(120.0)
    reg.record_success("a:1", 150.0)  # an answer that reported no prompt evaluation counts whole
    assert h.service_ms == pytest.approx(120.0 * 0.7 + 150.0 * 0.3)


def test_with_the_cache_term_latency_and_queue_are_the_service_net_of_prefill():
    """A conversation's home served a cold first turn (900 ms, 780 of them prefill) and runs another
    conversation now; its cached follow-up (0.03 s of prefill left there) must not go to a faster host
    that would prefill the whole prompt again (0.13 s)."""
    reg = registry("home:1", "fast:1")
    reg.record_success("home:1", 900.0, prefill_ms=780.0)
    reg.record_success("fast:1", 60.0, prefill_ms=5.0)
    home, fast = reg.get("home:1"), reg.get("fast:1")
    home.in_flight = 1
    w = RoutingWeights()
    without_cache = performance_terms(home, w)
    assert without_cache["latency"] == pytest.approx(0.2 * 0.9) and without_cache["in_flight"] == pytest.approx(0.2 * 0.9)
    with_cache = performance_terms(home, w, prefill_s=0.03)
    assert with_cache["latency"] == pytest.approx(0.2 * 0.12) and with_cache["in_flight"] == pytest.approx(0.2 * 0.12)
    strategy = make_strategy("performance")
    assert [h.address for h in strategy.order([fast, home], w, None, {"home:1": 0.03, "fast:1": 0.13})] == \
        ["home:1", "fast:1"]


def test_unknown_terms_are_neutral():
    reg = registry("a:1")
    terms = performance_terms(reg.get("a:1"), RoutingWeights())
    assert terms["cpu_load"] == pytest.approx(0.3 * 0.5) and terms["gpu_free_mem"] == pytest.approx(0.2 * 0.5)


def test_performance_prefers_fast_then_spills_over_when_loaded():
    reg = registry("fast:1", "slow:1")
    reg.get("fast:1").latency_ms = 30.0
    reg.get("slow:1").latency_ms = 600.0
    router = Router(reg, "performance")
    assert order(router) == ["fast:1", "slow:1"]
    reg.get("fast:1").in_flight = 30  # 30 × 0.03 s of queued work is worse than an idle slow host
    assert order(router)[0] == "slow:1"


def test_weights_change_the_decision_live():
    reg = registry("a:1", "b:1")
    reg.get("a:1").latency_ms, reg.get("a:1").priority = 100.0, 0
    reg.get("b:1").latency_ms, reg.get("b:1").priority = 10.0, 9
    router = Router(reg, "performance")
    assert order(router)[0] == "a:1"  # priority term 0.09 outweighs 18 ms of latency
    router.set_weights(priority=0.0)
    assert order(router)[0] == "b:1"
    with pytest.raises(ValueError):
        router.set_weights(latency=-1)
    assert router.weights.priority == 0.0  # a rejected change leaves the weights as they were


def test_unmeasured_host_is_tried_once_not_flooded():
    reg = registry("new:1", "known:1")
    reg.get("known:1").latency_ms = reg.get("known:1").peak_latency_ms = 50.0
    for name in ("performance", "p2c"):
        router = Router(reg, name, rng=random.Random(1))
        reg.get("new:1").in_flight = 0
        assert order(router)[0] == "new:1"  # idle and unmeasured: worth a try
        reg.get("new:1").in_flight = 1  # its first answer has not come back yet
        assert all(order(router)[0] == "known:1" for _ in range(20))
    assert P2CStrategy.cost(reg.get("new:1")) == 1e6


def test_round_robin_cycles():
    router = Router(registry("a:1", "b:1", "c:1"), "round_robin")
    firsts = [order(router)[0] for _ in range(6)]
    assert firsts == ["a:1", "b:1", "c:1", "a:1", "b:1", "c:1"]


def test_priority_strategy():
    reg = registry("a:1", "b:1", "c:1")
    reg.get("a:1").priority, reg.get("b:1").priority, reg.get("c:1").priority = 2, 0, 0
    reg.get("b:1").in_flight = 3
    assert order(Router(reg, "priority")) == ["c:1", "b:1", "a:1"]


def test_p2c_picks_cheaper_of_two_and_is_seeded():
    reg = registry("a:1", "b:1", "c:1")
    for addr, lat in (("a:1", 10.0), ("b:1", 100.0), ("c:1", 1000.0)):
        reg.get(addr).peak_latency_ms = lat
    router = Router(reg, "p2c", rng=random.Random(7))
    counts = {"a:1": 0, "b:1": 0, "c:1": 0}
    for _ in range(300):
        counts[order(router)[0]] += 1
    assert counts["c:1"] == 0  # the most expensive host never wins a pair
    assert counts["a:1"] > counts["b:1"] > 0  # a wins both its pairs, b only against c
    reg.get("a:1").in_flight = 20  # 10 ms × 21 beats neither 100 ms nor 1000 ms
    assert P2CStrategy.cost(reg.get("a:1")) == pytest.approx(210.0)


def test_p2c_is_deterministic_for_a_seed():
    reg = registry("a:1", "b:1", "c:1", "d:1")
    for i, addr in enumerate(("a:1", "b:1", "c:1", "d:1")):
        reg.get(addr).peak_latency_ms = 10.0 * (i + 1)
    r1 = Router(reg, "p2c", rng=random.Random(3))
    r2 = Router(reg, "p2c", rng=random.Random(3))
    assert [order(r1) for _ in range(10)] == [order(r2) for _ in range(10)]


def test_model_filter_and_loaded_first():
    reg = registry("a:1", "b:1", "c:1")
    reg.update_models("a:1", ["llama3.2"], [])
    reg.update_models("b:1", ["llama3.2", "qwen:7b"], ["llama3.2"])
    reg.update_models("c:1", ["qwen:7b"], ["qwen:7b"])
    for name in ("performance", "p2c", "priority"):
        router = Router(reg, name, rng=random.Random(0))
        assert order(router, "llama3.2") == ["b:1", "a:1"], name  # loaded first; c lacks the model
        assert order(router, "llama3.2", frozenset({"b:1"})) == ["a:1"]  # the next one on retry
        assert order(router, "qwen:7b")[0] == "c:1"
    assert sorted(order(Router(reg, "round_robin"), "llama3.2")) == ["a:1", "b:1"]
    with pytest.raises(NoHostForModel):
        Router(reg).route("mistral")


@pytest.mark.parametrize("strategy", ["performance", "p2c"])
def test_a_queue_on_the_loaded_host_spills_over_to_a_cold_one(strategy):
    reg = registry("loaded:1", "cold:1")
    for addr in ("loaded:1", "cold:1"):
        reg.get(addr).latency_ms = reg.get(addr).peak_latency_ms = 50.0
    reg.update_models("loaded:1", ["llama3.2"], ["llama3.2"])
    reg.update_models("cold:1", ["llama3.2"], [])
    router = Router(reg, strategy, rng=random.Random(0))
    assert order(router, "llama3.2")[0] == "loaded:1"
    reg.get("loaded:1").in_flight = 40  # 40 requests queued there: loading the model elsewhere is cheaper
    assert order(router, "llama3.2")[0] == "cold:1"
    reg.get("loaded:1").in_flight = 2
    assert order(router, "llama3.2")[0] == "loaded:1"
    terms = performance_terms(reg.get("cold:1"), RoutingWeights(), "llama3.2:latest")
    assert terms["cold_model"] == pytest.approx(0.2)
    assert "cold_model" not in performance_terms(reg.get("cold:1"), RoutingWeights())  # no model named


def test_unknown_model_lists_keep_host_eligible():
    reg = registry("a:1", "b:1")
    reg.update_models("a:1", ["qwen:7b"], [])
    router = Router(reg, "round_robin")
    assert order(router, "llama3.2") == ["b:1"]  # b's list is unknown: it may have it


def test_draining_disabled_unhealthy():
    reg = registry("a:1", "b:1", "c:1")
    router = Router(reg, "round_robin")
    reg.drain("a:1")
    reg.disable("b:1")
    assert order(router) == ["c:1"]
    reg.mark_unhealthy("c:1", "down")
    assert order(router) == ["c:1"]  # last resort: an unhealthy host may be back
    reg.undrain("a:1")
    assert order(router) == ["a:1"]


def test_set_strategy_rejects_unknown():
    router = Router(registry("a:1"))
    router.set_strategy("p2c")
    assert router.strategy_name == "p2c"
    with pytest.raises(ValueError, match="unknown routing strategy"):
        router.set_strategy("fastest")
    with pytest.raises(ValueError):
        make_strategy("nope")


def test_p2c_cost_of_an_idle_host_decays_back(monkeypatch):
    import sollol_core.cluster.hosts as hosts_mod

    clock = [500.0]
    monkeypatch.setattr(hosts_mod.time, "monotonic", lambda: clock[0])
    reg = registry("a:1")
    reg.record_success("a:1", 40.0)
    clock[0] += 1.0
    reg.record_success("a:1", 2000.0)  # one slow answer: the peak jumps at once
    h = reg.get("a:1")
    assert P2CStrategy.cost(h, now=clock[0]) == pytest.approx(2000.0)
    # idle for a minute: the peak has decayed to the latency EWMA, so the host is tried again
    assert P2CStrategy.cost(h, now=clock[0] + 60.0) == pytest.approx(h.latency_ms, rel=0.01)
    assert h.latency_ms < 700
