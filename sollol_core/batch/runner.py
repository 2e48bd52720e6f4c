"""Dask for the batch: a LocalCluster of `dask_workers` processes, or an external scheduler.

The client is asynchronous and lives in the core loop; a local cluster's scheduler runs in its own thread
(distributed's loop runner), its workers in their own processes. Nothing in the request path waits for
Dask: a local cluster starts with the first batch (`ensure_started`, awaited by the autobatch loop only),
an external scheduler is connected to in the background at start. The state is shown as the "dask"
component: off / starting / ready / failed.

Local cluster, as RUNTIME-NOTES measured it: processes=True spawns its workers (so the entry module must
guard its code with `if __name__ == "__main__"`), everything binds 127.0.0.1 (dashboard on a free port), and
multiprocessing's resource tracker is started while stderr is still a real file: under the dashboard its
capture has no descriptor, and spawning the tracker then fails ("Nanny failed to start").
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import sys
import time
import types
from typing import Any, Callable, Optional

from ..config import SollolConfig
from ..errors import DaskUnavailable, SpawnedReimport
from ..observability.components import ComponentBoard

log = logging.getLogger("sollol.batch")
START_TIMEOUT_S = 90.0
CLOSE_TIMEOUT_S = 5.0
SLOTS_REFRESH_S = 5.0
RETRY_AFTER_S = 10.0


def check_not_spawned_reimport() -> None:
    """Local Dask workers are spawned processes, which import the main module again (as __mp_main__). A
    script that creates SOLLOL at module level would start one more gateway in every worker: refuse, and
    say what to do."""
    frame: Optional[types.FrameType] = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__mp_main__":
            raise SpawnedReimport(
                "SOLLOL is being created while a child process (a Dask worker) imports your main module: put "
                "the code that starts SOLLOL under `if __name__ == \"__main__\":`")
        frame = frame.f_back


def prepare_process() -> None:
    """Call while stdout/stderr are still real files (before a dashboard takes the terminal)."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


def _quiet_dask_logging() -> None:
    """distributed installs its own stderr handler at import: send its records to ours (a file under the
    dashboard), warnings and above only. Local workers get the level from LocalCluster(silence_logs=...)."""
    import distributed  # noqa: F401 - configures its loggers on import

    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.worker",
                 "distributed.core", "distributed.comm", "distributed.client"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("distributed").setLevel(logging.WARNING)


