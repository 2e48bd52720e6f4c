"""A client that goes away mid-stream (or before its first chunk) leaves nothing behind: the upstream
call is closed, in-flight counts return to zero and the request log says what happened."""

import httpx

from sollol_core.sim import SimNodeSpec

from helpers import CHAT_MODEL, USER, wait_until


def settled(sollol):
    return sollol.proxy.active == 0 and all(h.in_flight == 0 for h in sollol.registry.hosts())


def test_client_leaving_mid_stream(sim_cluster, gateway):
    sim = sim_cluster(SimNodeSpec(name="slow", latency_ms=5, tokens=200, tokens_per_s=20))
    sollol = gateway(sim.addresses)
    with httpx.Client(base_url=sollol.gateway_url, timeout=10, trust_env=False) as c:
        with c.stream("POST", "/api/chat", json={"model": CHAT_MODEL, "messages": USER}) as r:
            lines = r.iter_lines()  # kept: a dropped line iterator closes the response
            assert "[slow] tok0" in next(lines)
            assert "tok1" in next(lines)
            assert sollol.registry.get(sim.addresses[0]).in_flight == 1 and sollol.proxy.active == 1
    wait_until(lambda: settled(sollol), what="the gateway to let go of the stream")
    wait_until(lambda: sim.nodes[0].in_flight == 0, what="the upstream call to be closed")
    record = sollol.recent_requests()[-1]
    assert record.status == 499 and "client went away" in record.error
    assert sollol.registry.get(sim.addresses[0]).state.value == "healthy"  # not the host's fault


def test_client_leaving_before_the_first_chunk(sim_cluster, gateway):
    sim = sim_cluster(SimNodeSpec(name="late", latency_ms=800, tokens=3, tokens_per_s=0))
    sollol = gateway(sim.addresses)
    with httpx.Client(base_url=sollol.gateway_url, timeout=0.2, trust_env=False) as c:
        try:
            with c.stream("POST", "/api/chat", json={"model": CHAT_MODEL, "messages": USER}) as r:
                r.read()
        except httpx.TimeoutException:
            pass
        else:
            raise AssertionError("the answer should have come after the client's timeout")
    wait_until(lambda: settled(sollol) and sim.nodes[0].in_flight == 0, timeout=10,
               what="the gateway to let go of the abandoned request")
    assert sollol.recent_requests()[-1].endpoint == "/api/chat"
