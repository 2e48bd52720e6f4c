"""Through the gateway: hosts that name their cached prompt tokens correct the shadow by that count.

The nodes prefill in no time, so the durations cannot tell reuse from none: only the reported counts can.
"""

from __future__ import annotations

import httpx
import pytest

from helpers import CHAT_MODEL, settled

pytestmark = pytest.mark.timeout(60)

SYSTEM = "You answer questions about the weather in great detail. " * 30


def turns(*extra: str) -> list[dict]:
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "first question"}]
    for i, text in enumerate(extra):
        msgs.append({"role": "assistant" if i % 2 == 0 else "user", "content": text})
    return msgs


@pytest.mark.parametrize("reports", [True, False])
def test_reported_counts_confirm_hits_and_catch_a_slot_lost_behind_the_gateways_back(
        sim_cluster, gateway, client, reports):
    sim = sim_cluster(n=2, num_parallel=1, prefill_ms_per_kchar=0, report_cached_tokens=reports)
    sollol = gateway(sim.addresses)
    http = client(sollol)
    first = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": turns(), "stream": False}).json()
    home = settled(sollol)[-1].host
    answer = first["message"]["content"]
    second = turns(answer, "second question")
    assert http.post("/api/chat", json={"model": CHAT_MODEL, "messages": second, "stream": False}).status_code == 200
    assert settled(sollol)[-1].host == home
    view = sollol.shadow.host_view(home)
    assert view["confirmed_hits"] == (1 if reports else 0)  # without counts there is nothing to confirm it by

    # another client talks to the host directly: its one slot now holds something else
    with httpx.Client(trust_env=False, timeout=10) as direct:
        r = direct.post(f"http://{home}/api/chat", json={"model": CHAT_MODEL, "stream": False, "messages": [
            {"role": "user", "content": "an unrelated prompt " * 50}]})
        assert r.status_code == 200
    second_turn = sim.nodes[sim.addresses.index(home)].prefills[-2]  # (the gateway's second turn)
    assert second_turn.reused_chars > 0
    third = second + [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "third question"}]
    assert http.post("/api/chat", json={"model": CHAT_MODEL, "messages": third, "stream": False}).status_code == 200
    assert settled(sollol)[-1].host == home  # the shadow still believed the conversation was there
    assert sim.nodes[sim.addresses.index(home)].prefills[-1].reused_chars <= len("<|")  # it was not
    after = sollol.shadow.host_view(home)
    if reports:  # the host said 0 cached: the shadow forgets the slot, and counts its mistake
        assert after["corrections"] == view["corrections"] + 1 and after["hits"] == view["hits"]
    else:
        assert after["corrections"] == view["corrections"] and after["hits"] == view["hits"] + 1
