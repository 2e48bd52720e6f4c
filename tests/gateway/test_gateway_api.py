"""The gateway's HTTP surface on simulated Ollama nodes: every endpoint, bodies passed through intact,
streaming chunk by chunk, and every kind of bad input answered with a 4xx {"error": ...}."""

from __future__ import annotations

import json
import threading
import time

import httpx
import orjson
import pytest

from sollol_core import SOLLOL, SollolConfig
from sollol_core.sim import SimNodeSpec, sim_embedding

from helpers import CHAT_MODEL, EMBED_MODEL, USER, wait_until

pytestmark = pytest.mark.timeout(60)

MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def stack(module_sim_cluster, module_gateway):
    """Two nodes (a, b) with the same models, one gateway; shared by the read-only tests of this module."""
    cluster = module_sim_cluster(n=2, latency_ms=2, tokens=5, tokens_per_s=0)
    sollol = module_gateway(cluster.addresses, max_body_bytes=MAX_BODY)
    with httpx.Client(base_url=sollol.gateway_url, timeout=20, trust_env=False) as http:
        yield cluster, sollol, http


@pytest.fixture(autouse=True)
def fresh_received(request):
    """Each test sees only its own requests on the shared nodes, and starts with every host healthy."""
    if "stack" in request.fixturenames:
        cluster, sollol, _ = request.getfixturevalue("stack")
        for node in cluster.nodes:
            node.received.clear()
        for address in sollol.registry.addresses():
            sollol.registry.mark_healthy(address)
    yield


def received(cluster, path: str) -> list[dict]:
    return [body for node in cluster.nodes for p, body in node.received if p == path]


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sse(text: str) -> list:
    events = []
    for line in text.splitlines():
        if line.startswith("data: "):
            payload = line[len("data: "):]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def assert_serving(http: httpx.Client) -> None:
    """The gateway still answers a good request after whatever the test sent."""
    r = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False})
    assert r.status_code == 200, r.text
    assert r.json()["message"]["content"].endswith("tok4")


# -- Ollama API: pass-through -------------------------------------------------------------------


def test_root_and_version(stack):
    _, _, http = stack
    r = http.get("/")
    assert r.status_code == 200 and r.text == "Ollama is running"
    r = http.get("/api/version")
    assert r.status_code == 200 and r.json() == {"version": "0.5.4-sim"}


def test_chat_body_arrives_intact_and_streams(stack):
    cluster, _, http = stack
    body = {
        "model": CHAT_MODEL,
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": "what is in this picture?", "images": ["aGVsbG8="]}],
        "options": {"temperature": 0.1, "num_ctx": 4096, "seed": 42, "stop": ["\n\n"]},
        "format": {"type": "object", "properties": {"answer": {"type": "string"}}},
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                                    "parameters": {"type": "object", "properties": {
                                                        "city": {"type": "string"}}}}}],
        "keep_alive": "10m",
        "think": False,
        "x_client_field": {"nested": [1, 2.5, None, True]},
    }
    r = http.post("/api/chat", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert received(cluster, "/api/chat") == [body]  # byte-for-byte equal once parsed, unknown keys included
    lines = ndjson(r.text)
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 1  # "format" answers one JSON piece
    assert json.loads("".join(line["message"]["content"] for line in lines)) in ({"node": "a"}, {"node": "b"})


def test_chat_stream_and_not(stack):
    _, _, http = stack
    r = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER})
    lines = ndjson(r.text)
    assert r.status_code == 200 and len(lines) == 6  # 5 tokens + the final line
    assert [line["done"] for line in lines] == [False] * 5 + [True]
    text = "".join(line["message"]["content"] for line in lines)
    assert text in ("[a] tok0 tok1 tok2 tok3 tok4", "[b] tok0 tok1 tok2 tok3 tok4")

    r = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    data = r.json()
    assert data["done"] is True and data["message"]["content"].endswith(" tok1 tok2 tok3 tok4")
    assert data["eval_count"] == 5


