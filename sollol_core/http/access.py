"""Who may call each route, declared on the route itself and enforced by the one guard (guard.Guard).

    public    liveness: / and /api/health (a bare {"status": ...} to all but the operator)
    client    inference, listings, model details, batch submit and read, the API documentation (a key once
              api_keys is set)
    operator  hosts, routing, the batch trigger, model management (client routes when management_open),
              /api/stats, /metrics

An API route declares it by its class (`PublicRoute`, `ClientRoute`, `OperatorRoute`), given when the route
is added (`GatewayRouter.declare`, `GatewayRouter.hot_route`), with the rest of its policy (roles.Policy:
management, inference, JSON body). The route class runs the guard before the endpoint, whichever server
carried the request: FastAPI's routing calls the handler the class wraps (`get_route_handler`), and the fast
path calls `answer_inbound`, which admits the request before the hot handler reads its body. FastAPI's own
routes (the OpenAPI document, /docs, /redoc) are declared and wrapped by `declare_route`. One walk over the
route table (`route_table`) sees every route, so a route that declares nothing is found before it ships;
a declared route that was never given its guard refuses every request (500).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, ClassVar, Coroutine, Iterator, Mapping, Optional, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from ..errors import BadRequest
from ..request.answer import Answer, Whole
from ..request.shapes import api_for_path
from .answers import to_asgi
from .guard import Guard
from .inbound import AsgiInbound, ClientDisconnected, Inbound
from .roles import CLIENT, OPERATOR, PUBLIC, Access, Caller, Policy

__all__ = ["CLIENT", "OPERATOR", "PUBLIC", "Access", "Caller", "ClientRoute", "DeclaredRoute", "GatewayRouter",
           "OperatorRoute", "Policy", "PublicRoute", "RouteEntry", "access_of", "answer_inbound", "bind_guard",
           "caller_of", "declare_route", "route_table"]

log = logging.getLogger("sollol.gateway")
InboundHandler = Callable[[Inbound, Caller], Awaitable[Answer]]
Reject = Callable[..., Whole]
CALLER = "sollol.caller"  # the scope key under which a FastAPI endpoint finds its Caller (caller_of)
BODY_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))

F = TypeVar("F", bound=Callable[..., Any])


class DeclaredRoute(APIRoute):
    """An APIRoute that says who may call it and has the guard check it before its endpoint runs. A hot
    route also carries `inbound`, its handler for the fast path (it takes an Inbound and the Caller and
    returns the request path's Answer, whichever server carried it)."""

    access: ClassVar[Access]
    policy: Policy
    guard: Optional[Guard] = None
    inbound: Optional[InboundHandler] = None
    reject: Optional[Reject] = None

    def admit(self, headers: Mapping[str, str], client_host: str) -> Caller:
        guard = self.guard
        if guard is None:  # declared, but built outside create_app: nothing gets through unchecked
            raise BadRequest(500, f"route {self.path} has no guard")
        return guard.admit(self.policy, headers, client_host)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = super().get_route_handler()
        route = self

        async def guarded(request: Request) -> Response:
            scope = request.scope
            client = scope.get("client")
            scope[CALLER] = route.admit(request.headers, str(client[0]) if client else "")
            return await endpoint(request)

        return guarded


class PublicRoute(DeclaredRoute):
    access = PUBLIC


class ClientRoute(DeclaredRoute):
    access = CLIENT


class OperatorRoute(DeclaredRoute):
    access = OPERATOR


ROUTE_CLASSES: dict[Access, type[DeclaredRoute]] = {PUBLIC: PublicRoute, CLIENT: ClientRoute,
                                                     OPERATOR: OperatorRoute}


def caller_of(request: Request) -> Caller:
    """The Caller the guard admitted for this request (a FastAPI endpoint's)."""
    caller = request.scope.get(CALLER)
    if not isinstance(caller, Caller):
        raise BadRequest(500, "the request was not admitted by the guard")
    return caller


class GatewayRouter(APIRouter):
    """An APIRouter whose routes each declare their access; `hot` holds those the fast path serves
    (fastpath.FastPathApp: POST inference endpoints that take only the raw request)."""

    def __init__(self, reject: Optional[Reject] = None) -> None:
        super().__init__()
        self.hot: list[DeclaredRoute] = []
        self.reject = reject

    def _policy(self, route: BaseRoute, access: Access, method: str, *, management: bool, inference: bool,
                body: str) -> DeclaredRoute:
        assert isinstance(route, DeclaredRoute)
        route.policy = Policy(access, management=management, inference=inference,
                              json_body=body == "json" and method in BODY_METHODS)
        route.reject = self.reject
        return route

    def declare(self, access: Access, method: str, path: str, *, management: bool = False, inference: bool = False,
                body: str = "json", **options: Any) -> Callable[[F], F]:
        """A decorator: the endpoint as the route `method path` callable by `access`. management: model
        management (a client route when management_open is set); inference: counts against a key's rate;
        body: "json" (application/json or no content type) or "any". `options` are add_api_route's
        (summary, openapi_extra, include_in_schema, response_class, name ...)."""

        def register(endpoint: F) -> F:
            self.add_api_route(path, endpoint, methods=[method], route_class_override=ROUTE_CLASSES[access],
                               **options)
            self._policy(self.routes[-1], access, method, management=management, inference=inference, body=body)
            return endpoint

        return register

    def hot_route(self, access: Access, path: str, *, body: str = "json",
                  **options: Any) -> Callable[[InboundHandler], InboundHandler]:
        """A decorator: a hot POST inference endpoint. Its handler takes an Inbound and the Caller and
        returns an Answer; the fast path admits the request and calls it directly (natively under the
        gateway's own server), and FastAPI serves it through a thin wrapper, so /docs lists it and an
        in-process client reaches the same code, through the same guard."""
        assert self.reject is not None, "a router with hot routes needs the path's reject"

        def register(handler: InboundHandler) -> InboundHandler:
            holder: list[DeclaredRoute] = []

            async def documented(request: Request) -> Response:
                return to_asgi(await answer_inbound(holder[0], AsgiInbound(request.scope, request.receive),
                                                    caller_of(request)))

            documented.__name__ = handler.__name__
            documented.__doc__ = handler.__doc__
            self.add_api_route(path, documented, methods=["POST"], route_class_override=ROUTE_CLASSES[access],
                               **options)
            route = self._policy(self.routes[-1], access, "POST", management=False, inference=True, body=body)
            route.inbound = handler
            holder.append(route)
            self.hot.append(route)
            return handler

        return register


async def answer_inbound(route: DeclaredRoute, req: Inbound, caller: Optional[Caller] = None) -> Answer:
    """The hot route's answer: the guard first (before anything reads the body), then the handler. Refusals,
    bad input, a client gone before its body, and bugs answered in the API's shape (a bug is logged too);
    an allowed cross-origin request gets its CORS headers."""
    path = route.path
    handler, reject = route.inbound, route.reject
    assert handler is not None and reject is not None
    try:
        if caller is None:
            caller = route.admit(req.headers, req.client_host)
        answer = await handler(req, caller)
    except BadRequest as exc:
        answer = reject(path, exc.status, exc.message, api_for_path(path), exc.headers)
    except ClientDisconnected:
        return reject(path, 499, "client went away before its request arrived", api_for_path(path))
    except Exception as exc:  # a bug must still answer in the API's shape, and be logged
        log.exception("unexpected error on %s", path)
        return reject(path, 500, f"internal error: {type(exc).__name__}: {exc}", api_for_path(path))
    if "origin" in req.headers and route.guard is not None:
        cors = route.guard.browsers.cors_headers(req.headers)
        if cors is not None:
            answer.headers = {**answer.headers, **cors}
    return answer


def declare_route(route: BaseRoute, access: Access, guard: Guard, reject: Reject) -> None:
    """Declare the access of a route that is not a DeclaredRoute (FastAPI's documentation routes), and have
    the guard check it before it answers."""
    setattr(route, "access", access)  # noqa: B010 - BaseRoute has no such attribute to assign
    inner = getattr(route, "app", None)
    if inner is None:
        return
    policy = Policy(access)
    path = getattr(route, "path", "")

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in reversed(scope["headers"])}
            client = scope.get("client")
            try:
                scope[CALLER] = guard.admit(policy, headers, str(client[0]) if client else "")
            except BadRequest as exc:
                await to_asgi(reject(path, exc.status, exc.message, api_for_path(path), exc.headers))(
                    scope, receive, send)
                return
        await inner(scope, receive, send)

    setattr(route, "app", guarded)  # noqa: B010 - starlette's Route calls its `app`


def bind_guard(app: FastAPI, guard: Guard) -> None:
    """Give every declared route of the app its guard; a route that declares nothing stops the build."""
    for entry in route_table(app):
        if entry.access is None:
            raise RuntimeError(f"{entry.method} {entry.path} declares no access (see http/access.py)")
        if isinstance(entry.route, DeclaredRoute):
            entry.route.guard = guard


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
