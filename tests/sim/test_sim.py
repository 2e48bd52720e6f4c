"""Simulated Ollama nodes, exercised over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pytest

from sollol_core.sim import SimCluster, SimNode, SimNodeSpec, demo_specs, main, sim_embedding

from helpers import REPO

ROOT = REPO
USER = [{"role": "user", "content": "why is the sky blue"}]


@pytest.fixture
async def start_node():
    """start_node(**spec fields) -> a started SimNode; all are stopped at teardown."""
    nodes: list[SimNode] = []

    async def _start(**kwargs) -> SimNode:
        node = SimNode(SimNodeSpec(**kwargs))
        await node.start()
        nodes.append(node)
        return node

    yield _start
    for node in nodes:
        await node.stop()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:  # trust_env=False: never a proxy
        yield s


def url(node: SimNode, path: str) -> str:
    return f"http://{node.address}{path}"


def sync_get(address: str, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def sync_post(address: str, path: str, body: dict, timeout: float = 2.0) -> tuple[int, bytes]:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# -- shapes ----------------------------------------------------------------------------------


async def test_version_tags_ps_shapes(start_node, session):
    node = await start_node(name="a", models=["llama3.2", "qwen2.5:0.5b"], loaded=["qwen2.5:0.5b"])
    assert node.address == f"127.0.0.1:{node.port}" and node.port > 0

    async with session.get(url(node, "/api/version")) as r:
        assert r.status == 200
        assert await r.json() == {"version": "0.5.4-sim"}

    async with session.get(url(node, "/api/tags")) as r:
        assert r.status == 200 and r.content_type == "application/json"
        tags = await r.json()
    assert [m["name"] for m in tags["models"]] == ["llama3.2:latest", "qwen2.5:0.5b"]
    for m in tags["models"]:
        assert m["model"] == m["name"]
        assert set(m) >= {"name", "model", "modified_at", "size", "digest", "details"}
        assert len(m["digest"]) == 64 and m["size"] > 0
        d = m["details"]
        assert d["format"] == "gguf" and d["quantization_level"] == "Q4_K_M" and d["parent_model"] == ""
        assert d["families"] == [d["family"]] and d["parameter_size"]
    assert tags["models"][1]["details"]["family"] == "qwen2"
    assert tags["models"][1]["details"]["parameter_size"] == "0.5B"

    async with session.get(url(node, "/api/ps")) as r:
        ps = await r.json()
    assert [m["name"] for m in ps["models"]] == ["qwen2.5:0.5b"]
    entry = ps["models"][0]
    assert set(entry) == {"name", "model", "size", "digest", "details", "expires_at", "size_vram"}
    assert entry["expires_at"].endswith("Z")

    async with session.get(url(node, "/v1/models")) as r:
        v1 = await r.json()
    assert v1["object"] == "list"
    assert v1["data"][0] == {"id": "llama3.2:latest", "object": "model", "created": v1["data"][0]["created"],
                             "owned_by": "library"}

    async with session.get(url(node, "/")) as r:
        assert r.status == 200 and await r.text() == "Ollama is running"


async def test_ps_defaults_to_models_and_chat_loads_model(start_node, session):
    node = await start_node(models=["llama3.2", "nomic-embed-text"], loaded=[], latency_ms=0, tokens=1)
    async with session.get(url(node, "/api/ps")) as r:
        assert (await r.json())["models"] == []
    async with session.post(url(node, "/api/chat"), json={"model": "llama3.2", "messages": USER,
                                                          "stream": False}) as r:
        assert r.status == 200
    async with session.get(url(node, "/api/ps")) as r:
        assert [m["name"] for m in (await r.json())["models"]] == ["llama3.2:latest"]

    other = await start_node(models=["llama3.2", "nomic-embed-text"])
    async with session.get(url(other, "/api/ps")) as r:
        assert len((await r.json())["models"]) == 2


async def test_show(start_node, session):
    node = await start_node(models=["nomic-embed-text"], embed_dim=32)
    async with session.post(url(node, "/api/show"), json={"model": "nomic-embed-text"}) as r:
        assert r.status == 200
        show = await r.json()
    assert {"modelfile", "parameters", "template", "details", "model_info", "modified_at"} <= set(show)
    assert show["details"]["family"] == "nomic-bert"
    assert show["model_info"]["general.architecture"] == "nomic-bert"
    assert show["model_info"]["nomic-bert.embedding_length"] == 32
    async with session.post(url(node, "/api/show"), json={"name": "missing"}) as r:
        assert r.status == 404 and await r.json() == {"error": "model 'missing' not found"}


# -- chat / generate -------------------------------------------------------------------------


async def test_chat_streaming_chunks_arrive_over_time(start_node, session):
    node = await start_node(name="fast", latency_ms=40, tokens=8, tokens_per_s=100)
    t0 = time.perf_counter()
    times, chunks = [], []
    async with session.post(url(node, "/api/chat"), json={"model": "llama3.2", "messages": USER}) as r:
        assert r.status == 200
        assert r.content_type == "application/x-ndjson"
        async for line in r.content:
            times.append(time.perf_counter() - t0)
            chunks.append(json.loads(line))
    assert len(chunks) == 9  # 8 tokens + the final chunk
    for c in chunks[:-1]:
        assert c["done"] is False and c["model"] == "llama3.2" and c["created_at"]
        assert c["message"]["role"] == "assistant"
    text = "".join(c["message"]["content"] for c in chunks)
    assert text == "[fast] tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7"
    final = chunks[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    # eval_duration is the service after the prefill: the 40 ms latency and 8 tokens at 100 tokens/s
    assert final["eval_count"] == 8 and final["eval_duration"] == 120_000_000
    assert final["prompt_eval_count"] == 5
    assert final["total_duration"] >= 100_000_000 and 0 < final["load_duration"] < 5_000_000  # warm, never 0
    # the simulated pacing, as lower bounds (a busy machine only adds to them): the first chunk after the
    # 40 ms latency, the last after 7 more tokens at 100 tokens/s
    assert times[0] >= 0.035
    assert times[-1] >= 0.035 + 0.07


async def test_generate_streaming(start_node, session):
    node = await start_node(name="gen", latency_ms=0, tokens=3, tokens_per_s=0)
    async with session.post(url(node, "/api/generate"), json={"model": "llama3.2", "prompt": "hi"}) as r:
        chunks = [json.loads(line) async for line in r.content]
    assert [c["response"] for c in chunks] == ["[gen] tok0", " tok1", " tok2", ""]
    assert chunks[-1]["done"] is True and chunks[-1]["eval_count"] == 3
    assert isinstance(chunks[-1]["context"], list)


async def test_non_streaming_answers_name_the_node(start_node, session):
    node = await start_node(name="medium", latency_ms=30, tokens=4, tokens_per_s=100)
    t0 = time.perf_counter()
    async with session.post(url(node, "/api/chat"),
                            json={"model": "llama3.2:latest", "messages": USER, "stream": False}) as r:
        assert r.status == 200 and r.content_type == "application/json"
        body = await r.json()
    elapsed = time.perf_counter() - t0
    assert elapsed >= 0.065  # latency 30 ms + 4 tokens at 100/s
    assert body["message"] == {"role": "assistant", "content": "[medium] tok0 tok1 tok2 tok3"}
    assert body["done"] is True and body["done_reason"] == "stop" and body["eval_count"] == 4
    assert body["model"] == "llama3.2:latest"

    async with session.post(url(node, "/api/generate"),
                            json={"model": "llama3.2", "prompt": "x", "stream": False}) as r:
        gen = await r.json()
    assert gen["response"] == "[medium] tok0 tok1 tok2 tok3" and gen["done"] is True

    # options.num_predict caps the answer
    async with session.post(url(node, "/api/generate"), json={"model": "llama3.2", "prompt": "x", "stream": False,
                                                              "options": {"num_predict": 2}}) as r:
        capped = await r.json()
    assert capped["response"] == "[medium] tok0 tok1" and capped["done_reason"] == "length"


async def test_format_json_answers_node_object(start_node, session):
    node = await start_node(name="fast", latency_ms=0)
    for fmt in ("json", {"type": "object", "properties": {"node": {"type": "string"}}}):
        async with session.post(url(node, "/api/chat"), json={"model": "llama3.2", "messages": USER,
                                                              "format": fmt, "stream": False}) as r:
            content = (await r.json())["message"]["content"]
        assert content == '{"node": "fast"}'
        assert json.loads(content) == {"node": "fast"}


async def test_preload_and_unload(start_node, session):
    node = await start_node(models=["llama3.2"], loaded=[])
    async with session.post(url(node, "/api/generate"), json={"model": "llama3.2"}) as r:
        body = await r.json()
    assert body["done"] is True and body["done_reason"] == "load" and node.loaded == ["llama3.2:latest"]
    async with session.post(url(node, "/api/chat"), json={"model": "llama3.2", "messages": [],
                                                          "keep_alive": 0}) as r:
        body = await r.json()
    assert body["done_reason"] == "unload" and body["message"]["content"] == "" and node.loaded == []


async def test_received_records_bodies(start_node, session):
    node = await start_node(latency_ms=0)
    payload = {"model": "llama3.2", "messages": USER, "stream": False, "options": {"temperature": 0.25},
               "extra": ["x", 1, None]}
    async with session.post(url(node, "/api/chat"), json=payload) as r:
        assert r.status == 200
    assert node.received == [("/api/chat", payload)]
    assert node.requests_served == 1


async def test_received_is_bounded(start_node):
    node = await start_node()
    # fill through the same path a request takes
    for i in range(1005):
        node.received.append(("/x", {"i": i}))
    async with aiohttp.ClientSession() as s:
        async with s.post(url(node, "/api/show"), json={"model": "llama3.2"}) as r:
            assert r.status == 200
    assert len(node.received) == 1000
    assert node.received[-1] == ("/api/show", {"model": "llama3.2"})
    assert node.received[0] == ("/x", {"i": 6})


# -- errors ----------------------------------------------------------------------------------


async def test_unknown_model_404(start_node, session):
    node = await start_node(models=["llama3.2"])
    for path, body in [("/api/chat", {"model": "mistral", "messages": USER}),
                       ("/api/generate", {"model": "mistral", "prompt": "x"}),
                       ("/api/embed", {"model": "mistral", "input": "x"})]:
        async with session.post(url(node, path), json=body) as r:
            assert r.status == 404
            assert await r.json() == {"error": "model 'mistral' not found"}
    async with session.post(url(node, "/v1/chat/completions"), json={"model": "mistral", "messages": USER}) as r:
        assert r.status == 404
        err = (await r.json())["error"]
        assert err["message"] == "model 'mistral' not found" and err["type"] == "not_found_error"


async def test_bad_requests_400(start_node, session):
    node = await start_node()
    async with session.post(url(node, "/api/chat"), data=b"{not json",
                            headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400
        assert isinstance((await r.json())["error"], str)
    async with session.post(url(node, "/api/chat"), json={"messages": USER}) as r:
        assert r.status == 400 and await r.json() == {"error": "model is required"}
    async with session.post(url(node, "/api/chat"), data=b"") as r:
        assert r.status == 400
    async with session.post(url(node, "/api/embed"), json={"model": "llama3.2", "input": 5}) as r:
        assert r.status == 400
    assert node.received == [("/api/chat", {"messages": USER}), ("/api/embed", {"model": "llama3.2", "input": 5})]


# -- embeddings ------------------------------------------------------------------------------


def test_sim_embedding_deterministic_unit_length():
    v = sim_embedding("hello")
    assert v == sim_embedding("hello") and len(v) == 16
    assert math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-12)
    assert v != sim_embedding("hello!")
    w = sim_embedding("hello", 100)
    assert len(w) == 100 and math.isclose(sum(x * x for x in w), 1.0, rel_tol=1e-12)


async def test_embed_vectors(start_node, session):
    node = await start_node(models=["nomic-embed-text"], embed_dim=8, latency_ms=0)
    async with session.post(url(node, "/api/embed"), json={"model": "nomic-embed-text",
                                                           "input": ["a", "b c"]}) as r:
        body = await r.json()
    assert body["model"] == "nomic-embed-text"
    assert body["embeddings"] == [sim_embedding("a", 8), sim_embedding("b c", 8)]
    assert body["prompt_eval_count"] == 3 and body["total_duration"] > 0 and "load_duration" in body

    async with session.post(url(node, "/api/embed"), json={"model": "nomic-embed-text", "input": "a"}) as r:
        assert (await r.json())["embeddings"] == [sim_embedding("a", 8)]
    async with session.post(url(node, "/api/embed"), json={"model": "nomic-embed-text", "input": []}) as r:
        assert (await r.json())["embeddings"] == []
    async with session.post(url(node, "/api/embeddings"), json={"model": "nomic-embed-text", "prompt": "a"}) as r:
        assert await r.json() == {"embedding": sim_embedding("a", 8)}
    async with session.post(url(node, "/v1/embeddings"), json={"model": "nomic-embed-text",
                                                               "input": ["a", "b"]}) as r:
        v1 = await r.json()
    assert v1["object"] == "list" and v1["model"] == "nomic-embed-text"
    assert v1["data"] == [{"object": "embedding", "embedding": sim_embedding("a", 8), "index": 0},
                          {"object": "embedding", "embedding": sim_embedding("b", 8), "index": 1}]
    assert v1["usage"]["prompt_tokens"] == 2


async def test_embed_time_grows_with_batch(start_node, session):
    node = await start_node(latency_ms=10, embed_ms_per_input=5)
    t0 = time.perf_counter()
    async with session.post(url(node, "/api/embed"), json={"model": "nomic-embed-text",
                                                           "input": [str(i) for i in range(20)]}) as r:
        assert len((await r.json())["embeddings"]) == 20
    assert time.perf_counter() - t0 >= 0.11  # 10 ms + 20 * 5 ms


# -- OpenAI-compatible -----------------------------------------------------------------------


async def test_openai_chat_and_completions(start_node, session):
    node = await start_node(name="oai", latency_ms=0, tokens=3, tokens_per_s=0)
    async with session.post(url(node, "/v1/chat/completions"), json={"model": "llama3.2", "messages": USER}) as r:
        body = await r.json()
    assert body["object"] == "chat.completion" and body["model"] == "llama3.2"
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "[oai] tok0 tok1 tok2"},
                                "finish_reason": "stop"}]
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                             "prompt_tokens_details": {"cached_tokens": 0}}
    assert body["id"].startswith("chatcmpl-") and isinstance(body["created"], int)

    async with session.post(url(node, "/v1/chat/completions"),
                            json={"model": "llama3.2", "messages": USER, "stream": True}) as r:
        assert r.content_type == "text/event-stream"
        raw = await r.text()
    events = [e[len("data: "):] for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "[oai] tok0 tok1 tok2"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

    async with session.post(url(node, "/v1/completions"), json={"model": "llama3.2", "prompt": "hi",
                                                                "max_tokens": 2}) as r:
        comp = await r.json()
    assert comp["object"] == "text_completion"
    assert comp["choices"][0]["text"] == "[oai] tok0 tok1" and comp["choices"][0]["finish_reason"] == "length"

    async with session.post(url(node, "/v1/completions"), json={"model": "llama3.2", "prompt": "hi",
                                                                "stream": True}) as r:
        raw = await r.text()
    events = [e[len("data: "):] for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]) == "[oai] tok0 tok1 tok2"


# -- model management ------------------------------------------------------------------------


async def test_pull_copy_delete(start_node, session):
    node = await start_node(models=["llama3.2"])

    async def names() -> list[str]:
        async with session.get(url(node, "/api/tags")) as r:
            return [m["name"] for m in (await r.json())["models"]]

    async with session.post(url(node, "/api/pull"), json={"model": "qwen2.5:0.5b"}) as r:
        statuses = [json.loads(line)["status"] async for line in r.content if line.strip()]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success" and len(statuses) >= 3
    assert await names() == ["llama3.2:latest", "qwen2.5:0.5b"]

    async with session.post(url(node, "/api/pull"), json={"model": "gemma3", "stream": False}) as r:
        assert await r.json() == {"status": "success"}
    async with session.post(url(node, "/api/copy"), json={"source": "gemma3", "destination": "mine"}) as r:
        assert r.status == 200
    assert await names() == ["llama3.2:latest", "qwen2.5:0.5b", "gemma3:latest", "mine:latest"]
    async with session.post(url(node, "/api/copy"), json={"source": "nope", "destination": "x"}) as r:
        assert r.status == 404

    async with session.delete(url(node, "/api/delete"), json={"model": "gemma3"}) as r:
        assert r.status == 200
    async with session.delete(url(node, "/api/delete"), json={"model": "gemma3"}) as r:
        assert r.status == 404 and await r.json() == {"error": "model 'gemma3' not found"}
    assert await names() == ["llama3.2:latest", "qwen2.5:0.5b", "mine:latest"]

    async with session.post(url(node, "/api/create"), json={"model": "custom", "from": "llama3.2",
                                                            "stream": False}) as r:
        assert await r.json() == {"status": "success"}
    async with session.post(url(node, "/api/push"), json={"model": "custom"}) as r:
        statuses = [json.loads(line)["status"] async for line in r.content if line.strip()]
    assert statuses[-1] == "success"
    assert "custom:latest" in await names()


# -- load and failure injection --------------------------------------------------------------


async def test_capacity_queues_requests(start_node, session):
    single = await start_node(capacity=1, latency_ms=100)
    triple = await start_node(capacity=3, latency_ms=100)
    body = {"model": "nomic-embed-text", "input": "q"}

    async def three(node: SimNode) -> float:
        async def one() -> None:
            async with session.post(url(node, "/api/embed"), json=body) as r:
                assert r.status == 200
                await r.read()

        t0 = time.perf_counter()
        await asyncio.gather(one(), one(), one())
        return time.perf_counter() - t0

    assert await three(single) >= 0.29  # one slot: served one after another
    assert await three(triple) < 0.25  # three slots: served together


async def test_failure_rate(start_node, session):
    node = await start_node(failure_rate=1.0, latency_ms=0)
    async with session.post(url(node, "/api/chat"), json={"model": "llama3.2", "messages": USER}) as r:
        assert r.status == 500
        assert await r.json() == {"error": "simulated failure"}
    async with session.post(url(node, "/v1/chat/completions"), json={"model": "llama3.2", "messages": USER}) as r:
        assert r.status == 500
        assert (await r.json())["error"]["message"] == "simulated failure"
    async with session.get(url(node, "/api/tags")) as r:  # health checks still see it alive
        assert r.status == 200
    node.failure_rate = 0.0  # live-settable
    async with session.post(url(node, "/api/chat"), json={"model": "llama3.2", "messages": USER,
                                                          "stream": False}) as r:
        assert r.status == 200


async def test_failure_rate_reproducible_with_seed(start_node, session):
    async def pattern(node: SimNode) -> list[int]:
        out = []
        for _ in range(30):
            async with session.post(url(node, "/api/show"), json={"model": "llama3.2"}) as r:
                out.append(r.status)
        return out

    a = await pattern(await start_node(failure_rate=0.5, seed=7))
    b = await pattern(await start_node(failure_rate=0.5, seed=7))
    assert a == b and set(a) == {200, 500}


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_hang_times_out_client_and_stop_is_prompt(start_node, session):
    node = await start_node(latency_ms=0)
    node.hang = True
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(url(node, "/api/chat"), json={"model": "llama3.2", "messages": USER},
                                timeout=aiohttp.ClientTimeout(total=0.3)):
            pass
    await until(lambda: node.in_flight == 0)  # the handler ended when the client went away

    pending = asyncio.ensure_future(session.post(url(node, "/api/embed"), json={"model": "llama3.2",
                                                                                "input": "x"}))
    await until(lambda: node.in_flight == 1)
    t0 = time.perf_counter()
    await node.stop()
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(aiohttp.ClientError):
        await pending
    with pytest.raises(aiohttp.ClientConnectorError):  # the node is down
        await session.get(url(node, "/api/version"))


async def test_fail_mid_stream(start_node, session):
    node = await start_node(latency_ms=0, tokens=5, tokens_per_s=0)
    node.fail_mid_stream = True
    lines = []
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(url(node, "/api/chat"), json={"model": "llama3.2", "messages": USER}) as r:
            assert r.status == 200
            async for line in r.content:
                lines.append(json.loads(line))
    assert len(lines) == 1 and lines[0]["done"] is False and lines[0]["message"]["content"].endswith("tok0")

    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.post(url(node, "/api/chat"), json={"model": "llama3.2", "messages": USER,
                                                              "stream": False}) as r:
            await r.read()
    assert node.requests_served == 0

    node.fail_mid_stream = False
    async with session.post(url(node, "/api/chat"), json={"model": "llama3.2", "messages": USER,
                                                          "stream": False}) as r:
        assert r.status == 200
    assert node.requests_served == 1


async def test_client_disconnect_frees_slot(start_node, session):
    node = await start_node(capacity=1, latency_ms=0, tokens=1000, tokens_per_s=50)  # a 20 s stream
    async with session.post(url(node, "/api/chat"), json={"model": "llama3.2", "messages": USER}) as r:
        await r.content.readline()
        r.close()  # drop the connection mid-stream
    t0 = time.perf_counter()
    async with session.post(url(node, "/api/embed"), json={"model": "llama3.2", "input": "x"},
                            timeout=aiohttp.ClientTimeout(total=2)) as r:
        assert r.status == 200
    assert time.perf_counter() - t0 < 0.5


# -- cluster ---------------------------------------------------------------------------------


def test_cluster_kill_and_revive_on_same_port():
    with SimCluster([SimNodeSpec(name="a", latency_ms=0), SimNodeSpec(name="b", latency_ms=0)]) as cluster:
        assert len(cluster.addresses) == 2 and len(set(cluster.addresses)) == 2
        for address in cluster.addresses:
            assert sync_get(address, "/api/version") == (200, b'{"version":"0.5.4-sim"}')
        status, body = sync_post(cluster.addresses[1], "/api/chat",
                                 {"model": "llama3.2", "messages": USER, "stream": False})
        assert status == 200 and json.loads(body)["message"]["content"].startswith("[b] ")

        address = cluster.addresses[0]
        cluster.kill(0)
        with pytest.raises(ConnectionRefusedError):
            sync_get(address, "/api/version")
        assert sync_get(cluster.addresses[1], "/api/version")[0] == 200

        cluster.revive(0)
        assert cluster.nodes[0].address == address
        assert sync_get(address, "/api/version")[0] == 200
        cluster.nodes[0].failure_rate = 1.0  # set from this thread, seen by the node's loop
        assert sync_post(address, "/api/show", {"model": "llama3.2"})[0] == 500
    cluster.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        sync_get(address, "/api/version")


def test_cluster_stop_with_hanging_request_does_not_hang():
    cluster = SimCluster([SimNodeSpec(latency_ms=0)]).start()
    cluster.nodes[0].hang = True
    with pytest.raises(TimeoutError):
        sync_post(cluster.addresses[0], "/api/chat", {"model": "llama3.2", "messages": USER}, timeout=0.3)
    t0 = time.perf_counter()
    cluster.stop()
    assert time.perf_counter() - t0 < 3.0


def test_demo_specs():
    specs = demo_specs()
    by_name = {s.name: s for s in specs}
    assert list(by_name) == ["fast", "medium", "slow", "flaky"]
    assert (by_name["fast"].latency_ms, by_name["fast"].capacity) == (30, 4)
    assert (by_name["medium"].latency_ms, by_name["medium"].capacity) == (120, 2)
    assert (by_name["slow"].latency_ms, by_name["slow"].capacity) == (600, 1)
    assert (by_name["flaky"].latency_ms, by_name["flaky"].capacity, by_name["flaky"].failure_rate) == (40, 2, 0.15)
    models = {"llama3.2:latest", "qwen2.5:0.5b", "nomic-embed-text:latest"}
    for model in models:
        assert sum(model in s.models for s in specs) >= 2
    assert any(set(s.models) != models for s in specs)


# -- command line ----------------------------------------------------------------------------


def test_module_command_line_runs_until_sigterm():
    spec = json.dumps({"name": "cli", "latency_ms": 0, "capacity": 8})
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    with subprocess.Popen([sys.executable, "-m", "sollol_core.sim", "--spec", spec, "--spec", '{"name": "two"}'],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            # plain readline: select() on a buffered text pipe misses a second line already buffered
            lines = [proc.stdout.readline().strip() for _ in range(2)]  # bounded by pytest-timeout
            assert all(lines), proc.stderr.read()
            word, name, address = lines[0].split()
            assert (word, name) == ("SIM", "cli") and address.startswith("127.0.0.1:")
            assert lines[1].startswith("SIM two 127.0.0.1:")
            assert sync_get(address, "/api/version") == (200, b'{"version":"0.5.4-sim"}')
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0
            assert proc.stderr.read() == ""
            with pytest.raises(ConnectionRefusedError):
                sync_get(address, "/api/version")
        finally:
            if proc.poll() is None:
                proc.kill()


def test_main_rejects_unknown_spec_field():
    with pytest.raises(SystemExit) as exc:
        main(["--spec", '{"nme": "typo"}'])
    assert exc.value.code == 2
