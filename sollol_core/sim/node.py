"""NodeState: what one simulated Ollama server keeps and does: models on disk and loaded, slots per model with
their caches, blobs, and the failure switches tests flip.

The endpoints live in their own modules (info, native, openai, responses, anthropic, model_ops); each
handler is a function of (node, request) listed in its module's ROUTES. This module is the plumbing they
share: request bodies, failure injection, model lookup, loading and slots. It imports no route module: the
server module (SimNode) assembles the routes and listens.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any, Awaitable, Callable, Optional

import orjson
from aiohttp import web

from .kv_slots import Prefill, SlotPool, SlotState
from .metadata import is_embedding_model
from .metadata import norm as norm_name
from .spec import SimNodeSpec
from .wire import NO_MEMORY, NO_SLOTS, Family, SimError

RECEIVED_MAX = 1000

#: Runner options whose change makes Ollama reload a model, and what a request that names none runs with.
RUNNER_DEFAULTS: dict[str, Any] = {"num_ctx": 2048, "num_batch": 512, "num_gpu": -1, "main_gpu": 0,
                                   "use_mmap": None, "use_mlock": False, "num_thread": 0, "low_vram": False,
                                   "f16_kv": True, "numa": False}


def runner_of(options: Any) -> dict[str, Any]:
    """The runner a request's `options` ask for: the defaults, with what it names in their place."""
    runner = dict(RUNNER_DEFAULTS)
    if isinstance(options, dict):
        for name in RUNNER_DEFAULTS:
            if options.get(name) is not None:
                runner[name] = options[name]
    return runner

#: An endpoint: a function of (node, request).
Handler = Callable[["NodeState", web.Request], Awaitable[web.StreamResponse]]
#: What a route module lists in its ROUTES: (method, path, handler, the API family of its error shapes).
Route = tuple[str, str, Handler, Family]


