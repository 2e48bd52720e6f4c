"""The Ray executor: upstream calls carried out on Ray actors.

The core still decides (routing, in-flight counts and stats stay in the registry); an actor only performs
the HTTP call with the keep-alive pool it keeps, and streams the answer back through a Ray streaming
generator: first the status and content type, then each chunk as it arrives.

Ray lives in one long-lived thread (RUNTIME-NOTES: Ray's child processes are tied to the thread that
started them) which calls ray.init, creates the actors, waits, and calls ray.shutdown. Until Ray is ready,
or when it failed, requests run on the in-loop executor: nothing in the request path waits for Ray.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from typing import Any, AsyncIterator, Callable, Optional

from ..config import SollolConfig
from ..errors import ExecutorFailure, UpstreamFailure
from .executor import Body, StreamBody, UpstreamResponse
from .inloop import AsyncExecutor
from .pool import HttpPool

log = logging.getLogger("sollol.ray")
OBJECT_STORE_BYTES = 128 * 2**20  # chunks are small and short-lived; Ray's default takes GBs of /dev/shm


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast, with a reason, when nothing listens at the cluster's address."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    name, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((name.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise RuntimeError(f"cannot reach the Ray cluster at {address} ({reason}); start it with "
                           f"`ray start --head` there, or fix ray_address") from None


class UpstreamActor:
    """Runs in a Ray worker process: one keep-alive pool, any number of concurrent calls (async actor)."""

    def __init__(self, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self.pool: Optional[HttpPool] = None
        self.calls = 0

    async def call(self, host: str, method: str, path: str, body: Optional[bytes],
                   timeout: float, content_type: Optional[str] = None) -> AsyncIterator[Any]:
        if self.pool is None:
            self.pool = HttpPool(self.connect_timeout)
        self.calls += 1
        resp = await self.pool.request(host, method, path, body, timeout, content_type)
        try:
            yield (resp.status, resp.content_type)
            async for chunk in resp.chunks():
                yield chunk
        finally:
            await resp.close()

    async def fetch(self, host: str, method: str, path: str, body: Optional[bytes],
                    timeout: float, content_type: Optional[str] = None) -> tuple[int, str, bytes]:
        """The whole answer in one round trip (non-streaming requests)."""
        if self.pool is None:
            self.pool = HttpPool(self.connect_timeout)
        self.calls += 1
        resp = await self.pool.request(host, method, path, body, timeout, content_type)
        try:
            return resp.status, resp.content_type, await resp.read()
        finally:
            await resp.close()

    def stats(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "calls": self.calls}


class RayRuntime:
    """Owns Ray: start in a background thread, a pool of actors, replacement of dead ones, shutdown."""

    def __init__(self, config: SollolConfig, on_state: Callable[[str, str], None]) -> None:
        self.config = config
        self.on_state = on_state
        self.state = "off"
        self.error: Optional[str] = None
        self.address: Optional[str] = None
        self.actors: list[Any] = []
        self.replaced = 0
        self._ray: Any = None
        self._actor_cls: Any = None
        self._next = itertools.count()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._temp_dir: Optional[str] = None

    def _set(self, state: str, detail: str = "") -> None:
        self.state = state
        self.on_state(state, detail)

    def start(self) -> None:
        self._stop.clear()
        self._ready.clear()
        self.error = None
        self._set("starting", self.config.ray_address or "local")
        self._thread = threading.Thread(target=self._run, name="sollol-ray", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        self._ready.wait(timeout)
        return self.state == "ready"

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            # must precede the first import of ray: keeps Ray's own servers on 127.0.0.1 (RUNTIME-NOTES)
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            import ray

            self._ray = ray
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                                          namespace="sollol")
            if self.config.ray_address:
                address = self.config.ray_address
                _probe(address)  # Ray's C++ client ends the whole process when it cannot reach the GCS
            else:
                # a private temp dir: plain ray.init() would join any cluster on the machine via /tmp/ray
                self._temp_dir = tempfile.mkdtemp(prefix=f"sollol-ray-{os.getpid()}-")
                address = "local"
                kwargs.update(num_cpus=self.config.ray_num_cpus, _temp_dir=self._temp_dir,
                              object_store_memory=OBJECT_STORE_BYTES)
            ctx = ray.init(address=address, **kwargs)
            self.address = getattr(ctx, "address_info", {}).get("gcs_address") or address
            self._actor_cls = ray.remote(num_cpus=0, max_restarts=0)(UpstreamActor)
            actors = [self._new_actor() for _ in range(self.config.ray_workers)]
            ray.get([a.stats.remote() for a in actors], timeout=120)  # each actor answers before "ready"
            with self._lock:
                self.actors = actors
            self._set("ready", f"{len(actors)} actors on {self.address} in {time.perf_counter() - started:.1f} s")
            log.info("ray ready: %d actors (%s)", len(actors), self.address)
        except BaseException as e:  # noqa: BLE001 - any failure leaves the gateway on the in-loop executor
            self.error = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            self._set("failed", self.error)
            log.warning("ray failed to start; requests stay on the in-loop executor: %s", self.error)
            self._shutdown_quietly()
            self._ready.set()
            return
        self._ready.set()
        self._stop.wait()
        self._shutdown_quietly()
        self._set("off", "stopped")

    def _shutdown_quietly(self) -> None:
        try:
            if self._ray is not None and self._ray.is_initialized():
                self._ray.shutdown()
        except Exception:
            log.exception("ray shutdown failed")
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def stop(self, timeout: float = 30.0) -> None:
        """Shut Ray down (after the gateway stopped taking requests) and wait for its processes to go."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _new_actor(self) -> Any:
        return self._actor_cls.options(max_concurrency=1000).remote(self.config.connect_timeout)

    def pick(self) -> Any:
        with self._lock:
            return self.actors[next(self._next) % len(self.actors)]

    def replace(self, dead: Any) -> None:
        """A dead actor is swapped for a new one (its caller retries the request elsewhere)."""
        with self._lock:
            if dead in self.actors and self.state == "ready":
                self.actors[self.actors.index(dead)] = self._new_actor()
                self.replaced += 1
                log.warning("a ray actor died; replaced it (%d replaced so far)", self.replaced)

    def view(self) -> dict[str, Any]:
        return {"kind": "ray", "state": self.state, "actors": len(self.actors) if self.state == "ready" else 0,
                "address": self.address, "error": self.error, "replaced": self.replaced}


