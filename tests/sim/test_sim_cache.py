"""Slots and prompt cache of simulated nodes, and the failures they inject (busy, cannot load, an error
line mid-stream, a restart). Figures are checked exactly where the node computes them (prefill time is
uncached characters x the spec's cost), never against a clock."""

from __future__ import annotations

import json
import threading

import anthropic
import httpx
import openai
import pytest

from sollol_core.sim import SimCluster, SimNodeSpec, main
from sollol_core.sim.render import chat_turns, render

from helpers import wait_until

pytestmark = pytest.mark.timeout(60)

MODEL, EMBED = "llama3.2:latest", "nomic-embed-text:latest"
NS_PER_CHAR = 10_000  # prefill_ms_per_kchar=10
WARM_NS = 1_000_000  # load_duration on a loaded model (warm_load_ms), never 0 as on Ollama
SYS = {k: (f"{k} is the system prompt here. " * 200)[:2000] for k in ("alpha", "bravo", "charlie", "delta")}
BUSY = "server busy, please try again.  maximum pending requests exceeded"
GONE = ("model runner has unexpectedly stopped, this may be due to resource limitations or an internal error, "
        "check ollama server logs for details")


def spec(**kw) -> SimNodeSpec:
    base = dict(name="c", latency_ms=0, tokens=3, tokens_per_s=0, num_parallel=2, prefill_ms_per_kchar=10,
                models=[MODEL, EMBED])
    return SimNodeSpec(**(base | kw))


@pytest.fixture
def http():
    with httpx.Client(trust_env=False, timeout=20) as client:
        yield client


def convo(system: str, *turns: str) -> list[dict]:
    """system, then user / assistant alternating: convo(s, "q1") or convo(s, "q1", answer1, "q2")."""
    msgs = [{"role": "system", "content": system}]
    for i, text in enumerate(turns):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return msgs


def prompt_len(messages: list[dict]) -> int:
    return len(render(chat_turns(messages)).text)


class Node:
    """A started node and a client for it."""

    def __init__(self, cluster: SimCluster, http: httpx.Client, index: int = 0) -> None:
        self.cluster, self.http, self.index = cluster, http, index

    @property
    def sim(self):
        return self.cluster.nodes[self.index]

    def url(self, path: str) -> str:
        return f"http://{self.sim.address}{path}"

    def chat(self, messages: list[dict], path: str = "/api/chat", **extra) -> dict:
        r = self.http.post(self.url(path), json={"model": MODEL, "messages": messages, "stream": False, **extra})
        assert r.status_code == 200, r.text
        return r.json()

    def last(self):
        return self.sim.prefills[-1]


@pytest.fixture
def make(sim_cluster, http):
    def _make(**kw) -> Node:
        return Node(sim_cluster(spec(**kw)), http)

    return _make


# -- prefill, counts, slot choice --------------------------------------------------------------------------------


def test_prefill_covers_only_the_uncached_part_and_counts_the_whole_prompt(make):
    node = make()
    a1 = convo(SYS["alpha"], "first question")
    first = node.chat(a1)
    answer = first["message"]["content"]
    assert first["prompt_eval_duration"] == prompt_len(a1) * NS_PER_CHAR  # nothing cached yet
    assert first["prompt_eval_count"] == 500 + 4  # ~ characters / 4 of the texts
    assert first["load_duration"] == WARM_NS  # loaded at start
    assert (node.last().slot, node.last().reused_chars, node.last().prompt_chars) == (0, 0, prompt_len(a1))

    a2 = convo(SYS["alpha"], "first question", answer, "and a second one")
    second = node.chat(a2)
    reused = prompt_len(a1) + len(answer)  # the previous prompt and its answer
    assert node.last().reused_chars == reused and node.last().slot == 0
    assert second["prompt_eval_duration"] == (prompt_len(a2) - reused) * NS_PER_CHAR
    assert second["prompt_eval_count"] == first["prompt_eval_count"] + len(answer) // 4 + 1 + 4  # whole prompt
    assert first["prompt_eval_cached_count"] == 0
    assert second["prompt_eval_cached_count"] == second["prompt_eval_count"] * reused // prompt_len(a2)

    again = node.chat(a2)  # the same prompt again: only the last character is evaluated
    assert again["prompt_eval_duration"] == 1 * NS_PER_CHAR
    assert again["prompt_eval_count"] == second["prompt_eval_count"]
    states = node.sim.slot_states("llama3.2")
    assert [s.cached_chars for s in states] == [prompt_len(a2) + len(answer), 0]
    assert not any(s.busy for s in states) and states[0].last_used > 0 and states[1].last_used == 0


