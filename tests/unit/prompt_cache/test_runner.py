"""The runner table: which runner options each (host, model) has loaded, the reload rule (far above the host's
warm load_duration, not a fixed threshold), the causes, and what placement is charged for a mismatch."""

from __future__ import annotations

from sollol_core.prompt_cache.runner import (
    DEFAULT_LOAD_S,
    DEFAULTS,
    RunnerTable,
    describe,
    difference,
    runner_key,
)

A, B, M = "a:1", "b:1", "gemma3-270m:latest"
CTX2K = runner_key({"num_ctx": 2048, "temperature": 0.2})
CTX4K = runner_key({"num_ctx": 4096})


class Clock:
    def __init__(self) -> None:
        self.t = 10.0

    def __call__(self) -> float:
        return self.t


def serve(table: RunnerTable, host: str, key, load_s: float, clock: Clock):
    """One request sent now, answered after its load and half a second of work."""
    sent = table.sent(host, M, key)
    clock.t += load_s + 0.5
    return table.answered(sent, load_s)


def test_the_key_is_the_runner_options_only_in_a_stable_form():
    assert runner_key({"num_ctx": 4096, "temperature": 0.7, "seed": 1}) == (("num_ctx", "4096"),)
    assert runner_key({"num_gpu": 20, "num_ctx": 8192}) == runner_key({"num_ctx": 8192, "num_gpu": 20})
    assert runner_key(None) == runner_key({}) == runner_key({"num_ctx": None}) == DEFAULTS
    assert describe(CTX4K) == "num_ctx=4096" and describe(DEFAULTS) == "defaults" and describe(None) is None
    assert difference(CTX2K, CTX4K) == "num_ctx 2048 → 4096"
    assert difference(DEFAULTS, CTX4K) == "num_ctx default → 4096"


def test_a_reload_is_far_above_the_hosts_warm_value_not_above_a_second():
    clock = Clock()
    t = RunnerTable(clock)
    for load in (0.04, 0.07, 0.05, 0.06):  # warm answers on Ollama 0.5.4
        assert serve(t, A, CTX2K, load, clock) is None
    reload = serve(t, A, CTX4K, 0.88, clock)  # measured: 0.88 s, under any fixed 1 s threshold
    assert reload is not None and reload.cause == "options" and reload.detail == "num_ctx 2048 → 4096"
    assert reload.counted
    assert serve(t, A, CTX4K, 0.15, clock) is None  # a slow warm answer on a busy machine is not one
    assert t.loaded(A, M) == CTX4K
    (view,) = t.views(A)
    assert view.reloads == 1 and view.causes == {"options": 1} and view.options == "num_ctx=4096"
    assert view.load_s == 0.88 and 0.05 <= view.warm_load_s <= 0.07 and view.confirmed
    assert t.reload_counts() == [(A, M, "options", 1)]


def test_the_causes_cold_and_unknown():
    clock = Clock()
    t = RunnerTable(clock)
    first = serve(t, A, CTX2K, 1.4, clock)  # nothing known loaded there: the first load
    assert first is not None and first.cause == "cold"
    for _ in range(3):
        serve(t, A, CTX2K, 0.05, clock)
    again = serve(t, A, CTX2K, 1.2, clock)  # the same options, yet a load: expired, evicted, or another client
    assert again is not None and again.cause == "unknown"
    t.forget_model(A, M)  # it left /api/ps
    assert serve(t, A, CTX2K, 1.2, clock).cause == "cold"
    assert t.views(A)[0].causes == {"cold": 2, "unknown": 1}


def test_answers_that_waited_for_one_load_count_it_once_with_the_cause_of_the_one_that_made_it():
    clock = Clock()
    t = RunnerTable(clock)
    for _ in range(3):
        serve(t, A, CTX2K, 0.05, clock)
    made = t.sent(A, M, CTX4K)  # makes the reload
    clock.t += 0.2
    waited = t.sent(A, M, CTX4K)  # sent while it loads: its answer shows the same load
    clock.t += 1.0
    second = t.answered(waited, 0.8)  # answered first
    first = t.answered(made, 1.0)
    assert second is not None and first is not None and second.counted != first.counted
    assert t.views(A)[0].causes == {"options": 1}


def test_placement_is_charged_the_measured_load_time_where_the_runner_differs():
    clock = Clock()
    t = RunnerTable(clock)
    assert t.reload_costs(M, CTX4K, [A, B]) == {}  # nothing known: nothing charged
    serve(t, A, CTX2K, 0.05, clock)
    serve(t, B, CTX4K, 0.05, clock)
    assert t.reload_costs(M, CTX4K, [A, B]) == {A: DEFAULT_LOAD_S}  # no load measured anywhere yet
    serve(t, A, CTX4K, 0.9, clock)  # a reload on A: now it has 4096, and its load time is known
    assert t.reload_costs(M, CTX2K, [A, B]) == {A: 0.9, B: 0.9}  # B has none of its own: the model's elsewhere
    assert t.reload_costs(M, CTX4K, [A, B]) == {}


def test_a_sent_request_is_what_the_host_will_run_and_a_failed_one_is_taken_back():
    clock = Clock()
    t = RunnerTable(clock)
    serve(t, A, CTX2K, 0.05, clock)
    sent = t.sent(A, M, CTX4K)
    assert t.loaded(A, M) == CTX4K  # the host will reload for it: the next request is placed knowing so
    t.failed(sent)  # it never ran (busy, refused)
    assert t.loaded(A, M) == CTX2K
    t.forget_host(A)  # it restarted
    assert t.loaded(A, M) is None


def test_options_ollama_runs_as_one_runner_are_learned_from_an_answer_without_a_reload():
    clock = Clock()
    t = RunnerTable(clock)
    serve(t, A, DEFAULTS, 0.05, clock)
    serve(t, A, runner_key({"num_ctx": 2048}), 0.05, clock)  # the model's default num_ctx, named: no reload
    serve(t, A, DEFAULTS, 0.05, clock)
    assert t.reload_costs(M, runner_key({"num_ctx": 2048}), [A]) == {}
    assert t.reload_costs(M, CTX4K, [A]) == {A: DEFAULT_LOAD_S}
