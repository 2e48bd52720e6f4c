"""The official `ollama` and `openai` Python clients, pointed at the gateway on simulated nodes; and the
`ollama`, `openai` and `anthropic` clients with an API key, on a gateway that requires one."""

from __future__ import annotations

import anthropic
import httpx
import ollama
import openai
import pytest

from sollol_core.sim import sim_embedding

from helpers import CHAT_MODEL, EMBED_MODEL, USER

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def stack(module_sim_cluster, module_gateway):
    cluster = module_sim_cluster(n=2, latency_ms=2, tokens=4, tokens_per_s=0)
    sollol = module_gateway(cluster.addresses)
    return cluster, sollol


@pytest.fixture(autouse=True)
def fresh_received(stack):
    for node in stack[0].nodes:
        node.received.clear()


@pytest.fixture
def ollama_client(stack):
    _, sollol = stack
    client = ollama.Client(host=sollol.gateway_url, timeout=20, trust_env=False)
    yield client
    client._client.close()


@pytest.fixture
def openai_client(stack):
    _, sollol = stack
    http = httpx.Client(trust_env=False, timeout=20)
    yield openai.OpenAI(base_url=f"{sollol.gateway_url}/v1", api_key="not-needed", http_client=http,
                        max_retries=0)
    http.close()


def only_body(cluster, path: str) -> dict:
    bodies = [body for node in cluster.nodes for p, body in node.received if p == path]
    assert len(bodies) == 1
    return bodies[0]


# -- ollama -----------------------------------------------------------------------------------------


def test_ollama_chat(stack, ollama_client):
    cluster, _ = stack
    resp = ollama_client.chat(model=CHAT_MODEL, messages=USER, options={"temperature": 0, "num_ctx": 1024},
                              keep_alive="2m")
    assert resp.done is True and resp.eval_count == 4
    assert resp.message.role == "assistant" and resp.message.content.endswith(" tok1 tok2 tok3")
    body = only_body(cluster, "/api/chat")
    assert body["stream"] is False and body["options"] == {"temperature": 0, "num_ctx": 1024}
    assert body["keep_alive"] == "2m" and body["messages"] == USER


def test_ollama_chat_stream(ollama_client):
    parts = list(ollama_client.chat(model=CHAT_MODEL, messages=USER, stream=True))
    assert len(parts) == 5 and [p.done for p in parts] == [False] * 4 + [True]
    text = "".join(p.message.content for p in parts)
    assert text in ("[a] tok0 tok1 tok2 tok3", "[b] tok0 tok1 tok2 tok3")


def test_ollama_chat_with_tools_and_format(stack, ollama_client):
    cluster, _ = stack

    def get_weather(city: str) -> str:
        """Weather in a city.

        Args:
          city: the city
        """
        return "sunny"

    resp = ollama_client.chat(model=CHAT_MODEL, messages=USER, tools=[get_weather], format="json")
    assert resp.message.content in ('{"node": "a"}', '{"node": "b"}')
    body = only_body(cluster, "/api/chat")
    assert body["format"] == "json"
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tools"][0]["function"]["parameters"]["properties"]["city"]["type"] == "string"


def test_ollama_generate_stream_and_not(ollama_client):
    resp = ollama_client.generate(model=CHAT_MODEL, prompt="count", options={"num_predict": 2})
    assert resp.done is True and resp.response.endswith("tok0 tok1") and resp.done_reason == "length"
    parts = list(ollama_client.generate(model=CHAT_MODEL, prompt="count", stream=True))
    assert parts[-1].done is True and "".join(p.response for p in parts).endswith("tok0 tok1 tok2 tok3")


def test_ollama_embed_several_inputs(ollama_client):
    texts = ["alpha", "beta", "gamma"]
    resp = ollama_client.embed(model=EMBED_MODEL, input=texts)
    assert [list(v) for v in resp.embeddings] == [sim_embedding(t) for t in texts]
    legacy = ollama_client.embeddings(model=EMBED_MODEL, prompt="alpha")
    assert list(legacy.embedding) == sim_embedding("alpha")