def test_lcp_mode_takes_the_matching_slot_or_evicts_the_least_recently_used(make):
    node = make(cache_mode="lcp")
    answer = node.chat(convo(SYS["alpha"], "q"))["message"]["content"]
    node.chat(convo(SYS["bravo"], "q"))
    assert node.last().slot == 1  # sharing only "<|system|>\n" (< 10%): the least recently used slot
    node.chat(convo(SYS["alpha"], "q", answer, "q2"))
    assert node.last().slot == 0 and node.last().reused_chars == prompt_len(convo(SYS["alpha"], "q")) + len(answer)
    node.chat(convo(SYS["charlie"], "q"))
    assert node.last().slot == 1  # bravo's slot was the least recently used: evicted
    result = node.chat(convo(SYS["bravo"], "q", answer, "q2"))
    assert node.last().slot == 0 and node.last().reused_chars == len("<|system|>\n")  # bravo is gone
    assert result["prompt_eval_duration"] == (node.last().prompt_chars - len("<|system|>\n")) * NS_PER_CHAR


def test_legacy_mode_lets_conversations_overwrite_each_other(make):
    node = make(cache_mode="legacy")
    answer = node.chat(convo(SYS["alpha"], "q"))["message"]["content"]
    node.chat(convo(SYS["bravo"], "q"))
    assert node.last().slot == 0  # the longest common prefix, however short: alpha's slot
    node.chat(convo(SYS["alpha"], "q", answer, "q2"))
    assert node.last().reused_chars == len("<|system|>\n")  # alpha was overwritten by bravo
    assert [s.cached_chars > 0 for s in node.sim.slot_states(MODEL)] == [True, False]


def test_multiuser_mode_keeps_both_conversations(make):
    node = make(cache_mode="multiuser")
    answer = node.chat(convo(SYS["alpha"], "q"))["message"]["content"]
    node.chat(convo(SYS["bravo"], "q"))
    assert node.last().slot == 1 and node.last().reused_chars == len("<|system|>\n")  # forked common prefix
    node.chat(convo(SYS["alpha"], "q", answer, "q2"))
    assert node.last().slot == 0 and node.last().reused_chars == prompt_len(convo(SYS["alpha"], "q")) + len(answer)
    node.chat(convo(SYS["bravo"], "q", answer, "q2"))
    assert node.last().slot == 1 and node.last().reused_chars == prompt_len(convo(SYS["bravo"], "q")) + len(answer)


def test_bad_cache_mode_is_rejected():
    with pytest.raises(ValueError, match="cache_mode"):
        SimNodeSpec(cache_mode="fifo")
    with pytest.raises(SystemExit) as exc:
        main(["--spec", '{"cache_mode": "fifo"}'])
    assert exc.value.code == 2


# -- one rendering for every API ---------------------------------------------------------------------------------