def _plain(e: UpstreamFailure) -> UpstreamFailure:
    """An UpstreamFailure raised in an actor arrives wrapped with Ray's traceback; keep the message only."""
    cause = getattr(e, "cause", None)
    return UpstreamFailure(str(cause if isinstance(cause, UpstreamFailure) else e).splitlines()[0])


class _RayResponse:
    def __init__(self, runtime: RayRuntime, actor: Any, gen: Any, status: int, content_type: str) -> None:
        self._runtime = runtime
        self._actor = actor
        self._gen = gen
        self.status = status
        self.content_type = content_type
        self._body: Optional[bytes] = None

    async def chunks(self) -> AsyncIterator[bytes]:
        ray = self._runtime._ray
        try:
            async for ref in self._gen:
                yield await ref
        except UpstreamFailure as e:
            raise _plain(e) from None
        except ray.exceptions.RayActorError as e:
            self._runtime.replace(self._actor)
            raise ExecutorFailure("the ray actor carrying the request died") from e
        except ray.exceptions.RayError as e:
            raise ExecutorFailure(f"ray: {type(e).__name__}") from e

    async def read(self) -> bytes:
        """The whole body; kept, so a second read() returns it again."""
        if self._body is None:
            self._body = b"".join([c async for c in self.chunks()])
        return self._body

    async def close(self) -> None:
        gen, self._gen = self._gen, None
        if gen is not None:
            try:
                self._runtime._ray.cancel(gen)  # a client that went away stops the actor's call too
            except Exception:
                pass


class _FetchedResponse:
    """A whole answer an actor already read."""

    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        self.status = status
        self.content_type = content_type
        self._body = body

    async def read(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._body:
            yield self._body

    async def close(self) -> None:
        pass


class RayExecutor:
    """Upstream calls on Ray actors once Ray is ready; on the in-loop executor before that or without it."""

    kind = "ray"

    def __init__(self, runtime: RayRuntime, fallback: AsyncExecutor) -> None:
        self.runtime = runtime
        self.fallback = fallback
        self.calls_on_ray = 0
        self.calls_in_loop = 0

    async def start(self) -> None:
        await self.fallback.start()

    async def close(self) -> None:
        await self.fallback.close()

    async def get_json(self, host: str, path: str, timeout: float) -> object:
        return await self.fallback.get_json(host, path, timeout)

    async def open(self, host: str, method: str, path: str, body: Body,
                   timeout: float, stream: bool = True, content_type: Optional[str] = None) -> UpstreamResponse:
        # a streamed request body (a blob upload) is read in this process: it cannot travel to an actor
        if self.runtime.state != "ready" or isinstance(body, StreamBody):
            self.calls_in_loop += 1
            return await self.fallback.open(host, method, path, body, timeout, content_type=content_type)
        ray = self.runtime._ray
        actor = self.runtime.pick()
        self.calls_on_ray += 1
        try:
            if not stream:
                return _FetchedResponse(*await actor.fetch.remote(host, method, path, body, timeout, content_type))
            gen = actor.call.options(num_returns="streaming").remote(host, method, path, body, timeout,
                                                                     content_type)
            status, content_type = await (await gen.__anext__())
        except UpstreamFailure as e:
            raise _plain(e) from None
        except StopAsyncIteration:
            raise ExecutorFailure("the ray actor ended the call without an answer") from None
        except ray.exceptions.RayActorError as e:
            self.runtime.replace(actor)
            raise ExecutorFailure("the ray actor carrying the request died") from e
        except ray.exceptions.RayError as e:
            raise ExecutorFailure(f"ray: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from e
        return _RayResponse(self.runtime, actor, gen, status, content_type)
