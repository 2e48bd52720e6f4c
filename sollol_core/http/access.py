"""Who may call each route, declared on the route itself.

    public    liveness: / and /api/health
    client    inference, listings, model details, batch submit and read (a key once api_keys is set)
    operator  hosts, routing, the batch trigger, model management, /api/stats, /metrics

An API route declares it by its class (`PublicRoute`, `ClientRoute`, `OperatorRoute`: the `access` class
attribute), given when the route is added (`GatewayRouter.declare`); FastAPI's own routes (the OpenAPI
document, /docs) get it from `declare_route`. The fast path serves the same route objects, so one walk over
the route table (`route_table`) sees every route, and a route that declares nothing can be found before it
ships. The checks themselves are still made by the routes (auth.require_admin, auth.require_management,
clients.ClientKeys); the declaration says which check each route is meant to have.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Awaitable, Callable, ClassVar, Iterator, Optional, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.responses import Response
from starlette.routing import BaseRoute

from ..request.answer import Answer, Whole
from ..request.shapes import api_for_path
from .answers import to_asgi
from .inbound import AsgiInbound, ClientDisconnected, Inbound
from .io import BadRequest

log = logging.getLogger("sollol.gateway")
InboundHandler = Callable[[Inbound], Awaitable[Answer]]
Reject = Callable[..., Whole]

F = TypeVar("F", bound=Callable[..., Any])


class Access(StrEnum):
    PUBLIC = "public"
    CLIENT = "client"
    OPERATOR = "operator"


PUBLIC, CLIENT, OPERATOR = Access.PUBLIC, Access.CLIENT, Access.OPERATOR


class DeclaredRoute(APIRoute):
    """An APIRoute that says who may call it. A hot route also carries `inbound`, its handler for the fast
    path (it takes an Inbound and returns the request path's Answer, whichever server carried it)."""

    access: ClassVar[Access]
    inbound: Optional[InboundHandler] = None


class PublicRoute(DeclaredRoute):
    access = PUBLIC


class ClientRoute(DeclaredRoute):
    access = CLIENT


class OperatorRoute(DeclaredRoute):
    access = OPERATOR


ROUTE_CLASSES: dict[Access, type[DeclaredRoute]] = {PUBLIC: PublicRoute, CLIENT: ClientRoute,
                                                     OPERATOR: OperatorRoute}


class GatewayRouter(APIRouter):
    """An APIRouter whose routes each declare their access; `hot` holds those the fast path serves
    (fastpath.FastPathApp: POST inference endpoints that take only the raw request)."""

    def __init__(self, reject: Optional[Reject] = None) -> None:
        super().__init__()
        self.hot: list[DeclaredRoute] = []
        self.reject = reject

    def declare(self, access: Access, method: str, path: str, **options: Any) -> Callable[[F], F]:
        """A decorator: the endpoint as the route `method path` callable by `access`; `options` are
        add_api_route's (summary, openapi_extra, include_in_schema, response_class, name ...)."""

        def register(endpoint: F) -> F:
            self.add_api_route(path, endpoint, methods=[method], route_class_override=ROUTE_CLASSES[access],
                               **options)
            return endpoint

        return register

    def hot_route(self, access: Access, path: str, **options: Any) -> Callable[[InboundHandler], InboundHandler]:
        """A decorator: a hot POST endpoint. Its handler takes an Inbound and returns an Answer; the fast
        path calls it directly (natively under the gateway's own server), and FastAPI serves it through
        a thin wrapper, so /docs lists it and an in-process client reaches the same code."""
        reject = self.reject
        assert reject is not None, "a router with hot routes needs the path's reject"

        def register(handler: InboundHandler) -> InboundHandler:
            async def documented(request: Request) -> Response:
                return to_asgi(await answer_inbound(handler, AsgiInbound(request.scope, request.receive), path,
                                                    reject))

            documented.__name__ = handler.__name__
            documented.__doc__ = handler.__doc__
            self.add_api_route(path, documented, methods=["POST"], route_class_override=ROUTE_CLASSES[access],
                               **options)
            route = self.routes[-1]
            assert isinstance(route, DeclaredRoute)
            route.inbound = handler
            self.hot.append(route)
            return handler

        return register


async def answer_inbound(handler: InboundHandler, req: Inbound, path: str, reject: Reject) -> Answer:
    """The handler's answer; bad input, a client gone before its body, and bugs answered in the API's
    shape (a bug is logged too)."""
    try:
        return await handler(req)
    except BadRequest as exc:
        return reject(path, exc.status, exc.message, api_for_path(path), exc.headers)
    except ClientDisconnected:
        return reject(path, 499, "client went away before its request arrived", api_for_path(path))
    except Exception as exc:  # a bug must still answer in the API's shape, and be logged
        log.exception("unexpected error on %s", path)
        return reject(path, 500, f"internal error: {type(exc).__name__}: {exc}", api_for_path(path))


def declare_route(route: BaseRoute, access: Access) -> None:
    """Declare the access of a route that is not a DeclaredRoute (FastAPI's documentation routes)."""
    setattr(route, "access", access)  # noqa: B010 - BaseRoute has no such attribute to assign


def access_of(route: object) -> Optional[Access]:
    """What the route declared; None when it declared nothing."""
    access = getattr(route, "access", None)
    return access if isinstance(access, Access) else None


@dataclass(frozen=True)
class RouteEntry:
    """One method on one path of the route table, and who may call it."""

    method: str
    path: str
    name: str
    access: Optional[Access]
    route: BaseRoute


def route_table(app: FastAPI) -> Iterator[RouteEntry]:
    """Every method of every route, included routers' routes too, with what it declared."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        for method in sorted(context.methods or ()):
            yield RouteEntry(method, context.path or "", context.name or "", access_of(route), route)
