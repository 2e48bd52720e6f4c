"""Prometheus exposition.

Per-request counters and histograms are recorded by the gateway; per-host gauges are read from the host
registry at scrape time (one source of truth), through a custom collector. Each SOLLOL instance has its
own CollectorRegistry, so several can live in one process (tests) without clashing.
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from ..cluster.hosts import HostRegistry

WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _HostCollector:
    def __init__(self, hosts: HostRegistry) -> None:
        self.hosts = hosts
        self.extra: list = []  # more collect() functions (queue depth, slots, cache), added by the service

    def collect(self) -> Iterable[Metric]:
        for extra in self.extra:
            yield from extra()
        yield from self._hosts()

    def _hosts(self) -> Iterable[Metric]:
        latency = GaugeMetricFamily("sollol_host_latency_ms", "Latency EWMA of the host in ms", labels=["host"])
        success = GaugeMetricFamily("sollol_host_success_rate", "Success-rate EWMA of the host", labels=["host"])
        in_flight = GaugeMetricFamily("sollol_host_in_flight", "Requests in flight on the host", labels=["host"])
        up = GaugeMetricFamily("sollol_host_available", "1 when the host takes new requests", labels=["host", "state"])
        for h in self.hosts.hosts():
            latency.add_metric([h.address], h.latency_ms)
            success.add_metric([h.address], h.success_rate)
            in_flight.add_metric([h.address], h.in_flight)
            up.add_metric([h.address, h.state.value], 1.0 if h.available else 0.0)
        return [latency, success, in_flight, up]


class Metrics:
    def __init__(self, hosts: HostRegistry) -> None:
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
        self._children: dict = {}
        self._collector = _HostCollector(hosts)
        r.register(self._collector)

    def add_collector(self, collect) -> None:  # type: ignore[no-untyped-def]
        """A function returning metric families, read at scrape time (one source of truth: the core's state)."""
        self._collector.extra.append(collect)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        outcome = "success" if status < 400 else ("client_error" if status < 500 else "error")
        self.child(self.requests_total, endpoint, outcome).inc()
        self.child(self.request_latency, endpoint).observe(seconds)

    def child(self, metric, *labels: str):  # type: ignore[no-untyped-def]
        """metric.labels(*labels), remembered: looking a child up costs more than using it, on every request."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
