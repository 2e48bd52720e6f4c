"""Attempt: one upstream call for one request, on one host.

It opens the call through the executor (the in-loop pool, or a Ray actor), reads as much as its verdict
needs (the status; an error answer's body; a stream's first chunk, so that a failure before the first byte
can still go elsewhere), and ends exactly once: the upstream response closed, the host's in-flight count
given back, the verdict booked (which ends the lease). `Trip` is what the request carries from attempt to
attempt: where it was tried, what it waited, the last error.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..errors import UpstreamFailure
from ..prompt_cache.runner import RunnerSent
from ..upstream.executor import Executor, UpstreamResponse
from .answer import Streamed, Whole
from .books import Books
from .call import Call
from .lease import Lease
from .outcome import Outcome, Verdict, classify, classify_failure
from .relay import StreamState, relay
from .usage import CHAT_ENDPOINTS, AnswerText, Usage, answer_of, usage_from


@dataclass(slots=True, eq=False)
class Trip:
    """One client request on its way through the attempts."""

    call: Call
    started: float
    finished: Callable[[], None]  # once the request has ended (the path's in-flight count)
    tried: set[str] = field(default_factory=set)
    no_model: set[str] = field(default_factory=set)  # hosts that said they lack the model: not asked again
    waited: float = 0.0
    attempts: int = 0
    requeues: int = 0
    front: bool = False  # the next wait is at the head of the line (a busy host sent it back)
    last_error: str = "no host available"
    last_status: int = 503
    not_found_body: Optional[bytes] = None
    handed_off: bool = False  # an answer whose end is booked later (after its bytes) was handed over

    @property
    def retries(self) -> int:
        return max(0, self.attempts - 1)


class Attempt:
    def __init__(self, trip: Trip, host: str, lease: Optional[Lease], executor: Executor, books: Books) -> None:
        self.trip = trip
        self.call = trip.call
        self.host = host
        self.lease = lease
        self.executor = executor
        self.books = books
        self.started = 0.0
        self.body = b""  # an error answer's body
        self.content_type = "application/json"
        self.status = 0
        self.outcome: Optional[Outcome] = None  # the verdict it ended with
        self._resp: Optional[UpstreamResponse] = None
        self._upstream_open = False
        self._booked = False
        self._runner: Optional[RunnerSent] = None  # the runner options it was sent with (the runner table's)

    # opening ----------------------------------------------------------------------------------------
    async def open(self) -> Outcome:
        """Send the request and read its status (and an error answer's body): the verdict so far."""
        call = self.call
        self.started = self.books.opened(self.host)
        self._upstream_open = True
        self._runner = self.books.sent(call, self.host)
        try:
            self._resp = resp = await self.executor.open(self.host, call.method, call.path, call.body, call.timeout,
                                                         stream=call.stream, content_type=call.content_type)
        except UpstreamFailure as e:
            return classify_failure(e)
        self.status = resp.status
        self.content_type = resp.content_type
        if resp.status >= 400:
            try:
                self.body = await resp.read()
            except UpstreamFailure as e:
                return classify_failure(e)
            return classify(resp.status, self.body)
        return Outcome(Verdict.PASS, "", resp.status)

    # the answer -------------------------------------------------------------------------------------
    async def whole(self) -> Optional[Whole]:
        """The whole answer, booked once its bytes are on their way (not on the client's clock); None when
        reading it failed (nothing reached the client: the request may go elsewhere)."""
        assert self._resp is not None
        try:
            body = await self._resp.read()
        except UpstreamFailure as e:
            await self.finish(classify_failure(e))
            return None
        await self._close_upstream()
        follow = self.lease is not None and self.lease.claim is not None and self.call.endpoint in CHAT_ENDPOINTS
        self.trip.handed_off = True

        def after() -> None:
            usage = usage_from(body)
            self._book(Outcome(Verdict.PASS, "", self.status), usage=usage,
                       answer=answer_of(body) if follow else None)
            self.books.record(self.call, self.trip.started, self.status, self.host, self.trip.retries,
                              usage.eval_count, lease=self.lease)
            self.trip.finished()

        return Whole(self.status, body, self.content_type, after=after)

    async def stream(self) -> Optional[Streamed]:
        """The stream, once its first chunk arrived; None when it failed before that (retry elsewhere)."""
        assert self._resp is not None
        chunks = self._resp.chunks().__aiter__()
        try:
            first = await chunks.__anext__()
        except StopAsyncIteration:
            first = b""
        except UpstreamFailure as e:
            await self.finish(classify_failure(e))
            return None
        ttft = time.perf_counter() - self.started
        self.books.metrics.ttft.labels(self.call.endpoint).observe(ttft)
        state = StreamState(tail=first)
        if self.lease is not None and self.lease.claim is not None and self.call.endpoint in CHAT_ENDPOINTS:
            state.answer = AnswerText()
        self.trip.handed_off = True
        return Streamed(self.status, relay(self.call, self.host, chunks, first, state), self.content_type,
                        on_close=lambda: self._stream_closed(state, ttft))

    async def _stream_closed(self, state: StreamState, ttft: float) -> None:
        """However the stream ended: finished, broken by the host, an error line inside it, client gone."""
        try:
            await self._close_upstream()
        finally:
            tokens = None
            if state.complete and state.host_error is None:
                usage = usage_from(state.tail)
                tokens = usage.eval_count
                self._book(Outcome(Verdict.PASS, "", self.status), usage=usage, ttft_s=ttft,
                           answer=state.answer.text if state.answer is not None else None)
            elif state.complete:
                self._book(Outcome(Verdict.ERROR_IN_STREAM, state.host_error or "", self.status))
                state.error = f"the host answered an error inside the stream: {state.host_error}"
                state.status = 502
            elif state.error is not None:
                self._book(Outcome(Verdict.BROKE_MID_STREAM, state.broke or state.error))
            else:
                self._book(Outcome(Verdict.CLIENT_GONE, "client went away"))
                state.error, state.status = "client went away before the answer was complete", 499
            self.books.record(self.call, self.trip.started, state.status, self.host, self.trip.retries, tokens,
                              state.error, lease=self.lease)
            self.trip.finished()

    # ending -----------------------------------------------------------------------------------------
    async def finish(self, outcome: Outcome) -> None:
        """End the attempt with this verdict: upstream closed, in-flight count back, verdict booked."""
        try:
            await self._close_upstream()
        finally:
            self._book(outcome)

    def abandon(self) -> None:
        """Cancelled (the client went away, the gateway stops) or a bug: release everything, now."""
        resp, self._resp = self._resp, None
        if resp is not None:
            asyncio.ensure_future(resp.close())
        if self._upstream_open:
            self._upstream_open = False
            self.books.closed(self.host)
        self._book(Outcome(Verdict.CLIENT_GONE, "cancelled"))

    async def _close_upstream(self) -> None:
        resp, self._resp = self._resp, None
        try:
            if resp is not None:
                await resp.close()
        finally:
            if self._upstream_open:
                self._upstream_open = False
                self.books.closed(self.host)

    def _book(self, outcome: Outcome, *, usage: Optional[Usage] = None, ttft_s: Optional[float] = None,
              answer: Optional[str] = None) -> None:
        if self._booked:
            return
        self._booked = True
        self.outcome = outcome
        self.books.apply(self.call, self.host, self.lease, outcome, self.started, usage=usage, ttft_s=ttft_s,
                         answer=answer, runner=self._runner)
