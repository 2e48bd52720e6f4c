"""BatchManager: the batch queue, the autobatch loop and Dask, started and stopped with SOLLOL.

Built by wiring.build with narrow parts (BatchDeps); the service awaits `start()` in the core loop once the
gateway listens and `stop()` after the gateway stopped taking requests. Every database call runs in one thread of its own, never on the
event loop. The database file is opened at start when it exists (documents a crash left behind are queued
again and embedded), otherwise created by the first POST /api/embed/batch, so a gateway that never batches
leaves no file behind.

Jobs belong to their owner (the API key's name, when keys are set): `status` and `job` given an owner show
only its jobs, and `enqueue` holds an owner to its quota. Finished jobs are deleted `batch_retention_hours`
after they finish, by a loop that looks every RETENTION_CHECK_S (or sooner for a short retention).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, Sequence

from ..errors import BatchUnavailable
from ..observability.snapshot import BatchJobView, BatchView
from .autobatch import AutoBatch
from .deps import BatchDeps
from .runner import DaskRunner, check_not_spawned_reimport, prepare_process
from .store import BatchStore, ClaimedDoc, JobInfo

ResultRow = tuple[int, str, str]  # (index in the job, document id, embedding as JSON text)

log = logging.getLogger("sollol.batch")
VIEW_JOBS = 20  # jobs in the dashboard's view, newest first
RETENTION_CHECK_S = 300.0  # how often finished jobs past their retention are looked for (at most)


class BatchManager:
    def __init__(self, deps: BatchDeps) -> None:
        check_not_spawned_reimport()
        self.deps = deps
        self.config = deps.config
        self.store: Optional[BatchStore] = None
        self.runner: Optional[DaskRunner] = None
        self.auto: Optional[AutoBatch] = None
        self._db_thread: Optional[ThreadPoolExecutor] = None
        self._loop_task: Optional[asyncio.Task[None]] = None
        self._connect_task: Optional[asyncio.Task[bool]] = None
        self._purge_task: Optional[asyncio.Task[None]] = None
        self._open_lock: Optional[asyncio.Lock] = None
        self.purged = 0  # jobs deleted for their age since start

    # lifecycle (core loop) ------------------------------------------------------------------------
    async def start(self) -> None:
        """Open what a crash left behind, start the autobatch loop (and connect an external Dask)."""
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="sollol-batch-db")
        self._open_lock = asyncio.Lock()
        self.store = BatchStore(self.config.batch_db)
        self.runner = DaskRunner(self.config, self.deps.components)
        if not self.config.dask_scheduler:
            try:
                await asyncio.to_thread(prepare_process)
            except Exception as e:  # noqa: BLE001 - only a local cluster under the dashboard needs it
                log.warning("batch: could not prepare for local Dask workers: %s", e)
        self.runner.announce()
        if self.store.path.exists():
            try:
                await self.open_store()
            except BatchUnavailable:
                pass  # shown as the "batch" component; tried again by the next request
        else:
            self.deps.components.set("batch", "off", f"{self.store.path} is created by the first batch")
        self.auto = AutoBatch(self.deps, self, self.runner)
        self._loop_task = asyncio.create_task(self.auto.run(), name="sollol-autobatch")
        self._purge_task = asyncio.create_task(self._retention_loop(), name="sollol-batch-retention")
        if self.config.dask_scheduler:  # connecting is cheap: show a wrong address at once
            self._connect_task = asyncio.create_task(self.runner.ensure_started())
        if self.store.is_open and self.store.queued():
            self.auto.resume()

    async def stop(self) -> None:
        """Stop dispatching, put the documents in progress back in the queue, close Dask and the database.
        Safe when start() never ran or failed half-way."""
        tasks = [t for t in (self._loop_task, self._connect_task, self._purge_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = self._connect_task = self._purge_task = None
        if self.auto is not None:
            await self.auto.close()
        if self.store is not None and self.store.is_open and self.auto is not None:
            try:
                released = await self.db_raw(self.store.release_all, self.auto.token)
                if released:
                    log.info("batch: %d documents back in the queue for the next start", released)
            except Exception:  # noqa: BLE001 - the next start puts them back anyway
                log.exception("batch: could not release the documents in progress")
        if self.runner is not None:
            await self.runner.close()
        if self.store is not None and self._db_thread is not None:
            await self.db_raw(self.store.close)
        if self._db_thread is not None:
            self._db_thread.shutdown(wait=True)
            self._db_thread = None
        self.auto = None
        self.deps.components.set("batch", "off", "stopped")

    # database -------------------------------------------------------------------------------------
    async def db_raw(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """fn(*args, **kwargs) in the database thread."""
        if self._db_thread is None:
            raise BatchUnavailable("the batch queue is not running")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_thread, functools.partial(fn, *args, **kwargs))

    async def db(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """store.<method>(*args) in the database thread (the autobatch loop's claims and releases)."""
        return await self.db_raw(getattr(self._running_store(), method), *args, **kwargs)

    async def open_store(self) -> BatchStore:
        """The store, opened (and created) on first use."""
        store = self.store
        if store is None or self._open_lock is None:
            raise BatchUnavailable("the batch queue is not running")
        if store.is_open:
            return store
        async with self._open_lock:
            if not store.is_open:
                try:
                    recovered = await self.db_raw(store.open)
                except Exception as e:  # noqa: BLE001 - a path or permission problem, shown as is
                    msg = f"cannot open {store.path}: {e}"
                    self.deps.components.set("batch", "failed", msg)
                    log.error("batch: %s", msg)
                    raise BatchUnavailable(msg) from None
                if recovered:
                    log.info("batch: %d documents left in progress by the last run are queued again", recovered)
                self.deps.components.set("batch", "ready", str(store.path))
        return store

    # retention (core loop) ---------------------------------------------------------------------------
    def _retention_s(self) -> float:
        return self.config.batch_retention_hours * 3600.0

    async def purge_expired(self) -> int:
        """Delete the jobs that finished more than batch_retention_hours ago (0: none are); their number."""
        retention = self._retention_s()
        store = self.store
        if retention <= 0 or store is None or not store.is_open:
            return 0
        n: int = await self.db_raw(store.purge_finished, time.time() - retention)
        if n:
            self.purged += n
            log.info("batch: deleted %d finished jobs older than %g hours", n, self.config.batch_retention_hours)
        return n

    def _retention_every_s(self) -> float:
        """How often to look for expired jobs: a tenth of the retention, between 1 s and RETENTION_CHECK_S."""
        retention = self._retention_s()
        return RETENTION_CHECK_S if retention <= 0 else min(RETENTION_CHECK_S, max(1.0, retention / 10))

    async def _retention_loop(self) -> None:
        """Purge now, then whenever the interval the setting gives (read each second: it is live) is up."""
        last = float("-inf")
        while True:
            if time.monotonic() - last >= self._retention_every_s():
                last = time.monotonic()
                try:
                    await self.purge_expired()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the next round tries again
                    log.exception("batch: deleting expired jobs failed")
            await asyncio.sleep(1.0)

    # operations (core loop) -------------------------------------------------------------------------
    async def enqueue(self, model: str, docs: Sequence[str], ids: Optional[Sequence[str]], *,
                      owner: Optional[str] = None, max_queued: Optional[int] = None) -> JobInfo:
        """Store a job filed under `owner`; returns once it is committed to the database. BatchQuotaExceeded
        when it would take the owner over `max_queued` documents waiting or in progress."""
        store = await self.open_store()
        info: JobInfo = await self.db_raw(store.add_job, model, docs, ids, owner=owner, max_queued=max_queued)
        if self.auto is not None:
            self.auto.wake()
        return info

    # the queue as the autobatch loop uses it (autobatch.DocumentQueue) ------------------------------
    async def claim(self, limit: int, token: int) -> list[ClaimedDoc]:
        docs: list[ClaimedDoc] = await self.db("claim", limit, token)
        return docs

    async def complete(self, seqs: Sequence[int], embeddings: Sequence[str], token: int) -> int:
        done: int = await self.db("complete", seqs, embeddings, token)
        return done

    async def fail(self, seqs: Sequence[int], error: str, token: int) -> int:
        failed: int = await self.db("fail", seqs, error, token)
        return failed

    async def release(self, seqs: Sequence[int], token: int, *, count_attempt: bool, max_attempts: int,
                      error: Optional[str]) -> tuple[int, int]:
        moved: tuple[int, int] = await self.db("release", seqs, token, count_attempt=count_attempt,
                                               max_attempts=max_attempts, error=error)
        return moved

    def trigger(self) -> dict[str, Any]:
        """Start a batch now, whatever autobatch_min_batch_size says. Safe from any thread."""
        auto = self.auto
        queued = self.store.queued() if self.store is not None and self.store.is_open else 0
        if auto is None or not self.deps.running():
            return {"triggered": False, "queued": queued, "reason": "SOLLOL is not running"}
        if queued == 0:
            return {"triggered": False, "queued": 0, "reason": "the batch queue is empty"}
        self.deps.loop().call_soon_threadsafe(auto.wake, True)
        return {"triggered": True, "queued": queued}

    # reading results (core loop; the database thread does the reading) -----------------------------
    async def results_page(self, job_id: str, offset: int, limit: int) -> list[ResultRow]:
        """Up to `limit` finished documents of the job from position `offset`, in document order."""
        rows: list[ResultRow] = await self.db_raw(self._running_store().results_page, job_id, offset, limit)
        return rows

    async def results_after(self, job_id: str, after: int, limit: int) -> list[ResultRow]:
        """Up to `limit` finished documents of the job whose index is above `after` (-1: from the start)."""
        rows: list[ResultRow] = await self.db_raw(self._running_store().results, job_id, after, limit)
        return rows

    async def errors(self, job_id: str, limit: int) -> list[tuple[str, str]]:
        """(document id, error) of up to `limit` failed documents of the job, in document order."""
        rows: list[tuple[str, str]] = await self.db_raw(self._running_store().errors, job_id, limit)
        return rows

    def _running_store(self) -> BatchStore:
        if self.store is None:
            raise BatchUnavailable("the batch queue is not running")
        return self.store

    # reading (any thread) ---------------------------------------------------------------------------
    def status(self, owner: Optional[str] = None) -> dict[str, Any]:
        """Counts and jobs, newest job first (what GET /api/batch-status answers); with `owner`, of that
        owner's jobs only."""
        store = self.store
        is_open = store is not None and store.is_open
        totals, rate, n_jobs, jobs = (store.totals(100, owner) if store is not None and is_open
                                      else ([0, 0, 0, 0], 0.0, 0, []))
        runner, auto, cfg = self.runner, self.auto, self.config
        return {
            "available": is_open,
            "queued": totals[0], "in_progress": totals[1], "done": totals[2], "failed": totals[3],
            "docs_per_s": round(rate, 2),
            "dask": {"state": runner.state if runner else "off", "detail": runner.detail if runner else ""},
            "autobatch": {"enabled": cfg.autobatch_enabled, "interval": cfg.autobatch_interval,
                          "min_batch_size": cfg.autobatch_min_batch_size,
                          "max_batch_size": cfg.autobatch_max_batch_size},
            "chunks_by_host": dict(auto.chunks_done) if auto is not None else {},
            "jobs_total": n_jobs,
            "jobs": jobs,
        }

    def view(self) -> BatchView:
        """For the dashboard's batch panel: no database access, safe from any thread."""
        store = self.store
        if store is None or not store.is_open:
            return BatchView()
        totals, rate, _, jobs = store.totals(VIEW_JOBS)
        views = tuple(BatchJobView(job_id=j["job_id"], total=j["total"], done=j["done"], failed=j["failed"],
                                   status=j["status"], docs_per_s=j["docs_per_s"]) for j in jobs)
        return BatchView(queued=totals[0], in_progress=totals[1], done=totals[2], failed=totals[3],
                         docs_per_s=round(rate, 2), jobs=views, available=True)

    def job(self, job_id: str, owner: Optional[str] = None) -> Optional[dict[str, Any]]:
        """The job's counters; None when there is no such job, or (with `owner`) it is another's."""
        store = self.store
        if store is None or not store.is_open:
            return None
        return store.job(job_id, owner)