class Portable:
    """A function that travels by value: workers need not have SOLLOL installed, only the same Python.

    Dask pickles a task's function by reference (module and name, imported again on the worker). This
    wrapper pickles as `cloudpickle.loads(<the function's code>)`, serialized once here: cloudpickle comes
    with every Dask install, and sending the bytes costs microseconds where pickling the function by value
    for every task would cost milliseconds of the event loop. The function must import what it needs inside
    its body (task.embed_chunk does).
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        import cloudpickle

        self.fn = types.FunctionType(fn.__code__, {"__builtins__": builtins}, fn.__name__, fn.__defaults__)
        self.fn.__qualname__ = fn.__name__  # not importable under this name: cloudpickle sends the code
        self.__name__ = fn.__name__
        self._blob = cloudpickle.dumps(self.fn)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __reduce__(self) -> tuple[Callable[[bytes], Any], tuple[bytes]]:
        import cloudpickle

        return cloudpickle.loads, (self._blob,)


def portable(fn: Callable[..., Any]) -> Portable:
    return Portable(fn)


class DaskRunner:
    def __init__(self, config: SollolConfig, components: ComponentBoard) -> None:
        self.config = config
        self.components = components
        self.client: Any = None
        self.cluster: Any = None
        self.state = "off"
        self.detail = ""
        self._slots = 0
        self._slots_at = 0.0
        self._lock = asyncio.Lock()
        self._failed_at = 0.0

    @property
    def external(self) -> bool:
        return bool(self.config.dask_scheduler)

    @property
    def ready(self) -> bool:
        return self.state == "ready" and self.client is not None and self.client.status == "running"

    def _set(self, state: str, detail: str) -> None:
        self.state, self.detail = state, detail
        self.components.set("dask", state, detail)

    def announce(self) -> None:
        if self.external:
            self._set("starting", f"connecting to {self.config.dask_scheduler}")
        else:
            self._set("off", f"local cluster of {self.config.dask_workers} workers starts with the first batch")

    async def ensure_started(self, force: bool = False) -> bool:
        """Start or connect when needed; False (state failed, with the reason) when that fails.
        After a failure it is tried again RETRY_AFTER_S later, or at once when forced (a trigger)."""
        if self.ready:
            return True
        async with self._lock:
            if self.ready:
                return True
            if self.state == "failed" and not force and time.monotonic() - self._failed_at < RETRY_AFTER_S:
                return False
            await self._close_quietly()
            self._set("starting", f"connecting to {self.config.dask_scheduler}" if self.external
                      else f"local cluster of {self.config.dask_workers} workers")
            t0 = time.perf_counter()
            try:
                await asyncio.wait_for(self._start(), START_TIMEOUT_S)
            except asyncio.CancelledError:
                await self._close_quietly()
                self._set("off", "stopped")
                raise
            except BaseException as e:  # noqa: BLE001 - shown to the operator, retried at the next batch
                await self._close_quietly()
                reason = "timed out" if isinstance(e, asyncio.TimeoutError) else (str(e) or type(e).__name__)
                if "Nanny failed to start" in reason:
                    reason += (" The workers' errors are in the log; a script that starts SOLLOL must do it under "
                               "`if __name__ == \"__main__\":` (local workers are spawned processes).")
                self._failed_at = time.monotonic()
                self._set("failed", reason)
                log.warning("dask: %s", reason)
                return False
            slots = await self.slots(refresh=True)
            where = self.config.dask_scheduler if self.external else self.cluster.scheduler_address
            self._set("ready", f"{where}, {slots} threads ({time.perf_counter() - t0:.1f} s to start)")
            log.info("dask ready: %s", self.detail)
            return True

    async def _start(self) -> None:
        await asyncio.to_thread(_quiet_dask_logging)
        from distributed import Client

        if self.external:
            self.client = Client(self.config.dask_scheduler, asynchronous=True, timeout=20, set_as_default=False)
            await self.client  # kept before it connects, so a failed or cancelled start closes it
            return
        cfg = self.config

        def start_local() -> Any:
            from distributed import LocalCluster

            return LocalCluster(n_workers=cfg.dask_workers, threads_per_worker=cfg.dask_threads_per_worker,
                                processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                silence_logs=logging.WARNING)

        self.cluster = await asyncio.to_thread(start_local)
        self.client = Client(self.cluster.scheduler_address, asynchronous=True, timeout=20, set_as_default=False)
        await self.client

    async def slots(self, refresh: bool = False) -> int:
        """Threads of all workers: how many chunks can run at once without waiting in Dask."""
        if self.client is None:
            return 0
        if refresh or time.monotonic() - self._slots_at > SLOTS_REFRESH_S:
            try:
                nthreads = await asyncio.wait_for(self.client.nthreads(), 10)
                self._slots = sum(nthreads.values())
            except Exception:  # noqa: BLE001 - keep the last known value
                pass
            self._slots_at = time.monotonic()
        return self._slots

    async def run(self, fn: Any, *args: Any, timeout: float) -> Any:
        """Run fn(*args) on a worker and return its result. Raises DaskUnavailable when Dask broke."""
        client = self.client
        if client is None or client.status != "running":
            raise DaskUnavailable("dask is not running")
        future = client.submit(fn, *args, pure=False, retries=0)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except asyncio.TimeoutError:
            future.cancel()
            raise DaskUnavailable(f"no result from dask within {timeout:g} s") from None
        except Exception as e:  # noqa: BLE001 - worker lost, scheduler gone, connection closed
            raise DaskUnavailable(f"{type(e).__name__}: {e}") from None

    def mark_broken(self, reason: str) -> None:
        if self.state == "ready":
            self._failed_at = time.monotonic()
            self._set("failed", reason)

    async def _close_quietly(self) -> None:
        client, cluster = self.client, self.cluster
        self.client = self.cluster = None
        self._slots = 0
        if client is not None:
            try:
                await asyncio.wait_for(client.close(), CLOSE_TIMEOUT_S)
            except BaseException:  # noqa: BLE001 - closing what may already be gone
                pass
        if cluster is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(cluster.close, CLOSE_TIMEOUT_S), CLOSE_TIMEOUT_S + 5)
            except BaseException:  # noqa: BLE001
                pass

    async def close(self) -> None:
        async with self._lock:
            await self._close_quietly()
        self._set("off", "stopped")
