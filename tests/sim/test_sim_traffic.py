"""SimClients (demo traffic) pointed straight at a simulated node, which speaks the same API as the gateway."""

from __future__ import annotations

import re

import pytest

from sollol_core.sim import SimClients, SimNodeSpec

from helpers import wait_until

pytestmark = pytest.mark.timeout(60)

MODEL = "llama3.2:latest"


@pytest.fixture
def clients_factory():
    made: list[SimClients] = []

    def make(*args, **kwargs) -> SimClients:
        clients = SimClients(*args, **kwargs)
        made.append(clients)
        return clients

    yield make
    for clients in made:
        clients.stop()


def test_conversations_and_agent_sessions_reuse_the_node_cache(sim_cluster, clients_factory):
    node = sim_cluster(SimNodeSpec(name="c", latency_ms=0, tokens=4, tokens_per_s=0, num_parallel=8,
                                   prefill_ms_per_kchar=1, models=[MODEL, "nomic-embed-text"])).nodes[0]
    clients = clients_factory(f"http://{node.address}", [MODEL, "nomic-embed-text"], rate=40, seed=3, chats=3,
                              agent_groups=2, sessions_per_group=2)
    assert clients.models == [MODEL]  # embedding models are not chatted with
    assert clients.describe() == "off" and not clients.running
    clients.start()
    clients.start()  # idempotent
    assert clients.running
    wait_until(lambda: clients.completed >= 60, timeout=30, what="60 answered requests")
    assert re.fullmatch(r"on: 3 chats, 2 agent groups, \d+\.\d req/s", clients.describe())
    clients.stop()
    clients.stop()  # idempotent
    assert not clients.running and clients.describe() == "off"
    assert clients.errors == 0, clients.last_error

    records = list(clients.records)
    assert {r.api for r in records} == {"/api/chat", "/v1/chat/completions"}
    assert {r.kind for r in records} == {"chat", "agent"}

    # every turn carries the conversation so far, the previous answer as the assistant message
    answer = "[c] tok0 tok1 tok2 tok3"
    bodies = [b for path, b in node.received if path in ("/api/chat", "/v1/chat/completions")]
    longer = [b["messages"] for b in bodies if len(b["messages"]) >= 4]
    assert longer and all(m[0]["role"] == "system" and m[2] == {"role": "assistant", "content": answer}
                          for m in longer)
    agent_systems = {b["messages"][0]["content"] for b in bodies if len(b["messages"][0]["content"]) > 20_000}
    assert agent_systems and all(len(s) < 22_000 for s in agent_systems)
    prefixes = {s[:20_000] for s in agent_systems}
    assert len(prefixes) == 2 and len(agent_systems) > len(prefixes)  # two groups, sessions sharing each prefix

    # later turns are served mostly from the slot's cache: prompt evaluation shrinks
    later = [r for r in records if r.api == "/api/chat" and r.ok and r.turn >= 2]
    assert later
    # the whole prompt would cost about prompt_eval_count x 4 characters x 1,000 ns
    cached = [r for r in later if r.prompt_eval_duration < 0.5 * r.prompt_eval_count * 4 * 1000]
    assert len(cached) >= 0.8 * len(later), [(r.turn, r.prompt_eval_count, r.prompt_eval_duration) for r in later]
    first = [r for r in records if r.api == "/api/chat" and r.ok and r.turn == 1 and r.kind == "chat"]
    assert any(r.prompt_eval_duration > 0.5 * r.prompt_eval_count * 4 * 1000 for r in first)  # nothing to reuse
    # a new agent session finds its group's prompt in some slot
    assert any(p.prompt_chars > 20_000 and p.reused_chars >= 20_000 for p in node.prefills)

    clients.start()  # stopped clients start again
    wait_until(lambda: clients.completed >= 70, timeout=30, what="more requests after a restart")
    clients.stop()


def test_errors_are_counted_never_raised(sim_cluster, clients_factory):
    node = sim_cluster(SimNodeSpec(name="bad", latency_ms=0, tokens=2, tokens_per_s=0, failure_rate=1.0)).nodes[0]
    clients = clients_factory(node.address, ["llama3.2"], rate=30, chats=2, agent_groups=1)
    clients.start()
    wait_until(lambda: clients.errors >= 5, timeout=30, what="failed requests to be counted")
    assert clients.describe().endswith(" errors") and clients.running
    clients.stop()
    assert clients.completed == 0 and "HTTP 500" in clients.last_error and "simulated failure" in clients.last_error


def test_refuses_other_addresses_and_embedding_only_models():
    with pytest.raises(ValueError, match="127.0.0.1"):
        SimClients("http://10.1.2.3:8000", [MODEL])
    with pytest.raises(ValueError, match="127.0.0.1"):
        SimClients("http://127.0.0.1", [MODEL])  # no port
    with pytest.raises(ValueError, match="chat model"):
        SimClients("http://127.0.0.1:8000", ["nomic-embed-text"])
    assert SimClients("http://0.0.0.0:8000", [MODEL]).base == "http://127.0.0.1:8000"
