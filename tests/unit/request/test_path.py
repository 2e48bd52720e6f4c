"""RequestPath, the orchestrator, on its own: the parts from wiring.build, hosts scripted byte by byte on
127.0.0.1 (no gateway, no HTTP server of SOLLOL's). What it decides between the stages: retry elsewhere,
requeue a busy answer, pass a client error through, give up in the API's error shape, refuse an unknown model."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import orjson
import pytest

from sollol_core.cluster.hosts import HostState
from sollol_core.config import SollolConfig
from sollol_core.request.answer import Whole
from sollol_core.request.attempt import Attempt, Trip
from sollol_core.request.call import Call
from sollol_core.wiring import build
from tests.helpers.raw_server import RawServer, ok, read_request

MODEL = "m:latest"
ANSWER = orjson.dumps({"model": MODEL, "message": {"role": "assistant", "content": "hi"}, "done": True})


def answering(*replies: bytes):
    """A host that answers its n-th request with replies[n] (the last one after that), one per connection;
    it records the paths it was asked for."""
    seen: list[bytes] = []

    async def handler(reader, writer, n):
        while True:
            head, _ = await read_request(reader)
            seen.append(head.split(b" ")[1])
            writer.write(replies[min(len(seen), len(replies)) - 1])
            await writer.drain()

    return handler, seen


def status(code: int, reason: str, body: dict) -> bytes:
    raw = orjson.dumps(body)
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (code, reason.encode(), len(raw), raw))


def chat(model: str = MODEL) -> Call:
    data = {"model": model, "messages": [{"role": "user", "content": "hello"}], "stream": False}
    return Call(endpoint="/api/chat", method="POST", path="/api/chat", body=orjson.dumps(data), model=model,
                stream=False, timeout=5, data=data)


@asynccontextmanager
async def parts_for(*addresses: str, **config):
    """The parts of a SOLLOL on these hosts, its upstream pool open; closed after, the hosts' connections
    seen to end (so no handler is left waiting when the loop closes)."""
    parts = build(SollolConfig(hosts=list(addresses), retry_backoff_multiplier=0, **config))
    for a in addresses:
        parts.registry.update_models(a, [MODEL], [MODEL])
    await parts.in_loop.start()
    try:
        yield parts
    finally:
        await parts.in_loop.close()
        await asyncio.sleep(0.05)


@asynccontextmanager
async def first_then(first: str, second: str):
    """Two hosts, `first` tried first (priority routing), `second` after it."""
    async with parts_for(first, second, routing_strategy="priority") as parts:
        parts.registry.set_priority(first, 0)
        parts.registry.set_priority(second, 1)
        yield parts


async def answer_of(parts, call: Call) -> Whole:
    answer = await parts.path.forward(call)
    assert isinstance(answer, Whole)
    answer.done()  # the bytes were handed over: the books run
    return answer


async def test_a_failing_host_is_left_for_another_and_the_client_sees_only_the_answer():
    broken, broken_seen = answering(status(500, "Internal Server Error", {"error": "runner crashed"}))
    good, good_seen = answering(ok(ANSWER))
    async with RawServer(broken) as a, RawServer(good) as b:
        async with first_then(a.address, b.address) as parts:
            answer = await answer_of(parts, chat())
    assert answer.status == 200 and orjson.loads(answer.body)["message"]["content"] == "hi"
    assert broken_seen == [b"/api/chat"] and good_seen == [b"/api/chat"]
    assert parts.registry.get(a.address).state is HostState.UNHEALTHY  # a 500 of its own: taken out
    assert parts.registry.get(b.address).state is HostState.HEALTHY
    assert [r.status for r in parts.requests.recent()] == [200]  # one request, booked once


async def test_a_busy_answer_goes_back_to_the_queue_and_the_host_is_not_blamed():
    busy = status(503, "Service Unavailable",
                  {"error": "server busy, please try again.  maximum pending requests exceeded"})
    handler, seen = answering(busy, ok(ANSWER))
    async with RawServer(handler) as a:
        async with parts_for(a.address) as parts:
            answer = await answer_of(parts, chat())
    assert answer.status == 200 and len(seen) == 2  # the same, only host, asked again
    assert parts.registry.get(a.address).state is HostState.HEALTHY


async def test_a_client_error_goes_back_as_it_is_and_is_not_retried():
    bad = status(400, "Bad Request", {"error": "registry.ollama.ai/library/m does not support tools"})
    first, first_seen = answering(bad)
    second, second_seen = answering(ok(ANSWER))
    async with RawServer(first) as a, RawServer(second) as b:
        async with first_then(a.address, b.address) as parts:
            answer = await answer_of(parts, chat())
    assert answer.status == 400 and b"does not support tools" in answer.body
    assert len(first_seen) == 1 and second_seen == []
    assert parts.registry.get(a.address).state is HostState.HEALTHY


async def test_when_every_host_fails_the_answer_says_so_in_the_api_shape():
    failing = status(500, "Internal Server Error", {"error": "runner crashed"})
    h1, seen1 = answering(failing)
    h2, seen2 = answering(failing)
    async with RawServer(h1) as a, RawServer(h2) as b:
        async with parts_for(a.address, b.address, max_retries=1) as parts:
            answer = await answer_of(parts, chat())
    error = orjson.loads(answer.body)["error"]
    assert answer.status == 502 and "runner crashed" in error
    assert len(seen1) + len(seen2) == 2  # max_retries = 1: the first try and one retry


async def test_a_model_no_host_has_is_refused_without_a_call_upstream():
    handler, seen = answering(ok(ANSWER))
    async with RawServer(handler) as a:
        async with parts_for(a.address) as parts:
            answer = await answer_of(parts, chat("absent"))
    assert answer.status == 404 and orjson.loads(answer.body) == {"error": "model 'absent' not found on any host"}
    assert b"/api/tags" in seen and b"/api/chat" not in seen  # the lists were read again; nothing was sent


@pytest.mark.parametrize("pinned_answer, expected", [(ok(ANSWER), 200),
                                                     (status(500, "Internal Server Error", {"error": "x"}), 500)])
async def test_a_pinned_request_goes_to_its_host_only(pinned_answer, expected):
    pinned, pinned_seen = answering(pinned_answer)
    other, other_seen = answering(ok(ANSWER))
    async with RawServer(pinned) as a, RawServer(other) as b:
        async with parts_for(a.address, b.address) as parts:
            answer = await parts.path.forward(chat(), pinned=a.address)
            assert isinstance(answer, Whole)
            answer.done()
    assert answer.status == expected and len(pinned_seen) == 1 and other_seen == []  # its host's own answer


async def test_an_attempt_ends_once_however_often_it_is_ended():
    """finish, then abandon (a cancellation racing the end), then finish again: the slot, the host's
    in-flight count and the booking are each given back once (a second request there keeps its own)."""
    handler, _ = answering(status(500, "Internal Server Error", {"error": "runner crashed"}))
    async with RawServer(handler) as a:
        async with parts_for(a.address, default_num_parallel=2) as parts:
            attempts = []
            for _ in range(2):
                call = chat()
                lease = await parts.queue.admit(call)
                attempt = Attempt(Trip(call, time.perf_counter(), lambda: None), lease.host, lease,
                                  parts.executor, parts.books)
                attempts.append((attempt, await attempt.open()))
            host = parts.registry.get(a.address)
            assert parts.slots.in_use(a.address, MODEL) == 2 and host.in_flight == 2
            first, outcome = attempts[0]
            await first.finish(outcome)
            first.abandon()
            await first.finish(outcome)
            assert first.outcome is outcome  # the first verdict stands
            assert parts.slots.in_use(a.address, MODEL) == 1 and host.in_flight == 1
            assert host.failures_total == 1
            second, outcome = attempts[1]
            await second.finish(outcome)
            assert parts.slots.in_use(a.address, MODEL) == 0 and host.in_flight == 0
