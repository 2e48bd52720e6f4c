"""Adaptive metrics: what each host has (GET /api/tags), has loaded (GET /api/ps), and, for hosts on this
machine, CPU load (psutil) and free GPU memory (NVML). No GPU or no NVML means "unknown", never a crash.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Optional

import psutil

from .config import SollolConfig
from .executors import AsyncExecutor, UpstreamFailure
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


async def refresh_host(executor: AsyncExecutor, registry: HostRegistry, address: str) -> None:
    try:
        tags, ps = await asyncio.gather(executor.get_json(address, "/api/tags", FETCH_TIMEOUT_S),
                                        executor.get_json(address, "/api/ps", FETCH_TIMEOUT_S))
    except UpstreamFailure as e:
        log.debug("adaptive metrics: %s: %s", address, e)
        return
    available = [m.get("name") or m.get("model") for m in (tags or {}).get("models", []) if isinstance(m, dict)]
    loaded = [m.get("name") or m.get("model") for m in (ps or {}).get("models", []) if isinstance(m, dict)]
    registry.update_models(address, [m for m in available if m], [m for m in loaded if m])


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
