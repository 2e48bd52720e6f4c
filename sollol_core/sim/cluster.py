"""SimCluster: SimNodes in a background thread with their own asyncio loop (tests, --demo, benchmarks)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, Optional

from .server import SimNode
from .spec import SimNodeSpec


class SimCluster:
    """Runs SimNodes in a background thread with its own asyncio loop.

    The nodes' attributes (``hang``, ``failure_rate``, ``fail_mid_stream``, ``busy_500``, ...) may be set from
    any thread; ``kill``/``revive`` hop into the cluster's loop and wait for the result.
    """

    _TIMEOUT = 15.0

    def __init__(self, specs: list[SimNodeSpec]) -> None:
        self.nodes = [SimNode(s) for s in specs]
        self.addresses: list[str] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def loop(self) -> Optional[asyncio.AbstractEventLoop]:
        """The loop the nodes run in (None when stopped), for code that must run there."""
        return self._loop

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=2.0))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine in the cluster's loop and wait for its result."""
        if self._loop is None:
            raise RuntimeError("SimCluster is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._TIMEOUT)

    def start(self) -> "SimCluster":
        """Start the loop thread and every node; blocks until all listen."""
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop,), name="sollol-sim", daemon=True)
        self._thread.start()

        async def start_all() -> None:
            await asyncio.gather(*(n.start() for n in self.nodes))

        try:
            self.call(start_all())
        except BaseException:
            self.stop()
            raise
        self.addresses = [n.address for n in self.nodes]
        return self

    def stop(self) -> None:
        """Stop every node and the thread. Idempotent; bounded in time."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def stop_all() -> None:
            await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)

        try:
            if thread.is_alive():
                asyncio.run_coroutine_threadsafe(stop_all(), loop).result(5.0)
        except Exception:
            pass
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5.0)
        self._loop = self._thread = None

    def kill(self, index: int) -> None:
        """Stop one node now: its port refuses connections afterwards."""
        self.call(self.nodes[index].stop())

    def revive(self, index: int, cold: bool = True) -> None:
        """Start a killed node again on the same port. cold (the default) is a restarted Ollama: no model
        loaded and every slot cache empty (models and blobs on disk stay); cold=False comes back as it was
        when killed, loaded models and caches included."""
        node = self.nodes[index]

        async def revive() -> None:
            if cold:
                node.forget_runtime_state()
            await node.start()

        self.call(revive())

    def __enter__(self) -> "SimCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
