"""Shared fixtures: simulated Ollama clusters and gateways on 127.0.0.1, always stopped at teardown.

    sim_cluster(*specs) / sim_cluster(n=2, **common spec fields) -> a started SimCluster
    gateway(hosts, **config overrides)                          -> a started SOLLOL
    client(sollol)                                              -> an httpx.Client on its gateway URL

`module_sim_cluster` and `module_gateway` are the same factories with module scope, for tests that only
read (their per-node `received` lists are cleared before each test by `fresh_received`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import httpx
import pytest

from sollol_core import SOLLOL, SollolConfig
from sollol_core.sim import SimCluster, SimNodeSpec

CHAT_MODEL = "llama3.2"
EMBED_MODEL = "nomic-embed-text"
USER = [{"role": "user", "content": "why is the sky blue"}]

# Small enough that a failing host costs little, large enough for a busy 2-core machine.
GATEWAY_DEFAULTS: dict[str, Any] = dict(
    gateway_host="127.0.0.1",
    gateway_port=0,
    metrics_port=0,
    connect_timeout=2.0,
    chat_timeout=10.0,
    embedding_timeout=10.0,
    management_timeout=10.0,
    max_retries=3,
    retry_backoff_multiplier=0.05,
    shutdown_grace=1.0,
    health_check_interval=60.0,
    unhealthy_recheck_interval=5.0,
    adaptive_metrics_interval=60.0,
)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> Any:
    """Poll predicate until it returns a truthy value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def settled(sollol: SOLLOL) -> tuple:
    """The request log once no request is in flight (a stream's bookkeeping runs after its last byte)."""
    wait_until(lambda: sollol.proxy.active == 0, what="requests in flight to finish")
    return sollol.recent_requests()


def models_known(sollol: SOLLOL) -> bool:
    """True once the first adaptive round has learned every host's model list."""
    return all(h.models_available is not None for h in sollol.registry.hosts())


def make_client(sollol: SOLLOL, timeout: float = 20.0) -> httpx.Client:
    return httpx.Client(base_url=sollol.gateway_url, timeout=timeout, trust_env=False)


@contextmanager
def _cluster_factory() -> Iterator[Callable[..., SimCluster]]:
    clusters: list[SimCluster] = []

    def make(*specs: SimNodeSpec, n: int = 2, **common: Any) -> SimCluster:
        if not specs:
            common.setdefault("latency_ms", 5)
            common.setdefault("tokens_per_s", 0)
            specs = tuple(SimNodeSpec(name=chr(ord("a") + i), seed=i, **common) for i in range(n))
        cluster = SimCluster(list(specs))
        clusters.append(cluster)
        return cluster.start()

    try:
        yield make
    finally:
        for cluster in reversed(clusters):
            cluster.stop()


@contextmanager
def _gateway_factory() -> Iterator[Callable[..., SOLLOL]]:
    started: list[SOLLOL] = []

    def make(hosts: list[str], *, wait_models: bool = True, **overrides: Any) -> SOLLOL:
        config = SollolConfig(**(GATEWAY_DEFAULTS | {"hosts": list(hosts)} | overrides))
        sollol = SOLLOL(config)
        started.append(sollol)
        sollol.start(timeout=20)
        if wait_models and config.adaptive_metrics_enabled and hosts:
            wait_until(lambda: models_known(sollol), what="the first adaptive-metrics round")
        return sollol

    try:
        yield make
    finally:
        for sollol in reversed(started):
            sollol.stop(timeout=10)


@pytest.fixture
def sim_cluster() -> Iterator[Callable[..., SimCluster]]:
    with _cluster_factory() as make:
        yield make


@pytest.fixture
def gateway() -> Iterator[Callable[..., SOLLOL]]:
    with _gateway_factory() as make:
        yield make


@pytest.fixture(scope="module")
def module_sim_cluster() -> Iterator[Callable[..., SimCluster]]:
    with _cluster_factory() as make:
        yield make


@pytest.fixture(scope="module")
def module_gateway() -> Iterator[Callable[..., SOLLOL]]:
    with _gateway_factory() as make:
        yield make


@pytest.fixture
def client() -> Iterator[Callable[[SOLLOL], httpx.Client]]:
    clients: list[httpx.Client] = []

    def make(sollol: SOLLOL, timeout: float = 20.0) -> httpx.Client:
        c = make_client(sollol, timeout)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
