"""The 2026 endpoints through the gateway, with the official SDKs, over simulated nodes: Anthropic's
/v1/messages, OpenAI's /v1/responses, /v1/models/{model} and /v1/audio/transcriptions, HEAD /api/tags; and
the gateway's own answers in each API family's error shape (405 with Allow)."""

from __future__ import annotations

import hashlib
import json

import anthropic
import httpx
import openai
import pytest

from sollol_core.sim import SimNodeSpec

from helpers import make_client, settled

pytestmark = pytest.mark.timeout(90)

MODEL = "llama3.2"
ONLY_B = "qwen3"  # a model only node b has: what asks for it must go there
MAX_BODY = 65536
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
HI = [{"role": "user", "content": "why is the sky blue"}]


def text_of(name: str) -> str:
    return f"[{name}] tok0 tok1 tok2 tok3"


@pytest.fixture(scope="module")
def stack(module_sim_cluster, module_gateway):
    cluster = module_sim_cluster(
        SimNodeSpec(name="a", seed=0, latency_ms=1, tokens=4, tokens_per_s=0, models=[MODEL, "whisper"]),
        SimNodeSpec(name="b", seed=1, latency_ms=1, tokens=4, tokens_per_s=0, models=[MODEL, ONLY_B, "whisper"]))
    sollol = module_gateway(cluster.addresses, max_body_bytes=MAX_BODY)
    http = make_client(sollol)
    yield cluster, sollol, http
    http.close()


@pytest.fixture(autouse=True)
def fresh(stack):
    for node in stack[0].nodes:
        node.received.clear()
        node.failure_rate = 0.0
        node.fail_mid_stream = False
    yield


@pytest.fixture(scope="module")
def claude(stack):
    http = anthropic.DefaultHttpxClient(trust_env=False, timeout=20)
    yield anthropic.Anthropic(base_url=stack[1].gateway_url, api_key="not-needed", http_client=http, max_retries=0)
    http.close()


@pytest.fixture(scope="module")
def oai(stack):
    http = httpx.Client(trust_env=False, timeout=20)
    yield openai.OpenAI(base_url=stack[1].gateway_url + "/v1", api_key="not-needed", http_client=http,
                        max_retries=0)
    http.close()


def received(cluster, path):
    return [(node.spec.name, body) for node in cluster.nodes for p, body in node.received if p == path]


# -- Anthropic /v1/messages -------------------------------------------------------------------------------------


def test_messages_create_body_intact_and_routed_by_model(stack, claude):
    cluster, sollol, _ = stack
    msg = claude.messages.create(model=ONLY_B, max_tokens=100, system="be brief", messages=HI,
                                 stop_sequences=["END"], metadata={"user_id": "u1"})
    assert msg.type == "message" and msg.model == ONLY_B and msg.stop_reason == "end_turn"
    assert [(b.type, b.text) for b in msg.content] == [("text", text_of("b"))]
    assert received(cluster, "/v1/messages") == [("b", {"model": ONLY_B, "max_tokens": 100, "system": "be brief",
                                                        "messages": HI, "stop_sequences": ["END"],
                                                        "metadata": {"user_id": "u1"}})]
    record = settled(sollol)[-1]
    assert (record.endpoint, record.host, record.status) == ("/v1/messages", cluster.addresses[1], 200)


def test_messages_stream(stack, claude):
    cluster, _, http = stack
    with claude.messages.stream(model=ONLY_B, max_tokens=100, messages=HI) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == ["[b] tok0", " tok1", " tok2", " tok3"]
    assert final.content[0].text == text_of("b") and final.usage.output_tokens == 4
    # the frames arrive as the node sends them: event and data lines, one event per token
    with http.stream("POST", "/v1/messages", json={"model": ONLY_B, "max_tokens": 10, "stream": True,
                                                   "messages": HI}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        frames = [f for f in r.read().decode().split("\n\n") if f.strip()]
    events = [f.split("\n")[0] for f in frames]
    assert events == ["event: message_start", "event: content_block_start", "event: ping"] + \
        ["event: content_block_delta"] * 4 + ["event: content_block_stop", "event: message_delta",
                                              "event: message_stop"]


def test_messages_tool_use_round_trip(stack, claude):
    ask = [{"role": "user", "content": "weather in Paris"}]
    msg = claude.messages.create(model=MODEL, max_tokens=100, messages=ask, tools=[WEATHER])
    assert msg.stop_reason == "tool_use"
    (call,) = msg.content
    assert call.type == "tool_use" and call.name == "get_weather" and call.input == {"city": "weather in Paris"}
    follow = ask + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                  "content": "18 C and sunny"}]}]
    done = claude.messages.create(model=MODEL, max_tokens=100, messages=follow, tools=[WEATHER])
    assert done.stop_reason == "end_turn" and done.content[0].type == "text"
    assert done.content[0].text in (text_of("a"), text_of("b"))
    sent = [body for _, body in received(stack[0], "/v1/messages")]
    assert sent[1]["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": call.id,
                                                    "content": "18 C and sunny"}  # passed through intact


