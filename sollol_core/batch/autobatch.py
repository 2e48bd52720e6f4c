"""The autobatch loop and the chunk dispatcher, both in the core event loop.

When a batch starts (every autobatch_interval seconds with at least autobatch_min_batch_size documents
queued; as soon as autobatch_max_batch_size documents wait; on a trigger, whatever the minimum), up to
autobatch_max_batch_size documents are claimed and cut into chunks of one model each. While the queue
holds a full batch, batches follow each other without a pause, overlapping so that no host waits; when a
batch ends and at least autobatch_min_batch_size documents wait, the next starts at once too (waiting for
the interval would only leave the hosts idle).

Each chunk is one /api/embed call. The router picks its host here, in the core, so the registry's in-flight
counts and statistics stay the single truth (begin / end / record_success / record_failure); a Dask task
makes the call. A host takes at most batch_in_flight_per_host chunks at once, and gets its next one when
one finishes: a host twice as fast finishes, and so takes, twice as many chunks. A chunk that fails goes to
another host (the failed one excluded); when every host failed it once, one more round after a backoff,
then its documents go back to the queue (or are marked failed after batch_max_attempts host errors).
A host that cannot be reached costs its documents nothing: they wait for a host.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence

from ..cluster.adaptive import refresh_host
from ..cluster.hosts import HostState
from ..errors import DaskUnavailable, NoHostForModel, Rejected
from ..request.call import BATCH, Call
from ..request.lease import Lease, Settle
from ..request.outcome import SERVED, Outcome, Verdict, classify
from .deps import BatchDeps
from .runner import DaskRunner, portable
from .store import BatchStore, ClaimedDoc
from .task import embed_chunk

EMBED_CHUNK = portable(embed_chunk)  # sent to the workers by value



class DocumentQueue(Protocol):
    """What the loop needs of the durable queue (manager.BatchManager): its store, and the calls that run
    in the database thread."""

    @property
    def store(self) -> Optional[BatchStore]: ...

    async def claim(self, limit: int, token: int) -> list[ClaimedDoc]: ...

    async def complete(self, seqs: Sequence[int], embeddings: Sequence[str], token: int) -> int: ...

    async def fail(self, seqs: Sequence[int], error: str, token: int) -> int: ...

    async def release(self, seqs: Sequence[int], token: int, *, count_attempt: bool, max_attempts: int,
                      error: Optional[str]) -> tuple[int, int]: ...

log = logging.getLogger("sollol.batch")
ROUNDS = 2  # times a chunk may go through every host before its documents go back to the queue
SCAN_LIMIT = 256  # pending chunks looked at per dispatch pass
DASK_GRACE_S = 30.0  # on top of the HTTP timeouts, for a task waiting in Dask


@dataclass(eq=False)
class Chunk:
    docs: list[ClaimedDoc]
    model: str
    tried: set[str] = field(default_factory=set)
    errors: int = 0  # failures the hosts are to blame for
    rounds: int = 0
    last_error: str = ""
    not_before: float = 0.0  # loop time; a chunk waits out its backoff
    refreshed: bool = False  # model lists re-read once after "no host has the model"
    lost: int = 0  # times its Dask task was lost

    @property
    def seqs(self) -> list[int]:
        return [d.seq for d in self.docs]


def _judge(kind: str, status: int, payload: Any) -> Outcome:
    """The verdict on a chunk's answer, by the live path's rules (task.embed_chunk says what came back)."""
    if kind == "ok":
        return SERVED
    if kind == "answer":
        return classify(status, payload if isinstance(payload, bytes) else str(payload).encode())
    prefix = "cannot reach the host: " if kind == "unreachable" else ""
    return Outcome(Verdict.HOST_FAILED, prefix + str(payload))


class AutoBatch:
    def __init__(self, deps: BatchDeps, queue: DocumentQueue, runner: DaskRunner) -> None:
        self.queue = queue
        self.deps = deps
        self.config = deps.config
        self.runner = runner
        self.books = deps.books
        self.token = secrets.randbits(62)  # this process's claims; another process's are left alone
        self.pending: deque[Chunk] = deque()
        self.host_load: dict[str, int] = {}
        self.in_flight = 0
        self.acquiring = 0  # chunks waiting for a slot in the gateway queue
        self.slots = 0
        self.chunks_done: dict[str, int] = {}  # host -> chunks it embedded (this session)
        self._wake = asyncio.Event()
        self._trigger = False
        self._drain = False  # a batch just ended: go on with what waits (at least the minimum)
        self._stalled = False  # every host failed: no size-started batch until the next tick or trigger
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._closing = False

    # signals (core loop) --------------------------------------------------------------------------
    def wake(self, trigger: bool = False) -> None:
        if trigger:
            self._trigger = True
        self._wake.set()

    def resume(self) -> None:
        """Documents wait from before this start: go on at once (at least the minimum), as after a batch."""
        self._drain = True
        self._wake.set()

    @property
    def pending_docs(self) -> int:
        return sum(len(c.docs) for c in self.pending)

    # the loop -------------------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self.config.autobatch_interval
        while not self._closing:
            enabled = self.config.autobatch_enabled
            timeout = max(0.0, next_tick - loop.time()) if enabled else None
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            enabled = self.config.autobatch_enabled  # again: it may have been switched off meanwhile
            now = loop.time()
            tick = enabled and now >= next_tick
            if tick or not enabled:
                next_tick = now + self.config.autobatch_interval
            trigger, self._trigger = self._trigger, False
            drain, self._drain = self._drain, False
            if tick or trigger:
                self._stalled = False
            try:
                await self._fill(trigger=trigger, tick=tick or (drain and enabled))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must go on; the documents stay queued
                log.exception("autobatch: could not start a batch")
                await asyncio.sleep(1.0)
            self._pump()

    async def _fill(self, *, trigger: bool, tick: bool) -> None:
        """Claim batches as the rules say; start Dask first when there is work for it."""
        store = self.queue.store
        if store is None or not store.is_open:
            return
        cfg = self.config
        queued = store.queued()
        if queued == 0:
            return
        size_rule = cfg.autobatch_enabled and not self._stalled and queued >= cfg.autobatch_max_batch_size
        tick_rule = tick and queued >= cfg.autobatch_min_batch_size
        if not (trigger or tick_rule or size_rule):
            return
        if not await self.runner.ensure_started(force=trigger):
            return
        self.slots = await self.runner.slots()
        target = self._capacity() * cfg.batch_chunk_size
        claims = 0
        if trigger or tick_rule:
            claims += await self._claim(cfg.autobatch_max_batch_size)
        # a full batch waits: whole chunks only, so no short chunk costs a host a round trip
        full = cfg.autobatch_max_batch_size
        if full >= cfg.batch_chunk_size:
            full -= full % cfg.batch_chunk_size
        while (cfg.autobatch_enabled and not self._stalled and store.queued() >= cfg.autobatch_max_batch_size
               and self.pending_docs < target and claims < 1000):
            got = await self._claim(full)
            if not got:
                break
            claims += 1

    def _capacity(self) -> int:
        """Chunks that can run at once: per-host limit x hosts that take work, within Dask's threads."""
        hosts = sum(1 for h in self.deps.registry.hosts() if h.state == HostState.HEALTHY) or 1
        return max(1, min(self.slots or 1, hosts * self.config.batch_in_flight_per_host))

    async def _claim(self, limit: int) -> int:
        cfg = self.config
        docs = await self.queue.claim(limit, self.token)
        if not docs:
            return 0
        by_model: dict[str, list[ClaimedDoc]] = {}
        for d in docs:
            by_model.setdefault(d.model, []).append(d)
        free = max(1, self._capacity() - self.in_flight - len(self.pending))
        for model, group in by_model.items():
            # as many chunks as free slots when the batch is small, else chunks of batch_chunk_size; sizes even
            n_chunks = max(math.ceil(len(group) / cfg.batch_chunk_size), min(free, len(group)))
            size = math.ceil(len(group) / n_chunks)
            for i in range(0, len(group), size):
                self.pending.append(Chunk(group[i:i + size], model))
        log.debug("batch: %d documents claimed", len(docs))
        return len(docs)

    # dispatch ---------------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Ask the gateway queue for a slot for each waiting chunk while there is capacity (never blocks).

        Chunks take their slots through the same admission as live requests, in the `batch` class, so an
        interactive request waiting for a slot goes first and a chunk holds a slot for one chunk at most."""
        if self._closing or not self.pending:
            return
        if not self.runner.ready:
            self._spawn(self._dask_lost("dask is not running"))
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        capacity = self._capacity()
        earliest: Optional[float] = None
        scanned = 0
        for chunk in list(self.pending):
            if self.in_flight + self.acquiring >= capacity or scanned >= SCAN_LIMIT:
                break
            scanned += 1
            if chunk.not_before > now:
                earliest = chunk.not_before if earliest is None else min(earliest, chunk.not_before)
                continue
            self.pending.remove(chunk)
            self.acquiring += 1
            self._spawn(self._acquire(chunk))
        if earliest is not None and self._timer is None:
            self._timer = loop.call_at(earliest, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    def chunk_call(self, chunk: Chunk) -> Call:
        limit = self.config.batch_in_flight_per_host
        return Call(endpoint="/api/embed (batch)", method="POST", path="/api/embed", body=None, model=chunk.model,
                    stream=False, timeout=self.config.embedding_timeout, priority=BATCH, client="batch",
                    cost=float(len(chunk.docs)), embedding=True,
                    host_filter=lambda host: self.host_load.get(host, 0) < limit)

    async def _acquire(self, chunk: Chunk) -> None:
        """A slot for the chunk (waiting in the queue as long as it must), then its Dask task."""
        lease: Optional[Lease] = None
        try:
            try:
                call = self.chunk_call(chunk)
                lease = await self.deps.queue.admit(call, frozenset(chunk.tried))
            except NoHostForModel:
                self._spawn(self._no_model(chunk))
                return
            except Rejected as e:
                chunk.last_error = e.message
                self._spawn(self._give_back(chunk, count=False))
                return
        finally:
            self.acquiring -= 1
        if lease is None:
            now = asyncio.get_running_loop().time()
            if chunk.tried and chunk.rounds + 1 < ROUNDS:
                chunk.rounds += 1
                chunk.tried.clear()
                chunk.not_before = now + max(0.2, self.config.retry_backoff_multiplier * 2 ** chunk.rounds)
                self.pending.append(chunk)
            else:
                self._stalled = True
                if not chunk.tried:
                    chunk.last_error = "no host available"
                self._spawn(self._give_back(chunk))
            self._pump()
            return
        if self._closing:
            lease.end(Settle.UNTOUCHED)
            return
        self._launch(chunk, call, lease)
        self._pump()

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _launch(self, chunk: Chunk, call: Call, lease: Lease) -> None:
        host = lease.host
        self.in_flight += 1
        self.host_load[host] = self.host_load.get(host, 0) + 1
        started = self.books.opened(host)
        self._spawn(self._run_chunk(chunk, call, lease, started))

    async def _run_chunk(self, chunk: Chunk, call: Call, lease: Lease, started: float) -> None:
        """One chunk on its host, judged and booked as a live request's answer would be."""
        cfg = self.config
        host = lease.host
        result: Optional[tuple[str, int, Any]] = None
        lost: Optional[str] = None
        try:
            result = await self.runner.run(
                EMBED_CHUNK, host, chunk.model, [d.text for d in chunk.docs], cfg.embedding_timeout,
                cfg.connect_timeout, timeout=cfg.embedding_timeout + cfg.connect_timeout + DASK_GRACE_S)
        except DaskUnavailable as e:
            lost = str(e)
        finally:
            self.books.closed(host)
            self.in_flight -= 1
            self.host_load[host] = max(0, self.host_load.get(host, 0) - 1)
        if lost is not None or result is None:
            # not the host's fault: the chunk waits for Dask (a lost worker's task, or Dask gone)
            self.books.apply(call, host, lease, Outcome(Verdict.EXECUTOR_FAILED, f"dask: {lost}"), started)
            await self._task_lost(chunk, lost or "no result")
            return
        kind, status, payload = result
        outcome = _judge(kind, status, payload)
        # after the per-host count: ending the lease lets the queue give this host its next chunk
        self.books.apply(call, host, lease, outcome, started)
        v = outcome.verdict
        if v is Verdict.PASS:
            self.chunks_done[host] = self.chunks_done.get(host, 0) + 1
            self._pump()  # the host's next chunk goes out before this one is written
            if not self.pending and self.in_flight == 0:
                self._drain = True
            self.wake()  # and the loop may claim more
            try:
                await self.queue.complete(chunk.seqs, payload, self.token)
            except Exception:  # noqa: BLE001 - the documents go back and are embedded again
                log.exception("batch: could not store the results of a chunk")
                await self._give_back(chunk, count=False)
            return
        chunk.last_error = f"{host}: {outcome.reason}"
        if v is Verdict.BUSY:  # busy is not broken: back to the head of the line, the host keeps its place
            self.pending.appendleft(chunk)
            self._pump()
            return
        if v is Verdict.CLIENT_ERROR:
            if len(chunk.docs) > 1:  # find the document the host refuses: one by one
                for doc in reversed(chunk.docs):
                    self.pending.appendleft(Chunk([doc], chunk.model))
            else:
                log.warning("batch: %s refused a document: %s", host, outcome.reason)
                await self.queue.fail(chunk.seqs, f"HTTP {status}: {outcome.reason}", self.token)
            self._pump()
            return
        chunk.tried.add(host)
        if v is Verdict.HOST_FAILED and kind != "unreachable":
            chunk.errors += 1  # a host that cannot be reached costs its documents nothing
        log.warning("batch: chunk of %d failed on %s (%s); trying another host", len(chunk.docs), host,
                    outcome.reason)
        self.pending.appendleft(chunk)
        self._pump()

    async def _task_lost(self, chunk: Chunk, lost: str) -> None:
        chunk.lost += 1
        if self.runner.client is None or self.runner.client.status != "running":
            self.pending.appendleft(chunk)
            await self._dask_lost(lost)
        elif chunk.lost > ROUNDS + 1:
            chunk.last_error = f"its dask task was lost {chunk.lost} times: {lost}"
            await self._give_back(chunk, count=True)
        else:
            self.pending.appendleft(chunk)
            log.warning("batch: a chunk's task was lost (%s); sending it again", lost)
            chunk.not_before = asyncio.get_running_loop().time() + 0.5
            self._pump()

    async def _give_back(self, chunk: Chunk, count: Optional[bool] = None) -> None:
        """Documents back to the queue; with host errors, one attempt more (failed at the limit)."""
        count = chunk.errors > 0 if count is None else count
        requeued, failed = await self.queue.release(chunk.seqs, self.token, count_attempt=count,
                                                    max_attempts=self.config.batch_max_attempts,
                                                    error=chunk.last_error or None)
        log.warning("batch: every host failed a chunk (last: %s): %d documents back in the queue, %d failed",
                    chunk.last_error or "no host", requeued, failed)

    async def _no_model(self, chunk: Chunk) -> None:
        if not chunk.refreshed:  # a model pulled a moment ago is not in the lists until the next round
            chunk.refreshed = True
            registry = self.deps.registry
            hosts = [h.address for h in registry.hosts() if h.state != HostState.DISABLED]
            await asyncio.gather(*(refresh_host(self.deps.executor, registry, a) for a in hosts),
                                 return_exceptions=True)
            self.pending.appendleft(chunk)
            self._pump()
            return
        await self.queue.fail(chunk.seqs, f"model '{chunk.model}' not found on any host", self.token)

    async def _dask_lost(self, reason: str) -> None:
        """Dask is gone: every waiting chunk goes back to the queue; Dask starts again with the next batch."""
        self.runner.mark_broken(reason)
        chunks = list(self.pending)
        self.pending.clear()
        for chunk in chunks:
            await self._give_back(chunk, count=False)
        if chunks:
            log.warning("batch: dask lost (%s): %d chunks back in the queue", reason, len(chunks))

    async def close(self) -> None:
        """Stop dispatching; chunks in flight are abandoned (their documents are released by the caller)."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        self.pending.clear()
