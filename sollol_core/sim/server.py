"""SimNode: a NodeState served over HTTP, an aiohttp app on 127.0.0.1 assembled from the route modules."""

from __future__ import annotations

from typing import Awaitable, Callable, Optional

from aiohttp import web

from . import anthropic, info, model_ops, native, openai, responses
from .node import Handler, NodeState, Route
from .spec import SimNodeSpec
from .wire import Abort, Family, SimError, error_body, json_response

#: Every endpoint of a simulated node, by API family.
ROUTES: tuple[Route, ...] = (*info.ROUTES, *native.ROUTES, *openai.ROUTES, *responses.ROUTES, *anthropic.ROUTES,
                             *model_ops.ROUTES)


class SimNode(NodeState):
    """One simulated Ollama server. ``start``/``stop`` run in the caller's event loop; the failure switches
    are NodeState's."""

    def __init__(self, spec: SimNodeSpec) -> None:
        super().__init__(spec)
        self._runner: Optional[web.AppRunner] = None

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        """Listen on 127.0.0.1 (the same port again after a stop)."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=256 * 1024 * 1024)
        for method, path, fn, family in ROUTES:
            handler = self._wrap(fn, family)
            if method == "GET":
                app.router.add_get(path, handler)  # HEAD too, with no body
            else:
                app.router.add_route(method, path, handler)
        # handler_cancellation: a client that goes away cancels its handler and frees its slot
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]
        self.address = f"127.0.0.1:{self._port}"

    async def stop(self) -> None:
        """Close the listener and every open connection, like a killed process."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()
        server = runner.server
        if server is not None:
            for conn in server.connections:
                if conn.transport is not None:
                    conn.transport.abort()
        await runner.cleanup()

    def _wrap(self, fn: Handler, family: Family) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The aiohttp handler of an endpoint: counts it in flight, answers a SimError in the family's error
        shape, and drops the connection on Abort (a failure switch)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            self.in_flight += 1
            try:
                try:
                    resp = await fn(self, request)
                except SimError as exc:
                    resp = json_response(error_body(family, exc.status, exc.message, exc.etype), exc.status)
                self.requests_served += 1
                return resp
            except (Abort, ConnectionError):
                # close() still flushes what was written (the first chunk); the response
                # returned here can then no longer be sent, which aiohttp handles quietly
                if request.transport is not None:
                    request.transport.close()
                return web.Response()
            finally:
                self.in_flight -= 1

        return handler


__all__ = ["ROUTES", "SimNode"]