def test_generate_body_intact_stream_and_not(stack):
    cluster, _, http = stack
    body = {"model": CHAT_MODEL, "prompt": "describe", "system": "you are terse", "template": "{{ .Prompt }}",
            "images": ["aGVsbG8=", "d29ybGQ="], "context": [1, 2, 3], "raw": False, "suffix": "",
            "options": {"num_predict": 3, "top_k": 20}, "keep_alive": 0.5, "stream": True}
    r = http.post("/api/generate", json=body)
    assert r.status_code == 200
    assert received(cluster, "/api/generate") == [body]
    lines = ndjson(r.text)
    assert "".join(line["response"] for line in lines).endswith("tok0 tok1 tok2")  # num_predict reached the node
    assert lines[-1]["done_reason"] == "length" and lines[-1]["context"]

    r = http.post("/api/generate", json={"model": CHAT_MODEL, "prompt": "x", "stream": False})
    assert r.status_code == 200 and r.json()["response"].endswith("tok4") and r.json()["done"] is True


def test_embed_several_inputs(stack):
    cluster, _, http = stack
    body = {"model": EMBED_MODEL, "input": ["first text", "second text", "third"], "truncate": True,
            "options": {"num_thread": 2}, "keep_alive": "5m"}
    r = http.post("/api/embed", json=body)
    assert r.status_code == 200, r.text
    assert received(cluster, "/api/embed") == [body]
    assert r.json()["embeddings"] == [sim_embedding(t) for t in body["input"]]


def test_embed_accepts_the_original_text_shape(stack):
    cluster, _, http = stack
    r = http.post("/api/embed", json={"text": "legacy body", "model": EMBED_MODEL})
    assert r.status_code == 200, r.text
    assert received(cluster, "/api/embed") == [{"model": EMBED_MODEL, "input": "legacy body"}]
    assert r.json()["embeddings"] == [sim_embedding("legacy body")]


def test_legacy_embeddings(stack):
    cluster, _, http = stack
    body = {"model": EMBED_MODEL, "prompt": "one prompt", "options": {"seed": 1}}
    r = http.post("/api/embeddings", json=body)
    assert r.status_code == 200
    assert received(cluster, "/api/embeddings") == [body]
    assert r.json() == {"embedding": sim_embedding("one prompt")}


def test_show(stack):
    cluster, _, http = stack
    r = http.post("/api/show", json={"model": CHAT_MODEL, "verbose": True})
    assert r.status_code == 200
    assert received(cluster, "/api/show") == [{"model": CHAT_MODEL, "verbose": True}]
    data = r.json()
    assert data["details"]["family"] == "llama" and "FROM llama3.2:latest" in data["modelfile"]
    r = http.post("/api/show", json={"name": EMBED_MODEL})  # the older field name
    assert r.status_code == 200 and r.json()["details"]["family"] == "nomic-bert"


def test_unknown_model_is_404_like_ollama(stack):
    cluster, _, http = stack
    for path, body in (("/api/chat", {"model": "no-such-model", "messages": USER}),
                       ("/api/generate", {"model": "no-such-model", "prompt": "x"}),
                       ("/api/embed", {"model": "no-such-model", "input": "x"}),
                       ("/api/show", {"model": "no-such-model"})):
        r = http.post(path, json=body)
        assert r.status_code == 404, (path, r.text)
        assert "no-such-model" in r.json()["error"] and "not found" in r.json()["error"]
    assert_serving(http)


def test_unknown_model_when_model_lists_are_not_known_yet(sim_cluster, gateway, client):
    """Without model lists the request goes upstream; each host's 404 is tried, then passed on."""
    cluster = sim_cluster(n=2)
    sollol = gateway(cluster.addresses, adaptive_metrics_enabled=False)
    r = client(sollol).post("/api/chat", json={"model": "ghost", "messages": USER, "stream": False})
    assert r.status_code == 404 and r.json() == {"error": "model 'ghost' not found"}
    assert len(received(cluster, "/api/chat")) == 2  # both hosts were asked
    assert all(h.state.value == "healthy" for h in sollol.registry.hosts())  # a 404 is not a host failure


