"""The 2026 endpoints of a simulated node, through the official SDKs talking straight to it: Anthropic's
/v1/messages, OpenAI's /v1/responses and /v1/audio/transcriptions, blobs and /api/create with files."""

from __future__ import annotations

import hashlib
import json

import anthropic
import httpx
import ollama
import openai
import pytest

from sollol_core.sim import SimNodeSpec

pytestmark = pytest.mark.timeout(60)

MODEL = "llama3.2"
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"},
                                                              "unit": {"type": "string", "enum": ["C", "F"]}},
                            "required": ["city", "unit"]}}
ANSWER = "[n] tok0 tok1 tok2 tok3"


@pytest.fixture
def node(sim_cluster):
    cluster = sim_cluster(SimNodeSpec(name="n", latency_ms=1, tokens=4, tokens_per_s=0, models=[MODEL, "whisper"]))
    return cluster.nodes[0]


@pytest.fixture
def http():
    with httpx.Client(trust_env=False, timeout=20) as client:
        yield client


@pytest.fixture
def claude(node):
    # this SDK brings its own HTTP stack (httpx2): its default client, without proxies from the environment
    http = anthropic.DefaultHttpxClient(trust_env=False, timeout=20)
    yield anthropic.Anthropic(base_url=f"http://{node.address}", api_key="not-needed", http_client=http,
                              max_retries=0)
    http.close()


@pytest.fixture
def oai(node, http):
    return openai.OpenAI(base_url=f"http://{node.address}/v1", api_key="not-needed", http_client=http,
                         max_retries=0)


def sse_events(text: str) -> list[tuple[str, dict]]:
    out = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        out.append((lines.get("event", ""), json.loads(lines["data"])))
    return out


# -- Anthropic /v1/messages --------------------------------------------------------------------------------------


def test_messages_create(claude, node):
    msg = claude.messages.create(model=MODEL, max_tokens=100, system="be brief",
                                 messages=[{"role": "user", "content": "why is the sky blue"}])
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    assert msg.id.startswith("msg_")
    assert [(b.type, b.text) for b in msg.content] == [("text", ANSWER)]
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    # tokens ~ characters / 4 of the texts: "be brief" 2 + "why is the sky blue" 5
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (7, 4)
    assert node.received[-1][0] == "/v1/messages"


def test_messages_max_tokens_caps_the_answer(claude):
    msg = claude.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "[n] tok0 tok1" and msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens == 2


def test_messages_stream(claude, http, node):
    with claude.messages.stream(model=MODEL, max_tokens=100,
                                messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == ["[n] tok0", " tok1", " tok2", " tok3"]
    assert final.content[0].text == ANSWER and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4 and final.usage.input_tokens == 1

    r = http.post(f"http://{node.address}/v1/messages",
                  json={"model": MODEL, "max_tokens": 10, "stream": True,
                        "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert [e for e, _ in events] == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 4 \
        + ["content_block_stop", "message_delta", "message_stop"]
    assert all(e == data["type"] for e, data in events)
    assert events[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[-2][1]["usage"] == {"input_tokens": 1, "cache_read_input_tokens": 0, "output_tokens": 4}


def test_messages_tool_use_round_trip(claude):
    ask = [{"role": "user", "content": "weather in Paris"}]
    msg = claude.messages.create(model=MODEL, max_tokens=100, messages=ask, tools=[WEATHER])
    assert msg.stop_reason == "tool_use"
    (call,) = msg.content
    assert call.type == "tool_use" and call.id.startswith("toolu_") and call.name == "get_weather"
    assert call.input == {"city": "weather in Paris", "unit": "C"}  # filled from the schema: every required field

    follow = ask + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                  "content": "18 C and sunny"}]}]
    done = claude.messages.create(model=MODEL, max_tokens=100, messages=follow, tools=[WEATHER])
    assert done.stop_reason == "end_turn" and done.content[0].type == "text" and done.content[0].text == ANSWER

    none = claude.messages.create(model=MODEL, max_tokens=100, messages=ask, tools=[WEATHER],
                                  tool_choice={"type": "none"})
    assert none.stop_reason == "end_turn"


