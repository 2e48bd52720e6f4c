"""The composition root: every part of a SOLLOL built from a config and connected, in one place.

`build(config)` returns the Parts (a typed record of every object) without starting anything: no thread, no
socket, no event loop. The service runs them (service.SOLLOL), Control acts on them, Views reads them; the
command line, the tests and the benchmarks build them the same way.

    registry ─┬─ router ── placement ── queue (admission) ── path (the request path)
              ├─ slots (slot_limits: the config's num_parallel; learner) ──┘   │
              ├─ shadow (config.cache, the same object) ───────────── books ┘
              ├─ runners (the runner options each host has loaded) ── placement, books
              └─ batch (BatchDeps: config, registry, queue, books, slots, executor, components)
    clients (request.tracked): named by the gateway's guard; forgets idle clients in the queue and metrics
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol

from .batch.deps import BatchDeps
from .batch.manager import BatchManager
from .cluster.adaptive import ModelListRefresher
from .cluster.hosts import HostChange, HostChangeKind, HostRegistry
from .cluster.routing import Router
from .cluster.slot_learning import SlotLearner
from .cluster.slots import SlotTable
from .config import HostSettings, SollolConfig, normalize_host
from .observability.components import ComponentBoard
from .observability.metrics import Metrics
from .observability.requestlog import RequestLog
from .prompt_cache.runner import RunnerTable
from .prompt_cache.shadow import CacheShadow
from .request.admission import GatewayQueue
from .request.books import Books
from .request.path import RequestPath
from .request.placement import Placement
from .request.tracked import TrackedClients
from .upstream.executor import Executor
from .upstream.inloop import AsyncExecutor
from .upstream.ray_actors import RayExecutor, RayRuntime

log = logging.getLogger("sollol")


class SimClients(Protocol):
    """Simulated client traffic for the demo (sollol_core.sim.traffic.SimClients); opaque to the core."""

    @property
    def running(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def describe(self) -> str: ...


@dataclass
class ServiceState:
    """What the lifecycle tells the parts: the core loop, whether the gateway serves, where, since when.

    Written by the service (its core thread), read from any thread."""

    loop: Optional[asyncio.AbstractEventLoop] = None
    ready: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)
    gateway_url: str = ""
    metrics_url: str = ""
    started_at: float = 0.0  # time.time() when the gateway began to listen; 0 before

    @property
    def running(self) -> bool:
        return self.ready.is_set() and not self.stopped.is_set()

    def core_loop(self) -> asyncio.AbstractEventLoop:
        """The core thread's event loop; RuntimeError before start."""
        if self.loop is None:
            raise RuntimeError("SOLLOL is not started")
        return self.loop


class SlotLimits:
    """A host's slots per loaded model: its own num_parallel, else default_num_parallel (None: unlimited).

    Read from the config on every call, so a change applies at once."""

    def __init__(self, config: SollolConfig, registry: HostRegistry) -> None:
        self.config = config
        self.registry = registry

    def __call__(self, address: str) -> Optional[int]:
        own = self.configured(address)
        return own if own is not None else self.config.default_num_parallel

    def configured(self, address: str) -> Optional[int]:
        """The host's own num_parallel (None: it has none; its slots are learned)."""
        by_host = self.config.host_settings
        if not by_host:
            return None  # no host has settings of its own (read on every decision: the common case is cheap)
        settings = by_host.get(address)  # registry addresses are normalised already
        if settings is None and address not in self.registry:
            settings = self.config.host_settings.get(normalize_host(address))
        return settings.num_parallel if settings is not None else None

    def fallback(self, address: str) -> Optional[int]:
        """What a host without slots of its own has before anything is learned: default_num_parallel."""
        return self.config.default_num_parallel


@dataclass
class Parts:
    """Every part of one SOLLOL, connected. Built by `build`; the fields are the parts themselves."""

    config: SollolConfig
    state: ServiceState
    components: ComponentBoard
    registry: HostRegistry
    router: Router
    metrics: Metrics
    requests: RequestLog
    in_loop: AsyncExecutor  # the core loop's keep-alive pool: health, model lists, management uploads
    executor: Executor  # what carries requests: in_loop, or Ray actors (falling back to in_loop)
    ray: Optional[RayRuntime]
    model_lists: ModelListRefresher
    slot_limits: SlotLimits
    slots: SlotTable
    shadow: CacheShadow
    runners: RunnerTable
    placement: Placement
    queue: GatewayQueue
    books: Books
    path: RequestPath  # the request path's orchestrator
    batch: BatchManager
    clients: TrackedClients  # the clients the books keep apart (bounded), named by the gateway's guard
    demo: bool = False
    config_path: Optional[Path] = None  # where save_config writes by default
    sim_clients: Optional[SimClients] = None  # attached by the command line's --demo once the gateway listens


