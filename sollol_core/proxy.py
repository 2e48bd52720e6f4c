"""Forwarding one client request to the best host, with retries and streaming.

Rules (DESIGN.md): a request that fails before its first byte reached the client is retried on another
host; after the first byte the stream ends with an error line or frame in the API's own shape, never
silently. The gateway's own answers (no host, model not found) take the shape of the call's API family.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Optional

import orjson
from starlette.responses import Response, StreamingResponse

from . import api_errors
from .adaptive import ModelListRefresher
from .config import SollolConfig
from .executors import Executor, ExecutorFailure, UpstreamFailure, UpstreamResponse
from .hosts import HostRegistry
from .metrics import Metrics
from .request import Call
from .requestlog import RequestLog
from .routing import NoHostForModel, Router
from .snapshot import RequestRecord

log = logging.getLogger("sollol.proxy")


def _usage_from(payload: bytes) -> tuple[Optional[int], Optional[float]]:
    """eval_count and eval seconds from an Ollama answer or its last NDJSON line."""
    line = payload.rstrip().rsplit(b"\n", 1)[-1]
    if line.startswith(b"data:"):
        return None, None
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    count = data.get("eval_count")
    duration = data.get("eval_duration")
    if isinstance(count, int):
        return count, (duration / 1e9 if isinstance(duration, (int, float)) and duration > 0 else None)
    usage = data.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        return usage["completion_tokens"], None
    return None, None


def _is_model_not_found(status: int, body: bytes) -> bool:
    return status == 404 and b"not found" in body


class Proxy:
    def __init__(self, config: SollolConfig, registry: HostRegistry, router: Router,
                 executor: Executor, metrics: Metrics, requests: RequestLog,
                 model_lists: ModelListRefresher) -> None:
        self.config = config
        self.registry = registry
        self.router = router
        self.executor = executor
        self.metrics = metrics
        self.requests = requests
        self.model_lists = model_lists
        self.active = 0

    # bookkeeping ----------------------------------------------------------------------------------
    def _finish(self, call: Call, started: float, status: int, host: str, retries: int,
                tokens: Optional[int] = None, error: Optional[str] = None) -> None:
        elapsed = time.perf_counter() - started
        self.metrics.observe(call.endpoint, status, elapsed)
        self.requests.add(RequestRecord(time=time.time(), endpoint=call.endpoint, model=call.model or "",
                                        host=host, status=status, latency_ms=round(elapsed * 1000, 2),
                                        tokens=tokens, retries=retries, error=error))

    def reject(self, endpoint: str, status: int, message: str,
               headers: Optional[dict[str, str]] = None) -> Response:
        """Bad input answered by the gateway itself: counted and logged like any request, then answered
        in the error shape of the endpoint's API family."""
        self.metrics.observe(endpoint, status, 0.0)
        self.requests.add(RequestRecord(time=time.time(), endpoint=endpoint, model="", host="", status=status,
                                        latency_ms=0.0, tokens=None, retries=0, error=message))
        return api_errors.error_response(api_errors.api_for_path(endpoint), status, message, headers=headers)

    def _fail_host(self, host: str, error: str | UpstreamFailure, started: float) -> None:
        if isinstance(error, ExecutorFailure):  # e.g. a Ray actor died: retry, but the host is not at fault
            log.warning("executor failed on a call to %s: %s", host, error)
            return
        error = str(error)
        self.registry.record_failure(host, error, latency_ms=(time.perf_counter() - started) * 1000)
        self.metrics.worker_failures.labels(host).inc()
        log.warning("host %s failed: %s", host, error)

    def _error_line(self, call: Call, message: str) -> bytes:
        return api_errors.stream_error_frame(call.api, call.sse, message)

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
            response = await self._forward(call, started, pinned)
            streaming_handed_off = isinstance(response, StreamingResponse)
            return response
        finally:
            if not streaming_handed_off:
                self.active -= 1
                self.metrics.active_requests.dec()

    def _route(self, call: Call, tried: set[str], pinned: Optional[str]) -> list:
        if pinned is not None:
            return [] if pinned in tried or pinned not in self.registry else [self.registry.get(pinned)]
        return self.router.route(call.model, frozenset(tried))

    async def _route_known(self, call: Call, tried: set[str], pinned: Optional[str]) -> Optional[list]:
        """The hosts to try; None when no host has the model, even after re-reading every host's model
        list (a model pulled a moment ago is not in the lists until the next adaptive round)."""
        try:
            return self._route(call, tried, pinned)
        except NoHostForModel:
            pass
        await self.model_lists.refresh()
        try:
            return self._route(call, tried, pinned)
        except NoHostForModel:
            return None

    async def _forward(self, call: Call, started: float, pinned: Optional[str]) -> Response:
        tried: set[str] = set()
        no_model: set[str] = set()  # hosts that said they do not have the model: not asked again
        last_error = "no host available"
        last_status = 503
        not_found_body: Optional[bytes] = None
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            order = await self._route_known(call, tried, pinned)
            if order is None:
                msg = f"model '{call.model}' not found on any host"
                self._finish(call, started, 404, "", attempt, error=msg)
                return api_errors.error_response(call.api, 404, msg)
            if not order and tried - no_model:
                # every candidate failed once: wait (backoff), then give them another chance
                await asyncio.sleep(self.config.retry_backoff_multiplier * (2 ** (attempt - 1)))
                tried = set(no_model)
                order = await self._route_known(call, tried, pinned) or []
            if not order:
                break
            host = order[0].address
            tried.add(host)
            if attempt:
                self.metrics.retries.labels(call.endpoint).inc()
            attempt_started = time.perf_counter()
            self.registry.begin(host)
            ended = False
            try:
                resp = await self.executor.open(host, call.method, call.path, call.body, call.timeout,
                                                stream=call.stream, content_type=call.content_type)
            except UpstreamFailure as e:
                self.registry.end(host)
                self._fail_host(host, e, attempt_started)
                last_error, last_status = f"{host}: {e}", 502
                continue
            except BaseException:  # cancelled (shutdown past its grace) or a bug: never leak the count
                self.registry.end(host)
                raise
            try:
                if resp.status >= 500:
                    body = await resp.read()
                    last_error = f"{host}: HTTP {resp.status} {body[:200].decode(errors='replace')}"
                    last_status = 502
                    if pinned is not None:  # model management: the host's own answer, passed on as it is
                        self._finish(call, started, resp.status, host, attempt, error=last_error)
                        return Response(body, status_code=resp.status, media_type=resp.content_type)
                    self._fail_host(host, f"HTTP {resp.status}", attempt_started)
                    continue
                if call.model and resp.status == 404 and _is_model_not_found(404, await resp.read()):
                    # the host's model list was stale: remember, and try a host that has it
                    self.registry.forget_model(host, call.model)
                    no_model.add(host)
                    not_found_body = await resp.read()
                    continue
                if resp.status >= 400 or not call.stream:
                    body = await resp.read()
                    elapsed_ms = (time.perf_counter() - attempt_started) * 1000
                    tokens, eval_s = _usage_from(body) if resp.status < 400 else (None, None)
                    self.registry.record_success(host, elapsed_ms, tokens=tokens, eval_s=eval_s,
                                                 model=call.model if resp.status < 400 else None)
                    self._finish(call, started, resp.status, host, attempt, tokens)
                    return Response(body, status_code=resp.status, media_type=resp.content_type)
                # streaming: wait for the first chunk before answering, so a failure is still retryable
                chunks = resp.chunks().__aiter__()
                try:
                    first = await chunks.__anext__()
                except StopAsyncIteration:
                    first = b""
                except UpstreamFailure as e:
                    self._fail_host(host, e, attempt_started)
                    last_error, last_status = f"{host}: {e}", 502
                    continue
                ttft = time.perf_counter() - attempt_started
                self.metrics.ttft.labels(call.endpoint).observe(ttft)
                ended = True  # the stream owns the response and the in-flight count from here
                state = _StreamState(tail=first)
                return RelayResponse(
                    self._relay(call, host, chunks, first, attempt_started, state),
                    on_close=lambda: self._stream_closed(call, host, resp, state, started, attempt_started,
                                                         ttft, attempt),
                    status_code=resp.status, media_type=resp.content_type,
                )
            except UpstreamFailure as e:
                self._fail_host(host, e, attempt_started)
                last_error, last_status = f"{host}: {e}", 502
                continue
            finally:
                if not ended:
                    await resp.close()
                    self.registry.end(host)
        if not_found_body is not None:
            self._finish(call, started, 404, "", len(tried), error="model not found")
            return Response(not_found_body, status_code=404, media_type="application/json")
        if not tried:
            msg = (f"no available host for model '{call.model}'" if call.model else "no available host") + \
                "; check `curl /api/stats` and that your Ollama servers are running"
            self._finish(call, started, 503, "", 0, error=msg)
            return api_errors.error_response(call.api, 503, msg)
        msg = f"all attempts failed ({len(tried)} host(s) tried); last error: {last_error}"
        self._finish(call, started, last_status, "", len(tried), error=msg)
        return api_errors.error_response(call.api, last_status, msg)

    async def _relay(self, call: Call, host: str, chunks: AsyncIterator[bytes], first: bytes,
                     attempt_started: float, state: "_StreamState") -> AsyncIterator[bytes]:
        """Chunks as they arrive; a failure after the first byte ends the stream with an error line."""
        try:
            if first:
                yield first
            while True:
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                state.tail = (state.tail + chunk)[-4096:]  # the final line may be split across reads
                yield chunk
            state.complete = True
        except UpstreamFailure as e:
            state.error = f"upstream host {host} failed mid-stream: {e}"
            state.status = 502
            self._fail_host(host, e, attempt_started)
            sep = b"" if state.tail.endswith(b"\n") else b"\n"
            yield sep + self._error_line(call, state.error)

    async def _stream_closed(self, call: Call, host: str, resp: UpstreamResponse, state: "_StreamState",
                             started: float, attempt_started: float, ttft: float, retries: int) -> None:
        """Bookkeeping once a streamed answer ended: finished, failed, or its client went away."""
        await resp.close()
        self.registry.end(host)
        self.active -= 1
        self.metrics.active_requests.dec()
        tokens = None
        if state.complete:
            tokens, eval_s = _usage_from(state.tail)
            self.registry.record_success(host, (time.perf_counter() - attempt_started) * 1000,
                                         ttft_ms=ttft * 1000, tokens=tokens, eval_s=eval_s, model=call.model)
        elif state.error is None:
            state.error, state.status = "client went away before the answer was complete", 499
        self._finish(call, started, state.status, host, retries, tokens, state.error)


@dataclass
class _StreamState:
    tail: bytes  # the end of the answer so far (for the final chunk's token counts)
    complete: bool = False
    error: Optional[str] = None
    status: int = 200


class RelayResponse(StreamingResponse):
    """A streamed answer whose bookkeeping runs however it ends.

    When a client goes away before the first chunk was sent, Starlette never starts the body generator,
    so a `finally` inside it would never run (leaking the upstream connection and the in-flight count).
    """

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], Awaitable[None]],
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()