class NodeState:
    """The state and behaviour of one simulated Ollama server (server.SimNode serves it over HTTP).

    Failure switches, settable from any thread while it runs:
      hang                   work endpoints never answer (until the client goes away or stop())
      failure_rate           probability of 500 {"error": "simulated failure"} (seeded RNG)
      fail_mid_stream        the connection drops after the first chunk (or before a whole answer)
      error_line_mid_stream  a 200 stream that ends with an {"error": ...} line after the first chunk, as
                             Ollama when its runner dies (a whole answer: 500 with that text)
      busy_500               500 {"error": "no slots available"} where a request would take a slot
      load_failure           a model name that cannot be loaded: requests for it get 500 with Ollama's
                             out-of-memory text, and it leaves the loaded list (it is unloaded if loaded)
    """

    def __init__(self, spec: SimNodeSpec) -> None:
        self.spec = spec
        self.address = ""
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.requests_served = 0
        self.in_flight = 0  # requests being handled now (queued or in service)
        self.hang = False
        self.fail_mid_stream = False
        self.error_line_mid_stream = False
        self.busy_500 = False
        self.load_failure: Optional[str] = None
        self.failure_rate = spec.failure_rate
        self.models: list[str] = [norm_name(m) for m in spec.models]
        self.loaded: list[str] = [norm_name(m) for m in (spec.models if spec.loaded is None else spec.loaded)]
        self.blobs: dict[str, int] = {}  # "sha256:<hex>" -> size in bytes, as /api/blobs stored them
        self.prefills: list[Prefill] = []  # per generation request: slot, prompt and reused characters (bounded)
        self._rng = random.Random(spec.seed)
        self._port = spec.port
        self._pools: dict[str, SlotPool] = {}
        self._loading: dict[str, asyncio.Task[None]] = {}
        self.runners: dict[str, dict[str, Any]] = {}  # the runner options each loaded model was loaded with
        self.reloads = 0  # loads of a model that was loaded with other runner options
        self._sched: dict[str, asyncio.Lock] = {}  # one (re)load at a time per model; later requests queue behind
        self._ids = 0
        self.listing_cache: tuple[tuple[str, ...], bytes, bytes] = ((), b"", b"")
        self.version_body = orjson.dumps({"version": "0.5.4-sim"})
        n = max(0, spec.tokens)
        self.pieces = tuple(f"[{spec.name}] tok0" if i == 0 else f" tok{i}" for i in range(n))
        self.json_piece = json.dumps({"node": spec.name})  # the content answered for a "format" request

    @property
    def port(self) -> int:
        return self._port

    # -- runtime state -----------------------------------------------------------------------

    def forget_runtime_state(self) -> None:
        """What a restarted Ollama forgets: loaded models and every slot's cache (models and blobs on disk stay)."""
        self.loaded = []
        self._pools = {}
        for task in self._loading.values():
            task.cancel()
        self._loading = {}
        self.runners = {}
        self._sched = {}

    # -- slots and loading -----------------------------------------------------------------

    def _slots_for(self, norm: str) -> int:
        if self.spec.num_parallel is None:
            return max(1, self.spec.capacity)
        return 1 if is_embedding_model(norm) else self.spec.num_parallel

    def pool(self, norm: str) -> SlotPool:
        pool = self._pools.get(norm)
        if pool is None:
            pool = self._pools[norm] = SlotPool(self._slots_for(norm), self.spec.cache_mode, self.spec.max_queue)
        return pool

    def slot_states(self, model: str) -> list[SlotState]:
        """Each slot of a model: cached characters, busy, last used (time.monotonic()). For tests; read-only."""
        norm = norm_name(model)
        pool = self._pools.get(norm)
        if pool is None:
            return [SlotState(i, 0, False, 0.0) for i in range(self._slots_for(norm))]
        return pool.states()

    def queued(self, model: str) -> int:
        """Requests waiting for a slot of the model now (not counting those being served)."""
        pool = self._pools.get(norm_name(model))
        return 0 if pool is None else pool.waiting

    def unload(self, norm: str) -> None:
        if norm in self.loaded:
            self.loaded.remove(norm)
        self.runners.pop(norm, None)
        pool = self._pools.get(norm)
        if pool is not None:
            pool.clear()

    def _finish_load(self, norm: str) -> None:
        self._loading.pop(norm, None)
        pool = self._pools.get(norm)
        if pool is not None:
            pool.clear()
        if norm not in self.loaded:
            self.loaded.append(norm)

    async def _load(self, norm: str) -> None:
        try:
            await asyncio.sleep(self.spec.load_ms / 1000.0)
        except asyncio.CancelledError:
            self._loading.pop(norm, None)
            raise
        self._finish_load(norm)

    @property
    def warm_ns(self) -> int:
        """load_duration of an answer on the loaded model: small, never 0 (Ollama's scheduling)."""
        return max(1, int(self.spec.warm_load_ms * 1e6))

    async def admit(self, norm: str, runner: Optional[dict[str, Any]] = None) -> int:
        """Before a request takes a slot: busy_500, then the model's load (see ensure_loaded)."""
        if self.busy_500:
            raise SimError(500, NO_SLOTS)
        return await self.ensure_loaded(norm, runner_of(None) if runner is None else runner)

    def _fits(self, norm: str, runner: Optional[dict[str, Any]]) -> bool:
        return norm in self.loaded and (runner is None or self.runners.get(norm, RUNNER_DEFAULTS) == runner)

    async def ensure_loaded(self, norm: str, runner: Optional[dict[str, Any]] = None) -> int:
        """Load the model when it is not loaded, or reload it when it was loaded with other runner options
        than `runner` (None: any will do), as Ollama does: the requests on the old runner finish first, and
        requests arriving meanwhile wait behind the reload. One load however many wait for it. Returns the
        ns this request waited for a load, or warm_ns when the model was loaded as it asks. A load empties the
        model's slot caches."""
        failing = self.load_failure
        if failing and norm_name(failing) == norm:
            self.unload(norm)
            raise SimError(500, NO_MEMORY)
        lock = self._sched.get(norm)
        if self._fits(norm, runner) and (lock is None or not lock.locked()):
            return self.warm_ns
        t = time.monotonic_ns()
        if lock is None:
            lock = self._sched[norm] = asyncio.Lock()
        async with lock:
            if self._fits(norm, runner):  # loaded as it asks by the time its turn came
                return max(self.warm_ns, time.monotonic_ns() - t)
            if norm in self.loaded:  # another runner: let its requests finish, then reload
                self.reloads += 1
                await self.pool(norm).drained()
                self.unload(norm)
            task = self._loading.get(norm)
            if task is None:
                if self.spec.load_ms <= 0:
                    self._finish_load(norm)
                else:
                    task = self._loading[norm] = asyncio.get_running_loop().create_task(self._load(norm))
            if task is not None:
                await asyncio.shield(task)
            self.runners[norm] = dict(RUNNER_DEFAULTS) if runner is None else runner
        return max(1, time.monotonic_ns() - t)

    # -- plumbing --------------------------------------------------------------------------

    def record_prefill(self, prefill: Prefill) -> None:
        prefills = self.prefills
        prefills.append(prefill)
        if len(prefills) > RECEIVED_MAX:
            del prefills[: len(prefills) - RECEIVED_MAX]

    def record(self, path: str, body: dict[str, Any]) -> None:
        received = self.received
        received.append((path, body))
        if len(received) > RECEIVED_MAX:
            del received[: len(received) - RECEIVED_MAX]

    async def body(self, request: web.Request) -> dict[str, Any]:
        """The JSON object body, recorded in ``received``; 400 for anything else."""
        raw = await request.read()
        if not raw:
            raise SimError(400, "missing request body")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise SimError(400, f"invalid JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise SimError(400, "request body must be a JSON object")
        self.record(request.path, body)
        return body

    async def inject(self) -> None:
        """Failure injection for the endpoints that do work (not version/tags/ps)."""
        if self.hang:
            await asyncio.get_running_loop().create_future()  # until cancelled: client gone or stop()
        rate = self.failure_rate
        if rate > 0 and self._rng.random() < rate:
            raise SimError(500, "simulated failure")

    def model(self, body: dict[str, Any], legacy_name: bool = False) -> tuple[str, str]:
        """(name as requested, normalised name); 400 when absent, 404 when not on this node."""
        name = body.get("model") or (body.get("name") if legacy_name else None)
        if not isinstance(name, str) or not name.strip():
            raise SimError(400, "model is required")
        return name, self.known(name)

    def known(self, name: str) -> str:
        norm = norm_name(name)
        if norm not in self.models:
            raise SimError(404, f"model '{name}' not found")
        return norm

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def pieces_for(self, limit: Any, json_mode: bool) -> tuple[tuple[str, ...], str]:
        """The answer's pieces and done reason: the node's tokens, capped by limit ("length")."""
        if json_mode:
            return (self.json_piece,), "stop"
        pieces = self.pieces
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < len(pieces):
            return pieces[:limit], "length"
        return pieces, "stop"


__all__ = ["Handler", "NodeState", "Route"]
