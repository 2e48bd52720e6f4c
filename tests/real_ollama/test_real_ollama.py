"""Integration on two real Ollama servers (`real-ollama`), with the official `ollama` client through SOLLOL.

The servers come from ../shared/real-ollama/real-ollama (or $REAL_OLLAMA), installed in $REAL_OLLAMA_DIR
(default /tmp/ro). Without the tool or the install these tests skip, unless SOLLOL_REQUIRE_REAL_OLLAMA=1.
"""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import httpx
import ollama
import pytest

from helpers import wait_until
from helpers.real_ollama import _free_port, _tool, _unavailable

pytestmark = [pytest.mark.real_ollama, pytest.mark.timeout(120)]

CHAT_MODEL = "gemma3-270m"
EMBED_MODEL = "all-minilm"
SHORT = {"num_predict": 8, "temperature": 0, "seed": 1}
USER = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="session")
def real_ollama_hosts():
    tool = _tool()
    folder = Path(os.environ.get("REAL_OLLAMA_DIR", "/tmp/ro"))
    if not (tool.is_file() and os.access(tool, os.X_OK)):
        _unavailable(f"the real-ollama tool is not at {tool}")
    if not (folder / ".installed").is_file():
        _unavailable(f"real Ollama is not installed in {folder} (run: {tool} install {folder})")
    started: list[int] = []
    try:
        for _ in range(2):
            port = _free_port()
            r = subprocess.run([str(tool), "start", str(folder), str(port)], capture_output=True, text=True,
                               timeout=60, stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                pytest.fail(f"real-ollama start {folder} {port} failed: {r.stderr.strip()}")
            started.append(port)
        yield [f"127.0.0.1:{port}" for port in started]
    finally:
        for port in started:
            subprocess.run([str(tool), "stop", str(folder), str(port)], capture_output=True, timeout=30,
                           stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def stack(real_ollama_hosts, module_gateway):
    sollol = module_gateway(real_ollama_hosts, chat_timeout=60, embedding_timeout=60, connect_timeout=5)
    client = ollama.Client(host=sollol.gateway_url, timeout=90, trust_env=False)
    yield sollol, client, real_ollama_hosts
    client._client.close()


def test_list(stack):
    sollol, client, hosts = stack
    names = {m.model for m in client.list().models}
    assert {"gemma3-270m:latest", "all-minilm:latest"} <= names
    with httpx.Client(base_url=sollol.gateway_url, trust_env=False, timeout=30) as http:
        tags = {m["name"]: m for m in http.get("/api/tags").json()["models"]}
        assert sorted(tags["gemma3-270m:latest"]["hosts"]) == sorted(hosts)  # one store, both servers
        assert http.get("/api/version").json()["version"].startswith("0.5.4")


def test_chat(stack):
    _, client, _ = stack
    resp = client.chat(model=CHAT_MODEL, messages=USER, options=SHORT)
    assert resp.done is True and resp.message.role == "assistant"
    assert isinstance(resp.message.content, str) and 0 < resp.eval_count <= 8


def test_chat_stream(stack):
    _, client, _ = stack
    parts = list(client.chat(model=CHAT_MODEL, messages=USER, options=SHORT, stream=True))
    assert len(parts) >= 2 and parts[-1].done is True and not any(p.done for p in parts[:-1])
    assert 0 < parts[-1].eval_count <= 8
    assert "".join(p.message.content for p in parts).strip()


def test_generate_stream_and_not(stack):
    _, client, _ = stack
    resp = client.generate(model=CHAT_MODEL, prompt="The sky is", options=SHORT)
    assert resp.done is True and 0 < resp.eval_count <= 8 and resp.response
    parts = list(client.generate(model=CHAT_MODEL, prompt="The sky is", options=SHORT, stream=True))
    assert parts[-1].done is True and len(parts) >= 2
    assert "".join(p.response for p in parts) == resp.response  # same seed, temperature 0


def test_embed_several_inputs(stack):
    _, client, _ = stack
    texts = ["The cat sat on the mat.", "A dog barked at the mailman.", "The cat sat on the mat."]
    resp = client.embed(model=EMBED_MODEL, input=texts)
    vectors = resp.embeddings
    assert len(vectors) == 3 and all(len(v) == 384 for v in vectors)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-3 for v in vectors)  # normalised
    assert max(abs(x - y) for x, y in zip(vectors[0], vectors[2])) < 1e-4  # same text, same vector
    assert max(abs(x - y) for x, y in zip(vectors[0], vectors[1])) > 1e-2


def test_ps_and_show(stack):
    sollol, client, hosts = stack
    client.generate(model=CHAT_MODEL, prompt="Hi", options=SHORT)
    client.embed(model=EMBED_MODEL, input="warm")
    assert {"gemma3-270m:latest", "all-minilm:latest"} <= {m.model for m in client.ps().models}
    with httpx.Client(base_url=sollol.gateway_url, trust_env=False, timeout=30) as http:
        running = http.get("/api/ps").json()["models"]
    assert running and all(m["host"] in hosts for m in running)
    shown = client.show(CHAT_MODEL)
    assert shown.details.family == "gemma3" and shown.modelinfo["general.architecture"] == "gemma3"
    assert client.show(EMBED_MODEL).details.family == "bert"


def test_unknown_model_is_404(stack):
    _, client, _ = stack
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="no-such-model", messages=USER)
    assert err.value.status_code == 404 and "no-such-model" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        client.embed(model="no-such-model", input="x")
    assert err.value.status_code == 404


def test_the_other_server_takes_over_when_one_is_drained(stack):
    sollol, client, hosts = stack
    client.generate(model=CHAT_MODEL, prompt="Hi", options=SHORT)
    serving = sollol.recent_requests()[-1].host
    other = next(h for h in hosts if h != serving)
    sollol.drain_host(serving)
    try:
        resp = client.generate(model=CHAT_MODEL, prompt="Hi", options=SHORT)
        assert resp.done is True and sollol.recent_requests()[-1].host == other
    finally:
        sollol.undrain_host(serving)
    wait_until(lambda: sollol.registry.get(other).in_flight == 0, what="the request to finish")


def test_second_turn_lands_where_the_first_is_cached(stack):
    """Cache-aware placement on real Ollama: the follow-up goes to the first turn's host, whose slot still
    holds the conversation, so it evaluates a small fraction of the prompt."""
    sollol, client, hosts = stack
    system = " ".join(f"Rule {i}: answer briefly, cite the rule number, and never repeat yourself." for i in range(70))
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Name one colour."}]
    first = client.chat(model=CHAT_MODEL, messages=messages, options=SHORT)
    first_host = settled_host(sollol)
    messages += [{"role": "assistant", "content": first["message"]["content"]},
                 {"role": "user", "content": "And another one."}]
    second = client.chat(model=CHAT_MODEL, messages=messages, options=SHORT)
    record = sollol.recent_requests()[-1]
    assert record.host == first_host, record.placement
    assert record.placement.startswith("cached "), record.placement
    assert first["prompt_eval_count"] > 500 and second["prompt_eval_count"] > first["prompt_eval_count"]
    assert second["prompt_eval_duration"] < 0.3 * first["prompt_eval_duration"], (
        first["prompt_eval_duration"], second["prompt_eval_duration"])
    view = next(h for h in sollol.get_stats()["hosts"] if h["host"] == first_host)
    assert view["cache"]["hit_rate"] > 0 and view["cache"]["entries"] >= 1


def settled_host(sollol) -> str:
    wait_until(lambda: sollol.proxy.active == 0, what="the request to finish")
    return sollol.recent_requests()[-1].host