def test_tags_and_ps_are_unions_over_hosts(sim_cluster, gateway, client):
    cluster = sim_cluster(
        SimNodeSpec(name="a", latency_ms=1, models=["llama3.2", "qwen2.5:0.5b"], loaded=["qwen2.5:0.5b"]),
        SimNodeSpec(name="b", latency_ms=1, models=["llama3.2", "all-minilm"], loaded=["llama3.2", "all-minilm"]),
    )
    a, b = cluster.addresses
    sollol = gateway(cluster.addresses)
    http = client(sollol)
    tags = http.get("/api/tags").json()["models"]
    assert [m["name"] for m in tags] == ["all-minilm:latest", "llama3.2:latest", "qwen2.5:0.5b"]
    hosts = {m["name"]: sorted(m["hosts"]) for m in tags}
    assert hosts == {"all-minilm:latest": [b], "llama3.2:latest": sorted([a, b]), "qwen2.5:0.5b": [a]}
    assert all(m["digest"] and m["details"]["family"] for m in tags)

    ps = http.get("/api/ps").json()["models"]
    assert sorted((m["name"], m["host"]) for m in ps) == sorted(
        [("qwen2.5:0.5b", a), ("llama3.2:latest", b), ("all-minilm:latest", b)])

    cluster.kill(1)  # a host that fails drops out of both lists once it is known to be down
    sollol.registry.mark_unhealthy(b, "test")
    assert [m["name"] for m in http.get("/api/tags").json()["models"]] == ["llama3.2:latest", "qwen2.5:0.5b"]
    assert [m["host"] for m in http.get("/api/ps").json()["models"]] == [a]


def test_requests_go_only_to_hosts_that_have_the_model(sim_cluster, gateway, client):
    cluster = sim_cluster(SimNodeSpec(name="a", latency_ms=1, models=["llama3.2"]),
                          SimNodeSpec(name="b", latency_ms=1, models=["qwen2.5:0.5b"]))
    http = client(gateway(cluster.addresses))
    for _ in range(4):
        r = http.post("/api/chat", json={"model": "qwen2.5:0.5b", "messages": USER, "stream": False})
        assert r.status_code == 200 and r.json()["message"]["content"].startswith("[b] ")
    assert len(cluster.nodes[0].received) == 0 and len(cluster.nodes[1].received) == 4


# -- streaming chunk by chunk -------------------------------------------------------------------


