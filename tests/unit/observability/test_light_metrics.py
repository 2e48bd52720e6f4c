"""The per-request metrics are plain numbers read at scrape time: their exposition is what prometheus_client's
own Counter and Histogram would write for the same observations."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sollol_core.observability.metrics import LATENCY_BUCKETS, Metrics

SAMPLES = (0.0, 0.005, 0.0051, 0.02, 0.25, 7.0, 400.0)  # on a bound, just above one, beyond the last


def samples(text: str, family: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == family:
            for s in fam.samples:
                if not s.name.endswith("_created"):
                    out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_the_light_histogram_and_counter_expose_what_prometheus_client_would():
    m = Metrics()
    reference = CollectorRegistry()
    latency = Histogram("sollol_request_latency_seconds", "x", ["endpoint"], buckets=LATENCY_BUCKETS,
                        registry=reference)
    requests = Counter("sollol_requests", "x", ["endpoint", "status"], registry=reference)
    for s in SAMPLES:
        m.observe("/api/chat", 200, s)
        latency.labels("/api/chat").observe(s)
        requests.labels("/api/chat", "success").inc()
    m.observe("/api/chat", 503, 1.0)
    latency.labels("/api/chat").observe(1.0)
    requests.labels("/api/chat", "error").inc()
    ours, theirs = m.exposition().decode(), generate_latest(reference).decode()
    for family in ("sollol_request_latency_seconds", "sollol_requests"):
        got, want = samples(ours, family), samples(theirs, family)
        assert got and got == want
    assert 'sollol_request_latency_seconds_bucket{endpoint="/api/chat",le="0.005"} 2.0' in ours  # le: a bound counts in


def test_a_forgotten_client_leaves_the_exposition():
    m = Metrics()
    m.child(m.client_requests, "alice", "interactive").inc()
    m.child(m.client_requests, "bob", "batch").inc(2)
    m.forget_client("alice")
    text = m.exposition().decode()
    assert 'client="alice"' not in text
    assert 'sollol_client_requests_total{client="bob",priority="batch"} 2.0' in text
