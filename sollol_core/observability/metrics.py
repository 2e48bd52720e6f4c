"""Prometheus exposition.

Per-request counters and histograms are recorded by the request path; everything read from the core's state
(host gauges, queue depth, slots, cache hit rates) comes from collector functions called at scrape time (one
source of truth), which views.Views adds. Each SOLLOL instance has its own CollectorRegistry, so several can
live in one process (tests) without clashing.

The metrics written on every request (requests, latency, time to first token, queue wait, per-client
requests) are light ones (LightCounter, LightHistogram): plain numbers written by the core loop alone and
read at scrape time, where prometheus_client's own take a lock and make several calls per update. They
expose the same series (`_total`; `_bucket`, `_count`, `_sum`).
"""

from __future__ import annotations

import bisect
from typing import Any, Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

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


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket (not cumulative); the last is above every bound
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, amount)] += 1  # le: a value on a bound counts in it
        self.sum += amount


class _Light:
    """Children by label values, made on first use. Written only in the core loop; read by a scrape in
    another thread through copies (a list of a dict's items is taken whole)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self._children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            child = self._children[values] = self._child()
        return child

    def remove(self, *values: str) -> None:
        del self._children[values]

    def _child(self) -> Any:
        raise NotImplementedError

    def _items(self) -> list[tuple[tuple[str, ...], Any]]:
        return list(self._children.items())


class LightCounter(_Light):
    """A counter exposed as `<name>_total`."""

    def _child(self) -> _CounterChild:
        return _CounterChild()

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self._items():
            family.add_metric(list(values), child.value)
        yield family


class LightHistogram(_Light):
    """A histogram with fixed buckets, exposed as `<name>_bucket`, `_count` and `_sum`."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        super().__init__(name, documentation, labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        self._les = [repr(b) for b in self.bounds] + ["+Inf"]  # as prometheus_client writes them: 0.005, 1.0

    def _child(self) -> _HistogramChild:
        return _HistogramChild(self.bounds)

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self._items():
            counts, total, buckets = list(child.counts), child.sum, []
            running = 0
            for le, n in zip(self._les, counts):
                running += n
                buckets.append((le, running))
            family.add_metric(list(values), buckets, total)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests_total = LightCounter("sollol_requests", "Requests answered by the gateway",
                                           ["endpoint", "status"])
        self.request_latency = LightHistogram("sollol_request_latency_seconds", "Gateway request latency",
                                              ["endpoint"], LATENCY_BUCKETS)
        self.ttft = LightHistogram("sollol_time_to_first_token_seconds", "Time to the first streamed chunk",
                                   ["endpoint"], LATENCY_BUCKETS)
        self.worker_failures = Counter("sollol_worker_failures", "Failed upstream calls", ["host"], registry=r)
        self.retries = Counter("sollol_retries", "Upstream calls retried on another host", ["endpoint"], registry=r)
        self.active_requests = Gauge("sollol_active_requests", "Requests being served by the gateway", registry=r)
        self.queue_wait = LightHistogram("sollol_queue_wait_seconds", "Time requests waited in the gateway queue",
                                         ["priority"], WAIT_BUCKETS)
        self.queue_rejected = Counter("sollol_queue_rejected", "Requests the gateway queue refused, by reason",
                                      ["reason"], registry=r)
        self.client_requests = LightCounter("sollol_client_requests", "Requests by client and priority class",
                                            ["client", "priority"])
        self.prefill_saved = Counter("sollol_cache_prefill_saved_seconds",
                                     "Prefill seconds hosts skipped because the prompt was cached", ["host"],
                                     registry=r)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._collector = _StateCollector()
        r.register(self._collector)
        for light in (self.requests_total, self.request_latency, self.ttft, self.queue_wait, self.client_requests):
            self.add_collector(light.collect)

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