def test_ollama_list_ps_show(stack, ollama_client):
    cluster, _ = stack
    names = sorted(m.model for m in ollama_client.list().models)
    assert names == ["llama3.2:latest", "nomic-embed-text:latest"]
    running = ollama_client.ps().models
    assert sorted({m.model for m in running}) == ["llama3.2:latest", "nomic-embed-text:latest"]
    assert len(running) == 4  # each model on each of the two hosts
    shown = ollama_client.show(CHAT_MODEL)
    assert shown.details.family == "llama" and shown.modelinfo["general.architecture"] == "llama"


def test_ollama_version_and_unknown_model(ollama_client):
    with pytest.raises(ollama.ResponseError) as err:
        ollama_client.chat(model="no-such-model", messages=USER)
    assert err.value.status_code == 404 and "no-such-model" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        ollama_client.embed(model="no-such-model", input="x")
    assert err.value.status_code == 404


def test_ollama_bad_input_is_a_response_error(stack, ollama_client):
    with pytest.raises(ollama.ResponseError) as err:
        ollama_client.generate(model="   ", prompt="x")
    assert err.value.status_code == 400 and "model must be a non-empty string" in err.value.error
    assert all(node.received == [] for node in stack[0].nodes)


def test_ollama_pull_and_delete_with_host_header(sim_cluster, gateway):
    cluster = sim_cluster(n=2)
    sollol = gateway(cluster.addresses)
    everywhere = ollama.Client(host=sollol.gateway_url, timeout=20, trust_env=False)
    assert everywhere.pull("phi3").status == "success"
    assert all("phi3:latest" in node.models for node in cluster.nodes)
    only_b = ollama.Client(host=sollol.gateway_url, timeout=20, trust_env=False,
                           headers={"X-SOLLOL-Host": cluster.addresses[1]})
    assert [p.status for p in only_b.pull("qwen2.5:0.5b", stream=True)][-1] == "success"
    assert "qwen2.5:0.5b" in cluster.nodes[1].models and "qwen2.5:0.5b" not in cluster.nodes[0].models
    assert only_b.delete("phi3").status == "success"
    assert "phi3:latest" in cluster.nodes[0].models and "phi3:latest" not in cluster.nodes[1].models
    for c in (everywhere, only_b):
        c._client.close()


def test_ollama_stream_broken_after_first_chunk_raises(sim_cluster, gateway):
    cluster = sim_cluster(n=1, tokens=4)
    cluster.nodes[0].fail_mid_stream = True
    sollol = gateway(cluster.addresses)
    client = ollama.Client(host=sollol.gateway_url, timeout=20, trust_env=False)
    parts = []
    with pytest.raises(ollama.ResponseError) as err:
        for part in client.chat(model=CHAT_MODEL, messages=USER, stream=True):
            parts.append(part)
    assert [p.message.content for p in parts] == ["[a] tok0"]
    assert "failed mid-stream" in err.value.error
    client._client.close()


# -- openai -----------------------------------------------------------------------------------------


def test_openai_chat(stack, openai_client):
    cluster, _ = stack
    resp = openai_client.chat.completions.create(model=CHAT_MODEL, messages=USER, max_tokens=3, temperature=0.5)
    assert resp.object == "chat.completion" and resp.choices[0].message.content.endswith("tok0 tok1 tok2")
    assert resp.usage.completion_tokens == 3
    body = only_body(cluster, "/v1/chat/completions")
    assert body["max_tokens"] == 3 and body["temperature"] == 0.5 and body["messages"] == USER


