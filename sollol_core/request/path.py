"""The request path: one client request through the stages DESIGN.md draws.

    runner       the runner options it asks for, rewritten where the config sets them per model
                 (runner_options)
    prompt       the canonical prompt key, made only where placement can gain from it (the fast lane)
    admission    the gateway queue (admission.GatewayQueue): a slot on a host, now or after waiting;
                 placement (placement.Placement) chooses the host inside it
    attempt      one upstream call (attempt.Attempt), judged by outcome.classify
    relay        a stream byte for byte; after the first byte a failure ends with the API's error frame
    books        the one place the end of each attempt and of the request is written down (books.Books)

A request that fails before its first byte reached the client is retried on another host; a busy answer
sends it back to the head of the queue (busy is not broken); after the first byte it ends with an error
frame in the API's own shape, never silently.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Mapping, Optional

from ..cluster.adaptive import ModelListRefresher
from ..cluster.hosts import HostRegistry
from ..config import SollolConfig
from ..errors import ClientGone, NoHostForModel, Rejected
from ..observability.metrics import Metrics
from ..prompt_cache.canonical import prompt_key_async
from ..upstream.executor import Executor
from . import runner_options
from .admission import GatewayQueue
from .answer import Answer, Whole, error_answer
from .attempt import Attempt, Trip
from .books import Books
from .call import BATCH, Call
from .lease import Lease
from .outcome import Outcome, Verdict
from .placement import Placement
from .shapes import api_for_path

MAX_REQUEUES = 50  # busy answers one request may meet before it is answered 503 (its class timeout also bounds it)


class RequestPath:
    def __init__(self, config: SollolConfig, registry: HostRegistry, executor: Executor, metrics: Metrics,
                 queue: GatewayQueue, placement: Placement, books: Books, model_lists: ModelListRefresher) -> None:
        self.config = config
        self.registry = registry
        self.executor = executor
        self.metrics = metrics
        self.queue = queue
        self.placement = placement
        self.books = books
        self.model_lists = model_lists
        self.active = 0  # client requests in progress (a stream until its last byte)
        metrics.active_requests.set_function(lambda: self.active)  # read at scrape time, not kept per request

    def reject(self, endpoint: str, status: int, message: str, api: Optional[str] = None,
               headers: Optional[Mapping[str, str]] = None) -> Whole:
        """Bad input answered by the gateway itself: counted and logged like any request."""
        api = api or api_for_path(endpoint)
        call = Call(endpoint=endpoint, method="", path=endpoint, body=None, model=None, stream=False, timeout=0)
        self.books.record(call, time.perf_counter(), status, "", 0, error=message)
        return error_answer(api, status, message, headers)

    async def forward(self, call: Call, pinned: Optional[str] = None) -> Answer:
        """The answer to one client request; `pinned` sends it to that host only (X-SOLLOL-Host)."""
        trip = Trip(call, time.perf_counter(), self._finished)
        self.active += 1
        try:
            answer = await (self._pinned(trip, pinned) if pinned is not None else self._placed(trip))
        except BaseException:
            self._finished()
            raise
        if not trip.handed_off:
            self._finished()
        return answer

    def _finished(self) -> None:
        self.active -= 1

    # placed by the queue ----------------------------------------------------------------------------
    async def _placed(self, trip: Trip) -> Answer:
        call = trip.call
        if call.runner is None:
            runner_options.prepare(call, self.config.models)  # before the prompt: the options are part of it
        if call.prompt is None and call.data is not None and self.placement.uses_prompt(call):
            call.prompt = await prompt_key_async(call.path, call.data, block_chars=self.config.cache.block_chars,
                                                 session=call.session,
                                                 size_hint=len(call.body) if isinstance(call.body, bytes) else None)
        while trip.attempts <= self.config.max_retries:
            try:
                lease = await self._lease(trip)
            except NoHostForModel:
                return self._refuse(trip, 404, f"model '{call.model}' not found on any host")
            except Rejected as r:
                return self._refuse(trip, r.status, r.message, r.headers)
            except ClientGone:  # it left while waiting: nothing was sent anywhere, nobody hears the answer
                return self._refuse(trip, 499, "client went away while the request waited in the gateway queue")
            if lease is None:
                break
            answer = await self._attempt(trip, lease)
            if answer is not None:
                return answer
            if trip.requeues > MAX_REQUEUES:
                break
        return self._give_up(trip)

    async def _lease(self, trip: Trip) -> Optional[Lease]:
        """A slot from the queue; after every candidate failed once, a backoff and one more round."""
        front, trip.front = trip.front, False
        lease = await self._admit(trip, front)
        if lease is None and trip.tried - trip.no_model:
            await asyncio.sleep(self.config.retry_backoff_multiplier * (2 ** max(0, trip.attempts - 1)))
            trip.tried = set(trip.no_model)
            try:
                lease = await self.queue.admit(trip.call, frozenset(trip.tried))
            except (NoHostForModel, Rejected):
                lease = None
        if lease is not None:
            trip.waited += lease.wait_s
            trip.tried.add(lease.host)
            if trip.attempts:
                self.metrics.retries.labels(trip.call.endpoint).inc()
            trip.attempts += 1
        return lease

    async def _admit(self, trip: Trip, front: bool) -> Optional[Lease]:
        """NoHostForModel only once the model lists were re-read and still lack the model (a model pulled
        a moment ago is not in the lists until the next round)."""
        try:
            return await self.queue.admit(trip.call, frozenset(trip.tried), front=front)
        except NoHostForModel:
            pass
        await self.model_lists.refresh()
        return await self.queue.admit(trip.call, frozenset(trip.tried), front=front)

    async def _attempt(self, trip: Trip, lease: Lease) -> Optional[Answer]:
        """One attempt; an answer ends the request, None sends it on (the trip says where)."""
        attempt = Attempt(trip, lease.host, lease, self.executor, self.books)
        try:
            if trip.call.priority == BATCH and self.config.queue.preempt_batch:
                outcome = await self._open_preemptible(attempt, lease)
            else:
                outcome = await attempt.open()
            if outcome.verdict is Verdict.PASS:
                answer = await (attempt.stream() if trip.call.stream else attempt.whole())
                if answer is not None:
                    return answer
                assert attempt.outcome is not None
                outcome = attempt.outcome
            else:
                await attempt.finish(outcome)
        except BaseException:
            attempt.abandon()
            raise
        if outcome.verdict is Verdict.CLIENT_ERROR:
            self.books.record(trip.call, trip.started, outcome.status, lease.host, trip.retries, lease=lease,
                              error=outcome.reason)
            return Whole(outcome.status, attempt.body, attempt.content_type)
        self._note(trip, lease.host, outcome, attempt.body)
        return None

    async def _open_preemptible(self, attempt: Attempt, lease: Lease) -> Outcome:
        """Open a batch request's call while a waiting high request may take its slot (queue.preempt_batch):
        until the host's answer begins, the call is given up and the request goes back to the queue."""
        preempted: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def give_up() -> None:
            if not preempted.done():
                preempted.set_result(None)

        self.queue.preemptible(lease, give_up)
        work = asyncio.ensure_future(attempt.open())
        try:
            racing: set[asyncio.Future[Any]] = {work, preempted}
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.queue.preemptible(lease, None)
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if not work.cancelled() and work.done():
            return work.result()
        return Outcome(Verdict.PREEMPTED, "a waiting high request took its slot before its answer began")

    @staticmethod
    def _note(trip: Trip, host: str, outcome: Outcome, body: bytes) -> None:
        if outcome.verdict is Verdict.BUSY or outcome.verdict is Verdict.PREEMPTED:  # not a failed attempt
            trip.tried.discard(host)
            trip.attempts -= 1
            trip.requeues += 1
            trip.front = True
            trip.last_error, trip.last_status = f"{host}: busy: {outcome.reason}", 503
        elif outcome.verdict is Verdict.MODEL_MISSING and trip.call.model:
            trip.no_model.add(host)
            trip.not_found_body = body
        elif outcome.verdict is Verdict.UNFIT:
            trip.last_error, trip.last_status = f"{host}: cannot load {trip.call.model}: {outcome.reason}", 502
        else:
            trip.last_error, trip.last_status = f"{host}: {outcome.reason}", 502

    def _refuse(self, trip: Trip, status: int, message: str, headers: Optional[Mapping[str, str]] = None) -> Whole:
        self.books.record(trip.call, trip.started, status, "", trip.attempts, error=message, wait_s=trip.waited)
        return error_answer(trip.call.api, status, message, headers)

    def _give_up(self, trip: Trip) -> Whole:
        call = trip.call
        if trip.not_found_body is not None:
            self.books.record(call, trip.started, 404, "", len(trip.tried), error="model not found",
                              wait_s=trip.waited)
            return Whole(404, trip.not_found_body)
        if not trip.tried and trip.requeues == 0:
            return self._refuse(trip, 503, (f"no available host for model '{call.model}'" if call.model else
                                            "no available host") +
                                "; check `curl /api/stats` and that your Ollama servers are running")
        msg = f"all attempts failed ({len(trip.tried) or 1} host(s) tried); last error: {trip.last_error}"
        self.books.record(call, trip.started, trip.last_status, "", len(trip.tried), error=msg, wait_s=trip.waited)
        return error_answer(call.api, trip.last_status, msg)

    # pinned: model management with X-SOLLOL-Host ------------------------------------------------------
    async def _pinned(self, trip: Trip, host: str) -> Answer:
        """To the named host only; its answer (even a 5xx) is passed on as it is, once."""
        call = trip.call
        if host not in self.registry:
            return self._refuse(trip, 404, f"no such host {host}; see /api/stats")
        trip.attempts = 1
        attempt = Attempt(trip, host, None, self.executor, self.books)
        try:
            outcome = await attempt.open()
            if outcome.status == 0:  # no answer at all: the host (or our executor) failed
                await attempt.finish(outcome)
                msg = f"{host}: {outcome.reason}"
                self.books.record(call, trip.started, 502, host, 0, error=msg)
                return error_answer(call.api, 502, msg)
            if outcome.verdict is Verdict.PASS:
                answer = await (attempt.stream() if call.stream else attempt.whole())
                if answer is not None:
                    return answer
                assert attempt.outcome is not None
                msg = f"{host}: {attempt.outcome.reason}"
                self.books.record(call, trip.started, 502, host, 0, error=msg)
                return error_answer(call.api, 502, msg)
            await attempt.finish(Outcome(Verdict.PASSED_ON, outcome.reason, outcome.status))
        except BaseException:
            attempt.abandon()
            raise
        error = f"HTTP {attempt.status} {attempt.body[:200].decode(errors='replace')}"
        self.books.record(call, trip.started, attempt.status, host, 0, error=error)
        return Whole(attempt.status, attempt.body, attempt.content_type)
