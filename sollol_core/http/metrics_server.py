"""The Prometheus exposition on a port of its own (`metrics_port`), beside /metrics on the gateway's port.

A scraper that may not reach the gateway's port (or should not be sent through it) reads /metrics, or /,
here. A port that is taken costs only this server: the component report says why, and the gateway's own
/metrics still answers.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

from aiohttp import web

from ..observability.metrics import CONTENT_TYPE

log = logging.getLogger("sollol.metrics")

COMPONENT = "metrics"
# (component, state, detail): how the server reports itself (the service's component board)
ComponentReport = Callable[[str, str, str], None]


class MetricsServer:
    """An aiohttp server in the running event loop; `start` then `stop`, in that loop."""

    def __init__(self, exposition: Callable[[], bytes], host: str, port: int, report: ComponentReport) -> None:
        self.exposition = exposition
        self.host = host
        self.port = port
        self.report = report
        self.url = ""
        self._runner: Optional[web.AppRunner] = None

    async def start(self) -> Optional[str]:
        """Listen; the URL of /metrics, or None when the port cannot be had (reported as failed)."""
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        app.router.add_get("/", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            msg = f"cannot listen on port {self.port}: {e.strerror}; /metrics on the gateway still works"
            log.warning("metrics server: %s", msg)
            self.report(COMPONENT, "failed", msg)
            return None
        self._runner = runner
        port = runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}/metrics"
        self.report(COMPONENT, "ready", self.url)
        return self.url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, _: web.Request) -> web.Response:
        return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE})
