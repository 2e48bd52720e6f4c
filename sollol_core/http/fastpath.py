"""The request path's hot endpoints dispatched straight from a dict, everything else by FastAPI."""

from __future__ import annotations

import logging
from typing import Iterable

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from .errors import api_for_path
from .io import BadRequest
from .ports import Forwarder

log = logging.getLogger("sollol.gateway")


class FastPathApp:
    """The proxied POST endpoints take only the raw request, so FastAPI's routing and dependency solving
    buy them nothing; skipping them is a measurable share of the latency the gateway adds. They stay
    registered on the FastAPI app (`app`), so /docs still lists them, and `fast` maps (method, path) to
    those same route objects: what a route declares (access.py) holds on both ways in."""

    def __init__(self, app: FastAPI, hot: Iterable[APIRoute], forwarder: Forwarder) -> None:
        self.app = app
        self.fast: dict[tuple[str, str], APIRoute] = {(method, route.path): route for route in hot
                                                      for method in route.methods or ()}
        self.forwarder = forwarder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.fast.get((scope["method"], scope["path"]))
            if route is not None:
                path = scope["path"]
                request = Request(scope, receive)
                try:
                    response = await route.endpoint(request)
                except BadRequest as exc:
                    response = self.forwarder.reject(path, exc.status, exc.message, api_for_path(path), exc.headers)
                except Exception as exc:  # a bug must still answer in the API's shape, and be logged
                    log.exception("unexpected error on %s", path)
                    response = self.forwarder.reject(path, 500, f"internal error: {type(exc).__name__}: {exc}",
                                                     api_for_path(path))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