def test_messages_unknown_model_is_anthropic_not_found(stack, claude):
    with pytest.raises(anthropic.NotFoundError) as exc:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=HI)
    assert exc.value.status_code == 404
    assert exc.value.body == {"type": "error", "error": {"type": "not_found_error",
                                                         "message": "model 'no-such-model' not found on any host"}}
    assert received(stack[0], "/v1/messages") == []  # the gateway knew no host has it


def test_messages_gateway_400_and_413_are_typed(stack, claude):
    cluster, _, http = stack
    with pytest.raises(anthropic.BadRequestError) as exc:
        claude.messages.create(model=" ", max_tokens=10, messages=HI)
    assert exc.value.body == {"type": "error", "error": {"type": "invalid_request_error",
                                                         "message": "model must be a non-empty string"}}
    with pytest.raises(anthropic.ContentTooLargeError) as exc:
        claude.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x" * MAX_BODY}])
    assert exc.value.status_code == 413 and exc.value.body["error"]["type"] == "request_too_large"
    assert "max_body_bytes" in exc.value.body["error"]["message"]
    r = http.post("/v1/messages", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error" and "invalid JSON" in r.json()["error"]["message"]
    r = http.post("/v1/messages", json={"model": MODEL, "max_tokens": 5, "messages": "hi"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "messages must be a list"
    assert received(cluster, "/v1/messages") == []


def test_messages_retried_on_another_host_before_the_first_byte(stack, claude):
    cluster, _, _ = stack
    cluster.nodes[0].failure_rate = 1.0
    for _ in range(3):  # whichever host goes first, the answer comes from b
        msg = claude.messages.create(model=MODEL, max_tokens=100, messages=HI)
        assert msg.content[0].text == text_of("b")


def test_messages_stream_broken_after_first_byte_ends_with_an_error_event(sim_cluster, gateway):
    cluster = sim_cluster(SimNodeSpec(name="a", latency_ms=1, tokens=4, tokens_per_s=0, models=[MODEL]))
    cluster.nodes[0].fail_mid_stream = True
    sollol = gateway(cluster.addresses)
    with make_client(sollol) as http:
        r = http.post("/v1/messages", json={"model": MODEL, "max_tokens": 10, "stream": True, "messages": HI})
    frames = [f for f in r.text.split("\n\n") if f.strip()]
    assert r.status_code == 200 and frames[0].startswith("event: message_start")
    event, data = frames[-1].split("\n")
    assert event == "event: error"
    error = json.loads(data[len("data: "):])
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert "failed mid-stream" in error["error"]["message"]
    http_client = anthropic.DefaultHttpxClient(trust_env=False, timeout=20)
    claude = anthropic.Anthropic(base_url=sollol.gateway_url, api_key="x", http_client=http_client, max_retries=0)
    with pytest.raises(anthropic.APIStatusError, match="failed mid-stream"):
        with claude.messages.stream(model=MODEL, max_tokens=10, messages=HI) as stream:
            list(stream.text_stream)
    http_client.close()


# -- OpenAI /v1/responses, /v1/models/{model}, /v1/audio/transcriptions ---------------------------------------------


def test_responses_create_and_stream(stack, oai):
    cluster, _, _ = stack
    resp = oai.responses.create(model=ONLY_B, input="why is the sky blue", instructions="be brief")
    assert resp.object == "response" and resp.status == "completed" and resp.output_text == text_of("b")
    assert received(cluster, "/v1/responses") == [("b", {"model": ONLY_B, "input": "why is the sky blue",
                                                         "instructions": "be brief"})]
    events = list(oai.responses.create(model=ONLY_B, input="hi", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == text_of("b")
    with oai.responses.stream(model=MODEL, input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text and final.output_text in (text_of("a"), text_of("b"))


def test_responses_errors_in_openai_shape(stack, oai):
    with pytest.raises(openai.NotFoundError) as exc:
        oai.responses.create(model="no-such-model", input="x")
    assert exc.value.body == {"message": "model 'no-such-model' not found on any host", "type": "not_found_error",
                              "param": None, "code": None}
    with pytest.raises(openai.BadRequestError) as exc:
        oai.responses.create(model=" ", input="x")
    assert exc.value.body["message"] == "model must be a non-empty string"
    assert received(stack[0], "/v1/responses") == []
    with pytest.raises(openai.BadRequestError) as exc:  # the node's own 400, passed on as it is
        oai.responses.create(model=MODEL, input=5)  # type: ignore[arg-type]
    assert exc.value.body["type"] == "invalid_request_error"


def test_responses_stream_broken_after_first_byte_raises(sim_cluster, gateway):
    cluster = sim_cluster(SimNodeSpec(name="a", latency_ms=1, tokens=4, tokens_per_s=0, models=[MODEL]))
    cluster.nodes[0].fail_mid_stream = True
    sollol = gateway(cluster.addresses)
    with httpx.Client(trust_env=False, timeout=20) as http:
        client = openai.OpenAI(base_url=sollol.gateway_url + "/v1", api_key="x", http_client=http, max_retries=0)
        with pytest.raises(openai.APIError, match="failed mid-stream"):
            list(client.responses.create(model=MODEL, input="hi", stream=True))


def test_models_retrieve(stack, oai):
    cluster, sollol, http = stack
    model = oai.models.retrieve(ONLY_B)
    assert model.id == ONLY_B and model.object == "model"
    assert settled(sollol)[-1].host == cluster.addresses[1]  # answered by the host that has it
    with pytest.raises(openai.NotFoundError) as exc:
        oai.models.retrieve("no-such-model")
    assert exc.value.body["type"] == "not_found_error"
    r = http.get("/v1/models/hf.co/org/model:Q4")  # a name with slashes is one parameter
    assert r.status_code == 404 and "hf.co/org/model:Q4" in r.json()["error"]["message"]


def test_transcriptions_multipart_passed_through(stack, oai):
    cluster, sollol, http = stack
    audio = bytes(range(256)) * 40
    result = oai.audio.transcriptions.create(model="whisper", file=("clip.wav", audio, "audio/wav"))
    assert result.text.endswith(f"{len(audio)} bytes of audio, sha256 {hashlib.sha256(audio).hexdigest()[:16]}")
    assert [body for _, body in received(cluster, "/v1/audio/transcriptions")] == [
        {"model": "whisper", "file": {"filename": "clip.wav", "size": len(audio)}}]
    r = http.post("/v1/audio/transcriptions", files={"file": ("clip.wav", audio)})
    assert r.status_code == 400 and r.json()["error"] == {"message": "model is required (a form field)",
                                                          "type": "invalid_request_error", "param": None,
                                                          "code": None}
    r = http.post("/v1/audio/transcriptions", json={"model": "whisper"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        oai.audio.transcriptions.create(model="no-such-model", file=("clip.wav", audio))
    r = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"x" * (MAX_BODY + 1))},
                  data={"model": "whisper"})
    assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
    assert len(received(cluster, "/v1/audio/transcriptions")) == 1


# -- HEAD /api/tags, 404 and 405 -----------------------------------------------------------------------------------


def test_head_tags(stack):
    r = stack[2].head("/api/tags")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-type"] == "application/json"


@pytest.mark.parametrize("method,path,allow,shape", [
    ("GET", "/api/chat", "POST", "ollama"),
    ("POST", "/", "GET, HEAD", "ollama"),
    ("PUT", "/api/tags", "GET, HEAD", "ollama"),
    ("GET", "/v1/messages", "POST", "anthropic"),
    ("DELETE", "/v1/responses", "POST", "openai"),
    ("PUT", "/api/blobs/sha256:" + "0" * 64, "HEAD, POST", "ollama"),
    ("GET", "/api/delete", "DELETE", "ollama"),
])
def test_405_carries_allow_and_the_api_shape(stack, method, path, allow, shape):
    r = stack[2].request(method, path)
    assert r.status_code == 405 and r.headers["allow"] == allow
    body = r.json()
    if shape == "ollama":
        assert "not allowed" in body["error"]
    elif shape == "openai":
        assert body["error"]["type"] == "invalid_request_error" and "not allowed" in body["error"]["message"]
    else:
        assert body["type"] == "error" and "not allowed" in body["error"]["message"]


def test_unknown_paths_answer_in_their_family_shape(stack):
    http = stack[2]
    assert http.get("/api/nope").json() == {"error": "no such endpoint: GET /api/nope"}
    assert http.get("/v1/nope").json()["error"]["type"] == "not_found_error"
    assert http.post("/v1/messages/count_tokens", json={}).json()["error"]["type"] == "not_found_error"