def test_every_api_renders_the_same_conversation_the_same_way(make, http):
    node = make(num_parallel=1)
    a1 = convo(SYS["delta"], "hello there")
    r = http.post(node.url("/v1/chat/completions"), json={"model": MODEL, "messages": a1})
    answer = r.json()["choices"][0]["message"]["content"]
    base = prompt_len(a1) + len(answer)

    node.chat(convo(SYS["delta"], "hello there", answer, "next"))  # /api/chat continues the /v1 conversation
    assert node.last().reused_chars == base

    http.post(node.url("/api/generate"), json={"model": MODEL, "system": SYS["delta"], "prompt": "hello there",
                                               "stream": False})
    assert node.last().reused_chars == prompt_len(a1) - 1  # the same prompt as a1: all but the last character

    http.post(node.url("/v1/messages"), json={"model": MODEL, "max_tokens": 50, "system": SYS["delta"],
                                              "messages": [{"role": "user", "content": "hello there"},
                                                           {"role": "assistant", "content": answer},
                                                           {"role": "user", "content": "next"}]})
    assert node.last().path == "/v1/messages" and node.last().reused_chars == base  # continues generate's prompt
    extended = node.last().prompt_chars

    http.post(node.url("/v1/responses"), json={"model": MODEL, "instructions": SYS["delta"],
                                               "input": [{"role": "user", "content": "hello there"},
                                                         {"role": "assistant", "content": answer},
                                                         {"role": "user",
                                                          "content": [{"type": "input_text", "text": "next"}]}]})
    assert node.last().path == "/v1/responses" and node.last().prompt_chars == extended
    assert node.last().reused_chars == extended - 1  # the same prompt as /v1/messages sent

    http.post(node.url("/v1/completions"), json={"model": MODEL, "prompt": "hello there"})
    assert node.last().reused_chars == len("<|")  # no system turn: "<|user|>" parts from "<|system|>"


def test_every_api_names_the_cached_tokens_and_can_be_told_not_to(make, http):
    node = make(num_parallel=1)
    a1 = convo(SYS["bravo"], "hello there")
    answer = node.chat(a1)["message"]["content"]
    turn2 = a1 + [{"role": "assistant", "content": answer}, {"role": "user", "content": "next"}]
    share = (prompt_len(a1) + len(answer)) / prompt_len(turn2)
    with openai.OpenAI(base_url=f"http://{node.sim.address}/v1", api_key="x", max_retries=0,
                       http_client=openai.DefaultHttpxClient(trust_env=False)) as gpt:
        usage = gpt.chat.completions.create(model=MODEL, messages=turn2).usage
        assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens * (prompt_len(a1) + len(answer)) \
            // prompt_len(turn2)
        stream = gpt.chat.completions.create(model=MODEL, messages=turn2, stream=True,
                                             stream_options={"include_usage": True})
        final = [c for c in stream if c.usage is not None][-1].usage
        assert final.prompt_tokens_details.cached_tokens >= final.prompt_tokens * 0.9  # all but the last character
    with anthropic.Anthropic(base_url=f"http://{node.sim.address}", api_key="x", max_retries=0,
                             http_client=anthropic.DefaultHttpxClient(trust_env=False)) as claude:
        msg = claude.messages.create(model=MODEL, max_tokens=50, system=SYS["bravo"], messages=turn2[1:])
        read = msg.usage.cache_read_input_tokens
        assert read > 0 and read / (read + msg.usage.input_tokens) > 0.9 * share
    plain = make(num_parallel=1, report_cached_tokens=False)
    plain.chat(a1)
    final = plain.chat(turn2)
    assert "prompt_eval_cached_count" not in final and plain.last().reused_chars > 0


# -- loading -----------------------------------------------------------------------------------------------------


def test_load_duration_after_a_load_and_unload_empties_the_cache(make, http):
    node = make(loaded=[], load_ms=30)
    assert http.get(node.url("/api/ps")).json()["models"] == []
    msgs = convo(SYS["alpha"], "q")
    first = node.chat(msgs)
    assert first["load_duration"] >= 30_000_000 and node.last().load_ns == first["load_duration"]
    assert [m["name"] for m in http.get(node.url("/api/ps")).json()["models"]] == [MODEL]
    second = node.chat(msgs)
    assert second["load_duration"] == WARM_NS and second["prompt_eval_duration"] == NS_PER_CHAR

    r = http.post(node.url("/api/generate"), json={"model": MODEL, "keep_alive": 0})
    assert r.json()["done_reason"] == "unload"
    assert http.get(node.url("/api/ps")).json()["models"] == []
    assert [s.cached_chars for s in node.sim.slot_states(MODEL)] == [0, 0]
    third = node.chat(msgs)
    assert third["load_duration"] > WARM_NS and third["prompt_eval_duration"] == prompt_len(msgs) * NS_PER_CHAR


