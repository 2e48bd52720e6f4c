"""Shared fixtures: simulated Ollama clusters and gateways on 127.0.0.1, always stopped at teardown.

    sim_cluster(*specs) / sim_cluster(n=2, **common spec fields) -> a started SimCluster
    gateway(hosts, **config overrides)                          -> a started SOLLOL
    client(sollol)                                              -> an httpx.Client on its gateway URL

`module_sim_cluster` and `module_gateway` are the same factories with module scope, for tests that only
read (their per-node `received` lists are cleared before each test by `fresh_received`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import httpx
import pytest

from sollol_core import SOLLOL, SollolConfig
from sollol_core.sim import SimCluster, SimNodeSpec

from helpers import GATEWAY_DEFAULTS, make_client, models_known, wait_until
from helpers.cli import Running


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


@pytest.fixture
def sollol_process(tmp_path):
    running: list[Running] = []

    def start(args: list[str], **env: str) -> Running:
        r = Running(args, tmp_path, **env)
        running.append(r)
        return r

    yield start
    for r in running:
        r.stop()
