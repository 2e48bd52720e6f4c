"""SOLLOL: owns the core thread and its event loop, and runs the parts in it.

    main thread   your program, or the dashboard (sollol_tui)
    core thread   one asyncio loop: gateway (http.server.GatewayServer), health checks, adaptive metrics,
                  the autobatch loop, the metrics server and a one-second ticker for sparkline history

Start order: the gateway first (it answers as soon as it listens), then Ray in its own thread, the metrics
server, the loops and the batch side; Ray and Dask come up in the background. Stop order: the gateway stops
taking requests and drains (bounded by shutdown_grace), then the batch side, the loops, the metrics server,
Ray (nothing uses its actors any more) and the executor.

The parts are built by wiring.build; operator actions are control.Control's, what is shown views.Views'.
SOLLOL keeps the public API in one place (start/stop, get_status/get_health/get_stats, update_config, the
operator actions) by handing each call to them; it is safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Coroutine, Optional

from .batch.manager import BatchManager
from .cluster.adaptive import ModelListRefresher, adaptive_loop
from .cluster.health import health_loop
from .cluster.hosts import HostRegistry
from .cluster.routing import Router
from .cluster.slots import SlotTable
from .config import RoutingWeights, SollolConfig
from .control import Control
from .errors import StartupError
from .http.app import GatewayDeps, create_app
from .http.fastpath import FastPathApp
from .http.metrics_server import MetricsServer
from .http.server import ConnectionLimits, GatewayServer
from .observability.components import ComponentBoard
from .observability.metrics import Metrics
from .observability.requestlog import RequestLog
from .observability.snapshot import ClientView, ClusterSnapshot, HostView, QueueView, RequestRecord
from .prompt_cache.shadow import CacheShadow
from .request.admission import GatewayQueue
from .request.books import Books
from .request.path import RequestPath
from .request.placement import Placement
from .upstream.executor import Executor
from .upstream.inloop import AsyncExecutor
from .upstream.ray_actors import RayRuntime
from .views import Views
from .wiring import Parts, SimClients, build

log = logging.getLogger("sollol")
CLIENT_SWEEP_TICKS = 10  # seconds between looks for idle clients in the books (request.tracked)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        hint = " (another program listens there: pick another with --port)" if e.errno == 98 else ""
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror}{hint}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def make_gateway_app(parts: Parts, control: Control, views: Views) -> FastPathApp:
    """The gateway's app over the parts, each route module given only its ports."""
    return create_app(GatewayDeps(config=parts.config, forwarder=parts.path, registry=parts.registry,
                                  router=parts.router, upstream=parts.executor, in_loop=parts.in_loop,
                                  model_lists=parts.model_lists, metrics=parts.metrics, requests=parts.requests,
                                  operator=control, stats=views, batch=parts.batch, clients=parts.clients))


def connection_limits(config: SollolConfig) -> ConnectionLimits:
    """What one client connection may take, from the settings read at start."""
    return ConnectionLimits(header_timeout_s=config.header_timeout_s, body_timeout_s=config.body_timeout_s,
                            body_min_bytes_per_s=config.body_min_bytes_per_s, idle_timeout_s=config.idle_timeout_s,
                            max_connections=config.max_connections)