def test_concurrent_requests_share_one_load(make):
    node = make(loaded=[], load_ms=200)
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(node.chat(convo(SYS["alpha"], "q")))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and all(r["load_duration"] > WARM_NS for r in results)
    assert node.sim.loaded == [MODEL]


def test_embedding_models_get_one_slot_when_num_parallel_is_set(make):
    node = make(num_parallel=3)
    assert len(node.sim.slot_states(EMBED)) == 1 and len(node.sim.slot_states(MODEL)) == 3
    legacy = make(num_parallel=None, capacity=4)
    assert len(legacy.sim.slot_states(EMBED)) == 4 and len(legacy.sim.slot_states(MODEL)) == 4


# -- waiting, queue limit, failure switches -----------------------------------------------------------------------


def test_waiters_are_served_in_arrival_order_and_max_queue_answers_503(make, http):
    node = make(num_parallel=1, max_queue=2, tokens=200, tokens_per_s=50)  # a 4 s stream holds the slot
    done: list[int] = []
    holder = httpx.Client(trust_env=False, timeout=20)  # its own connection pool, apart from the other threads'
    with holder, holder.stream("POST", node.url("/api/chat"), json={"model": MODEL,
                                                                    "messages": convo("s", "hold")}) as held:
        lines = held.iter_lines()  # kept: a dropped iterator closes the response
        next(lines)
        assert node.sim.slot_states(MODEL)[0].busy
        waiters = []
        for i in (1, 2):
            body = {"model": MODEL, "messages": convo("s", "x" * i * 100), "stream": False,
                    "options": {"num_predict": 1}}
            t = threading.Thread(target=lambda b=body, i=i: (httpx.post(node.url("/api/chat"), json=b, timeout=20,
                                                                        trust_env=False), done.append(i)))
            t.start()
            waiters.append(t)
            wait_until(lambda i=i: node.sim.queued(MODEL) == i, what=f"waiter {i} in line")
        r = http.post(node.url("/api/chat"), json={"model": MODEL, "messages": convo("s", "third"), "stream": False})
        assert r.status_code == 503 and r.json() == {"error": BUSY}
        r = http.post(node.url("/v1/messages"), json={"model": MODEL, "max_tokens": 5,
                                                      "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 503 and r.json() == {"type": "error", "error": {"type": "overloaded_error",
                                                                               "message": BUSY}}
    for t in waiters:
        t.join(10)
    assert done == [1, 2]
    assert [p.prompt_chars for p in node.sim.prefills[-2:]] == [prompt_len(convo("s", "x" * 100)),
                                                               prompt_len(convo("s", "x" * 200))]


def test_busy_500(make, http):
    node = make()
    node.sim.busy_500 = True
    r = http.post(node.url("/api/chat"), json={"model": MODEL, "messages": convo("s", "q")})
    assert r.status_code == 500 and r.json() == {"error": "no slots available"}
    r = http.post(node.url("/v1/chat/completions"), json={"model": MODEL, "messages": convo("s", "q")})
    assert r.status_code == 500 and r.json()["error"]["message"] == "no slots available"
    assert http.get(node.url("/api/tags")).status_code == 200
    assert http.post(node.url("/api/show"), json={"model": MODEL}).status_code == 200  # takes no slot
    node.sim.busy_500 = False
    assert node.chat(convo("s", "q"))["done"] is True