@pytest.mark.parametrize("path,body,sse_format", [
    ("/api/chat", {"model": CHAT_MODEL, "messages": USER}, False),
    ("/api/generate", {"model": CHAT_MODEL, "prompt": "count"}, False),
    ("/v1/chat/completions", {"model": CHAT_MODEL, "messages": USER, "stream": True}, True),
])
def test_stream_is_forwarded_chunk_by_chunk(sim_cluster, gateway, client, path, body, sse_format):
    # one node, 10 tokens at 10/s: the upstream answer takes about a second after its first chunk
    cluster = sim_cluster(SimNodeSpec(name="a", latency_ms=1, tokens=10, tokens_per_s=10))
    node = cluster.nodes[0]
    # no background loops: the node's counters then count this request alone
    http = client(gateway(cluster.addresses, health_check_enabled=False, adaptive_metrics_enabled=False))
    arrivals: list[float] = []
    lines: list[str] = []
    with http.stream("POST", path, json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.strip():
                continue
            if not arrivals:
                # the first chunk is here while the node is still generating the rest
                assert node.in_flight == 1 and node.requests_served == 0
            arrivals.append(time.monotonic())
            lines.append(line)
    wait_until(lambda: node.requests_served == 1, what="the node to count the request")
    payloads = sse("\n".join(lines)) if sse_format else [json.loads(x) for x in lines]
    assert len(payloads) == (12 if sse_format else 11)  # 10 tokens + final (+ [DONE])
    # the chunks were not gathered up: they arrived spread over the upstream's ~1 s
    assert arrivals[-1] - arrivals[0] > 0.5


# -- OpenAI-compatible ----------------------------------------------------------------------------


def test_v1_chat_completions(stack):
    cluster, _, http = stack
    body = {"model": CHAT_MODEL, "messages": USER, "temperature": 0.2, "max_tokens": 3,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert received(cluster, "/v1/chat/completions") == [body]
    data = r.json()
    assert data["object"] == "chat.completion" and data["choices"][0]["message"]["content"].endswith("tok2")
    assert data["usage"]["completion_tokens"] == 3

    r = http.post("/v1/chat/completions", json=body | {"stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    assert events[-1] == "[DONE]" and events[0]["object"] == "chat.completion.chunk"
    assert "".join(e["choices"][0]["delta"]["content"] for e in events[:-1]).endswith("tok2")


def test_v1_completions_and_embeddings_and_models(stack):
    cluster, _, http = stack
    r = http.post("/v1/completions", json={"model": CHAT_MODEL, "prompt": "say", "max_tokens": 2})
    assert r.status_code == 200 and r.json()["choices"][0]["text"].endswith("tok0 tok1")
    r = http.post("/v1/completions", json={"model": CHAT_MODEL, "prompt": "say", "stream": True})
    assert sse(r.text)[-1] == "[DONE]"

    body = {"model": EMBED_MODEL, "input": ["a", "b"], "encoding_format": "float"}
    r = http.post("/v1/embeddings", json=body)
    assert r.status_code == 200 and received(cluster, "/v1/embeddings") == [body]
    assert [d["embedding"] for d in r.json()["data"]] == [sim_embedding("a"), sim_embedding("b")]

    r = http.get("/v1/models")
    assert r.status_code == 200
    assert [m["id"] for m in r.json()["data"]] == ["llama3.2:latest", "nomic-embed-text:latest"]


# -- SOLLOL's own ---------------------------------------------------------------------------------


def test_health_and_stats_match_the_programmatic_api(stack):
    cluster, sollol, http = stack
    r = http.get("/api/health")
    assert r.status_code == 200
    health = r.json()
    assert health["status"] == "ok" and health["hosts_total"] == 2 and health["hosts_available"] == 2
    assert set(health["hosts"]) == set(cluster.addresses)
    assert {k: v for k, v in sollol.get_health().items() if k != "timestamp"} == \
        {k: v for k, v in health.items() if k != "timestamp"}

    assert_serving(http)
    stats = http.get("/api/stats").json()
    assert {h["host"] for h in stats["hosts"]} == set(cluster.addresses)
    assert stats["routing"]["strategy"] == "performance"
    assert sum(h["requests_total"] for h in stats["hosts"]) >= 1
    assert stats["gateway"]["url"] == sollol.gateway_url and stats["gateway"]["requests_total"] >= 1

    status = sollol.get_status()
    assert status["running"] is True and status["gateway_url"] == sollol.gateway_url and status["hosts"] == 2


def test_health_reports_down_with_503(sim_cluster, gateway, client):
    cluster = sim_cluster(n=1)
    sollol = gateway(cluster.addresses)
    sollol.registry.mark_unhealthy(cluster.addresses[0], "test")
    r = client(sollol).get("/api/health")
    assert r.status_code == 503 and r.json()["status"] == "down"
    assert r.json()["hosts"][cluster.addresses[0]]["last_error"] == "test"


def test_docs_and_openapi(stack):
    _, _, http = stack
    r = http.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    paths = http.get("/openapi.json").json()["paths"]
    for p in ("/api/chat", "/api/generate", "/api/embed", "/api/tags", "/api/pull", "/api/delete",
              "/v1/chat/completions", "/api/health", "/api/hosts/{host}/drain", "/api/routing"):
        assert p in paths


# -- model management -------------------------------------------------------------------------------


def test_management_goes_to_the_named_host(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2)
    a, b = cluster.addresses
    sollol = gateway(cluster.addresses)
    http = client(sollol)

    r = http.post("/api/pull", json={"model": "qwen2.5:0.5b", "insecure": False}, headers={"X-SOLLOL-Host": b})
    assert r.status_code == 200
    assert [s["status"] for s in ndjson(r.text)][-1] == "success"  # streamed progress, as Ollama does
    assert cluster.nodes[0].received == [] and cluster.nodes[1].received == [
        ("/api/pull", {"model": "qwen2.5:0.5b", "insecure": False})]
    assert "qwen2.5:0.5b" in cluster.nodes[1].models and "qwen2.5:0.5b" not in cluster.nodes[0].models

    # a model pulled a moment ago is served at once, though no adaptive round has seen it yet
    r = http.post("/api/chat", json={"model": "qwen2.5:0.5b", "messages": USER, "stream": False})
    assert r.status_code == 200, r.text
    assert r.json()["message"]["content"].startswith("[b] ")

    r = http.post("/api/copy", json={"source": "llama3.2", "destination": "mine"}, headers={"X-SOLLOL-Host": a})
    assert r.status_code == 200 and "mine:latest" in cluster.nodes[0].models
    assert "mine:latest" not in cluster.nodes[1].models

    r = http.post("/api/create", json={"model": "made", "from": "llama3.2", "stream": False},
                  headers={"X-SOLLOL-Host": a})
    assert r.status_code == 200 and r.json() == {"status": "success"} and "made:latest" in cluster.nodes[0].models

    r = http.post("/api/push", json={"model": "made", "stream": False}, headers={"X-SOLLOL-Host": a})
    assert r.status_code == 200 and r.json() == {"status": "success"}

    r = http.request("DELETE", "/api/delete", json={"model": "mine"}, headers={"X-SOLLOL-Host": a})
    assert r.status_code == 200 and "mine:latest" not in cluster.nodes[0].models
    r = http.request("DELETE", "/api/delete", json={"model": "mine"}, headers={"X-SOLLOL-Host": a})
    assert r.status_code == 404 and "not found" in r.json()["error"]  # the host's own answer


def test_management_on_all_hosts(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2)
    http = client(gateway(cluster.addresses))
    r = http.post("/api/pull", json={"model": "phi3", "stream": False})  # everywhere unless told otherwise
    assert r.status_code == 200
    data = r.json()
    assert data["status"] == "success" and set(data["hosts"]) == set(cluster.addresses)
    assert all(node.received == [("/api/pull", {"model": "phi3", "stream": False})] for node in cluster.nodes)
    assert all("phi3:latest" in node.models for node in cluster.nodes)

    r = http.request("DELETE", "/api/delete", json={"model": "phi3"}, headers={"X-SOLLOL-Host": "all"})
    assert r.status_code == 200 and all("phi3:latest" not in node.models for node in cluster.nodes)

    r = http.request("DELETE", "/api/delete", json={"model": "phi3"}, headers={"X-SOLLOL-Host": "all"})
    assert r.status_code == 404  # every host said "not found": so does the gateway
    data = r.json()
    assert data["error"] == "model 'phi3' not found on any host"
    assert {h["status_code"] for h in data["hosts"].values()} == {404}
    assert {h["outcome"] for h in data["hosts"].values()} == {"absent"}


def test_management_needs_a_valid_target(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2)
    http = client(gateway(cluster.addresses))
    r = http.post("/api/copy", json={"source": "llama3.2", "destination": "x"},
                  headers={"X-SOLLOL-Host": "10.9.9.9:1"})
    assert r.status_code == 404 and "no such host" in r.json()["error"]
    r = http.post("/api/create", json={"model": "x"}, headers={"X-SOLLOL-Host": "not a host"})
    assert r.status_code == 400 and r.json()["error"].startswith("X-SOLLOL-Host")
    assert all(node.received == [] for node in cluster.nodes)
    assert all("llama3.2:latest" in node.models for node in cluster.nodes)


# -- bad input ----------------------------------------------------------------------------------------

BAD_BODIES = [
    pytest.param("/api/chat", b"{not json", 400, "invalid JSON", id="invalid-json"),
    pytest.param("/api/chat", b"", 400, "empty", id="empty-body"),
    pytest.param("/api/chat", b"   \n", 400, "empty", id="blank-body"),
    pytest.param("/api/chat", b"\xff\xfe\x00garbage", 400, "invalid JSON", id="not-utf8"),
    pytest.param("/api/chat", b'{"model": NaN}', 400, "invalid JSON", id="nan"),
    pytest.param("/api/chat", b'{"model": "llama3.2"} trailing', 400, "invalid JSON", id="trailing-garbage"),
    pytest.param("/api/chat", b"[" * 5000 + b"]" * 5000, 400, "", id="deeply-nested"),
    pytest.param("/api/chat", b'["model", "llama3.2"]', 400, "JSON object", id="array"),
    pytest.param("/api/generate", b'"just a string"', 400, "JSON object", id="string"),
    pytest.param("/api/embed", b"42", 400, "JSON object", id="number"),
    pytest.param("/api/show", b"null", 400, "JSON object", id="null"),
    pytest.param("/api/chat", b'{"messages": []}', 400, "model is required", id="chat-no-model"),
    pytest.param("/api/generate", b'{"prompt": "x"}', 400, "model is required", id="generate-no-model"),
    pytest.param("/api/embed", b'{"input": "x"}', 400, "model is required", id="embed-no-model"),
    pytest.param("/api/embeddings", b'{"prompt": "x"}', 400, "model is required", id="embeddings-no-model"),
    pytest.param("/api/show", b"{}", 400, "model is required", id="show-no-model"),
    pytest.param("/v1/chat/completions", b'{"messages": []}', 400, "model is required", id="v1-no-model"),
    pytest.param("/v1/embeddings", b'{"input": "x"}', 400, "model is required", id="v1-embed-no-model"),
    pytest.param("/api/chat", b'{"model": 5, "messages": []}', 400, "model must be", id="model-number"),
    pytest.param("/api/chat", b'{"model": "  ", "messages": []}', 400, "model must be", id="model-blank"),
    pytest.param("/api/generate", b'{"model": ["a"], "prompt": "x"}', 400, "model must be", id="model-list"),
    pytest.param("/api/chat", b'{"model": "llama3.2", "messages": "hi"}', 400, "messages", id="messages-string"),
    pytest.param("/api/chat", b'{"model": "llama3.2", "messages": [], "stream": "yes"}', 400, "stream",
                 id="stream-string"),
    pytest.param("/api/generate", b'{"model": "llama3.2", "prompt": "x", "stream": 1}', 400, "stream",
                 id="stream-number"),
    pytest.param("/api/embed", b'{"model": "nomic-embed-text"}', 400, "input is required", id="embed-no-input"),
    pytest.param("/api/embed", b'{"model": "nomic-embed-text", "input": 5}', 400, "input must be",
                 id="embed-input-number"),
    pytest.param("/api/embed", b'{"model": "nomic-embed-text", "input": ["a", 2]}', 400, "input must be",
                 id="embed-input-mixed"),
]


@pytest.mark.parametrize("path,raw,status,message", BAD_BODIES)
def test_bad_input_gets_4xx_error_and_nothing_goes_upstream(stack, path, raw, status, message):
    cluster, _, http = stack
    r = http.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    if path.startswith("/v1/"):  # OpenAI's shape
        assert error["type"] == "invalid_request_error" and message in error["message"]
    else:
        assert isinstance(error, str) and message in error
    assert all(node.received == [] for node in cluster.nodes)  # the gateway answered it itself
    assert_serving(http)


BAD_INPUT_KEY = "sk-bad-input-77c1"


@pytest.fixture(scope="module")
def keyed_stack(module_sim_cluster, module_gateway):
    """The same, with api_keys set: every request carries the key, and bad input is still the route's 400."""
    cluster = module_sim_cluster(n=2, latency_ms=2, tokens=5, tokens_per_s=0)
    sollol = module_gateway(cluster.addresses, max_body_bytes=MAX_BODY, api_keys={BAD_INPUT_KEY: {"name": "k"}})
    with httpx.Client(base_url=sollol.gateway_url, timeout=20, trust_env=False,
                      headers={"Authorization": f"Bearer {BAD_INPUT_KEY}"}) as http:
        yield cluster, sollol, http


@pytest.mark.parametrize("path,raw,status,message", BAD_BODIES)
def test_bad_input_with_keys_configured_is_still_a_4xx_and_goes_nowhere(keyed_stack, path, raw, status, message):
    cluster, _, http = keyed_stack
    for node in cluster.nodes:
        node.received.clear()
    r = http.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in (error["message"] if path.startswith("/v1/") else error)
    assert all(node.received == [] for node in cluster.nodes)
    assert_serving(http)


def test_oversized_body_by_content_length_is_413(stack):
    cluster, _, http = stack
    big = orjson.dumps({"model": CHAT_MODEL, "prompt": "x" * (MAX_BODY + 10)})
    r = http.post("/api/generate", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "max_body_bytes" in r.json()["error"] and str(MAX_BODY) in r.json()["error"]
    assert received(cluster, "/api/generate") == []
    assert_serving(http)


def test_oversized_chunked_body_is_413(stack):
    cluster, _, http = stack
    sent = []

    def chunks():  # no Content-Length: the limit must hold while the body streams in
        yield b'{"model": "llama3.2", "input": "'
        for _ in range(100):
            sent.append(1)
            yield b"y" * 4096
        yield b'"}'

    r = http.post("/api/embed", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]
    assert received(cluster, "/api/embed") == []
    assert_serving(http)


def test_body_just_under_the_limit_passes(stack):
    cluster, _, http = stack
    prompt = "z" * (MAX_BODY - 200)
    r = http.post("/api/generate", json={"model": CHAT_MODEL, "prompt": prompt, "stream": False})
    assert r.status_code == 200 and received(cluster, "/api/generate")[0]["prompt"] == prompt


def test_limit_changes_live_with_update_config(sim_cluster, gateway, client):
    cluster = sim_cluster(n=1)
    sollol = gateway(cluster.addresses)
    http = client(sollol)
    body = {"model": EMBED_MODEL, "input": "q" * 3000}
    assert http.post("/api/embed", json=body).status_code == 200
    assert sollol.update_config(max_body_bytes=2048) == {"applied": ["max_body_bytes"], "restart_required": []}
    r = http.post("/api/embed", json=body)
    assert r.status_code == 413 and "2048" in r.json()["error"]
    with pytest.raises(ValueError):
        sollol.update_config(max_body_bytes=10)  # below the minimum: nothing changes
    assert sollol.config.max_body_bytes == 2048


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/api/nothing-here", 404),
    ("POST", "/v2/chat", 404),
    ("GET", "/api/chat", 405),
    ("PUT", "/api/tags", 405),
    ("DELETE", "/api/pull", 405),
])
def test_unknown_endpoint_and_method(stack, method, path, status):
    _, _, http = stack
    r = http.request(method, path)
    assert r.status_code == status
    error = r.json()["error"]
    assert path in error and method in error
    assert_serving(http)


def test_client_that_goes_away_mid_stream_leaves_nothing_behind(sim_cluster, gateway):
    cluster = sim_cluster(SimNodeSpec(name="a", latency_ms=1, tokens=200, tokens_per_s=50))  # a 4 s stream
    node = cluster.nodes[0]
    sollol = gateway(cluster.addresses)
    with httpx.Client(base_url=sollol.gateway_url, timeout=10, trust_env=False) as http:
        with http.stream("POST", "/api/chat", json={"model": CHAT_MODEL, "messages": USER}) as r:
            lines = r.iter_lines()  # kept: a dropped iterator would close the connection right away
            assert json.loads(next(lines))["done"] is False
            assert sollol.proxy.active == 1 and node.in_flight == 1
    # the client closed its connection: the gateway stops relaying and the node stops generating
    wait_until(lambda: sollol.proxy.active == 0 and node.in_flight == 0, what="the abandoned stream to end")
    assert sollol.registry.get(node.address).in_flight == 0
    assert sollol.recent_requests()[-1].status == 499
    with httpx.Client(base_url=sollol.gateway_url, timeout=10, trust_env=False) as http:
        assert http.get("/api/version").status_code == 200


def test_concurrent_requests_are_served_at_once(sim_cluster, gateway):
    """Upstream calls never block the loop: 8 requests to a node with 8 slots overlap."""
    cluster = sim_cluster(SimNodeSpec(name="a", latency_ms=800, capacity=8, tokens=2, tokens_per_s=0))
    sollol = gateway(cluster.addresses)
    peak = []
    results = []

    def one():
        with httpx.Client(base_url=sollol.gateway_url, timeout=20, trust_env=False) as http:
            results.append(http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER,
                                                        "stream": False}).status_code)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 15
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        peak.append(cluster.nodes[0].in_flight)
        time.sleep(0.01)
    for t in threads:
        t.join(5)
    assert results == [200] * 8
    assert max(peak) >= 4  # several were in service on the node at the same time


# -- the programmatic API ------------------------------------------------------------------------------


def test_start_stop_and_status(sim_cluster):
    cluster = sim_cluster(n=1)
    config = SollolConfig(hosts=cluster.addresses, gateway_port=0, metrics_port=0, shutdown_grace=1)
    assert config.gateway_host == "127.0.0.1"  # loopback unless told otherwise
    sollol = SOLLOL(config)
    assert sollol.get_status()["running"] is False
    try:
        assert sollol.start(blocking=False) is sollol
        status = sollol.get_status()
        assert status["running"] is True and status["gateway_url"].startswith("http://127.0.0.1:")
        assert status["metrics_url"].startswith("http://127.0.0.1:")
        assert status["components"]["gateway"]["state"] == "ready"
        url = sollol.gateway_url
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as http:
            assert http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False}).json()[
                "done"] is True
        with pytest.raises(RuntimeError):
            sollol.start()  # already running
    finally:
        sollol.stop()
    assert sollol.get_status()["running"] is False
    assert sollol.get_status()["components"]["gateway"]["state"] == "off"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/version", timeout=2, trust_env=False)