def test_messages_tool_use_streamed(claude):
    with claude.messages.stream(model=MODEL, max_tokens=100, tools=[WEATHER],
                                messages=[{"role": "user", "content": "weather in Oslo"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "weather in Oslo", "unit": "C"}
    assert kinds.count("input_json") >= 2  # the arguments arrive in pieces


def test_messages_errors_in_anthropic_shape(claude, http, node):
    with pytest.raises(anthropic.NotFoundError) as exc:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 404
    assert exc.value.body == {"type": "error", "error": {"type": "not_found_error",
                                                         "message": "model 'no-such-model' not found"}}
    url = f"http://{node.address}/v1/messages"
    r = http.post(url, json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                   "message": "max_tokens: Field required"}}
    r = http.post(url, json={"model": MODEL, "max_tokens": 5})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "messages" in r.json()["error"]["message"]
    node.failure_rate = 1.0
    with pytest.raises(anthropic.InternalServerError) as exc:
        claude.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert exc.value.body == {"type": "error", "error": {"type": "api_error", "message": "simulated failure"}}


# -- OpenAI /v1/responses ------------------------------------------------------------------------------------------


def test_responses_create(oai):
    resp = oai.responses.create(model=MODEL, input="why is the sky blue", instructions="be brief")
    assert resp.output_text == ANSWER
    assert resp.object == "response" and resp.status == "completed" and resp.id.startswith("resp_")
    assert resp.instructions == "be brief" and resp.model == MODEL
    (item,) = resp.output
    assert item.type == "message" and item.role == "assistant" and item.status == "completed"
    assert item.content[0].type == "output_text" and item.content[0].annotations == []
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (7, 4, 11)

    items = [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
             {"role": "assistant", "content": "hello"},
             {"type": "message", "role": "user", "content": "more"}]
    assert oai.responses.create(model=MODEL, input=items).output_text == ANSWER

    short = oai.responses.create(model=MODEL, input="hi", max_output_tokens=2)
    assert short.output_text == "[n] tok0 tok1" and short.status == "incomplete"
    assert short.incomplete_details.reason == "max_output_tokens"


def test_responses_stream_events(oai):
    events = list(oai.responses.create(model=MODEL, input="hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added"] + ["response.output_text.delta"] * 4 + [
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == ANSWER
    assert events[-1].response.output_text == ANSWER and events[-1].response.usage.output_tokens == 4

    with oai.responses.stream(model=MODEL, input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["[n] tok0", " tok1", " tok2", " tok3"] and final.output_text == ANSWER


def test_responses_function_call_round_trip(oai):
    tools = [{"type": "function", "name": "lookup", "description": "find a word",
              "parameters": {"type": "object", "properties": {"word": {"type": "string"}, "limit": {"type": "integer"}},
                             "required": ["word", "limit"]}}]
    resp = oai.responses.create(model=MODEL, input="define sky", tools=tools)
    (call,) = resp.output
    assert call.type == "function_call" and call.name == "lookup" and call.call_id.startswith("call_")
    assert json.loads(call.arguments) == {"word": "define sky", "limit": 1}
    follow = [{"role": "user", "content": "define sky"},
              {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
              {"type": "function_call_output", "call_id": call.call_id, "output": "the air above"}]
    assert oai.responses.create(model=MODEL, input=follow, tools=tools).output_text == ANSWER

    events = list(oai.responses.create(model=MODEL, input="define sky", tools=tools, stream=True))
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == {"word": "define sky", "limit": 1}
    assert events[-1].type == "response.completed" and events[-1].response.output[0].type == "function_call"


def test_responses_errors_in_openai_shape(oai, http, node):
    with pytest.raises(openai.NotFoundError) as exc:
        oai.responses.create(model="no-such-model", input="x")
    assert exc.value.body["message"] == "model 'no-such-model' not found"
    assert exc.value.body["type"] == "not_found_error"
    r = http.post(f"http://{node.address}/v1/responses", json={"model": MODEL})
    assert r.status_code == 400 and r.json()["error"]["message"] == "input is required"
    r = http.post(f"http://{node.address}/v1/responses", json={"model": MODEL, "input": 5})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


# -- transcriptions, HEAD /api/tags, /v1/models/{model} ----------------------------------------------------------


def test_transcriptions(oai, http, node):
    audio = bytes(range(256)) * 40
    expected = f"[n] {len(audio)} bytes of audio, sha256 {hashlib.sha256(audio).hexdigest()[:16]}"
    result = oai.audio.transcriptions.create(model="whisper", file=("clip.wav", audio, "audio/wav"))
    assert result.text == expected
    assert node.received[-1] == ("/v1/audio/transcriptions", {"model": "whisper",
                                                              "file": {"filename": "clip.wav", "size": len(audio)}})
    text = oai.audio.transcriptions.create(model="whisper", file=("clip.wav", audio), response_format="text")
    assert text.strip() == expected
    with pytest.raises(openai.NotFoundError):
        oai.audio.transcriptions.create(model="no-such-model", file=("clip.wav", audio))
    r = http.post(f"http://{node.address}/v1/audio/transcriptions", files={"model": (None, "whisper")})
    assert r.status_code == 400 and r.json()["error"]["message"] == "file is required"


def test_head_tags_and_model_lookup(http, node):
    r = http.head(f"http://{node.address}/api/tags")
    assert r.status_code == 200 and r.content == b""
    assert http.get(f"http://{node.address}/v1/models/{MODEL}").json()["id"] == MODEL
    r = http.get(f"http://{node.address}/v1/models/nope")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


# -- blobs and /api/create with files ----------------------------------------------------------------------------


def test_blobs_and_create_from_files(http, node):
    base = f"http://{node.address}"
    data = b"GGUF" + bytes(200_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.head(f"{base}/api/blobs/{digest}").status_code == 404

    r = http.post(f"{base}/api/create", json={"model": "mine", "files": {"model.gguf": digest}, "stream": False})
    assert r.status_code == 400 and digest.replace(":", "-") in r.json()["error"]
    assert "mine:latest" not in node.models

    wrong = "sha256:" + "0" * 64
    r = http.post(f"{base}/api/blobs/{wrong}", content=data)
    assert r.status_code == 400 and r.json()["error"].startswith("digest mismatch")
    assert wrong not in node.blobs
    r = http.post(f"{base}/api/blobs/sha256:xyz", content=data)
    assert r.status_code == 400 and r.json() == {"error": "invalid digest format"}

    chunks = (data[i:i + 4096] for i in range(0, len(data), 4096))  # a streamed (chunked) upload
    assert http.post(f"{base}/api/blobs/{digest}", content=chunks).status_code == 201
    assert node.blobs == {digest: len(data)}
    assert http.head(f"{base}/api/blobs/{digest}").status_code == 200
    assert http.post(f"{base}/api/blobs/{digest}", content=data).status_code == 200  # already there

    r = http.post(f"{base}/api/create", json={"model": "mine", "files": {"model.gguf": digest}})
    statuses = [json.loads(line)["status"] for line in r.text.splitlines()]
    assert statuses == ["parsing GGUF", f"using existing layer {digest}", "writing manifest", "success"]
    assert "mine:latest" in [m["name"] for m in http.get(f"{base}/api/tags").json()["models"]]

    r = http.post(f"{base}/api/create", json={"model": "x", "files": {"../escape.gguf": digest}})
    assert r.status_code == 400 and r.json() == {"error": "file path must be relative"}
    r = http.post(f"{base}/api/create", json={"model": "x"})
    assert r.status_code == 400 and r.json() == {"error": "neither 'from' or 'files' was specified"}


def test_ollama_client_uploads_blob_and_creates(node, tmp_path):
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 100)
    client = ollama.Client(host=f"http://{node.address}", timeout=20, trust_env=False)
    try:
        digest = client.create_blob(path)
        assert node.blobs[digest] == path.stat().st_size
        statuses = [p.status for p in client.create(model="tiny", files={"tiny.gguf": digest}, stream=True)]
        assert statuses[0] == "parsing GGUF" and statuses[-1] == "success"
        assert "tiny:latest" in [m.model for m in client.list().models]
        with pytest.raises(ollama.ResponseError) as exc:
            client.create(model="other", files={"other.gguf": "sha256:" + "1" * 64})
        assert exc.value.status_code == 400
    finally:
        client._client.close()
