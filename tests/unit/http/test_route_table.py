"""Every route says who may call it: the FastAPI routes (included routers' too) and the fast path's.

The app is built from stand-ins for its ports: building it touches no host, no loop and no service.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from sollol_core.cluster.adaptive import ModelListRefresher
from sollol_core.cluster.hosts import HostRegistry
from sollol_core.cluster.routing import Router
from sollol_core.config import SollolConfig
from sollol_core.http.access import (
    CLIENT,
    OPERATOR,
    PUBLIC,
    ClientRoute,
    DeclaredRoute,
    GatewayRouter,
    access_of,
    route_table,
)
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


class Refusals(Forwarder):
    """Answers the guard's refusals (the request path books them); nothing else may be called."""

    def reject(self, endpoint: str, status: int, message: str, api: Any = None, headers: Any = None) -> Any:
        from sollol_core.request.answer import error_answer
        return error_answer(api or "ollama", status, message, headers)


class Health(Unused):
    def get_health(self) -> dict[str, Any]:
        return {"status": "ok", "hosts": {"10.0.0.1:11434": {}}}


def build(config: SollolConfig | None = None, forwarder: Any = None) -> Any:
    registry = HostRegistry()
    deps = GatewayDeps(config=config or SollolConfig(), forwarder=forwarder or Forwarder(), registry=registry,
                       router=Router(registry), upstream=Unused(), in_loop=Unused(),
                       model_lists=ModelListRefresher(Unused(), registry), metrics=Metrics(), requests=RequestLog(),
                       operator=Operator(), stats=Health(), batch=Unused())
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


# -- the guard enforces what the routes declare ----------------------------------------------------------------

SAMPLE = {"host": "10.0.0.1:11434", "digest": "sha256:" + "ab" * 32, "job_id": "0123abcd", "model:path": "llama3.2"}


def concrete(path: str) -> str:
    return re.sub(r"{([^}]+)}", lambda m: SAMPLE[m.group(1)], path)


async def test_every_route_is_guarded_as_it_declares():
    """With keys and a token configured, a request without credentials reaches no port (each stand-in
    raises when called): every client and operator route answers 401 from the guard, a public one answers."""
    config = SollolConfig(api_keys={"sk-a": {"name": "a"}}, admin_token="tok")
    app = build(config, Refusals())
    transport = httpx.ASGITransport(app=app)
    seen = 0
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        for e in route_table(app.app):
            if isinstance(e.route, DeclaredRoute):
                assert e.route.guard is not None, f"{e.method} {e.path}: no guard bound"
            r = await http.request(e.method, concrete(e.path))
            seen += 1
            if e.access is PUBLIC:
                assert r.status_code == 200, (e.method, e.path, r.text)
                if e.path == "/api/health":
                    assert r.json() == {"status": "ok"}  # nothing about the hosts without the token
            else:
                assert r.status_code == 401, (e.method, e.path, r.status_code, r.text)
    assert seen == len(EXPECTED) + 2 * len(DOCUMENTATION)  # the documentation routes too (GET and HEAD)


async def test_hot_routes_are_refused_before_their_body_is_read():
    config = SollolConfig(api_keys={"sk-a": {"name": "a"}})
    app = build(config, Refusals())
    for (method, path), route in app.fast.items():
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            raise AssertionError(f"{path}: the body was read before the key was checked")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "headers": [(b"host", b"127.0.0.1")],
                 "client": ("127.0.0.1", 1), "query_string": b"", "root_path": ""}
        await app(scope, receive, send)
        assert sent[0]["status"] == 401, path


async def test_a_declared_route_without_its_guard_refuses_everything():
    router = GatewayRouter()

    @router.declare(CLIENT, "GET", "/api/orphan")
    async def orphan() -> dict[str, str]:
        raise AssertionError("ran without a guard")

    from fastapi import FastAPI
    app = FastAPI()
    app.include_router(router)
    assert isinstance(router.routes[-1], ClientRoute)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        r = await http.get("/api/orphan")
    assert r.status_code == 500