def test_openai_chat_stream(openai_client):
    chunks = list(openai_client.chat.completions.create(model=CHAT_MODEL, messages=USER, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text in ("[a] tok0 tok1 tok2 tok3", "[b] tok0 tok1 tok2 tok3")
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openai_completions(openai_client):
    resp = openai_client.completions.create(model=CHAT_MODEL, prompt="say", max_tokens=2)
    assert resp.choices[0].text.endswith("tok0 tok1")


def test_openai_embeddings(openai_client):
    resp = openai_client.embeddings.create(model=EMBED_MODEL, input=["one", "two"])
    assert [d.embedding for d in resp.data] == [sim_embedding("one"), sim_embedding("two")]
    assert [d.index for d in resp.data] == [0, 1]


def test_openai_models_list(openai_client):
    ids = sorted(m.id for m in openai_client.models.list())
    assert ids == ["llama3.2:latest", "nomic-embed-text:latest"]


def test_openai_unknown_model_is_not_found(openai_client):
    with pytest.raises(openai.NotFoundError) as err:
        openai_client.chat.completions.create(model="no-such-model", messages=USER)
    assert err.value.status_code == 404


# -- with an API key ---------------------------------------------------------------------------------

KEY = "sk-official-clients-1d4e"


@pytest.fixture
def keyed(sim_cluster, gateway):
    cluster = sim_cluster(n=2, latency_ms=2, tokens=4, tokens_per_s=0)
    sollol = gateway(cluster.addresses, api_keys={KEY: {"name": "sdk"}})
    http = httpx.Client(trust_env=False, timeout=20)
    yield cluster, sollol, http
    http.close()


def test_the_ollama_client_with_a_key(keyed):
    _, sollol, _ = keyed
    client = ollama.Client(host=sollol.gateway_url, timeout=20, trust_env=False,
                           headers={"Authorization": f"Bearer {KEY}"})
    try:
        assert client.chat(model=CHAT_MODEL, messages=USER).done is True
        assert len(list(client.generate(model=CHAT_MODEL, prompt="x", stream=True))) > 1
        assert sorted(m.model for m in client.list().models) == ["llama3.2:latest", "nomic-embed-text:latest"]
        assert client.show(CHAT_MODEL).details.family == "llama"
        assert list(client.embed(model=EMBED_MODEL, input=["a"]).embeddings[0]) == sim_embedding("a")
    finally:
        client._client.close()
    keyless = ollama.Client(host=sollol.gateway_url, timeout=20, trust_env=False)
    try:
        with pytest.raises(ollama.ResponseError) as err:
            keyless.chat(model=CHAT_MODEL, messages=USER)
        assert err.value.status_code == 401 and "API key" in err.value.error
    finally:
        keyless._client.close()


def test_the_openai_client_with_a_key(keyed):
    _, sollol, http = keyed
    client = openai.OpenAI(base_url=f"{sollol.gateway_url}/v1", api_key=KEY, http_client=http, max_retries=0)
    assert client.chat.completions.create(model=CHAT_MODEL, messages=USER).choices[0].message.content
    chunks = list(client.chat.completions.create(model=CHAT_MODEL, messages=USER, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert [d.embedding for d in client.embeddings.create(model=EMBED_MODEL, input=["a"]).data] == \
        [sim_embedding("a")]
    assert sorted(m.id for m in client.models.list()) == ["llama3.2:latest", "nomic-embed-text:latest"]
    wrong = openai.OpenAI(base_url=f"{sollol.gateway_url}/v1", api_key="sk-wrong", http_client=http, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        wrong.chat.completions.create(model=CHAT_MODEL, messages=USER)
    assert err.value.status_code == 401


def test_the_anthropic_client_with_a_key(keyed):
    _, sollol, _ = keyed
    http = anthropic.DefaultHttpxClient(trust_env=False, timeout=20)
    claude = anthropic.Anthropic(base_url=sollol.gateway_url, api_key=KEY, http_client=http, max_retries=0)
    message = claude.messages.create(model=CHAT_MODEL, max_tokens=16, messages=USER)
    assert message.type == "message" and message.content[0].text
    with claude.messages.stream(model=CHAT_MODEL, max_tokens=16, messages=USER) as stream:
        assert "".join(stream.text_stream)
    wrong = anthropic.Anthropic(base_url=sollol.gateway_url, api_key="sk-wrong", http_client=http, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        wrong.messages.create(model=CHAT_MODEL, max_tokens=16, messages=USER)
    assert err.value.status_code == 401
    http.close()