def build(config: Optional[SollolConfig] = None, *, host_labels: Optional[dict[str, str]] = None,
          demo: bool = False, config_path: Optional[str | Path] = None) -> Parts:
    """Every part for `config`, connected; nothing runs yet (the service starts them)."""
    config = config or SollolConfig()
    state = ServiceState()
    components = ComponentBoard()
    registry = HostRegistry()
    labels = host_labels or {}
    for address in config.all_hosts():
        settings = config.host_settings.get(address, HostSettings())
        registry.add(address, label=labels.get(address, ""), priority=settings.priority, weight=settings.weight)
    router = Router(registry, config.routing_strategy, config.routing_weights)
    metrics = Metrics()
    requests = RequestLog()
    in_loop = AsyncExecutor(config.connect_timeout)
    ray: Optional[RayRuntime] = None
    executor: Executor = in_loop
    if config.executor == "ray":
        ray = RayRuntime(config, functools.partial(components.set, "ray"))
        executor = RayExecutor(ray, in_loop)
    model_lists = ModelListRefresher(in_loop, registry)
    # the request path's stages: slots, prompt-cache shadow, placement, the gateway queue, books
    slot_limits = SlotLimits(config, registry)
    learner = SlotLearner(slot_limits.configured, slot_limits.fallback, lambda: config.learn_slots)
    slots = SlotTable(slot_limits, lambda: config.host_queue_depth, learner=learner)
    shadow = CacheShadow(config.cache)  # the config's own object: update_config changes it in place
    runners = RunnerTable()
    placement = Placement(config, registry, router, slots, shadow, slots.host_slots, runners=runners)
    queue = GatewayQueue(config, placement, slots, shadow, metrics)
    books = Books(registry, slots, metrics, requests, shadow, runners)
    path = RequestPath(config, registry, executor, metrics, queue, placement, books, model_lists)
    clients = TrackedClients(config)
    clients.watch(queue.client_busy)
    clients.on_forget(queue.forget_client)
    clients.on_forget(metrics.forget_client)
    registry.on_change(forget_on_change(shadow, slots, runners))
    registry.on_change(log_host_change)
    batch = BatchManager(BatchDeps(config=config, registry=registry, queue=queue, books=books, slots=slots,
                                   executor=in_loop, components=components, running=lambda: state.running,
                                   loop=state.core_loop))
    return Parts(config=config, state=state, components=components, registry=registry, router=router,
                 metrics=metrics, requests=requests, in_loop=in_loop, executor=executor, ray=ray,
                 model_lists=model_lists, slot_limits=slot_limits, slots=slots, shadow=shadow, runners=runners,
                 placement=placement, queue=queue, books=books, path=path, batch=batch, clients=clients, demo=demo,
                 config_path=Path(config_path) if config_path else None)


def forget_on_change(shadow: CacheShadow, slots: SlotTable,
                     runners: Optional[RunnerTable] = None) -> Callable[[HostChange], None]:
    """What a host's prompt cache held, the runners it had loaded and the slots it was learned to have are
    gone when it leaves, comes back (it may have restarted) or unloads a model (for that model); its slot
    corrections go when it leaves."""

    def forget(change: HostChange) -> None:
        if change.kind in (HostChangeKind.REMOVED, HostChangeKind.READMITTED):
            shadow.drop_host(change.address)
            if runners is not None:
                runners.forget_host(change.address)
        if change.kind == HostChangeKind.REMOVED:
            slots.forget_host(change.address)
            if runners is not None:
                runners.remove_host(change.address)
        elif change.kind == HostChangeKind.READMITTED:
            slots.forget_learned(change.address)
        elif change.kind == HostChangeKind.UNLOADED and change.model is not None:
            shadow.drop_model(change.address, change.model)
            slots.forget_learned(change.address, change.model)
            if runners is not None:
                runners.forget_model(change.address, change.model)

    return forget


def log_host_change(change: HostChange) -> None:
    if change.kind != HostChangeKind.READMITTED:
        log.info("host %s: %s", change.address, change)
