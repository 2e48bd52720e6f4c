"""The request path: one client request through the stages DESIGN.md draws.

    admission    the gateway queue (admission.GatewayQueue): a slot on a host, now or after waiting
    placement    inside admission: which host, and why (placement.Placement)
    attempt      the executor opens the upstream call (in-loop pool, or a Ray actor)
    outcome      what the answer means (outcome.classify): pass on, retry elsewhere, back to the queue
                 (busy), (host, model) unfit, host out
    relay        stream bytes as they come (relay.relay); after the first byte a failure ends with the API's
                 error frame
    books        one place writes down the end (books.Books)

Rules (DESIGN.md): a request that fails before its first byte reached the client is retried on another
host; after the first byte the stream ends with an error frame in the API's own shape, never silently.
Busy is not broken: a busy answer requeues the request and the host keeps its place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

from starlette.responses import Response, StreamingResponse

from ..cluster.adaptive import ModelListRefresher
from ..cluster.hosts import HostRegistry
from ..cluster.slots import SlotTable
from ..config import SollolConfig
from ..errors import ClientGone, NoHostForModel, Rejected, UpstreamFailure
from ..http.errors import api_for_path, error_response
from ..observability.metrics import Metrics
from ..upstream.executor import Executor
from .admission import GatewayQueue, Lease
from .books import FAILED, UNTOUCHED, Books
from .call import Call
from .outcome import Verdict, classify
from .relay import CHAT_ENDPOINTS, AnswerText, BookedResponse, RelayResponse, StreamState, answer_of, relay, usage_from

log = logging.getLogger("sollol.proxy")
MAX_REQUEUES = 50  # busy answers one request may meet before it is answered 503 (its class timeout also bounds it)


class Proxy:
    def __init__(self, config: SollolConfig, registry: HostRegistry, executor: Executor, metrics: Metrics,
                 queue: GatewayQueue, slots: SlotTable, books: Books, model_lists: ModelListRefresher) -> None:
        self.config = config
        self.registry = registry
        self.executor = executor
        self.metrics = metrics
        self.queue = queue
        self.slots = slots
        self.books = books
        self.model_lists = model_lists
        self.active = 0

    def reject(self, endpoint: str, status: int, message: str, api: Optional[str] = None,
               headers: Optional[dict] = None) -> Response:
        """Bad input answered by the gateway itself: counted and logged like any request, then answered in
        the shape of the endpoint's API family."""
        api = api or api_for_path(endpoint)
        call = Call(endpoint=endpoint, method="", path=endpoint, body=None, model=None, stream=False, timeout=0,
                    api=api)
        self.books.record(call, time.perf_counter(), status, "", 0, error=message)
        return error_response(api, status, message, headers=headers)

    # forwarding -----------------------------------------------------------------------------------
    async def forward_to(self, host: str, call: Call) -> Response:
        """Forward to one named host, no other (model management with X-SOLLOL-Host)."""
        return await self.forward(call, pinned=host)

    async def forward(self, call: Call, pinned: Optional[str] = None) -> Response:
        started = time.perf_counter()
        self.active += 1
        self.metrics.active_requests.inc()
        streaming_handed_off = False
        try:
            response = await (self._pinned(call, started, pinned) if pinned is not None
                              else self._forward(call, started))
            streaming_handed_off = isinstance(response, (StreamingResponse, BookedResponse))
            return response
        finally:
            if not streaming_handed_off:
                self.active -= 1
                self.metrics.active_requests.dec()

    async def _admit(self, call: Call, tried: set[str], front: bool) -> Optional[Lease]:
        """A lease from the queue; NoHostForModel once the model lists were re-read and still lack it."""
        try:
            return await self.queue.admit(call, frozenset(tried), front=front)
        except NoHostForModel:
            pass
        await self.model_lists.refresh()  # a model pulled a moment ago is not in the lists until the next round
        return await self.queue.admit(call, frozenset(tried), front=front)

    async def _forward(self, call: Call, started: float) -> Response:
        tried: set[str] = set()
        no_model: set[str] = set()  # hosts that said they do not have the model: not asked again
        last_error, last_status = "no host available", 503
        not_found_body: Optional[bytes] = None
        waited = 0.0
        requeues = 0
        attempt = 0
        front = False
        while attempt <= self.config.max_retries:
            try:
                lease = await self._admit(call, tried, front)
            except NoHostForModel:
                msg = f"model '{call.model}' not found on any host"
                self.books.record(call, started, 404, "", attempt, error=msg, wait_s=waited)
                return error_response(call.api, 404, msg)
            except Rejected as r:
                self.books.record(call, started, r.status, "", attempt, error=r.message, wait_s=waited)
                return error_response(call.api, r.status, r.message, headers=r.headers)
            except ClientGone:  # it left while waiting: nothing was sent anywhere, nobody hears the answer
                msg = "client went away while the request waited in the gateway queue"
                self.books.record(call, started, 499, "", attempt, error=msg, wait_s=waited)
                return error_response(call.api, 499, msg)
            except asyncio.CancelledError:
                raise
            front = False
            if lease is None:
                if tried - no_model:
                    # every candidate failed once: wait (backoff), then give them another chance
                    await asyncio.sleep(self.config.retry_backoff_multiplier * (2 ** max(0, attempt - 1)))
                    tried = set(no_model)
                    lease = await self._admit_quietly(call, tried)
                if lease is None:
                    break
            waited += lease.wait_s
            host = lease.host
            tried.add(host)
            if attempt:
                self.metrics.retries.labels(call.endpoint).inc()
            attempt += 1
            attempt_started = time.perf_counter()
            self.registry.begin(host)
            handed_off = False
            try:
                try:
                    resp = await self.executor.open(host, call.method, call.path, call.body, call.timeout,
                                                    stream=call.stream, content_type=call.content_type)
                except UpstreamFailure as e:
                    self.books.host_failed(host, e, attempt_started)
                    self.books.settle(lease, FAILED)
                    last_error, last_status = f"{host}: {e}", 502
                    continue
                try:
                    if resp.status >= 400:
                        body = await resp.read()
                        outcome = classify(resp.status, body)
                        verdict = outcome.verdict
                        if verdict == Verdict.BUSY:
                            self.slots.mark_busy(host, call.model)
                            self.books.settle(lease, UNTOUCHED)
                            tried.discard(host)
                            attempt -= 1  # busy is not a failed attempt; the class timeout bounds the waits
                            requeues += 1
                            front = True
                            last_error, last_status = f"{host}: busy: {outcome.reason}", 503
                            if requeues > MAX_REQUEUES:
                                break
                            log.info("host %s is busy (%s): request back in the queue", host, outcome.reason)
                            continue
                        if verdict == Verdict.UNFIT:
                            self.slots.mark_unfit(host, call.model, outcome.reason)
                            self.books.settle(lease, FAILED)
                            last_error, last_status = f"{host}: cannot load {call.model}: {outcome.reason}", 502
                            log.warning("host %s cannot load %s: %s", host, call.model, outcome.reason)
                            continue
                        if verdict == Verdict.MODEL_MISSING and call.model:
                            # the host's model list was stale: remember, and try a host that has it
                            self.books.model_missing(host, call.model)
                            self.books.settle(lease, FAILED)
                            no_model.add(host)
                            not_found_body = body
                            continue
                        if verdict == Verdict.HOST_FAILED:
                            self.books.host_failed(host, outcome.reason, attempt_started)
                            self.books.settle(lease, FAILED)
                            last_error, last_status = f"{host}: {outcome.reason}", 502
                            continue
                        # a 4xx about the request itself: passed on, no retry, the host is not blamed
                        self.books.served(call, host, lease, (time.perf_counter() - attempt_started) * 1000,
                                          usage_from(b""), ok=False)
                        self.books.record(call, started, resp.status, host, attempt - 1, lease=lease,
                                          error=outcome.reason)
                        return Response(body, status_code=resp.status, media_type=resp.content_type)
                    if not call.stream:
                        body = await resp.read()
                        elapsed_ms = (time.perf_counter() - attempt_started) * 1000
                        retries = attempt - 1

                        def books_after() -> None:  # once the answer is on its way: not on the client's clock
                            usage = usage_from(body)
                            answer = answer_of(body) if lease.placed is not None and call.endpoint in CHAT_ENDPOINTS \
                                else None
                            self.books.served(call, host, lease, elapsed_ms, usage, answer=answer)
                            self.books.record(call, started, resp.status, host, retries, usage.eval_count,
                                              lease=lease)
                            self._done()

                        await resp.close()
                        handed_off = True  # the response owns the lease and the books now
                        self.registry.end(host)
                        return BookedResponse(body, books_after, status_code=resp.status,
                                              media_type=resp.content_type)
                    # streaming: wait for the first chunk before answering, so a failure is still retryable
                    chunks = resp.chunks().__aiter__()
                    try:
                        first = await chunks.__anext__()
                    except StopAsyncIteration:
                        first = b""
                    except UpstreamFailure as e:
                        self.books.host_failed(host, e, attempt_started)
                        self.books.settle(lease, FAILED)
                        last_error, last_status = f"{host}: {e}", 502
                        continue
                    ttft = time.perf_counter() - attempt_started
                    self.metrics.ttft.labels(call.endpoint).observe(ttft)
                    handed_off = True  # the stream owns the response, the lease and the in-flight count now
                    state = StreamState(tail=first)
                    if lease.placed is not None and call.endpoint in CHAT_ENDPOINTS:
                        state.answer = AnswerText()
                    retries = attempt - 1
                    return RelayResponse(
                        relay(call, host, chunks, first, state, self._broke),
                        on_close=lambda: self._stream_closed(call, host, resp, lease, state, started,
                                                             attempt_started, ttft, retries),
                        status_code=resp.status, media_type=resp.content_type,
                    )
                except UpstreamFailure as e:
                    self.books.host_failed(host, e, attempt_started)
                    self.books.settle(lease, FAILED)
                    last_error, last_status = f"{host}: {e}", 502
                    continue
                finally:
                    if not handed_off:
                        await resp.close()
            except BaseException:  # cancelled (client gone, shutdown past its grace) or a bug: never leak
                if not handed_off:
                    self.books.settle(lease, FAILED)
                raise
            finally:
                if not handed_off:
                    self.registry.end(host)
        if not_found_body is not None:
            self.books.record(call, started, 404, "", len(tried), error="model not found", wait_s=waited)
            return Response(not_found_body, status_code=404, media_type="application/json")
        if not tried and requeues == 0:
            msg = (f"no available host for model '{call.model}'" if call.model else "no available host") + \
                "; check `curl /api/stats` and that your Ollama servers are running"
            self.books.record(call, started, 503, "", 0, error=msg, wait_s=waited)
            return error_response(call.api, 503, msg)
        msg = f"all attempts failed ({len(tried) or 1} host(s) tried); last error: {last_error}"
        self.books.record(call, started, last_status, "", len(tried), error=msg, wait_s=waited)
        return error_response(call.api, last_status, msg)

    def _done(self) -> None:
        self.active -= 1
        self.metrics.active_requests.dec()

    async def _admit_quietly(self, call: Call, tried: set[str]) -> Optional[Lease]:
        try:
            return await self.queue.admit(call, frozenset(tried))
        except (NoHostForModel, Rejected):
            return None

    def _broke(self, host: str, error: UpstreamFailure) -> None:
        self.books.host_failed(host, error, time.perf_counter())

    async def _stream_closed(self, call: Call, host: str, resp, lease: Lease, state: StreamState,  # type: ignore[no-untyped-def]
                             started: float, attempt_started: float, ttft: float, retries: int) -> None:
        """Bookkeeping once a streamed answer ended: finished, failed, or its client went away."""
        try:
            await resp.close()
        finally:
            self.registry.end(host)
            self.active -= 1
            self.metrics.active_requests.dec()
        tokens = None
        if state.complete and state.host_error is None:
            usage = usage_from(state.tail)
            tokens = usage.eval_count
            self.books.served(call, host, lease, (time.perf_counter() - attempt_started) * 1000, usage, ttft_s=ttft,
                              answer=state.answer.text if state.answer is not None else None)
        elif state.complete:  # the host sent an error line inside its 200 stream
            self.books.stream_error(host, state.host_error)  # type: ignore[arg-type]
            self.books.settle(lease, FAILED)
            state.error = f"the host answered an error inside the stream: {state.host_error}"
            state.status = 502
        else:
            self.books.settle(lease, FAILED)
            if state.error is None:
                state.error, state.status = "client went away before the answer was complete", 499
        self.books.record(call, started, state.status, host, retries, tokens, state.error, lease=lease)

    # pinned calls: model management with X-SOLLOL-Host ---------------------------------------------
    async def _pinned(self, call: Call, started: float, host: str) -> Response:
        """To the named host only; its answer (even a 5xx) is passed on as it is, once."""
        if host not in self.registry:
            msg = f"no such host {host}; see /api/stats"
            self.books.record(call, started, 404, "", 0, error=msg)
            return error_response(call.api, 404, msg)
        attempt_started = time.perf_counter()
        self.registry.begin(host)
        handed_off = False
        try:
            try:
                resp = await self.executor.open(host, call.method, call.path, call.body, call.timeout,
                                                stream=call.stream, content_type=call.content_type)
            except UpstreamFailure as e:
                self.books.host_failed(host, e, attempt_started)
                msg = f"{host}: {e}"
                self.books.record(call, started, 502, host, 0, error=msg)
                return error_response(call.api, 502, msg)
            try:
                if resp.status >= 400 or not call.stream:
                    body = await resp.read()
                    error = None if resp.status < 400 else f"HTTP {resp.status} {body[:200].decode(errors='replace')}"
                    if resp.status < 400:
                        self.registry.record_success(host, (time.perf_counter() - attempt_started) * 1000)
                    self.books.record(call, started, resp.status, host, 0, error=error)
                    return Response(body, status_code=resp.status, media_type=resp.content_type)
                chunks = resp.chunks().__aiter__()
                try:
                    first = await chunks.__anext__()
                except StopAsyncIteration:
                    first = b""
                handed_off = True
                state = StreamState(tail=first)
                return RelayResponse(
                    relay(call, host, chunks, first, state, self._broke),
                    on_close=lambda: self._stream_closed(call, host, resp, None, state, started,  # type: ignore[arg-type]
                                                         attempt_started, 0.0, 0),
                    status_code=resp.status, media_type=resp.content_type)
            except UpstreamFailure as e:
                self.books.host_failed(host, e, attempt_started)
                msg = f"{host}: {e}"
                self.books.record(call, started, 502, host, 0, error=msg)
                return error_response(call.api, 502, msg)
            finally:
                if not handed_off:
                    await resp.close()
        finally:
            if not handed_off:
                self.registry.end(host)
