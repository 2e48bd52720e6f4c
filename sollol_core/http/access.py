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

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Callable, ClassVar, Iterator, Optional, TypeVar

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

F = TypeVar("F", bound=Callable[..., Any])


class Access(StrEnum):
    PUBLIC = "public"
    CLIENT = "client"
    OPERATOR = "operator"


PUBLIC, CLIENT, OPERATOR = Access.PUBLIC, Access.CLIENT, Access.OPERATOR


class DeclaredRoute(APIRoute):
    """An APIRoute that says who may call it."""

    access: ClassVar[Access]


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
    (app.FastPathApp: POST endpoints that take only the raw request)."""

    def __init__(self) -> None:
        super().__init__()
        self.hot: list[APIRoute] = []

    def declare(self, access: Access, method: str, path: str, *, hot: bool = False,
                **options: Any) -> Callable[[F], F]:
        """A decorator: the endpoint as the route `method path` callable by `access`; `options` are
        add_api_route's (summary, openapi_extra, include_in_schema, response_class, name ...)."""

        def register(endpoint: F) -> F:
            self.add_api_route(path, endpoint, methods=[method], route_class_override=ROUTE_CLASSES[access],
                               **options)
            route = self.routes[-1]
            if hot:
                assert isinstance(route, APIRoute) and method == "POST"
                self.hot.append(route)
            return endpoint

        return register


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
