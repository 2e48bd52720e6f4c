"""Host registry: states, accounting, EWMAs, models, snapshots."""

import threading

import pytest

from sollol_core.cluster.hosts import HostChange, HostChangeKind, HostRegistry, HostState, model_key
from sollol_core.cluster.routing import performance_score
from sollol_core.config import RoutingWeights
from sollol_core.errors import UnknownHost


def views(reg):
    return {v.host: v for v in reg.views(lambda h: performance_score(h, RoutingWeights()))}


def test_add_remove_and_errors():
    reg = HostRegistry()
    reg.add("a:1", label="simulated fast", priority=2, weight=1.5)
    with pytest.raises(ValueError, match="already"):
        reg.add("a:1")
    v = views(reg)["a:1"]
    assert (v.label, v.priority, v.weight, v.state, v.available) == ("simulated fast", 2, 1.5, "healthy", True)
    reg.remove("a:1")
    assert len(reg) == 0
    with pytest.raises(UnknownHost):
        reg.remove("a:1")
    with pytest.raises(UnknownHost):
        reg.drain("a:1")


def test_state_transitions():
    reg = HostRegistry()
    reg.add("a:1")
    events: list[HostChange] = []
    reg.on_change(events.append)
    reg.record_failure("a:1", "cannot connect")
    assert reg.get("a:1").state == HostState.UNHEALTHY and reg.get("a:1").last_error == "cannot connect"
    reg.mark_healthy("a:1")
    assert reg.get("a:1").state == HostState.HEALTHY
    reg.drain("a:1")
    reg.mark_unhealthy("a:1", "boom")  # the operator's drain is kept
    reg.mark_healthy("a:1")
    assert reg.get("a:1").state == HostState.DRAINING
    reg.undrain("a:1")
    assert reg.get("a:1").state == HostState.HEALTHY
    kinds = [HostChangeKind.UNHEALTHY, HostChangeKind.HEALTHY, HostChangeKind.READMITTED, HostChangeKind.DRAINING,
             HostChangeKind.HEALTHY]  # readmitted only when a health check brings it back
    assert events == [HostChange(kind, "a:1") for kind in kinds]


def test_change_events_are_typed_and_name_the_model_unloaded():
    reg = HostRegistry()
    events: list[HostChange] = []
    reg.on_change(events.append)
    reg.add("a:1")
    reg.update_models("a:1", ["llama3.2", "qwen3"], ["llama3.2", "qwen3"])
    reg.update_models("a:1", ["llama3.2", "qwen3"], ["qwen3"])  # llama3.2 unloaded
    reg.forget_loaded("a:1", "qwen3")
    reg.forget_loaded("a:1", "qwen3")  # not loaded any more: nothing to tell
    reg.set_priority("a:1", 2)
    reg.set_weight("a:1", 2.0)
    reg.touch("a:1")
    reg.remove("a:1")
    assert events == [
        HostChange(HostChangeKind.ADDED, "a:1"),
        HostChange(HostChangeKind.UNLOADED, "a:1", "llama3.2:latest"),
        HostChange(HostChangeKind.UNLOADED, "a:1", "qwen3:latest"),
        HostChange(HostChangeKind.PRIORITY, "a:1"),
        HostChange(HostChangeKind.WEIGHT, "a:1"),
        HostChange(HostChangeKind.SLOTS, "a:1"),
        HostChange(HostChangeKind.REMOVED, "a:1"),
    ]
    assert str(events[1]) == "unloaded:llama3.2:latest" and str(events[0]) == "added"  # as the log says them


def test_accounting_and_ewmas():
    reg = HostRegistry()
    reg.add("a:1")
    reg.begin("a:1")
    reg.begin("a:1")
    assert reg.get("a:1").in_flight == 2
    reg.end("a:1")
    reg.record_success("a:1", 100.0, ttft_ms=20.0, tokens=50, eval_s=2.0, model="llama3.2")
    h = reg.get("a:1")
    assert h.in_flight == 1 and h.requests_total == 1
    assert h.latency_ms == 100.0 and h.peak_latency_ms == 100.0 and h.ttft_ms == 20.0
    assert h.tokens_per_s == 25.0
    assert "llama3.2:latest" in h.models_loaded
    reg.record_success("a:1", 200.0)
    assert h.latency_ms == pytest.approx(100 * 0.7 + 200 * 0.3)
    assert h.peak_latency_ms == 200.0  # a slower sample counts at once
    reg.record_failure("a:1", "x")
    assert h.failures_total == 1 and h.success_rate == pytest.approx(0.9)
    reg.end("a:1")
    reg.end("a:1")
    assert h.in_flight == 0  # never negative


def test_peak_ewma_decays_with_time(monkeypatch):
    import sollol_core.cluster.hosts as hosts_mod

    clock = [1000.0]
    monkeypatch.setattr(hosts_mod.time, "monotonic", lambda: clock[0])
    reg = HostRegistry()
    reg.add("a:1")
    reg.record_success("a:1", 500.0)
    clock[0] += 0.001
    reg.record_success("a:1", 10.0)
    assert reg.get("a:1").peak_latency_ms > 490  # almost no time passed: the peak holds
    clock[0] += 60.0  # six time constants later a fast sample pulls it down
    reg.record_success("a:1", 10.0)
    assert reg.get("a:1").peak_latency_ms < 15


def test_models_known_unknown_and_forgotten():
    reg = HostRegistry()
    reg.add("a:1")
    assert reg.get("a:1").has_model("llama3.2") is None
    reg.update_models("a:1", ["llama3.2:latest", "qwen:7b"], ["qwen:7b"])
    h = reg.get("a:1")
    assert h.has_model("llama3.2") is True and h.has_model("mistral") is False
    reg.forget_model("a:1", "qwen:7b")
    assert h.has_model("qwen:7b") is False and h.models_loaded == set()
    assert model_key("x") == "x:latest" and model_key("x:1b") == "x:1b"


def test_history_ticks():
    reg = HostRegistry()
    reg.add("a:1")
    reg.record_success("a:1", 40.0)
    reg.record_success("a:1", 40.0)
    reg.tick_history()
    reg.tick_history()
    v = views(reg)["a:1"]
    assert v.latency_history == (40.0, 40.0) and v.throughput_history == (2.0, 0.0)


def test_priority_weight_validation():
    reg = HostRegistry()
    reg.add("a:1")
    reg.set_priority("a:1", 3)
    reg.set_weight("a:1", 2.5)
    assert (reg.get("a:1").priority, reg.get("a:1").weight) == (3, 2.5)
    with pytest.raises(ValueError):
        reg.set_priority("a:1", -1)
    with pytest.raises(ValueError):
        reg.set_weight("a:1", 0)


def test_concurrent_accounting_is_consistent():
    reg = HostRegistry()
    reg.add("a:1")

    def work():
        for _ in range(2000):
            reg.begin("a:1")
            reg.record_success("a:1", 5.0)
            reg.end("a:1")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reg.get("a:1").requests_total == 8000 and reg.get("a:1").in_flight == 0
