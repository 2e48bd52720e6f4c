"""The request path's hot endpoints dispatched straight from a dict, everything else by FastAPI."""

from __future__ import annotations

from typing import Iterable

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from .access import DeclaredRoute, Reject, answer_inbound
from .answers import to_asgi, write_answer
from .inbound import AsgiInbound
from .server import Handler, Responder
from .server import Inbound as ServerInbound


class FastPathApp:
    """The proxied POST endpoints take only the raw request, so FastAPI's routing and dependency solving
    buy them nothing; skipping them is a measurable share of the latency the gateway adds. Under the
    gateway's own server (http.server) they run natively (`native_handlers`: no ASGI, no Starlette request
    or response objects); under any ASGI server, or an in-process client, through this app. They stay
    registered on the FastAPI app (`app`), so /docs lists them, and `fast` maps (method, path) to those same
    route objects: what a route declares (access.py) holds on every way in."""

    def __init__(self, app: FastAPI, hot: Iterable[DeclaredRoute], reject: Reject) -> None:
        self.app = app
        self.fast: dict[tuple[str, str], DeclaredRoute] = {(method, route.path): route for route in hot
                                                           for method in route.methods or ()}
        self.reject = reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.fast.get((scope["method"], scope["path"]))
            if route is not None and route.inbound is not None:
                answer = await answer_inbound(route.inbound, AsgiInbound(dict(scope), receive), scope["path"],
                                              self.reject)
                await to_asgi(answer)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def native_handlers(self) -> dict[tuple[str, str], Handler]:
        """The hot endpoints as handlers of the gateway's own server: answers written straight to the
        connection."""
        reject = self.reject

        def native(route: DeclaredRoute) -> Handler:
            handler, path = route.inbound, route.path
            assert handler is not None

            async def serve(req: ServerInbound, out: Responder) -> None:
                await write_answer(await answer_inbound(handler, req, path, reject), out)

            return serve

        return {key: native(route) for key, route in self.fast.items()}
