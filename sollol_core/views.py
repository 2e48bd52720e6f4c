"""Views: what a SOLLOL shows, read from its parts (the registry is the one source of host state).

The dashboard's snapshot, /api/stats, /api/health, get_status, and the Prometheus families read at scrape
time (host gauges, the gateway queue, slots, cache hit rates). Every method is safe from any thread: each
part copies what it hands out under its own lock.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from typing import Any, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .observability.snapshot import CacheView, ClientView, ClusterSnapshot, HostView, QueueView, RequestRecord
from .version import __version__
from .wiring import Parts

# the per-host fields of /api/stats, in its order
STATS_HOST_KEYS = ("host", "label", "available", "state", "latency_ms", "peak_latency_ms", "ttft_ms",
                   "tokens_per_s", "success_rate", "cpu_load", "gpu_free_mem", "priority", "weight", "in_flight",
                   "requests_total", "failures_total", "score", "score_terms", "models_available",
                   "models_loaded", "last_error", "last_updated", "slots", "slots_in_use", "unfit_models",
                   "cache", "slots_learned", "slot_learning", "runners")


class Views:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    # hosts, queue, clients ------------------------------------------------------------------------
    def host_views(self) -> list[HostView]:
        """Every host as the registry has it, with its slots (admission) and cache figures (the shadow)."""
        p = self.parts
        views = []
        for v in p.registry.views(p.router.score):
            in_use, by_model, unfit = p.slots.view(v.host)
            learning = p.slots.learned_views(v.host)
            learned = any(x.applies and x.slots is not None for x in learning)
            views.append(replace(v, slots=p.slots.host_slots(v.host), slots_in_use=in_use, slots_by_model=by_model,
                                 unfit_models=unfit, cache=self._cache_view(v.host), slots_learned=learned,
                                 slot_learning=learning, runners=p.runners.views(v.host)))
        return views

    def _cache_view(self, host: str) -> Optional[CacheView]:
        p = self.parts
        if not p.config.cache.enabled:
            return None
        c = p.shadow.host_view(host)
        return CacheView(hit_rate=c.get("hit_rate"), prefill_saved_s=round(c.get("prefill_saved_s", 0.0), 3),
                         entries=c.get("entries", 0), blocks=c.get("blocks", 0), bytes=c.get("bytes", 0),
                         prefill_s_per_kchar=p.shadow.prefill_rate(host),
                         predicted_hits=c.get("predicted_hits", 0), confirmed_hits=c.get("confirmed_hits", 0),
                         corrections=c.get("corrections", 0))

    def queue_view(self) -> QueueView:
        q = self.parts.queue
        return QueueView(depth=q.depth(), oldest_wait_s=q.oldest_wait_s(), admitted=q.stats.admitted,
                         rejected=dict(q.stats.rejected), expired=q.stats.expired, cancelled=q.stats.cancelled,
                         preempted=q.stats.preempted,
                         why=q.waiting_why(), reserved_for=q.reserved_for())

    def client_views(self) -> tuple[ClientView, ...]:
        q = self.parts.queue
        waiting = q.waiting_by_client()
        names = set(q.requests_by_client) | set(waiting)
        classes = {k.name: k.priority for k in self.parts.config.api_keys.values()}
        return tuple(ClientView(name=n, priority=classes.get(n, "interactive"), requests=q.requests_by_client.get(n, 0),
                                waiting=waiting.get(n, 0), in_flight=q.in_flight_by_client.get(n, 0),
                                rejected=q.rejected_by_client.get(n, 0))
                     for n in sorted(names))

    def executor_view(self) -> dict[str, Any]:
        """Which executor carries live requests, and its state (the /api/stats "executor" field)."""
        p = self.parts
        if p.ray is not None:
            return p.ray.view()
        return {"kind": "async", "state": "ready" if p.state.running else "off", "actors": 0, "address": None,
                "error": None}

    def recent_requests(self, n: int = 200) -> tuple[RequestRecord, ...]:
        return self.parts.requests.recent(n)

    def uptime_s(self) -> float:
        started = self.parts.state.started_at
        return (time.time() - started) if started else 0.0

    # the dashboard, the API -----------------------------------------------------------------------
    def snapshot(self, recent: int = 200) -> ClusterSnapshot:
        """Everything the dashboard shows, copied under the locks: safe from any thread."""
        p = self.parts
        rps, eps = p.requests.rates()
        return ClusterSnapshot(
            gateway_url=p.state.gateway_url,
            strategy=p.router.strategy_name,
            weights=p.router.weights.model_dump(),
            uptime_s=self.uptime_s(),
            requests_per_s=rps,
            errors_per_s=eps,
            active_requests=p.path.active,
            hosts=tuple(self.host_views()),
            recent_requests=p.requests.recent(recent),
            components=p.components.view(),
            batch=p.batch.view(),
            demo=p.demo,
            sim_clients=None if p.sim_clients is None else str(p.sim_clients.describe()),
            queue=self.queue_view(),
            clients=self.client_views(),
        )

    def get_status(self) -> dict[str, Any]:
        p = self.parts
        return {
            "running": p.state.running,
            "version": __version__,
            "gateway_url": p.state.gateway_url,
            "metrics_url": p.state.metrics_url or None,
            "hosts": len(p.registry),
            "strategy": p.router.strategy_name,
            "components": p.components.as_dict(),
            "uptime_s": round(self.uptime_s(), 1),
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
        p = self.parts
        rps, eps = p.requests.rates()
        hosts = []
        for v in self.host_views():
            d = asdict(v)
            row = {k: (list(d[k]) if isinstance(d[k], tuple) else d[k]) for k in STATS_HOST_KEYS}
            learned = {x.model for x in v.slot_learning if x.applies and x.slots is not None}
            row["slots_by_model"] = [{"model": m, "in_use": n, "limit": lim, "learned": m in learned}
                                     for m, n, lim in v.slots_by_model]
            hosts.append(row)
        return {
            "hosts": hosts,
            "queue": asdict(self.queue_view()),
            "clients": [asdict(c) for c in self.client_views()],
            "recent_placements": [
                {"time": r.time, "endpoint": r.endpoint, "model": r.model, "host": r.host, "status": r.status,
                 "placement": r.placement, "wait_ms": r.wait_ms, "priority": r.priority, "client": r.client}
                for r in p.requests.recent(20)],
            "routing": {"strategy": p.router.strategy_name, "weights": p.router.weights.model_dump()},
            # the mean idle time between a conversation's turns, as placement weighs evictions by it (None:
            # fewer than RETURN_GAPS_TRUSTED seen, every conversation within cache.active_s counts as going)
            "cache": {"turn_gap_s": p.shadow.return_gap_s() if p.config.cache.enabled else None},
            "gateway": {"url": p.state.gateway_url, "active_requests": p.path.active,
                        "requests_total": p.requests.total, "errors_total": p.requests.errors,
                        "requests_per_s": rps, "errors_per_s": eps},
            "executor": self.executor_view(),
            "components": p.components.as_dict(),
            "timestamp": datetime.now(timezone.utc).isoformat(),
        }

    # Prometheus (read at scrape time) -------------------------------------------------------------
    def collect(self) -> list[Metric]:
        """The families read from the core's state: queue, slots, cache hit rates, then the host gauges.
        Added once to parts.metrics (metrics.add_collector), as SOLLOL does."""
        return [*self._queue_families(), *self._slot_and_cache_families(), *self._host_families()]

    def _queue_families(self) -> list[Metric]:
        q = self.parts.queue
        depth = GaugeMetricFamily("sollol_queue_depth", "Requests waiting in the gateway queue", labels=["priority"])
        for cls, n in q.depth().items():
            depth.add_metric([cls], n)
        stats = q.stats
        outcomes = CounterMetricFamily("sollol_queue_requests", "Requests through the gateway queue, by outcome",
                                       labels=["outcome"])
        outcomes.add_metric(["admitted"], stats.admitted)
        outcomes.add_metric(["expired"], stats.expired)
        outcomes.add_metric(["cancelled"], stats.cancelled)
        return [depth, outcomes]

    def _slot_and_cache_families(self) -> list[Metric]:
        p = self.parts
        slots = GaugeMetricFamily("sollol_slots_in_use", "Requests admitted per host and model",
                                  labels=["host", "model"])
        limit = GaugeMetricFamily("sollol_slots_limit", "Requests allowed in flight per host and model",
                                  labels=["host", "model"])
        hit = GaugeMetricFamily("sollol_cache_hit_rate", "Share of placements that found their prompt cached",
                                labels=["host"])
        learned = GaugeMetricFamily("sollol_slots_learned", "Slots learned from the host's answers, per model",
                                    labels=["host", "model"])
        reloads = CounterMetricFamily("sollol_model_reloads", "Model reloads the host's answers showed, by cause "
                                      "(options: other runner options; cold: none known loaded; unknown)",
                                      labels=["host", "model", "cause"])
        for host in p.registry.addresses():
            _, by_model, _ = p.slots.view(host)
            for model, in_use, lim in by_model:
                slots.add_metric([host, model], in_use)
                if lim is not None:
                    limit.add_metric([host, model], lim)
            for x in p.slots.learned_views(host):
                if x.applies and x.slots is not None:
                    learned.add_metric([host, x.model], x.slots)
            c = p.shadow.host_view(host)
            if c.get("hit_rate") is not None:
                hit.add_metric([host], c["hit_rate"])
        for host, model, cause, n in p.runners.reload_counts():
            reloads.add_metric([host, model, cause], n)
        return [slots, limit, hit, learned, reloads]

    def _host_families(self) -> list[Metric]:
        latency = GaugeMetricFamily("sollol_host_latency_ms", "Latency EWMA of the host in ms", labels=["host"])
        success = GaugeMetricFamily("sollol_host_success_rate", "Success-rate EWMA of the host", labels=["host"])
        in_flight = GaugeMetricFamily("sollol_host_in_flight", "Requests in flight on the host", labels=["host"])
        up = GaugeMetricFamily("sollol_host_available", "1 when the host takes new requests", labels=["host", "state"])
        for h in self.parts.registry.hosts():
            latency.add_metric([h.address], h.latency_ms)
            success.add_metric([h.address], h.success_rate)
            in_flight.add_metric([h.address], h.in_flight)
            up.add_metric([h.address, h.state.value], 1.0 if h.available else 0.0)
        return [latency, success, in_flight, up]

