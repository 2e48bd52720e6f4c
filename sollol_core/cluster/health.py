"""Health checks: every host answers GET /api/version, or it is taken out of rotation.

Healthy hosts are checked every `health_check_interval`; unhealthy ones more often
(`unhealthy_recheck_interval`) so a host that comes back is re-admitted quickly.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..config import SollolConfig
from ..errors import UpstreamFailure
from ..upstream.inloop import AsyncExecutor
from .hosts import HostRegistry, HostState

log = logging.getLogger("sollol.health")
PROBE_TIMEOUT_S = 3.0


async def probe(executor: AsyncExecutor, registry: HostRegistry, address: str) -> bool:
    try:
        await executor.get_json(address, "/api/version", PROBE_TIMEOUT_S)
    except UpstreamFailure as e:
        was = registry.get(address).state if address in registry else None
        registry.mark_unhealthy(address, f"health check: {e}")
        if was == HostState.HEALTHY:
            log.warning("host %s failed its health check: %s", address, e)
        return False
    if address in registry and registry.get(address).state == HostState.UNHEALTHY:
        log.info("host %s answers again: back in rotation", address)
    registry.mark_healthy(address)
    return True


async def check_all(executor: AsyncExecutor, registry: HostRegistry, only_unhealthy: bool = False) -> None:
    targets = [h.address for h in registry.hosts()
               if h.state != HostState.DISABLED and (not only_unhealthy or h.state == HostState.UNHEALTHY)]
    if targets:
        await asyncio.gather(*(probe(executor, registry, a) for a in targets))


async def health_loop(executor: AsyncExecutor, registry: HostRegistry, config: SollolConfig) -> None:
    """Full check every health_check_interval, unhealthy hosts every unhealthy_recheck_interval.

    Intervals are read from the live config on every round, so a change applies without a restart.
    Runs until cancelled.
    """
    next_full = 0.0
    while True:
        interval, recheck_interval = config.health_check_interval, config.unhealthy_recheck_interval
        now = time.monotonic()
        try:
            if now >= next_full:
                await check_all(executor, registry)
                next_full = now + interval
            else:
                await check_all(executor, registry, only_unhealthy=True)
        except Exception:  # never let the loop die
            log.exception("health check round failed")
        await asyncio.sleep(min(recheck_interval, max(0.05, next_full - time.monotonic())))
