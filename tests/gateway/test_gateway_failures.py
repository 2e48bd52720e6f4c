"""Failures on simulated nodes: retries before the first byte, an error line after it, hosts that die,
hang, break mid-stream or come back, and draining."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from sollol_core.sim import SimNodeSpec, sim_embedding

from helpers import CHAT_MODEL, EMBED_MODEL, USER, settled, wait_until

pytestmark = pytest.mark.timeout(60)

CHAT = {"model": CHAT_MODEL, "messages": USER, "stream": False}


def preferring_first(gateway, cluster, **overrides):
    """A gateway that always tries cluster node 0 first (priority strategy, node 1 ranked after it)."""
    sollol = gateway(cluster.addresses, routing_strategy="priority", **overrides)
    for rank, address in enumerate(cluster.addresses):
        sollol.set_priority(address, rank)
    return sollol


def chats(node) -> int:
    return sum(1 for path, _ in node.received if path == "/api/chat")


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- retries before the first byte ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_error_is_retried_on_another_host(sim_cluster, gateway, client, stream):
    cluster = sim_cluster(n=2, tokens=3)
    a, b = cluster.nodes
    a.failure_rate = 1.0  # HTTP 500 before any byte of an answer
    sollol = preferring_first(gateway, cluster)
    r = client(sollol).post("/api/chat", json=CHAT | {"stream": stream})
    assert r.status_code == 200, r.text
    lines = ndjson(r.text)
    assert "".join(line["message"]["content"] for line in lines) == "[b] tok0 tok1 tok2"
    assert lines[-1]["done"] is True and not any("error" in line for line in lines)
    assert chats(a) == 1 and chats(b) == 1
    record = settled(sollol)[-1]
    assert (record.host, record.status, record.retries) == (b.address, 200, 1)
    host_a = sollol.registry.get(a.address)
    assert host_a.state.value == "unhealthy" and "500" in host_a.last_error and host_a.failures_total == 1


def test_refused_connection_is_retried(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2)
    sollol = preferring_first(gateway, cluster)
    cluster.kill(0)
    r = client(sollol).post("/api/embed", json={"model": EMBED_MODEL, "input": ["x", "y"]})
    assert r.status_code == 200 and r.json()["embeddings"] == [sim_embedding("x"), sim_embedding("y")]
    host_a = sollol.registry.get(cluster.addresses[0])
    assert host_a.state.value == "unhealthy" and "cannot connect" in host_a.last_error


def test_answer_cut_off_before_it_reached_the_client_is_retried(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2)
    cluster.nodes[0].fail_mid_stream = True  # a non-streamed answer: the connection drops before it
    sollol = preferring_first(gateway, cluster)
    r = client(sollol).post("/api/generate", json={"model": CHAT_MODEL, "prompt": "x", "stream": False})
    assert r.status_code == 200 and r.json()["response"].startswith("[b] ")
    assert sollol.registry.get(cluster.addresses[0]).state.value == "unhealthy"


def test_a_failed_host_is_taken_out_at_once(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2)
    a, b = cluster.nodes
    a.failure_rate = 1.0
    sollol = preferring_first(gateway, cluster)
    http = client(sollol)
    for _ in range(5):
        assert http.post("/api/chat", json=CHAT).status_code == 200
    assert chats(a) == 1 and chats(b) == 5  # the preferred host failed once and got nothing more
    assert sollol.get_health()["status"] == "degraded"


@pytest.mark.parametrize("max_retries", [0, 2])
def test_retries_are_bounded_by_max_retries(sim_cluster, gateway, client, max_retries):
    cluster = sim_cluster(n=4)
    for node in cluster.nodes:
        node.failure_rate = 1.0
    sollol = gateway(cluster.addresses, max_retries=max_retries)
    r = client(sollol).post("/api/chat", json=CHAT)
    assert r.status_code == 502
    error = r.json()["error"]
    assert f"all attempts failed ({max_retries + 1} host(s) tried)" in error and "HTTP 500" in error
    assert sum(chats(node) for node in cluster.nodes) == max_retries + 1
    assert max(chats(node) for node in cluster.nodes) == 1  # each attempt went to another host


def test_retry_waits_with_backoff_when_every_host_failed(sim_cluster, gateway, client):
    cluster = sim_cluster(n=1)
    node = cluster.nodes[0]
    node.failure_rate = 1.0
    sollol = gateway(cluster.addresses, max_retries=2, retry_backoff_multiplier=0.2)
    t0 = time.monotonic()
    r = client(sollol).post("/api/chat", json=CHAT)
    elapsed = time.monotonic() - t0
    assert r.status_code == 502 and chats(node) == 3  # the only host, asked again after each pause
    assert elapsed >= 0.2 + 0.4  # backoff 0.2 s, then 0.4 s


def test_unhealthy_host_is_the_last_resort(sim_cluster, gateway, client):
    """With every host out of rotation a request still tries them: one may have come back."""
    cluster = sim_cluster(n=1)
    node = cluster.nodes[0]
    sollol = gateway(cluster.addresses)
    sollol.registry.mark_unhealthy(node.address, "flaky a moment ago")
    r = client(sollol).post("/api/chat", json=CHAT)
    assert r.status_code == 200 and chats(node) == 1


# -- a host killed under load ------------------------------------------------------------------------


async def test_host_killed_under_load_costs_no_client_an_error(sim_cluster, gateway):
    cluster = sim_cluster(n=3, latency_ms=40, capacity=4, tokens=4, tokens_per_s=0)
    sollol = gateway(cluster.addresses, routing_strategy="round_robin")
    victim = cluster.nodes[0]
    total, concurrency = 60, 8
    results: list[tuple[int, str]] = []
    started = asyncio.Event()
    sem = asyncio.Semaphore(concurrency)

    async def one(http: httpx.AsyncClient, i: int) -> None:
        async with sem:
            if i % 3 == 2:
                r = await http.post("/api/embed", json={"model": EMBED_MODEL, "input": f"doc {i}"})
                ok = r.status_code == 200 and r.json()["embeddings"] == [sim_embedding(f"doc {i}")]
            else:
                path = "/api/chat" if i % 3 == 0 else "/api/generate"
                body = CHAT if i % 3 == 0 else {"model": CHAT_MODEL, "prompt": "p", "stream": False}
                r = await http.post(path, json=body)
                data = r.json()
                text = data.get("message", {}).get("content") if path == "/api/chat" else data.get("response")
                ok = r.status_code == 200 and isinstance(text, str) and text.endswith("tok3")
            results.append((r.status_code, "" if ok else r.text))
            if len(results) >= 6:
                started.set()

    async def killer() -> None:
        await asyncio.wait_for(started.wait(), 20)
        # kill while the victim is serving requests: they must be retried elsewhere
        deadline = time.monotonic() + 10
        while victim.in_flight == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        await asyncio.to_thread(cluster.kill, 0)

    async with httpx.AsyncClient(base_url=sollol.gateway_url, timeout=30, trust_env=False) as http:
        await asyncio.gather(killer(), *(one(http, i) for i in range(total)))

    assert len(results) == total
    assert [r for r in results if r[0] != 200 or r[1]] == []
    assert sollol.registry.get(victim.address).state.value == "unhealthy"
    retried = [rec for rec in settled(sollol) if rec.retries > 0]
    assert retried and all(rec.host != victim.address and rec.status == 200 for rec in retried)
    assert sollol.proxy.active == 0
    assert all(h.in_flight == 0 for h in sollol.registry.hosts())


# -- a host that hangs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_hanging_host_times_out_then_another_host_answers(sim_cluster, gateway, client, stream):
    cluster = sim_cluster(n=2, tokens=2)
    a, b = cluster.nodes
    a.hang = True
    sollol = preferring_first(gateway, cluster, chat_timeout=0.5)
    t0 = time.monotonic()
    r = client(sollol).post("/api/chat", json=CHAT | {"stream": stream})
    elapsed = time.monotonic() - t0
    assert r.status_code == 200
    assert "".join(line["message"]["content"] for line in ndjson(r.text)) == "[b] tok0 tok1"
    assert chats(a) == 1 and chats(b) == 1
    assert elapsed >= 0.5  # it waited for the timeout before giving up on the first host
    host_a = sollol.registry.get(a.address)
    assert host_a.state.value == "unhealthy" and "within 0.5 s" in host_a.last_error


@pytest.mark.parametrize("kind", ["chat", "embed"])
def test_each_kind_of_request_has_its_own_timeout(sim_cluster, gateway, client, kind):
    cluster = sim_cluster(n=2)
    cluster.nodes[0].hang = True
    short, long_ = 0.4, 30.0
    timeouts = {"chat_timeout": short, "embedding_timeout": long_} if kind == "chat" else \
        {"chat_timeout": long_, "embedding_timeout": short}
    sollol = preferring_first(gateway, cluster, **timeouts)
    path, body = ("/api/chat", CHAT) if kind == "chat" else ("/api/embed", {"model": EMBED_MODEL, "input": "x"})
    t0 = time.monotonic()
    r = client(sollol, timeout=60).post(path, json=body)
    elapsed = time.monotonic() - t0
    assert r.status_code == 200
    assert short <= elapsed < long_ / 2  # the short timeout of this kind applied, not the other kind's


# -- a host that errors after its first chunk ----------------------------------------------------------


def test_error_after_first_chunk_ends_the_stream_with_an_error_line(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2, tokens=5)
    a, b = cluster.nodes
    a.fail_mid_stream = True  # sends its first chunk, then drops the connection
    sollol = preferring_first(gateway, cluster)
    r = client(sollol).post("/api/chat", json={"model": CHAT_MODEL, "messages": USER})
    assert r.status_code == 200  # the status went out with the first chunk
    lines = ndjson(r.text)
    assert len(lines) == 2, lines
    assert lines[0]["message"]["content"] == "[a] tok0" and lines[0]["done"] is False
    assert set(lines[-1]) == {"error"} and f"upstream host {a.address} failed mid-stream" in lines[-1]["error"]
    assert chats(b) == 0  # never retried once the client had bytes: it would repeat the answer
    record = settled(sollol)[-1]
    assert (record.host, record.status) == (a.address, 502) and "mid-stream" in record.error
    assert sollol.registry.get(a.address).state.value == "unhealthy"
    metrics = client(sollol).get("/metrics").text
    assert 'sollol_requests_total{endpoint="/api/chat",status="error"} 1.0' in metrics
    assert f'sollol_worker_failures_total{{host="{a.address}"}} 1.0' in metrics
    assert sollol.proxy.active == 0 and sollol.registry.get(a.address).in_flight == 0


def test_error_after_first_event_ends_an_sse_stream_with_an_error_event(sim_cluster, gateway, client):
    cluster = sim_cluster(n=1, tokens=5)
    cluster.nodes[0].fail_mid_stream = True
    sollol = gateway(cluster.addresses)
    r = client(sollol).post("/v1/chat/completions", json={"model": CHAT_MODEL, "messages": USER, "stream": True})
    assert r.status_code == 200
    events = [line for line in r.text.split("\n\n") if line.strip()]
    assert len(events) == 2 and events[0].startswith("data: {")
    assert json.loads(events[0][len("data: "):])["choices"][0]["delta"]["content"] == "[a] tok0"
    error = json.loads(events[1][6:])["error"]  # OpenAI's error shape, which its SDK raises as APIError
    assert events[1].startswith("data: ") and "failed mid-stream" in error["message"] and error["type"] == "api_error"


# -- every host gone -------------------------------------------------------------------------------------


def test_all_hosts_dead_gives_502_with_a_message(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2)
    sollol = gateway(cluster.addresses, max_retries=1)
    cluster.kill(0)
    cluster.kill(1)
    http = client(sollol)
    r = http.post("/api/chat", json=CHAT)
    assert r.status_code == 502
    assert "all attempts failed" in r.json()["error"] and "cannot connect" in r.json()["error"]
    assert sollol.get_health()["status"] == "down"
    assert http.get("/api/health").status_code == 503
    assert http.get("/api/tags").json() == {"models": []}  # nothing to list, still an answer


def test_no_host_to_take_a_request_gives_503(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2)
    sollol = gateway(cluster.addresses)
    for address in cluster.addresses:
        sollol.drain_host(address)
    r = client(sollol).post("/api/chat", json=CHAT)
    assert r.status_code == 503 and "no available host" in r.json()["error"]
    assert all(chats(node) == 0 for node in cluster.nodes)


# -- re-admission by the health check -----------------------------------------------------------------------


def test_revived_host_is_readmitted_by_the_health_check(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2)
    a, b = cluster.nodes
    sollol = preferring_first(gateway, cluster, unhealthy_recheck_interval=0.1)
    http = client(sollol)
    cluster.kill(0)
    assert http.post("/api/chat", json=CHAT).json()["message"]["content"].startswith("[b] ")
    assert sollol.registry.get(a.address).state.value == "unhealthy"
    cluster.revive(0)
    wait_until(lambda: sollol.registry.get(a.address).state.value == "healthy", what="re-admission")
    assert http.get("/api/health").json()["hosts"][a.address]["state"] == "healthy"
    r = http.post("/api/chat", json=CHAT)  # the preferred host takes requests again
    assert r.json()["message"]["content"].startswith("[a] ") and chats(a) == 1


# -- draining ----------------------------------------------------------------------------------------------


def test_draining_host_finishes_what_it_holds_and_takes_nothing_new(sim_cluster, gateway, client):
    cluster = sim_cluster(SimNodeSpec(name="a", latency_ms=1, tokens=40, tokens_per_s=20),  # a ~2 s stream
                          SimNodeSpec(name="b", latency_ms=1, tokens=2, tokens_per_s=0))
    a, b = cluster.nodes
    sollol = preferring_first(gateway, cluster)
    http = client(sollol)
    first_chunk = threading.Event()
    lines: list[dict] = []

    def long_stream() -> None:
        with httpx.Client(base_url=sollol.gateway_url, timeout=20, trust_env=False) as own:
            with own.stream("POST", "/api/chat", json={"model": CHAT_MODEL, "messages": USER}) as r:
                for line in r.iter_lines():
                    if line.strip():
                        lines.append(json.loads(line))
                        first_chunk.set()

    t = threading.Thread(target=long_stream)
    t.start()
    try:
        assert first_chunk.wait(10)
        r = http.post(f"/api/hosts/{a.address}/drain")
        assert r.status_code == 200 and r.json() == {"status": "draining", "host": a.address}
        for _ in range(4):
            r = http.post("/api/chat", json=CHAT)
            assert r.status_code == 200 and r.json()["message"]["content"].startswith("[b] ")
        assert a.in_flight == 1  # the held stream is still going while the others were served
    finally:
        t.join(20)
    assert chats(a) == 1 and chats(b) == 4
    settled(sollol)
    assert len(lines) == 41 and lines[-1]["done"] is True and not any("error" in x for x in lines)
    assert "".join(x["message"]["content"] for x in lines).startswith("[a] tok0 tok1")
    host_a = sollol.registry.get(a.address)
    assert host_a.state.value == "draining" and host_a.in_flight == 0

    r = http.post(f"/api/hosts/{a.address}/undrain")
    assert r.status_code == 200 and sollol.registry.get(a.address).state.value == "healthy"
    assert http.post("/api/chat", json=CHAT).json()["message"]["content"].startswith("[a] ")
