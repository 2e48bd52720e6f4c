"""The simulated node's timings add up as Ollama's do: total_duration includes the wait for a slot, a warm
answer's load_duration is small but never 0, and a change of runner options reloads the model."""

from __future__ import annotations

import threading

import httpx
import pytest

from sollol_core.sim import SimNodeSpec

MODEL = "llama3.2:latest"
SECOND = 1e9


@pytest.fixture
def http():
    with httpx.Client(trust_env=False, timeout=20) as client:
        yield client


def chat(http: httpx.Client, address: str, **options) -> dict:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    if options:
        body["options"] = options
    r = http.post(f"http://{address}/api/chat", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def wait_s(answer: dict) -> float:
    """What total_duration has beyond the work: the time the request waited inside the node."""
    return (answer["total_duration"] - answer["load_duration"] - answer["prompt_eval_duration"]
            - answer["eval_duration"]) / SECOND


def together(n: int, fn) -> list[dict]:
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(fn())) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_the_wait_for_a_slot_is_what_total_duration_has_beyond_the_work(sim_cluster, http):
    cluster = sim_cluster(SimNodeSpec(name="one", latency_ms=200, tokens=2, tokens_per_s=0, num_parallel=1))
    address = cluster.addresses[0]
    alone = chat(http, address)
    assert 0 <= wait_s(alone) < 0.03 and 0 < alone["load_duration"] < 0.005 * SECOND  # warm: small, never 0
    waits = sorted(wait_s(a) for a in together(2, lambda: chat(http, address)))
    assert waits[0] < 0.05 and 0.15 < waits[1] < 0.4  # the second waited for the first one's 200 ms


def test_two_slots_run_two_at_once_without_a_wait(sim_cluster, http):
    cluster = sim_cluster(SimNodeSpec(name="two", latency_ms=200, tokens=2, tokens_per_s=0, num_parallel=2))
    assert all(wait_s(a) < 0.05 for a in together(2, lambda: chat(http, cluster.addresses[0])))


def test_other_runner_options_reload_the_model_and_empty_its_slots(sim_cluster, http):
    cluster = sim_cluster(SimNodeSpec(name="r", latency_ms=5, tokens=2, tokens_per_s=0, num_parallel=2,
                                      load_ms=150, prefill_ms_per_kchar=1))
    node, address = cluster.nodes[0], cluster.addresses[0]
    first = chat(http, address, num_ctx=2048, temperature=0)  # the default num_ctx: the loaded runner fits
    assert first["load_duration"] < 0.005 * SECOND and node.reloads == 0
    assert any(s.cached_chars for s in node.slot_states(MODEL))
    bigger = chat(http, address, num_ctx=4096)
    assert bigger["load_duration"] >= 0.15 * SECOND and node.reloads == 1
    assert node.prefills[-1].reused_chars == 0  # the reload emptied every slot
    again = chat(http, address, num_ctx=4096, seed=3)  # other options than the runner's do not count
    assert again["load_duration"] < 0.005 * SECOND and node.reloads == 1
    back = chat(http, address)  # no options: the defaults, another runner again
    assert back["load_duration"] >= 0.15 * SECOND and node.reloads == 2


def test_a_reload_waits_for_the_requests_on_the_old_runner(sim_cluster, http):
    cluster = sim_cluster(SimNodeSpec(name="r", latency_ms=300, tokens=2, tokens_per_s=0, num_parallel=2,
                                      load_ms=100))
    address = cluster.addresses[0]
    results: dict[str, dict] = {}
    old = threading.Thread(target=lambda: results.update(old=chat(http, address)))
    old.start()
    while not any(s.busy for s in cluster.nodes[0].slot_states(MODEL)):
        pass
    results["new"] = chat(http, address, num_ctx=8192)
    old.join()
    # it waited for the 300 ms request on the old runner, then for the load: all of it is load_duration
    assert results["new"]["load_duration"] >= 0.35 * SECOND and wait_s(results["new"]) < 0.05
    assert cluster.nodes[0].runners[MODEL]["num_ctx"] == 8192
