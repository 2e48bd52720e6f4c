"""Per-client books stay bounded, through the real app on 127.0.0.1: requests from many addresses (each from
its own 127.0.x.y source address) leave at most max_tracked_clients clients plus `other` in /api/stats and in
the Prometheus labels, and idle clients leave the books."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from sollol_core.request.tracked import OTHER

from helpers import EMBED_MODEL, settled, wait_until

pytestmark = pytest.mark.timeout(120)

LIMIT, ADDRESSES = 12, 60


def from_address(sollol, source: str) -> httpx.Response:
    with httpx.Client(base_url=sollol.gateway_url, timeout=20, trust_env=False,
                      transport=httpx.HTTPTransport(local_address=source)) as http:
        return http.post("/api/embed", json={"model": EMBED_MODEL, "input": "hi"})


def client_labels(metrics: str) -> set[str]:
    return set(re.findall(r'sollol_client_requests_total\{client="([^"]*)"', metrics))


async def sweep(sollol) -> list[str]:
    return sollol.parts.clients.sweep()


def test_many_addresses_fold_into_other_and_idle_ones_leave(sim_cluster, gateway, client):
    cluster = sim_cluster(n=1, latency_ms=1, tokens=2)
    sollol = gateway(cluster.addresses, max_tracked_clients=LIMIT)
    http = client(sollol)
    sources = [f"127.0.{1 + i // 200}.{1 + i % 200}" for i in range(ADDRESSES)]
    for source in sources:
        assert from_address(sollol, source).status_code == 200, source
    settled(sollol)
    stats = http.get("/api/stats").json()
    names = {c["name"] for c in stats["clients"]}
    assert len(names) <= LIMIT + 1 and OTHER in names
    assert set(sources[:LIMIT]) <= names  # the first ones keep their own entries
    other = next(c for c in stats["clients"] if c["name"] == OTHER)
    assert other["requests"] == ADDRESSES - LIMIT
    labels = client_labels(http.get("/metrics").text)
    assert len(labels) <= LIMIT + 1 and OTHER in labels
    assert len(sollol.queue.requests_by_client) <= LIMIT + 1
    assert len(sollol.parts.clients) <= LIMIT

    # idle clients leave the books, and make room for new ones
    sollol.update_config(tracked_client_idle_s=0.01)
    time.sleep(0.05)  # every client, `other` too, now idle for longer than that however fast the lines above ran
    gone = sollol.run_coroutine(sweep(sollol), timeout=10)
    assert OTHER in gone and len(gone) >= LIMIT
    assert http.get("/api/stats").json()["clients"] == []
    assert client_labels(http.get("/metrics").text) == set()
    sollol.update_config(tracked_client_idle_s=900.0)
    assert from_address(sollol, "127.0.3.3").status_code == 200
    wait_until(lambda: any(c["name"] == "127.0.3.3" for c in http.get("/api/stats").json()["clients"]),
               what="a newcomer in the books")
