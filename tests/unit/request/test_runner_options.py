"""Runner options on the request path: the runner a request asks for, the config's rewrite per model (body,
canonical prompt, request log), placement that prefers the host whose runner matches, and the books that
read reloads and in-host waits from the answers."""

from __future__ import annotations

import orjson

from sollol_core.cluster.hosts import HostRegistry
from sollol_core.cluster.routing import Router
from sollol_core.cluster.slots import SlotTable
from sollol_core.config import ModelSettings, SollolConfig
from sollol_core.observability.metrics import Metrics
from sollol_core.observability.requestlog import RequestLog
from sollol_core.prompt_cache.canonical import canonical_text, prompt_key
from sollol_core.prompt_cache.runner import DEFAULTS, RunnerTable, runner_key
from sollol_core.prompt_cache.shadow import CacheShadow
from sollol_core.request.books import Books
from sollol_core.request.call import Call
from sollol_core.request.outcome import Outcome, Verdict
from sollol_core.request.placement import Decision, Placement
from sollol_core.request.runner_options import prepare
from sollol_core.request.usage import usage_from

MODEL = "gemma3-270m"
SETTINGS = {"gemma3-270m:latest": ModelSettings(num_ctx=4096)}


def chat(options=None, path="/api/chat", model=MODEL) -> Call:
    data: dict = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if options is not None:
        data["options"] = options
    return Call(endpoint=path, method="POST", path=path, body=orjson.dumps(data), model=model, stream=False,
                timeout=5, data=data)


# the runner a request asks for, and the rewrite ---------------------------------------------------------
def test_a_request_asks_for_the_runner_options_it_names():
    c = chat({"num_ctx": 2048, "temperature": 0})
    prepare(c, {})
    assert c.runner == runner_key({"num_ctx": 2048}) and c.note == ""
    openai = chat(path="/v1/chat/completions")
    prepare(openai, SETTINGS)  # the OpenAI endpoints carry no options: the model's defaults, left as sent
    assert openai.runner == DEFAULTS and openai.note == "" and b"options" not in openai.body


def test_the_config_sets_the_models_runner_options_in_the_body_and_the_prompt_and_says_so():
    c = chat({"num_ctx": 2048, "temperature": 0.2})
    before = canonical_text("/api/chat", c.data)
    prepare(c, SETTINGS)
    sent = orjson.loads(c.body)
    assert sent["options"] == {"num_ctx": 4096, "temperature": 0.2}  # the client's other options kept
    assert c.data == sent and c.runner == runner_key({"num_ctx": 4096})
    assert c.note == "num_ctx 2048 → 4096 (config models.gemma3-270m:latest)"
    assert canonical_text("/api/chat", c.data) != before and '"num_ctx":4096' in canonical_text("/api/chat", c.data)
    none = chat()  # a client that names none gets the configured runner too
    prepare(none, SETTINGS)
    assert orjson.loads(none.body)["options"] == {"num_ctx": 4096} and none.note.startswith("num_ctx default → 4096")
    same = chat({"num_ctx": 4096})
    body = same.body
    prepare(same, SETTINGS)
    assert same.body is body and same.note == ""  # already as configured: byte for byte
    other = chat({"num_ctx": 2048}, model="llama3.2")
    prepare(other, SETTINGS)
    assert other.note == "" and other.runner == runner_key({"num_ctx": 2048})


def test_the_models_table_is_keyed_by_the_model_as_ollama_names_it():
    config = SollolConfig(models={"gemma3-270m": {"num_ctx": 4096, "num_batch": 256}})
    assert set(config.models) == {"gemma3-270m:latest"}
    assert config.models["gemma3-270m:latest"].options() == {"num_ctx": 4096, "num_batch": 256}
    c = chat(model="gemma3-270m:latest")
    prepare(c, config.models)
    assert orjson.loads(c.body)["options"] == {"num_ctx": 4096, "num_batch": 256}


# placement ----------------------------------------------------------------------------------------------
def world(prompted: bool = False):
    config = SollolConfig(default_num_parallel=2)
    registry = HostRegistry()
    for h in ("a:1", "b:1"):
        registry.add(h)
        registry.update_models(h, ["gemma3-270m:latest"], ["gemma3-270m:latest"])
        registry.record_success(h, 50.0)
    table = SlotTable(lambda host: 2, lambda: 0)
    runners = RunnerTable()
    shadow = CacheShadow(config.cache) if prompted else None
    return Placement(config, registry, Router(registry), table, shadow, lambda host: 2, runners=runners), runners


def loaded(runners: RunnerTable, host: str, options: dict) -> None:
    runners.answered(runners.sent(host, "gemma3-270m:latest", runner_key(options)), 0.05)


