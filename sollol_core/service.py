"""SOLLOL: owns the core thread and its event loop, and everything that runs in it.

    main thread   your program, or the dashboard (sollol_tui)
    core thread   one asyncio loop: gateway (uvicorn.Server.serve), health checks, adaptive metrics,
                  the metrics server and a one-second ticker for sparkline history

The programmatic API (start/stop/get_status/get_health/get_stats/update_config) and the operator actions
(drain, priorities, weights, strategy, hosts) are safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Coroutine, Optional

import uvicorn
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import __version__
from .batch import BatchManager
from .cluster.adaptive import ModelListRefresher, adaptive_loop
from .cluster.health import check_all, health_loop
from .cluster.hosts import HostRegistry
from .cluster.routing import Router
from .cluster.slots import SlotTable
from .config import HostSettings, SollolConfig, normalize_host, save_config
from .http.app import create_app
from .observability.metrics import CONTENT_TYPE, Metrics
from .observability.requestlog import RequestLog
from .observability.snapshot import (
    CacheView,
    ClientView,
    ClusterSnapshot,
    ComponentState,
    HostView,
    QueueView,
    RequestRecord,
)
from .prompt_cache.shadow import CacheShadow
from .request.admission import GatewayQueue
from .request.books import Books
from .request.path import Proxy
from .request.placement import Placement
from .upstream.executor import Executor
from .upstream.inloop import AsyncExecutor
from .upstream.ray_actors import RayExecutor, RayRuntime

log = logging.getLogger("sollol")

# Settings read live on every use; the rest take effect on the next start.
LIVE_KEYS = {
    "routing_strategy", "routing_weights", "max_retries", "retry_backoff_multiplier", "chat_timeout",
    "embedding_timeout", "management_timeout", "health_check_interval",
    "unhealthy_recheck_interval", "adaptive_metrics_interval", "max_body_bytes", "hosts", "admin_token",
    "management_open",
    "autobatch_interval", "autobatch_min_batch_size", "autobatch_max_batch_size", "autobatch_enabled",
    "batch_max_docs_per_request", "batch_max_doc_chars",
    "batch_chunk_size", "batch_in_flight_per_host", "batch_max_attempts",
}


class StartupError(RuntimeError):
    """The gateway could not start (port in use, bad address); the message says what to do."""


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


class SOLLOL:
    """The load balancer. `SOLLOL(config).start()` serves until `stop()`."""

    def __init__(self, config: Optional[SollolConfig] = None, *, host_labels: Optional[dict[str, str]] = None,
                 demo: bool = False, config_path: Optional[str | Path] = None,
                 config_warnings: Optional[list[str]] = None) -> None:
        self.config = config or SollolConfig()
        # what load_config ignored (unknown SOLLOL_* variables): logged now, shown by the dashboard at start
        self.config_warnings: list[str] = list(config_warnings or ())
        for message in self.config_warnings:
            log.warning("%s", message)
        self.config_path = Path(config_path) if config_path else None
        self.demo = demo
        self.registry = HostRegistry()
        labels = host_labels or {}
        for address in self.config.all_hosts():
            settings = self.config.host_settings.get(address, HostSettings())
            self.registry.add(address, label=labels.get(address, ""), priority=settings.priority,
                              weight=settings.weight)
        self.router = Router(self.registry, self.config.routing_strategy, self.config.routing_weights)
        self.metrics = Metrics(self.registry)
        self.requests = RequestLog()
        self.in_loop_executor = AsyncExecutor(self.config.connect_timeout)
        self.ray: Optional[RayRuntime] = None
        self.executor: Executor = self.in_loop_executor
        if self.config.executor == "ray":
            self.ray = RayRuntime(self.config, lambda state, detail: self.set_component("ray", state, detail))
            self.executor = RayExecutor(self.ray, self.in_loop_executor)
        self.model_lists = ModelListRefresher(self.in_loop_executor, self.registry)
        # the request path's stages (proxy.py): slots, prompt-cache shadow, placement, the gateway queue, books
        self.slots = SlotTable(self.num_parallel, lambda: self.config.host_queue_depth)
        self.shadow = CacheShadow(self.config.cache)
        self.placement = Placement(self.config, self.registry, self.router, self.slots, self.shadow,
                                   self.num_parallel)
        self.queue = GatewayQueue(self.config, self.placement, self.slots, self.shadow, self.metrics)
        self.books = Books(self.registry, self.metrics, self.requests, self.shadow)
        self.proxy = Proxy(self.config, self.registry, self.executor, self.metrics, self.queue, self.slots,
                           self.books, self.model_lists)
        self.metrics.add_collector(self._collect_metrics)
        self.registry.on_change(self._forget_on_change)
        self.app = create_app(self)
        self.components: dict[str, ComponentState] = {}
        self.gateway_url = ""
        self.metrics_url = ""
        self._started_at = 0.0
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._startup_error: Optional[BaseException] = None
        self._stop_event: Optional[asyncio.Event] = None
        self._server: Optional[uvicorn.Server] = None
        self._hooks: list[Callable[["SOLLOL"], Coroutine[Any, Any, None]]] = []
        self._stop_hooks: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self.registry.on_change(self._log_host_change)
        self._sim_clients: Any = None
        self.batch = BatchManager(self)  # durable queue, autobatch, Dask: started and stopped by its hooks

    # lifecycle ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._ready.is_set() and not self._stopped.is_set()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("SOLLOL is not started")
        return self._loop

    def add_start_hook(self, hook: Callable[["SOLLOL"], Coroutine[Any, Any, None]]) -> None:
        """A coroutine run in the core loop once the gateway listens (executors, batch)."""
        self._hooks.append(hook)

    def add_stop_hook(self, hook: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A coroutine run in the core loop after the gateway stopped taking requests."""
        self._stop_hooks.append(hook)

    def set_component(self, name: str, state: str, detail: str = "") -> None:
        self.components[name] = ComponentState(name, state, detail)

    def start(self, blocking: bool = False, timeout: float = 30.0) -> "SOLLOL":
        """Start the core thread; returns once the gateway listens (or raises StartupError).

        blocking=True then waits until stop() is called (from another thread or a signal handler).
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("SOLLOL is already running")
        self._ready.clear()
        self._stopped.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run_thread, name="sollol-core", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) and self._startup_error is None:
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
        return self._stopped.wait(timeout)

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop taking requests, let those in flight finish (bounded by shutdown_grace), stop everything."""
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            # the gateway's grace, then Ray (up to 30 s) and Dask (up to 15 s) shut down in turn
            self._thread.join(timeout if timeout is not None else self.config.shutdown_grace + 60)
        self._stopped.set()

    def run_coroutine(self, coro: Coroutine[Any, Any, Any], timeout: Optional[float] = None) -> Any:
        """Run a coroutine in the core loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _run_thread(self) -> None:
        try:
            import uvloop

            loop = uvloop.new_event_loop()
        except ImportError:
            loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: BLE001 - reported to start()
            if not self._ready.is_set():
                self._startup_error = e
            else:
                log.exception("core loop ended with an error")
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._stopped.set()
                self._ready.set()

    async def _main(self) -> None:
        cfg = self.config
        self._stop_event = asyncio.Event()
        sock = _bind(cfg.gateway_host, cfg.gateway_port)
        await self.executor.start()
        tasks: list[asyncio.Task] = []
        metrics_runner: Optional[web.AppRunner] = None
        serve_task: Optional[asyncio.Task] = None
        self._server = None
        try:
            server_config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=cfg.shutdown_grace, loop="none",
                                           server_header=False, timeout_keep_alive=30,
                                           proxy_headers=False, date_header=False)
            self._server = server = uvicorn.Server(server_config)
            serve_task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                if serve_task.done():
                    raise StartupError(f"gateway failed to start: {serve_task.exception()}")
                await asyncio.sleep(0.005)
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            self.gateway_url = f"http://{shown}:{port}"
            self._started_at = time.time()
            self.set_component("gateway", "ready", self.gateway_url)
            self.set_component("executor", "ready", "async (in the core loop)" if self.ray is None
                               else "ray (in the core loop until Ray is ready)")
            if self.ray is not None:
                self.ray.start()  # in its own thread: the gateway serves in the meantime
            if cfg.metrics_enabled:
                metrics_runner = await self._start_metrics_server()
            if cfg.health_check_enabled:
                tasks.append(asyncio.create_task(health_loop(self.in_loop_executor, self.registry, cfg)))
            if cfg.adaptive_metrics_enabled:
                tasks.append(asyncio.create_task(adaptive_loop(self.in_loop_executor, self.registry, cfg)))
            tasks.append(asyncio.create_task(self._ticker()))
            for hook in self._hooks:
                await hook(self)
            log.info("gateway listening on %s", self.gateway_url)
            self._ready.set()
            await self._stop_event.wait()
            log.info("stopping: no new requests; waiting for %d in flight", self.proxy.active)
            server.should_exit = True
            await serve_task
        finally:
            if serve_task is not None and not serve_task.done():  # a start that failed half-way
                self._server.should_exit = True  # type: ignore[union-attr]
                await asyncio.gather(serve_task, return_exceptions=True)
            for hook in reversed(self._stop_hooks):
                try:
                    await hook()
                except Exception:
                    log.exception("stop hook failed")
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            if self.ray is not None:
                await asyncio.to_thread(self.ray.stop)  # after the gateway drained: nothing uses the actors now
            await self.executor.close()
            if not sock._closed:  # type: ignore[attr-defined]
                sock.close()
            self.set_component("gateway", "off")

    async def _start_metrics_server(self) -> Optional[web.AppRunner]:
        async def handle(_: web.Request) -> web.Response:
            return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

        app = web.Application()
        app.router.add_get("/metrics", handle)
        app.router.add_get("/", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.config.gateway_host, self.config.metrics_port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            msg = f"cannot listen on port {self.config.metrics_port}: {e.strerror}; /metrics on the gateway still works"
            log.warning("metrics server: %s", msg)
            self.set_component("metrics", "failed", msg)
            return None
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.metrics_url = f"http://{self.config.gateway_host}:{port}/metrics"
        self.set_component("metrics", "ready", self.metrics_url)
        return runner

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.registry.tick_history()

    def _log_host_change(self, address: str, what: str) -> None:
        if what != "readmitted":
            log.info("host %s: %s", address, what)

    # reading --------------------------------------------------------------------------------------
    def host_views(self) -> list[HostView]:
        """Every host as the registry has it, with its slots (admission) and cache figures (the shadow)."""
        views = []
        for v in self.registry.views(self.router.score):
            in_use, by_model, unfit = self.slots.view(v.host)
            views.append(replace(v, slots=self.num_parallel(v.host), slots_in_use=in_use, slots_by_model=by_model,
                                 unfit_models=unfit, cache=self._cache_view(v.host)))
        return views

    def _cache_view(self, host: str) -> Optional[CacheView]:
        if not self.config.cache.enabled:
            return None
        c = self.shadow.host_view(host)
        return CacheView(hit_rate=c.get("hit_rate"), prefill_saved_s=round(c.get("prefill_saved_s", 0.0), 3),
                         entries=c.get("entries", 0), blocks=c.get("blocks", 0), bytes=c.get("bytes", 0),
                         prefill_s_per_kchar=self.shadow.prefill_rate(host),
                         predicted_hits=c.get("predicted_hits", 0), confirmed_hits=c.get("confirmed_hits", 0),
                         corrections=c.get("corrections", 0))

    def queue_view(self) -> QueueView:
        q = self.queue
        return QueueView(depth=q.depth(), oldest_wait_s=q.oldest_wait_s(), admitted=q.stats.admitted,
                         rejected=dict(q.stats.rejected), expired=q.stats.expired, cancelled=q.stats.cancelled)

    def client_views(self) -> tuple[ClientView, ...]:
        q = self.queue
        waiting = q.waiting_by_client()
        names = set(q.requests_by_client) | set(waiting)
        classes = {k.name: k.priority for k in self.config.api_keys.values()}
        return tuple(ClientView(name=n, priority=classes.get(n, "interactive"), requests=q.requests_by_client.get(n, 0),
                                waiting=waiting.get(n, 0), in_flight=q.in_flight_by_client.get(n, 0),
                                rejected=q.rejected_by_client.get(n, 0))
                     for n in sorted(names))

    def _forget_on_change(self, address: str, what: str) -> None:
        """What a host's prompt cache held is gone when it leaves, comes back (it may have restarted) or
        unloads a model; its slot corrections go when it leaves."""
        if what in ("removed", "readmitted"):
            self.shadow.drop_host(address)
        if what == "removed":
            self.slots.forget_host(address)
        elif what.startswith("unloaded:"):
            self.shadow.drop_model(address, what.split(":", 1)[1])

    def _collect_metrics(self):  # type: ignore[no-untyped-def]
        depth = GaugeMetricFamily("sollol_queue_depth", "Requests waiting in the gateway queue", labels=["priority"])
        for cls, n in self.queue.depth().items():
            depth.add_metric([cls], n)
        stats = self.queue.stats
        outcomes = CounterMetricFamily("sollol_queue_requests", "Requests through the gateway queue, by outcome",
                                       labels=["outcome"])
        outcomes.add_metric(["admitted"], stats.admitted)
        outcomes.add_metric(["expired"], stats.expired)
        outcomes.add_metric(["cancelled"], stats.cancelled)
        slots = GaugeMetricFamily("sollol_slots_in_use", "Requests admitted per host and model",
                                  labels=["host", "model"])
        limit = GaugeMetricFamily("sollol_slots_limit", "Requests allowed in flight per host and model",
                                  labels=["host", "model"])
        hit = GaugeMetricFamily("sollol_cache_hit_rate", "Share of placements that found their prompt cached",
                                labels=["host"])
        for host in self.registry.addresses():
            _, by_model, _ = self.slots.view(host)
            for model, in_use, lim in by_model:
                slots.add_metric([host, model], in_use)
                if lim is not None:
                    limit.add_metric([host, model], lim)
            c = self.shadow.host_view(host)
            if c.get("hit_rate") is not None:
                hit.add_metric([host], c["hit_rate"])
        return [depth, outcomes, slots, limit, hit]

    def snapshot(self, recent: int = 200) -> ClusterSnapshot:
        """Everything the dashboard shows, copied under the locks: safe from any thread."""
        rps, eps = self.requests.rates()
        return ClusterSnapshot(
            gateway_url=self.gateway_url,
            strategy=self.router.strategy_name,
            weights=self.router.weights.model_dump(),
            uptime_s=(time.time() - self._started_at) if self._started_at else 0.0,
            requests_per_s=rps,
            errors_per_s=eps,
            active_requests=self.proxy.active,
            hosts=tuple(self.host_views()),
            recent_requests=self.requests.recent(recent),
            components=tuple(self.components.values()),
            batch=self.batch.view(),
            demo=self.demo,
            sim_clients=None if self._sim_clients is None else str(self._sim_clients.describe()),
            queue=self.queue_view(),
            clients=self.client_views(),
        )

    def get_status(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "version": __version__,
            "gateway_url": self.gateway_url,
            "metrics_url": self.metrics_url or None,
            "hosts": len(self.registry),
            "strategy": self.router.strategy_name,
            "components": {c.name: {"state": c.state, "detail": c.detail} for c in self.components.values()},
            "uptime_s": round((time.time() - self._started_at) if self._started_at else 0.0, 1),
        }

    def get_health(self) -> dict[str, Any]:
        views = self.host_views()
        healthy = sum(1 for v in views if v.available)
        status = "ok" if views and healthy == len(views) else ("degraded" if healthy else "down")
        return {
            "status": status,
            "hosts_total": len(views),
            "hosts_available": healthy,
            "hosts": {v.host: {"state": v.state, "last_error": v.last_error} for v in views},
            "timestamp": datetime.now(timezone.utc).isoformat(),
        }

    def get_stats(self) -> dict[str, Any]:
        keys = ("host", "label", "available", "state", "latency_ms", "peak_latency_ms", "ttft_ms", "tokens_per_s",
                "success_rate", "cpu_load", "gpu_free_mem", "priority", "weight", "in_flight", "requests_total",
                "failures_total", "score", "score_terms", "models_available", "models_loaded", "last_error",
                "last_updated", "slots", "slots_in_use", "unfit_models", "cache")
        rps, eps = self.requests.rates()
        hosts = []
        for v in self.host_views():
            d = asdict(v)
            row = {k: (list(d[k]) if isinstance(d[k], tuple) else d[k]) for k in keys}
            row["slots_by_model"] = [{"model": m, "in_use": n, "limit": lim} for m, n, lim in v.slots_by_model]
            hosts.append(row)
        queue = asdict(self.queue_view())
        return {
            "hosts": hosts,
            "queue": queue,
            "clients": [asdict(c) for c in self.client_views()],
            "recent_placements": [
                {"time": r.time, "endpoint": r.endpoint, "model": r.model, "host": r.host, "status": r.status,
                 "placement": r.placement, "wait_ms": r.wait_ms, "priority": r.priority, "client": r.client}
                for r in self.requests.recent(20)],
            "routing": {"strategy": self.router.strategy_name, "weights": self.router.weights.model_dump()},
            "gateway": {"url": self.gateway_url, "active_requests": self.proxy.active,
                        "requests_total": self.requests.total, "errors_total": self.requests.errors,
                        "requests_per_s": rps, "errors_per_s": eps},
            "executor": self.executor_view(),
            "components": {c.name: {"state": c.state, "detail": c.detail} for c in self.components.values()},
            "timestamp": datetime.now(timezone.utc).isoformat(),
        }

    def executor_view(self) -> dict[str, Any]:
        """Which executor carries live requests, and its state (the /api/stats "executor" field)."""
        if self.ray is not None:
            return self.ray.view()
        return {"kind": "async", "state": "ready" if self.running else "off", "actors": 0, "address": None,
                "error": None}

    def trigger_batch(self) -> dict[str, Any]:
        """Start a batch of queued documents now (the dashboard's `b`); safe from any thread."""
        return self.batch.trigger()

    def recent_requests(self, n: int = 200) -> tuple[RequestRecord, ...]:
        return self.requests.recent(n)

    def subscribe_requests(self, callback: Callable[[RequestRecord], None]) -> Callable[[], None]:
        """callback(record) in the core thread for each finished request; returns an unsubscribe function."""
        return self.requests.subscribe(callback)

    # operator actions (any thread) -----------------------------------------------------------------
    def add_host(self, address: str, *, priority: int = 0, weight: float = 1.0, label: str = "") -> str:
        address = normalize_host(address)
        self.registry.add(address, priority=priority, weight=weight, label=label)
        if address not in self.config.hosts:
            self.config.hosts = [*self.config.hosts, address]
        if self._loop is not None and self.running:
            # learn its models and health now rather than at the next round
            asyncio.run_coroutine_threadsafe(self._refresh_new_host(address), self._loop)
        return address

    async def _refresh_new_host(self, address: str) -> None:
        from .cluster.adaptive import refresh_host

        await check_all(self.in_loop_executor, self.registry)
        await refresh_host(self.in_loop_executor, self.registry, address)

    def remove_host(self, address: str) -> None:
        address = normalize_host(address)
        self.registry.remove(address)
        if address in self.config.hosts:
            self.config.hosts = [h for h in self.config.hosts if h != address]

    def drain_host(self, address: str) -> None:
        self.registry.drain(normalize_host(address))

    def undrain_host(self, address: str) -> None:
        self.registry.undrain(normalize_host(address))

    def toggle_drain(self, address: str) -> str:
        """Drain a host, or undrain a draining one; returns the new state."""
        host = self.registry.get(normalize_host(address))
        if host.state.value == "draining":
            self.undrain_host(address)
        else:
            self.drain_host(address)
        return self.registry.get(normalize_host(address)).state.value

    def set_priority(self, address: str, priority: int) -> None:
        self.registry.set_priority(normalize_host(address), priority)

    def set_weight(self, address: str, weight: float) -> None:
        self.registry.set_weight(normalize_host(address), weight)

    def num_parallel(self, address: str) -> Optional[int]:
        """The host's slots per loaded model: its own num_parallel, else default_num_parallel (None: unlimited)."""
        settings = self.config.host_settings.get(address)  # registry addresses are normalised already
        if settings is None and address not in self.registry:
            settings = self.config.host_settings.get(normalize_host(address))
        if settings is not None and settings.num_parallel is not None:
            return settings.num_parallel
        return self.config.default_num_parallel

    def set_num_parallel(self, address: str, slots: Optional[int]) -> None:
        """Set the host's slots (its OLLAMA_NUM_PARALLEL); None goes back to default_num_parallel. Live."""
        address = normalize_host(address)
        self.registry.get(address)  # UnknownHost for a host that is not registered
        settings = dict(self.config.host_settings)
        current = settings.get(address) or HostSettings(priority=self.registry.get(address).priority,
                                                        weight=self.registry.get(address).weight)
        settings[address] = current.model_copy(update={"num_parallel": HostSettings(num_parallel=slots).num_parallel})
        self.config.host_settings = settings
        self.registry.touch(address, "slots")

    @property
    def sim_clients(self) -> Any:
        return self._sim_clients

    def attach_sim_clients(self, clients: Any) -> None:
        """Simulated client traffic for the demo (an object with start(), stop(), running and describe())."""
        self._sim_clients = clients

    def toggle_sim_clients(self) -> Optional[bool]:
        """Start or stop the demo's simulated clients; their new state, or None when there are none."""
        clients = self._sim_clients
        if clients is None:
            return None
        if clients.running:
            clients.stop()
        else:
            clients.start()
        return bool(clients.running)

    def set_strategy(self, name: str) -> None:
        self.router.set_strategy(name)
        self.config.routing_strategy = name  # type: ignore[assignment]

    def set_weights(self, **weights: float) -> None:
        new = self.router.set_weights(**weights)
        self.config.routing_weights = new

    def running_config(self) -> SollolConfig:
        """The config as it runs now: the registry's hosts with their priorities and weights, and the live
        strategy and weights. Simulated hosts (--demo) are left out: their ports die with the process."""
        cfg = self.config.model_copy(deep=True)
        cfg.routing_strategy = self.router.strategy_name  # type: ignore[assignment]
        cfg.routing_weights = self.router.weights.model_copy()
        real = [h for h in self.registry.hosts() if not h.label.startswith("simulated")]
        cfg.hosts = [h.address for h in real]
        cfg.hosts_file = None
        slots = {a: hs.num_parallel for a, hs in self.config.host_settings.items()}
        cfg.host_settings = {h.address: HostSettings(priority=h.priority, weight=h.weight,
                                                     num_parallel=slots.get(h.address))
                             for h in real if (h.priority, h.weight, slots.get(h.address)) != (0, 1.0, None)}
        return cfg

    def save_config(self, path: Optional[str | Path] = None) -> tuple[Path, Optional[Path]]:
        """Write the running config as TOML (previous file kept as .bak). Returns (path, backup)."""
        target = Path(path) if path else (self.config_path or Path.cwd() / "sollol.toml")
        backup = save_config(self.running_config(), target)
        return target, backup

    def update_config(self, **changes: Any) -> dict[str, list[str]]:
        """Apply changes; returns {"applied": [...], "restart_required": [...]}. Raises ValueError when invalid."""
        current = self.config.model_dump()
        if isinstance(changes.get("routing_weights"), dict):  # a partial table changes only what it names
            changes = changes | {"routing_weights": current["routing_weights"] | changes["routing_weights"]}
        validated = SollolConfig.model_validate(current | changes)  # all or nothing
        applied, restart = [], []
        for key in changes:
            value = getattr(validated, key)
            if key == "routing_strategy":
                self.set_strategy(value)
            elif key == "routing_weights":
                self.set_weights(**value.model_dump())
            elif key == "hosts":
                for address in value:
                    if address not in self.registry:
                        self.add_host(address)
                for address in self.registry.addresses():
                    if address not in value:
                        self.remove_host(address)
            else:
                setattr(self.config, key, value)
            (applied if key in LIVE_KEYS else restart).append(key)
        return {"applied": applied, "restart_required": restart}
