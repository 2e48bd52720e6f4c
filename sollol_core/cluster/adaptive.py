"""Adaptive metrics: what each host has (GET /api/tags), has loaded (GET /api/ps), and, for hosts on this
machine, CPU load (psutil) and free GPU memory (NVML). No GPU or no NVML means "unknown", never a crash.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Optional, Sequence

import psutil

from ..config import SollolConfig
from ..errors import UpstreamFailure
from ..upstream.inloop import AsyncExecutor
from .hosts import HostRegistry, HostState

log = logging.getLogger("sollol.adaptive")
FETCH_TIMEOUT_S = 5.0


def _local_addresses() -> set[str]:
    names = {"localhost", "127.0.0.1", "::1", "0.0.0.0", socket.gethostname()}
    try:
        for addrs in psutil.net_if_addrs().values():
            names.update(a.address for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6))
    except Exception:
        pass
    return names


def is_local(address: str, local: Optional[set[str]] = None) -> bool:
    name = address.rpartition(":")[0].strip("[]")
    return name.startswith("127.") or name in (local if local is not None else _local_addresses())


class GpuProbe:
    """Free GPU memory in MiB over all NVIDIA GPUs, or None. NVML is initialised once, lazily."""

    def __init__(self) -> None:
        self._state: Optional[bool] = None  # None: not tried, False: unavailable
        self.reason = ""

    def free_mib(self) -> Optional[float]:
        if self._state is False:
            return None
        try:
            import pynvml

            if self._state is None:
                pynvml.nvmlInit()
                self._state = True
            total = 0
            for i in range(pynvml.nvmlDeviceGetCount()):
                info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i))
                total += info.free
            return total / (1024 * 1024)
        except Exception as e:  # no driver, no GPU, no library: unknown
            self._state = False
            self.reason = f"{type(e).__name__}: {e}"
            return None


def _model_names(listing: object) -> Optional[list[str]]:
    """Names from an Ollama {"models": [{"name": ...}]} listing; None when it is not one."""
    if not isinstance(listing, dict) or not isinstance(listing.get("models"), list):
        return None
    names = [m.get("name") or m.get("model") for m in listing["models"] if isinstance(m, dict)]
    return [n for n in names if isinstance(n, str) and n]


async def refresh_host(executor: AsyncExecutor, registry: HostRegistry, address: str) -> None:
    try:
        tags, ps = await asyncio.gather(executor.get_json(address, "/api/tags", FETCH_TIMEOUT_S),
                                        executor.get_json(address, "/api/ps", FETCH_TIMEOUT_S))
    except UpstreamFailure as e:
        log.debug("adaptive metrics: %s: %s", address, e)
        return
    available, loaded = _model_names(tags), _model_names(ps)
    if available is None or loaded is None:
        log.debug("adaptive metrics: %s: /api/tags or /api/ps is not an Ollama model listing", address)
        return
    registry.update_models(address, available, loaded)


class ModelListRefresher:
    """Re-reads every host's model list on demand (a model pulled a moment ago is not in the lists until
    the next adaptive round), at most once every `min_interval` seconds; concurrent callers share a round.
    So a client asking again and again for a model no host has costs the hosts nothing extra."""

    def __init__(self, executor: AsyncExecutor, registry: HostRegistry, min_interval: float = 5.0) -> None:
        self.executor = executor
        self.registry = registry
        self.min_interval = min_interval
        self._last = -min_interval
        self._round: Optional[asyncio.Future[list[None]]] = None

    async def refresh(self) -> None:
        if self._round is None or self._round.done():
            if time.monotonic() - self._last < self.min_interval:
                return
            self._last = time.monotonic()
            hosts = [h.address for h in self.registry.hosts() if h.state != HostState.DISABLED]
            self._round = asyncio.ensure_future(
                asyncio.gather(*(refresh_host(self.executor, self.registry, a) for a in hosts)))
        round_ = self._round
        if round_ is not None:
            await asyncio.shield(round_)

    async def refresh_hosts(self, addresses: Sequence[str]) -> None:
        """Re-read these hosts' model lists now, whatever the interval (after a pull, create, copy or delete
        on them, so routing sees the change at once)."""
        await asyncio.gather(*(refresh_host(self.executor, self.registry, a) for a in addresses))


async def refresh_all(executor: AsyncExecutor, registry: HostRegistry, gpu: GpuProbe,
                      local: set[str]) -> None:
    hosts = [h for h in registry.hosts() if h.state != HostState.DISABLED]
    await asyncio.gather(*(refresh_host(executor, registry, h.address) for h in hosts))
    cpu = psutil.cpu_percent(interval=None) / 100.0
    gpu_free = await asyncio.to_thread(gpu.free_mib)
    for h in hosts:
        if is_local(h.address, local):
            registry.update_load(h.address, cpu, gpu_free)


async def adaptive_loop(executor: AsyncExecutor, registry: HostRegistry, config: SollolConfig) -> None:
    """One round now, then every adaptive_metrics_interval (read live). Runs until cancelled."""
    gpu = GpuProbe()
    local = await asyncio.to_thread(_local_addresses)
    psutil.cpu_percent(interval=None)  # the first call only primes the counter
    while True:
        try:
            await refresh_all(executor, registry, gpu, local)
        except Exception:
            log.exception("adaptive metrics round failed")
        await asyncio.sleep(config.adaptive_metrics_interval)
