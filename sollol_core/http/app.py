"""The gateway's ASGI app, built from its parts (GatewayDeps).

Bodies are forwarded byte for byte (options, format, tools, keep_alive, images ... arrive intact); the
gateway parses a body only to learn the model and whether the client asked for a stream. What the gateway
answers by itself (bad input, no host, unknown model, body too large, unknown path, wrong method, a refusal
of the guard) takes the error shape of the endpoint's API family (errors.py), so each official SDK raises
its own typed error. Every route is behind the one guard (guard.py), bound to each route here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from ..cluster.adaptive import ModelListRefresher
from ..cluster.hosts import HostRegistry
from ..cluster.routing import Router
from ..config import SollolConfig
from ..errors import BadRequest
from ..observability.metrics import Metrics
from ..observability.requestlog import RequestLog
from ..request.tracked import TrackedClients
from ..upstream.executor import Executor
from ..version import __version__
from . import openapi as am
from .access import CLIENT, GatewayRouter, bind_guard, declare_route
from .answers import to_asgi
from .browsers import Browsers
from .clients import ClientKeys
from .errors import api_for_path, error_response
from .fastpath import FastPathApp
from .guard import Guard
from .inference import Inference
from .ports import BatchJobs, Forwarder, OperatorActions, StatsSource, Upstream
from .routes.anthropic import anthropic_routes
from .routes.batch import batch_routes
from .routes.management import Management, management_routes
from .routes.ollama import ollama_routes
from .routes.openai import openai_routes
from .routes.operator import operator_routes
from .routes.sollol import sollol_routes

DESCRIPTION = ("One Ollama-compatible endpoint in front of many Ollama servers: the Ollama API, OpenAI's "
               "(/v1/chat/completions, /v1/responses, ...) and Anthropic's (/v1/messages), routed by model to the "
               "host that will serve it best.")
METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


@dataclass(frozen=True)
class GatewayDeps:
    """Everything the routes use; each route module gets only its part."""

    config: SollolConfig
    forwarder: Forwarder
    registry: HostRegistry
    router: Router
    upstream: Upstream  # listings, unload fan-out, version (the executor that carries requests)
    in_loop: Executor  # model management and blob uploads: bodies are read in this process
    model_lists: ModelListRefresher
    metrics: Metrics
    requests: RequestLog
    operator: OperatorActions
    stats: StatsSource
    batch: BatchJobs
    clients: Optional[TrackedClients] = None  # the books' clients (request.tracked); its own when not given


def make_guard(deps: GatewayDeps) -> Guard:
    cfg = deps.config
    return Guard(cfg, ClientKeys(cfg), Browsers(cfg), deps.clients if deps.clients is not None
                 else TrackedClients(cfg))


def create_app(deps: GatewayDeps) -> FastPathApp:
    app = FastAPI(title="SOLLOL", version=__version__, description=DESCRIPTION)
    am.install_openapi(app)
    guard = make_guard(deps)
    for route in app.routes:  # FastAPI's own: the OpenAPI document, /docs, /redoc: what any client may read
        declare_route(route, CLIENT, guard, deps.forwarder.reject)
    install_error_handlers(app, deps.forwarder)
    routers = gateway_routers(deps, guard)
    for router in routers:
        app.include_router(router)
    bind_guard(app, guard)
    return FastPathApp(app, [route for router in routers for route in router.hot], deps.forwarder.reject, guard)


def gateway_routers(deps: GatewayDeps, guard: Guard) -> list[GatewayRouter]:
    """Every router, in the order they match (the order of the OpenAPI document's paths too)."""
    cfg = deps.config
    inference = Inference(cfg, deps.forwarder)
    management = Management(config=cfg, registry=deps.registry, router=deps.router, model_lists=deps.model_lists,
                            forwarder=deps.forwarder, executor=deps.in_loop, metrics=deps.metrics,
                            requests=deps.requests)
    return [
        ollama_routes(cfg, inference, deps.registry, deps.router, deps.upstream, guard),
        management_routes(management),
        openai_routes(cfg, inference, deps.registry, deps.upstream),
        anthropic_routes(cfg, inference),
        sollol_routes(deps.stats, deps.metrics),
        operator_routes(cfg, deps.registry, deps.router, deps.operator),
        batch_routes(cfg, deps.batch, deps.router, deps.model_lists, deps.operator.trigger_batch),
    ]


def install_error_handlers(app: FastAPI, forwarder: Forwarder) -> None:
    """Bad input, unknown paths and wrong methods answered in the API family's error shape."""

    @app.exception_handler(BadRequest)
    async def _bad_request(request: Request, exc: BadRequest) -> Response:
        # the route's template, not the path: /api/hosts/{host} must not become one label per host
        endpoint = getattr(request.scope.get("route"), "path", request.url.path)
        return to_asgi(forwarder.reject(endpoint, exc.status, exc.message, api_for_path(request.url.path),
                                        exc.headers))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            detail = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"method {request.method} not allowed on {request.url.path}"
            headers["Allow"] = allowed_methods(app, request.scope) or headers.get("Allow", "")
        return error_response(api_for_path(request.url.path), exc.status_code, detail, headers=headers)


def allowed_methods(app: FastAPI, scope: Scope) -> str:
    """Every method some route takes on this path (a path may have one route per method, and included
    routers keep their own routes): each method is tried against the routes."""
    methods = [method for method in METHODS
               if any(route.matches(dict(scope) | {"method": method})[0] == Match.FULL for route in app.router.routes)]
    return ", ".join(methods)