def test_load_failure(make, http):
    node = make(models=[MODEL, "qwen2.5:0.5b"], load_ms=1)
    node.sim.load_failure = "llama3.2"
    r = http.post(node.url("/api/chat"), json={"model": "llama3.2", "messages": convo("s", "q")})
    assert r.status_code == 500
    assert r.json() == {"error": "model requires more system memory (9.8 GiB) than is available (3.1 GiB)"}
    assert MODEL not in node.sim.loaded
    assert [m["name"] for m in http.get(node.url("/api/ps")).json()["models"]] == ["qwen2.5:0.5b"]
    r = http.post(node.url("/v1/messages"), json={"model": "llama3.2", "max_tokens": 5,
                                                  "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 500 and r.json()["error"]["type"] == "api_error"
    ok = http.post(node.url("/api/chat"), json={"model": "qwen2.5:0.5b", "messages": convo("s", "q"), "stream": False})
    assert ok.status_code == 200
    node.sim.load_failure = None
    assert node.chat(convo("s", "q"))["load_duration"] > WARM_NS and MODEL in node.sim.loaded


def test_error_line_mid_stream(make, http):
    node = make()
    node.sim.error_line_mid_stream = True
    r = http.post(node.url("/api/chat"), json={"model": MODEL, "messages": convo("s", "q")})
    assert r.status_code == 200
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert len(lines) == 2 and lines[0]["done"] is False and lines[0]["message"]["content"] == "[c] tok0"
    assert lines[1] == {"error": GONE}

    r = http.post(node.url("/api/chat"), json={"model": MODEL, "messages": convo("s", "q"), "stream": False})
    assert r.status_code == 500 and r.json() == {"error": GONE}

    r = http.post(node.url("/v1/chat/completions"), json={"model": MODEL, "messages": convo("s", "q"), "stream": True})
    events = [e for e in r.text.split("\n\n") if e]
    assert len(events) == 2 and json.loads(events[1][len("data: "):])["error"]["message"] == GONE

    r = http.post(node.url("/v1/messages"), json={"model": MODEL, "max_tokens": 5, "stream": True,
                                                  "messages": [{"role": "user", "content": "x"}]})
    assert r.text.rstrip().split("\n\n")[-1] == (
        'event: error\ndata: {"type":"error","error":{"type":"api_error","message":' + json.dumps(GONE) + "}}")
    r = http.post(node.url("/v1/responses"), json={"model": MODEL, "input": "x", "stream": True})
    last = r.text.rstrip().split("\n\n")[-1].split("\n")
    assert last[0] == "event: error" and json.loads(last[1][6:])["message"] == GONE

    with anthropic.Anthropic(base_url=f"http://{node.sim.address}", api_key="x", max_retries=0,
                             http_client=anthropic.DefaultHttpxClient(trust_env=False)) as claude:
        with pytest.raises(anthropic.APIStatusError, match="unexpectedly stopped"):
            with claude.messages.stream(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}]) as s:
                list(s.text_stream)
    with openai.OpenAI(base_url=f"http://{node.sim.address}/v1", api_key="x", max_retries=0,
                       http_client=httpx.Client(trust_env=False)) as oai:
        with pytest.raises(openai.APIError, match="unexpectedly stopped"):
            list(oai.chat.completions.create(model=MODEL, messages=convo("s", "q"), stream=True))


# -- restart -------------------------------------------------------------------------------------------------------


def test_revive_is_cold_by_default_and_warm_on_request(sim_cluster, http):
    cluster = sim_cluster(spec(load_ms=5))
    node = Node(cluster, http)
    msgs = convo(SYS["alpha"], "q")
    answer = node.chat(msgs)["message"]["content"]
    cluster.kill(0)
    cluster.revive(0, cold=False)
    warm = node.chat(convo(SYS["alpha"], "q", answer, "q2"))
    assert warm["load_duration"] == WARM_NS and node.last().reused_chars == prompt_len(msgs) + len(answer)

    cluster.kill(0)
    cluster.revive(0)
    assert http.get(node.url("/api/ps")).json()["models"] == []
    assert all(s.cached_chars == 0 for s in node.sim.slot_states(MODEL))
    assert [m["name"] for m in http.get(node.url("/api/tags")).json()["models"]] == [MODEL, EMBED]  # disk stays
    cold = node.chat(convo(SYS["alpha"], "q", answer, "q2"))
    assert cold["load_duration"] > WARM_NS and node.last().reused_chars == 0