def test_start_blocking_returns_when_stopped(sim_cluster):
    cluster = sim_cluster(n=1)
    sollol = SOLLOL(SollolConfig(hosts=cluster.addresses, gateway_port=0, metrics_enabled=False))
    stopper = threading.Thread(target=lambda: (wait_until(lambda: sollol.running, what="start"), sollol.stop()))
    stopper.start()
    try:
        sollol.start(blocking=True)  # returns only once stop() was called from the other thread
        assert not sollol.running
    finally:
        sollol.stop()
        stopper.join(10)


def test_update_config_says_what_applies_now(sim_cluster, gateway):
    cluster = sim_cluster(n=1)
    sollol = gateway(cluster.addresses)
    result = sollol.update_config(max_retries=1, routing_strategy="p2c", gateway_port=8123)
    assert result == {"applied": ["max_retries", "routing_strategy"], "restart_required": ["gateway_port"]}
    assert sollol.router.strategy_name == "p2c" and sollol.config.max_retries == 1
    with pytest.raises(ValueError):
        sollol.update_config(routing_strategy="fastest")
    with pytest.raises(ValueError):
        sollol.update_config(no_such_key=1)
    assert sollol.router.strategy_name == "p2c"


def test_stop_lets_an_open_stream_finish(sim_cluster, gateway):
    cluster = sim_cluster(SimNodeSpec(name="a", latency_ms=1, tokens=10, tokens_per_s=10))  # ~1 s
    sollol = gateway(cluster.addresses, shutdown_grace=10)
    lines: list[dict] = []
    with httpx.Client(base_url=sollol.gateway_url, timeout=20, trust_env=False) as http:
        with http.stream("POST", "/api/chat", json={"model": CHAT_MODEL, "messages": USER}) as r:
            it = r.iter_lines()
            lines.append(json.loads(next(it)))
            stopper = threading.Thread(target=sollol.stop)
            stopper.start()
            lines.extend(json.loads(x) for x in it if x.strip())
    stopper.join(20)
    assert not stopper.is_alive() and not sollol.running
    assert len(lines) == 11 and lines[-1]["done"] is True  # the held stream ended normally


def test_stop_is_bounded_by_shutdown_grace(sim_cluster, gateway):
    cluster = sim_cluster(SimNodeSpec(name="a", latency_ms=1, tokens=600, tokens_per_s=20))  # a 30 s stream
    sollol = gateway(cluster.addresses, shutdown_grace=0.5)
    with httpx.Client(base_url=sollol.gateway_url, timeout=20, trust_env=False) as http:
        with http.stream("POST", "/api/chat", json={"model": CHAT_MODEL, "messages": USER}) as r:
            it = r.iter_lines()
            next(it)
            t0 = time.monotonic()
            sollol.stop()
            elapsed = time.monotonic() - t0
            with pytest.raises(httpx.HTTPError):
                for _ in it:
                    pass
    assert not sollol.running and elapsed < 15  # not the stream's 30 s
