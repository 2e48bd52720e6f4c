"""The Prometheus exposition on a port of its own (`metrics_port`), beside /metrics on the gateway's port.

A scraper that may not reach the gateway's port (or should not be sent through it) reads /metrics, or /,
here. A port that is taken costs only this server: the component report says why, and the gateway's own
/metrics still answers. `refusal` (the gateway's guard, Guard.scrape_refusal) says no to a request the
operator routes would refuse for its Host or Origin, or without the operator token once one is set.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping, Optional

import orjson
from aiohttp import web

from ..observability.metrics import CONTENT_TYPE

log = logging.getLogger("sollol.metrics")

COMPONENT = "metrics"
# (component, state, detail): how the server reports itself (the service's component board)
ComponentReport = Callable[[str, str, str], None]
# the request's headers -> (status, message) when it is refused, None when it may be answered
Refusal = Callable[[Mapping[str, str]], Optional[tuple[int, str]]]


class MetricsServer:
    """An aiohttp server in the running event loop; `start` then `stop`, in that loop."""

    def __init__(self, exposition: Callable[[], bytes], host: str, port: int, report: ComponentReport,
                 refusal: Optional[Refusal] = None) -> None:
        self.exposition = exposition
        self.host = host
        self.port = port
        self.report = report
        self.refusal = refusal
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

    async def _handle(self, request: web.Request) -> web.Response:
        refused = self.refusal(request.headers) if self.refusal is not None else None
        if refused is not None:
            return web.Response(status=refused[0], body=orjson.dumps({"error": refused[1]}),
                                headers={"Content-Type": "application/json"})
        return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE})