class SOLLOL:
    """The load balancer. `SOLLOL(config).start()` serves until `stop()`."""

    def __init__(self, config: Optional[SollolConfig] = None, *, host_labels: Optional[dict[str, str]] = None,
                 demo: bool = False, config_path: Optional[str | Path] = None,
                 config_warnings: Optional[list[str]] = None) -> None:
        # what load_config ignored (unknown SOLLOL_* variables): logged now, shown by the dashboard at start
        self.config_warnings: list[str] = list(config_warnings or ())
        for message in self.config_warnings:
            log.warning("%s", message)
        self.parts = build(config, host_labels=host_labels, demo=demo, config_path=config_path)
        self.control = Control(self.parts)
        self.views = Views(self.parts)
        self.parts.metrics.add_collector(self.views.collect)
        self.app = make_gateway_app(self.parts, self.control, self.views)
        self._thread: Optional[threading.Thread] = None
        self._startup_error: Optional[BaseException] = None
        self._stop_event: Optional[asyncio.Event] = None
        self._server: Optional[GatewayServer] = None

    # the parts, by the names the public API has always had ----------------------------------------
    @property
    def config(self) -> SollolConfig:
        return self.parts.config

    @property
    def registry(self) -> HostRegistry:
        return self.parts.registry

    @property
    def router(self) -> Router:
        return self.parts.router

    @property
    def metrics(self) -> Metrics:
        return self.parts.metrics

    @property
    def requests(self) -> RequestLog:
        return self.parts.requests

    @property
    def components(self) -> ComponentBoard:
        return self.parts.components

    @property
    def in_loop_executor(self) -> AsyncExecutor:
        return self.parts.in_loop

    @property
    def executor(self) -> Executor:
        return self.parts.executor

    @property
    def ray(self) -> Optional[RayRuntime]:
        return self.parts.ray

    @property
    def model_lists(self) -> ModelListRefresher:
        return self.parts.model_lists

    @property
    def slots(self) -> SlotTable:
        return self.parts.slots

    @property
    def shadow(self) -> CacheShadow:
        return self.parts.shadow

    @property
    def placement(self) -> Placement:
        return self.parts.placement

    @property
    def queue(self) -> GatewayQueue:
        return self.parts.queue

    @property
    def books(self) -> Books:
        return self.parts.books

    @property
    def proxy(self) -> RequestPath:
        return self.parts.path

    @property
    def batch(self) -> BatchManager:
        return self.parts.batch

    @property
    def demo(self) -> bool:
        return self.parts.demo

    @property
    def config_path(self) -> Optional[Path]:
        return self.parts.config_path

    @property
    def gateway_url(self) -> str:
        return self.parts.state.gateway_url

    @property
    def metrics_url(self) -> str:
        return self.parts.state.metrics_url

    # lifecycle ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.parts.state.running

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.parts.state.core_loop()

    def start(self, blocking: bool = False, timeout: float = 30.0) -> "SOLLOL":
        """Start the core thread; returns once the gateway listens (or raises StartupError).

        blocking=True then waits until stop() is called (from another thread or a signal handler).
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("SOLLOL is already running")
        state = self.parts.state
        state.ready.clear()
        state.stopped.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run_thread, name="sollol-core", daemon=True)
        self._thread.start()
        if not state.ready.wait(timeout) and self._startup_error is None:
            self.stop()
            raise StartupError(f"gateway did not start within {timeout:.0f} s")
        if self._startup_error is not None:
            self._thread.join(5)
            err = self._startup_error
            raise err if isinstance(err, StartupError) else StartupError(str(err))
        if blocking:
            self.wait()
        return self

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until stopped; True when it has stopped."""
        return self.parts.state.stopped.wait(timeout)

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop taking requests, let those in flight finish (bounded by shutdown_grace), stop everything."""
        loop, event = self.parts.state.loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            # the gateway's grace, then Ray (up to 30 s) and Dask (up to 15 s) shut down in turn
            self._thread.join(timeout if timeout is not None else self.config.shutdown_grace + 60)
        self.parts.state.stopped.set()

    def run_coroutine(self, coro: Coroutine[Any, Any, Any], timeout: Optional[float] = None) -> Any:
        """Run a coroutine in the core loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _run_thread(self) -> None:
        state = self.parts.state
        loop: asyncio.AbstractEventLoop
        try:
            import uvloop

            loop = uvloop.new_event_loop()
        except ImportError:
            loop = asyncio.new_event_loop()
        state.loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: BLE001 - reported to start()
            if not state.ready.is_set():
                self._startup_error = e
            else:
                log.exception("core loop ended with an error")
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                state.stopped.set()
                state.ready.set()

    async def _main(self) -> None:
        p, cfg, state = self.parts, self.parts.config, self.parts.state
        self._stop_event = asyncio.Event()
        sock = _bind(cfg.gateway_host, cfg.gateway_port)
        await p.executor.start()
        tasks: list[asyncio.Task[None]] = []
        metrics: Optional[MetricsServer] = None
        self._server = None
        try:
            self._server = server = GatewayServer(self.app, self.app.native_handlers(), connection_limits(cfg))
            try:
                await server.start(sock)
            except OSError as e:
                raise StartupError(f"gateway failed to start: {e}") from None
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            state.gateway_url = f"http://{shown}:{port}"
            state.started_at = time.time()
            p.components.set("gateway", "ready", state.gateway_url)
            p.components.set("executor", "ready", "async (in the core loop)" if p.ray is None
                             else "ray (in the core loop until Ray is ready)")
            if p.ray is not None:
                p.ray.start()  # in its own thread: the gateway serves in the meantime
            if cfg.metrics_enabled:
                metrics = MetricsServer(p.metrics.exposition, cfg.gateway_host, cfg.metrics_port, p.components.set,
                                        self.app.guard.scrape_refusal)
                state.metrics_url = await metrics.start() or ""
            if cfg.health_check_enabled:
                tasks.append(asyncio.create_task(health_loop(p.in_loop, p.registry, cfg)))
            if cfg.adaptive_metrics_enabled:
                tasks.append(asyncio.create_task(adaptive_loop(p.in_loop, p.registry, cfg)))
            tasks.append(asyncio.create_task(self._ticker()))
            await p.batch.start()  # durable queue, autobatch; Dask starts with the first batch
            log.info("gateway listening on %s", state.gateway_url)
            state.ready.set()
            await self._stop_event.wait()
            log.info("stopping: no new requests; waiting for %d in flight", p.path.active)
        finally:
            if self._server is not None:
                await self._server.stop(cfg.shutdown_grace)
            try:
                await p.batch.stop()
            except Exception:
                log.exception("stopping the batch queue failed")
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if metrics is not None:
                await metrics.stop()
            if p.ray is not None:
                await asyncio.to_thread(p.ray.stop)  # after the gateway drained: nothing uses the actors now
            await p.executor.close()
            if sock.fileno() != -1:
                sock.close()
            p.components.set("gateway", "off")

    async def _ticker(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(1.0)
            self.parts.registry.tick_history()
            ticks += 1
            if ticks % CLIENT_SWEEP_TICKS == 0:  # idle clients leave the books even when nothing arrives
                self.parts.clients.sweep()

    # reading (Views) ------------------------------------------------------------------------------
    def snapshot(self, recent: int = 200) -> ClusterSnapshot:
        """Everything the dashboard shows, copied under the locks: safe from any thread."""
        return self.views.snapshot(recent)

    def get_status(self) -> dict[str, Any]:
        return self.views.get_status()

    def get_health(self) -> dict[str, Any]:
        return self.views.get_health()

    def get_stats(self) -> dict[str, Any]:
        return self.views.get_stats()

    def host_views(self) -> list[HostView]:
        return self.views.host_views()

    def queue_view(self) -> QueueView:
        return self.views.queue_view()

    def client_views(self) -> tuple[ClientView, ...]:
        return self.views.client_views()

    def executor_view(self) -> dict[str, Any]:
        """Which executor carries live requests, and its state (the /api/stats "executor" field)."""
        return self.views.executor_view()

    def recent_requests(self, n: int = 200) -> tuple[RequestRecord, ...]:
        return self.views.recent_requests(n)

    def subscribe_requests(self, callback: Callable[[RequestRecord], None]) -> Callable[[], None]:
        """callback(record) in the core thread for each finished request; returns an unsubscribe function."""
        return self.parts.requests.subscribe(callback)

    # operator actions (Control; any thread) -------------------------------------------------------
    def add_host(self, address: str, *, priority: int = 0, weight: float = 1.0, label: str = "") -> str:
        return self.control.add_host(address, priority=priority, weight=weight, label=label)

    def remove_host(self, address: str) -> None:
        self.control.remove_host(address)

    def drain_host(self, address: str) -> None:
        self.control.drain_host(address)

    def undrain_host(self, address: str) -> None:
        self.control.undrain_host(address)

    def toggle_drain(self, address: str) -> str:
        """Drain a host, or undrain a draining one; returns the new state."""
        return self.control.toggle_drain(address)

    def set_priority(self, address: str, priority: int) -> None:
        self.control.set_priority(address, priority)

    def set_weight(self, address: str, weight: float) -> None:
        self.control.set_weight(address, weight)

    def num_parallel(self, address: str) -> Optional[int]:
        """The host's slots per loaded model: its own num_parallel, else default_num_parallel (None: unlimited)."""
        return self.control.num_parallel(address)

    def set_num_parallel(self, address: str, slots: Optional[int]) -> None:
        """Set the host's slots (its OLLAMA_NUM_PARALLEL); None goes back to default_num_parallel. Live."""
        self.control.set_num_parallel(address, slots)

    def set_strategy(self, name: str) -> None:
        self.control.set_strategy(name)

    def set_weights(self, **weights: float) -> RoutingWeights:
        return self.control.set_weights(**weights)

    def trigger_batch(self) -> dict[str, Any]:
        """Start a batch of queued documents now (the dashboard's `b`); safe from any thread."""
        return self.control.trigger_batch()

    @property
    def sim_clients(self) -> Optional[SimClients]:
        return self.parts.sim_clients

    def attach_sim_clients(self, clients: SimClients) -> None:
        """Simulated client traffic for the demo (an object with start(), stop(), running and describe())."""
        self.parts.sim_clients = clients

    def toggle_sim_clients(self) -> Optional[bool]:
        """Start or stop the demo's simulated clients; their new state, or None when there are none."""
        return self.control.toggle_sim_clients()

    # config (Control) -----------------------------------------------------------------------------
    def update_config(self, **changes: Any) -> dict[str, list[str]]:
        """Apply changes; returns {"applied": [...], "restart_required": [...]}. Raises ValueError when invalid."""
        return self.control.update_config(**changes)

    def running_config(self) -> SollolConfig:
        """The config as it runs now (registry hosts with their priorities, weights and slots; live routing)."""
        return self.control.running_config()

    def save_config(self, path: Optional[str | Path] = None) -> tuple[Path, Optional[Path]]:
        """Write the running config as TOML (previous file kept as .bak). Returns (path, backup)."""
        return self.control.save_config(path)
