"""Books.apply on its own: each verdict and what it does to the host, the model, the slot and the shadow."""

from __future__ import annotations

import time

import pytest

from sollol_core.cluster.hosts import HostRegistry, HostState
from sollol_core.cluster.routing import Router
from sollol_core.cluster.slots import SlotTable
from sollol_core.config import SollolConfig
from sollol_core.observability.metrics import Metrics
from sollol_core.observability.requestlog import RequestLog
from sollol_core.prompt_cache.canonical import prompt_key
from sollol_core.prompt_cache.shadow import CacheShadow
from sollol_core.request.admission import GatewayQueue
from sollol_core.request.books import Books
from sollol_core.request.call import Call
from sollol_core.request.lease import Settle
from sollol_core.request.outcome import Outcome, Verdict
from sollol_core.request.placement import Placement
from sollol_core.request.usage import Usage

HOST = "a:1"
MODEL = "m:latest"


class World:
    def __init__(self, slots: int = 2) -> None:
        self.config = SollolConfig(default_num_parallel=slots)
        self.registry = HostRegistry()
        for h in (HOST, "b:1"):
            self.registry.add(h)
            self.registry.update_models(h, [MODEL], [MODEL])
        self.slots = SlotTable(lambda host: self.config.default_num_parallel, lambda: 0)
        self.shadow = CacheShadow(self.config.cache)
        self.metrics = Metrics()
        self.log = RequestLog()
        placement = Placement(self.config, self.registry, Router(self.registry), self.slots, self.shadow,
                              lambda host: self.config.default_num_parallel)
        self.queue = GatewayQueue(self.config, placement, self.slots, self.shadow, self.metrics)
        self.books = Books(self.registry, self.slots, self.metrics, self.log, self.shadow)

    async def lease(self, text: str = "a question " * 80):  # type: ignore[no-untyped-def]
        data = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
        call = Call(endpoint="/api/chat", method="POST", path="/api/chat", body=b"{}", model=MODEL, stream=False,
                    timeout=5, prompt=prompt_key("/api/chat", data), data=data, host_filter=lambda h: h == HOST)
        return call, await self.queue.admit(call)


def failures(w: World) -> int:
    return w.registry.get(HOST).failures_total


async def test_served_records_the_host_and_the_slot_holds_the_prompt():
    w = World()
    call, lease = await w.lease()
    assert w.slots.in_use(HOST, MODEL) == 1 and lease.claim is not None
    started = w.books.opened(HOST)
    assert w.registry.get(HOST).in_flight == 1
    w.books.closed(HOST)
    w.books.apply(call, HOST, lease, Outcome(Verdict.PASS, "", 200), started,
                  usage=Usage(eval_count=12, eval_s=0.1, prompt_eval_count=200, prompt_eval_s=0.5, load_s=0.05))
    host = w.registry.get(HOST)
    assert host.requests_total == 1 and host.in_flight == 0 and host.tokens_per_s == pytest.approx(120, rel=0.01)
    assert MODEL in host.models_loaded
    assert lease.ended and w.slots.in_use(HOST, MODEL) == 0
    assert w.shadow.match(HOST, call.prompt, 2).cached_chars == call.prompt.chars  # the slot holds it
    lease.end(Settle.FAILED)  # ending again does nothing
    assert w.shadow.match(HOST, call.prompt, 2).cached_chars == call.prompt.chars


async def test_busy_holds_the_host_to_what_it_holds_and_blames_nobody():
    w = World()
    call, held = await w.lease()
    call2, lease = await w.lease("another question " * 40)
    w.books.apply(call2, HOST, lease, Outcome(Verdict.BUSY, "server busy", 503), time.perf_counter())
    assert failures(w) == 0 and w.registry.get(HOST).state is HostState.HEALTHY
    assert w.slots.limit(HOST, MODEL) == 1  # the one still in flight
    assert w.shadow.match(HOST, call2.prompt, 2).cached_chars == 0  # the host never ran it


async def test_cannot_load_marks_the_host_and_model_unfit_and_leaves_the_host_in():
    w = World()
    call, lease = await w.lease()
    w.books.apply(call, HOST, lease, Outcome(Verdict.UNFIT, "unable to load model", 500), time.perf_counter())
    assert w.slots.is_unfit(HOST, MODEL) and not w.slots.is_unfit("b:1", MODEL)
    assert failures(w) == 0 and w.registry.get(HOST).state is HostState.HEALTHY
    assert w.slots.in_use(HOST, MODEL) == 0


async def test_model_missing_forgets_the_model_on_that_host_only():
    w = World()
    call, lease = await w.lease()
    w.books.apply(call, HOST, lease, Outcome(Verdict.MODEL_MISSING, "model 'm' not found", 404),
                  time.perf_counter())
    assert w.registry.get(HOST).has_model(MODEL) is False and w.registry.get("b:1").has_model(MODEL)
    assert w.shadow.host_view(HOST)["entries"] == 0 and failures(w) == 0


async def test_host_failure_takes_the_host_out_and_forgets_the_slot():
    w = World()
    call, lease = await w.lease()
    w.books.apply(call, HOST, lease, Outcome(Verdict.HOST_FAILED, "connection refused"), time.perf_counter())
    host = w.registry.get(HOST)
    assert host.failures_total == 1 and host.state is HostState.UNHEALTHY and "refused" in host.last_error
    assert w.shadow.match(HOST, call.prompt, 2).cached_chars == 0
    assert 'sollol_worker_failures_total{host="a:1"} 1.0' in w.metrics.exposition().decode()


async def test_an_error_line_inside_a_stream_counts_but_the_host_stays_in():
    w = World()
    call, lease = await w.lease()
    w.books.apply(call, HOST, lease, Outcome(Verdict.ERROR_IN_STREAM, "runner died", 200), time.perf_counter())
    host = w.registry.get(HOST)
    assert host.failures_total == 1 and host.state is HostState.HEALTHY and "inside the answer" in host.last_error


async def test_our_executor_failing_blames_no_host():
    w = World()
    call, lease = await w.lease()
    w.books.apply(call, HOST, lease, Outcome(Verdict.EXECUTOR_FAILED, "actor died"), time.perf_counter())
    assert failures(w) == 0 and lease.ended


async def test_a_client_error_is_passed_on_without_blame():
    w = World()
    call, lease = await w.lease()
    w.books.apply(call, HOST, lease, Outcome(Verdict.CLIENT_ERROR, "bad option", 400), time.perf_counter())
    host = w.registry.get(HOST)
    assert failures(w) == 0 and host.requests_total == 1 and host.state is HostState.HEALTHY
    assert w.shadow.match(HOST, call.prompt, 2).cached_chars == 0  # a refused prompt is not in the slot


async def test_record_writes_one_log_entry_with_the_placement():
    w = World()
    call, lease = await w.lease()
    call.client = "team-a"
    w.books.record(call, time.perf_counter() - 0.25, 200, HOST, 1, tokens=7, lease=lease)
    (r,) = w.log.recent(5)
    assert (r.endpoint, r.model, r.host, r.status, r.tokens, r.retries, r.client) == \
        ("/api/chat", MODEL, HOST, 200, 7, 1, "team-a")
    assert r.latency_ms >= 250 and r.placement == lease.reason
    text = w.metrics.exposition().decode()
    assert 'sollol_requests_total{endpoint="/api/chat",status="success"} 1.0' in text
