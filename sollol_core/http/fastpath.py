"""The request path's hot endpoints dispatched straight from a dict, everything else by FastAPI; CORS
preflights answered before either."""

from __future__ import annotations

from typing import Iterable

from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from ..request.shapes import api_for_path, error_body
from .access import DeclaredRoute, Reject, answer_inbound
from .answers import to_asgi, write_answer
from .browsers import Browsers
from .exchange import Handler, Responder
from .exchange import Inbound as ServerInbound
from .guard import Guard
from .inbound import AsgiInbound


class FastPathApp:
    """The proxied POST endpoints take only the raw request, so FastAPI's routing and dependency solving
    buy them nothing; skipping them is a measurable share of the latency the gateway adds. Under the
    gateway's own server (http.server) they run natively (`native_handlers`: no ASGI, no Starlette request
    or response objects); under any ASGI server, or an in-process client, through this app. They stay
    registered on the FastAPI app (`app`), so /docs lists them, and `fast` maps (method, path) to those same
    route objects: what a route declares (access.py), and the guard that enforces it, hold on every way in.

    Everything that is not a hot endpoint comes through `__call__` (the gateway's own server hands it
    here too): a CORS preflight is answered by the browser rules (browsers.py), and an allowed cross-origin
    request gets its CORS headers on whatever FastAPI answers."""

    def __init__(self, app: FastAPI, hot: Iterable[DeclaredRoute], reject: Reject, guard: Guard) -> None:
        self.app = app
        self.guard = guard
        self.fast: dict[tuple[str, str], DeclaredRoute] = {(method, route.path): route for route in hot
                                                           for method in route.methods or ()}
        self.reject = reject
        self.browsers = guard.browsers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.fast.get((scope["method"], scope["path"]))
            if route is not None and route.inbound is not None:
                answer = await answer_inbound(route, AsgiInbound(dict(scope), receive))
                await to_asgi(answer)(scope, receive, send)
                return
            if any(name == b"origin" for name, _ in scope.get("headers", ())):
                await self._browser_request(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _browser_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        if Browsers.is_preflight(scope["method"], headers):
            status, extra, why = self.browsers.preflight(headers)
            body = error_body(api_for_path(scope["path"]), status, why) if why else b""
            head = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
            if body:
                head.append((b"content-type", b"application/json"))
            head.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": head})
            await send({"type": "http.response.body", "body": body})
            return
        cors = self.browsers.cors_headers(headers)
        if cors is None:
            await self.app(scope, receive, send)
            return
        added = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in cors.items()]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def native_handlers(self) -> dict[tuple[str, str], Handler]:
        """The hot endpoints as handlers of the gateway's own server: answers written straight to the
        connection."""

        def native(route: DeclaredRoute) -> Handler:
            async def serve(req: ServerInbound, out: Responder) -> None:
                await write_answer(await answer_inbound(route, req), out)

            return serve

        return {key: native(route) for key, route in self.fast.items()}
