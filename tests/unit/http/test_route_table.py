"""Every route says who may call it: the FastAPI routes (included routers' too) and the fast path's.

The app is built from stand-ins for its ports: building it touches no host, no loop and no service.
"""

from __future__ import annotations

from typing import Any

import pytest

from sollol_core.cluster.adaptive import ModelListRefresher
from sollol_core.cluster.hosts import HostRegistry
from sollol_core.cluster.routing import Router
from sollol_core.config import SollolConfig
from sollol_core.http.access import CLIENT, OPERATOR, PUBLIC, GatewayRouter, access_of, route_table
from sollol_core.http.app import GatewayDeps, create_app
from sollol_core.observability.metrics import Metrics
from sollol_core.observability.requestlog import RequestLog


class Unused:
    """A port the route table never calls."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"building the app called {name}")


class Forwarder(Unused):
    def reject(self, *args: Any, **kwargs: Any) -> Any:  # bound when the hot routes are built
        raise AssertionError("called")


class Operator(Unused):
    def trigger_batch(self) -> dict[str, Any]:  # bound when the batch routes are built
        raise AssertionError("called")


def build() -> Any:
    registry = HostRegistry()
    deps = GatewayDeps(config=SollolConfig(), forwarder=Forwarder(), registry=registry, router=Router(registry),
                       upstream=Unused(), in_loop=Unused(), model_lists=ModelListRefresher(Unused(), registry),
                       metrics=Metrics(), requests=RequestLog(), operator=Operator(), stats=Unused(),
                       batch=Unused())
    return create_app(deps)


# who may call what, as the gateway means it (enforced by the routes today, by one guard later)
EXPECTED = {
    ("GET", "/"): PUBLIC, ("HEAD", "/"): PUBLIC, ("GET", "/api/health"): PUBLIC,
    **{("POST", p): CLIENT for p in ("/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/show",
                                      "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
                                      "/v1/audio/transcriptions", "/v1/messages", "/api/embed/batch")},
    **{(m, p): CLIENT for m in ("GET", "HEAD") for p in ("/api/version", "/api/tags")},
    **{("GET", p): CLIENT for p in ("/api/ps", "/v1/models", "/v1/models/{model:path}", "/api/batch-status",
                                     "/api/batch/{job_id}")},
    **{("GET", p): OPERATOR for p in ("/api/stats", "/metrics")},
    **{("POST", p): OPERATOR for p in ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/blobs/{digest}",
                                        "/api/hosts", "/api/hosts/{host}/drain", "/api/hosts/{host}/undrain",
                                        "/api/batch/trigger")},
    ("DELETE", "/api/delete"): OPERATOR, ("HEAD", "/api/blobs/{digest}"): OPERATOR,
    ("DELETE", "/api/hosts/{host}"): OPERATOR, ("PATCH", "/api/hosts/{host}"): OPERATOR,
    ("PUT", "/api/routing"): OPERATOR,
}
DOCUMENTATION = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")


@pytest.fixture(scope="module")
def gateway() -> Any:
    return build()


def test_every_route_declares_who_may_call_it(gateway):
    undeclared = [f"{e.method} {e.path}" for e in route_table(gateway.app) if e.access is None]
    assert undeclared == []


def test_every_fast_path_route_declares_and_is_the_routed_one(gateway):
    routed = {id(e.route) for e in route_table(gateway.app)}
    assert len(gateway.fast) == 10
    for (method, path), route in gateway.fast.items():
        assert access_of(route) is not None, f"{method} {path}"
        assert id(route) in routed, f"{method} {path}: not the route FastAPI serves (and documents)"


def test_the_declarations_are_the_intended_ones(gateway):
    table = {(e.method, e.path): e.access for e in route_table(gateway.app) if e.path not in DOCUMENTATION}
    assert table == EXPECTED
    assert {access_of(r) for r in gateway.fast.values()} == {CLIENT}


def test_a_route_added_without_a_declaration_is_found():
    app = build()

    @app.app.get("/api/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    sneaky = GatewayRouter()
    sneaky.add_api_route("/api/also-forgotten", forgotten, methods=["POST"])
    app.app.include_router(sneaky)
    undeclared = {f"{e.method} {e.path}" for e in route_table(app.app) if e.access is None}
    assert undeclared == {"GET /api/forgotten", "POST /api/also-forgotten"}
