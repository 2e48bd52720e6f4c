"""Prometheus exposition.

Per-request counters and histograms are recorded by the request path; everything read from the core's state
(host gauges, queue depth, slots, cache hit rates) comes from collector functions called at scrape time (one
source of truth), which views.Views adds. Each SOLLOL instance has its own CollectorRegistry, so several can
live in one process (tests) without clashing.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric

WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

Collect = Callable[[], Iterable[Metric]]


class _StateCollector:
    """The collector functions, read at scrape time in the order they were added."""

    def __init__(self) -> None:
        self.collects: list[Collect] = []

    def collect(self) -> Iterable[Metric]:
        for collect in self.collects:
            yield from collect()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests_total = Counter("sollol_requests", "Requests answered by the gateway",
                                      ["endpoint", "status"], registry=r)
        self.request_latency = Histogram("sollol_request_latency_seconds", "Gateway request latency",
                                         ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("sollol_time_to_first_token_seconds", "Time to the first streamed chunk",
                              ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.worker_failures = Counter("sollol_worker_failures", "Failed upstream calls", ["host"], registry=r)
        self.retries = Counter("sollol_retries", "Upstream calls retried on another host", ["endpoint"], registry=r)
        self.active_requests = Gauge("sollol_active_requests", "Requests being served by the gateway", registry=r)
        self.queue_wait = Histogram("sollol_queue_wait_seconds", "Time requests waited in the gateway queue",
                                    ["priority"], buckets=WAIT_BUCKETS, registry=r)
        self.queue_rejected = Counter("sollol_queue_rejected", "Requests the gateway queue refused, by reason",
                                      ["reason"], registry=r)
        self.client_requests = Counter("sollol_client_requests", "Requests by client and priority class",
                                       ["client", "priority"], registry=r)
        self.prefill_saved = Counter("sollol_cache_prefill_saved_seconds",
                                     "Prefill seconds hosts skipped because the prompt was cached", ["host"],
                                     registry=r)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._collector = _StateCollector()
        r.register(self._collector)

    def add_collector(self, collect: Collect) -> None:
        """A function returning metric families, read at scrape time (one source of truth: the core's state)."""
        self._collector.collects.append(collect)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        outcome = "success" if status < 400 else ("client_error" if status < 500 else "error")
        self.child(self.requests_total, endpoint, outcome).inc()
        self.child(self.request_latency, endpoint).observe(seconds)

    def child(self, metric: Any, *labels: str) -> Any:
        """metric.labels(*labels), remembered: looking a child up costs more than using it, on every request."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def forget_client(self, client: str) -> None:
        """Drop the label values of a client the books no longer keep (request.tracked)."""
        metric = self.client_requests
        for key in [k for k in self._children if k[0] == id(metric) and k[1][0] == client]:
            del self._children[key]
            try:
                metric.remove(*key[1])
            except KeyError:
                pass

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