def test_placement_prefers_the_host_whose_runner_matches():
    p, runners = world()
    loaded(runners, "a:1", {"num_ctx": 2048})
    loaded(runners, "b:1", {"num_ctx": 4096})
    for options, home in (({"num_ctx": 4096}, "b:1"), ({"num_ctx": 2048}, "a:1")):
        c = chat(options)
        prepare(c, {})
        d = p.decide(c)
        assert isinstance(d, Decision) and d.host == home, d.reason
        assert "runner matches (1 host(s) would reload)" in d.reason
        other = "a:1" if home == "b:1" else "b:1"
        assert d.estimates[other].reload_s == 1.0 and d.estimates[home].reload_s == 0.0


def test_a_mismatch_costs_the_load_time_like_a_cache_miss_and_drops_the_cache():
    p, runners = world(prompted=True)
    loaded(runners, "a:1", {"num_ctx": 2048})
    c = chat({"num_ctx": 4096})
    prepare(c, {})
    c.prompt = prompt_key(c.path, c.data)
    d = p.decide(c)
    assert isinstance(d, Decision) and d.host == "b:1"
    a = d.estimates["a:1"]
    assert a.reload_s == 1.0 and a.cached_chars == 0 and a.prefill_s >= 1.0
    assert d.estimates["b:1"].prefill_s < a.prefill_s


def test_with_only_a_mismatched_host_the_reason_names_the_reload():
    p, runners = world()
    p.registry.drain("b:1")
    loaded(runners, "a:1", {"num_ctx": 2048})
    c = chat({"num_ctx": 4096})
    prepare(c, {})
    d = p.decide(c)
    assert isinstance(d, Decision) and d.host == "a:1" and "runner differs: reload est. 1.00 s" in d.reason


# the books ----------------------------------------------------------------------------------------------
def final(load: float, total: float, prompt: float = 0.05, eval_: float = 0.5) -> bytes:
    return orjson.dumps({"done": True, "eval_count": 8, "prompt_eval_count": 20, "total_duration": int(total * 1e9),
                         "load_duration": int(load * 1e9), "prompt_eval_duration": int(prompt * 1e9),
                         "eval_duration": int(eval_ * 1e9)})


def test_usage_reads_the_wait_inside_the_host_from_total_duration():
    u = usage_from(final(0.05, 1.6))
    assert abs(u.wait_s - 1.0) < 1e-9 and abs(u.work_s - 0.55) < 1e-9
    assert usage_from(orjson.dumps({"usage": {"completion_tokens": 3}})).wait_s is None  # OpenAI: no timings


def test_books_count_a_reload_and_the_service_latency_leaves_the_wait_out():
    registry = HostRegistry()
    registry.add("a:1")
    runners = RunnerTable()
    books = Books(registry, SlotTable(lambda host: 1, lambda: 0), Metrics(), RequestLog(), None, runners)
    c = chat({"num_ctx": 2048})
    prepare(c, {})
    for _ in range(3):
        sent = books.sent(c, "a:1")
        books.apply(c, "a:1", None, Outcome(Verdict.PASS, "", 200), books.opened("a:1"),
                    usage=usage_from(final(0.05, 0.6)), runner=sent)
    big = chat({"num_ctx": 4096})
    prepare(big, {})
    sent = books.sent(big, "a:1")
    books.apply(big, "a:1", None, Outcome(Verdict.PASS, "", 200), books.opened("a:1") - 2.0,
                usage=usage_from(final(0.9, 2.0)), runner=sent)
    (view,) = runners.views("a:1")
    assert view.reloads == 1 and view.causes == {"options": 1} and view.options == "num_ctx=4096"
    # 2 s on the gateway's clock, of which 0.55 s waited inside the host: the host's latency is its service
    assert registry.get("a:1").latency_ms < 2000
    busy = books.sent(c, "a:1")
    books.apply(c, "a:1", None, Outcome(Verdict.BUSY, "busy", 503), books.opened("a:1"), runner=busy)
    assert runners.loaded("a:1", "gemma3-270m:latest") == runner_key({"num_ctx": 4096})  # it never ran there


def test_the_request_log_says_what_the_gateway_changed():
    log = RequestLog()
    books = Books(HostRegistry(), SlotTable(lambda host: 1, lambda: 0), Metrics(), log)
    c = chat({"num_ctx": 2048})
    prepare(c, SETTINGS)
    books.record(c, 0.0, 200, "a:1", 0)
    assert log.recent(1)[0].placement == "num_ctx 2048 → 4096 (config models.gemma3-270m:latest)"
