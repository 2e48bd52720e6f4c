"""The HTTP surface: Ollama API, OpenAI-compatible /v1, SOLLOL's own and the operator endpoints.

Bodies are forwarded byte for byte (options, format, tools, keep_alive, images ... arrive intact); the
gateway parses a body only to learn the model and whether the client asked for a stream.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional

import orjson
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import PlainTextResponse, Response

from . import __version__
from .batch.api import batch_router
from .config import STRATEGIES, normalize_host
from .executors import UpstreamFailure
from .httpio import BadRequest, entries, float_field, int_field, json_response, model_of, read_json
from .api_errors import OLLAMA, OPENAI, api_for_path
from .canonical import prompt_key_async, session_key
from .clients import Client, ClientKeys, ClientRefused
from .api_errors import error_response
from .request import Call
from .metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from .service import SOLLOL

log = logging.getLogger("sollol.gateway")
META_TIMEOUT_S = 15.0


def create_app(sollol: "SOLLOL") -> FastAPI:
    cfg = sollol.config
    app = FastAPI(title="SOLLOL", version=__version__,
                  description="One Ollama-compatible endpoint in front of many Ollama servers.")

    @app.exception_handler(BadRequest)
    async def _bad_request(request: Request, exc: BadRequest) -> Response:
        # the route's template, not the path: /api/hosts/{host} must not become one label per host
        endpoint = getattr(request.scope.get("route"), "path", request.url.path)
        return sollol.proxy.reject(endpoint, exc.status, exc.message, api_for_path(request.url.path), exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404:
            detail = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"method {request.method} not allowed on {request.url.path}"
        return error_response(api_for_path(request.url.path), exc.status_code, detail)

    keys = ClientKeys(cfg)

    def identify(request: Request) -> Client:
        address = request.client.host if request.client else ""
        try:
            return keys.identify(request.headers, address)
        except ClientRefused as e:
            raise BadRequest(e.status, e.message, e.headers) from None

    async def proxy(endpoint: str, path: str, data: dict, request: Request, *, timeout: float,
                    stream_default: bool, sse: bool = False, body: Optional[bytes] = None, api: str = OLLAMA,
                    embedding: bool = False, cost: float = 1.0, inference: bool = True) -> Response:
        stream = data.get("stream")
        stream = stream_default if stream is None else stream  # Ollama reads null as "not given"
        if not isinstance(stream, bool):
            raise BadRequest(400, "stream must be true or false")
        model = model_of(data)
        client = identify(request) if inference else Client(request.client.host if request.client else "", "high")
        prompt = None
        if cfg.cache.enabled and inference and not embedding:
            prompt = await prompt_key_async(path, data, block_chars=cfg.cache.block_chars,
                                            session=session_key(path, data, request.headers))
        call = Call(endpoint=endpoint, method="POST", path=path,
                    body=body if body is not None else request.state.raw_body,
                    model=model, stream=stream, timeout=timeout, sse=sse, api=api, prompt=prompt,
                    priority=client.priority, client=client.name, cost=cost, embedding=embedding,
                    receive=request.receive, uses_slot=inference)
        return await sollol.proxy.forward(call)

    # Ollama API -----------------------------------------------------------------------------------
    # HEAD too: the ollama command line checks HEAD / before list, run, pull ...
    @app.head("/", include_in_schema=False)
    @app.get("/", response_class=PlainTextResponse)
    async def root() -> str:
        return "Ollama is running"

    @app.post("/api/chat")
    async def chat(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        if "messages" in data and not isinstance(data["messages"], list):
            raise BadRequest(400, "messages must be a list")
        return await proxy("/api/chat", "/api/chat", data, request, timeout=cfg.chat_timeout, stream_default=True)

    @app.post("/api/generate")
    async def generate(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        return await proxy("/api/generate", "/api/generate", data, request, timeout=cfg.chat_timeout,
                           stream_default=True)

    @app.post("/api/embed")
    async def embed(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        body = None
        if "input" not in data and "text" in data:  # the original SOLLOL's {"text": ..., "model": ...}
            data = {k: v for k, v in data.items() if k != "text"} | {"input": data["text"]}
            body = orjson.dumps(data)
        if "input" not in data:
            raise BadRequest(400, "input is required (a string or a list of strings)")
        inp = data["input"]
        if not (isinstance(inp, str) or (isinstance(inp, list) and all(isinstance(x, str) for x in inp))):
            raise BadRequest(400, "input must be a string or a list of strings")
        return await proxy("/api/embed", "/api/embed", data, request, timeout=cfg.embedding_timeout,
                           stream_default=False, body=body, embedding=True,
                           cost=float(len(inp)) if isinstance(inp, list) else 1.0)

    @app.post("/api/embeddings")
    async def embeddings(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        return await proxy("/api/embeddings", "/api/embeddings", data, request, timeout=cfg.embedding_timeout,
                           stream_default=False, embedding=True)

    @app.post("/api/show")
    async def show(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        return await proxy("/api/show", "/api/show", data, request, timeout=META_TIMEOUT_S, stream_default=False,
                           inference=False)

    @app.head("/api/version", include_in_schema=False)
    @app.get("/api/version")
    async def version() -> Response:
        for host in sollol.router.route(None):
            try:
                return json_response(await sollol.executor.get_json(host.address, "/api/version", META_TIMEOUT_S))
            except UpstreamFailure:
                continue
        return json_response({"version": "0.0.0", "sollol": __version__})

    async def gather_hosts(path: str) -> list[tuple[str, Any]]:
        hosts = [h.address for h in sollol.registry.hosts() if h.state.value in ("healthy", "draining")]

        async def one(address: str) -> tuple[str, Any]:
            try:
                return address, await sollol.executor.get_json(address, path, META_TIMEOUT_S)
            except UpstreamFailure:
                return address, None

        return list(await asyncio.gather(*(one(a) for a in hosts)))

    @app.get("/api/tags")
    async def tags() -> Response:
        merged: dict[str, dict] = {}
        for address, data in await gather_hosts("/api/tags"):
            for m in entries(data, "models"):
                if m.get("name"):
                    entry = merged.setdefault(m["name"], dict(m) | {"hosts": []})
                    entry["hosts"].append(address)
        return json_response({"models": sorted(merged.values(), key=lambda m: m["name"])})

    @app.get("/api/ps")
    async def ps() -> Response:
        models = [m | {"host": address} for address, data in await gather_hosts("/api/ps")
                  for m in entries(data, "models")]
        return json_response({"models": models})

    # model management: X-SOLLOL-Host names the host, or "all" ----------------------------------------
    async def manage(op: str, request: Request, method: str) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        target = request.headers.get("x-sollol-host", "all" if op == "pull" else "")
        if not target:
            raise BadRequest(400, f"/api/{op} changes a host's models: say which with the header "
                                  f"X-SOLLOL-Host: <host:port> or X-SOLLOL-Host: all")
        if target == "all":
            hosts = [h.address for h in sollol.registry.hosts() if h.state.value != "disabled"]
        else:
            try:
                hosts = [normalize_host(target)]
            except ValueError as e:
                raise BadRequest(400, f"X-SOLLOL-Host: {e}") from None
            if hosts[0] not in sollol.registry:
                raise BadRequest(404, f"X-SOLLOL-Host: no such host {hosts[0]}; see /api/stats")
        if not hosts:
            return error_response(OLLAMA, 503, "no hosts registered")
        raw = request.state.raw_body
        if len(hosts) == 1:
            call = Call(endpoint=f"/api/{op}", method=method, path=f"/api/{op}", body=raw, model=None,
                        stream=data.get("stream") is not False and op in ("pull", "push", "create"),
                        timeout=cfg.management_timeout)
            return await sollol.proxy.forward_to(hosts[0], call)
        single = orjson.dumps(data | {"stream": False}) if op in ("pull", "push", "create") else raw

        async def one(address: str) -> tuple[str, int, Any]:
            try:
                resp = await sollol.executor.open(address, method, f"/api/{op}", single, cfg.management_timeout)
                try:
                    body = await resp.read()
                finally:
                    await resp.close()
            except UpstreamFailure as e:
                return address, 502, {"error": str(e)}
            try:
                return address, resp.status, orjson.loads(body) if body.strip() else {}
            except orjson.JSONDecodeError:
                return address, resp.status, {"raw": body.decode(errors="replace")}

        results = await asyncio.gather(*(one(a) for a in hosts))
        ok = all(status < 400 for _, status, _ in results)
        out = {"status": "success" if ok else "failed on some hosts",
               "hosts": {a: {"status_code": s, "result": r} for a, s, r in results}}
        if not ok:
            failed = ", ".join(a for a, s, _ in results if s >= 400)
            out["error"] = f"/api/{op} failed on {failed}"
        status = 200 if ok else (404 if all(s == 404 for _, s, _ in results) else 502)
        return json_response(out, status)

    def management_route(op: str, method: str) -> None:
        async def endpoint(request: Request) -> Response:  # annotated, so FastAPI passes the Request
            return await manage(op, request, method)

        app.add_api_route(f"/api/{op}", endpoint, methods=[method], name=f"api_{op}")

    for op in ("pull", "create", "copy", "push"):
        management_route(op, "POST")
    management_route("delete", "DELETE")

    # OpenAI-compatible ------------------------------------------------------------------------------
    @app.post("/v1/chat/completions")
    async def v1_chat(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        return await proxy("/v1/chat/completions", "/v1/chat/completions", data, request,
                           timeout=cfg.chat_timeout, stream_default=False, sse=True, api=OPENAI)

    @app.post("/v1/completions")
    async def v1_completions(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        return await proxy("/v1/completions", "/v1/completions", data, request,
                           timeout=cfg.chat_timeout, stream_default=False, sse=True, api=OPENAI)

    @app.post("/v1/embeddings")
    async def v1_embeddings(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        inp = data.get("input")
        return await proxy("/v1/embeddings", "/v1/embeddings", data, request,
                           timeout=cfg.embedding_timeout, stream_default=False, api=OPENAI, embedding=True,
                           cost=float(len(inp)) if isinstance(inp, list) else 1.0)

    @app.get("/v1/models")
    async def v1_models() -> Response:
        merged: dict[str, dict] = {}
        for _, data in await gather_hosts("/v1/models"):
            for m in entries(data, "data"):
                if m.get("id"):
                    merged.setdefault(m["id"], m)
        return json_response({"object": "list", "data": sorted(merged.values(), key=lambda m: m["id"])})

    # SOLLOL's own -----------------------------------------------------------------------------------
    @app.get("/api/health")
    async def health() -> Response:
        body = sollol.get_health()
        return json_response(body, 200 if body["status"] != "down" else 503)

    @app.get("/api/stats")
    async def stats() -> Response:
        return json_response(sollol.get_stats())

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(sollol.metrics.exposition(), media_type=CONTENT_TYPE)

    # operator endpoints ---------------------------------------------------------------------------
    def require_admin(request: Request) -> None:
        if cfg.is_loopback_only():
            return
        if not cfg.admin_token:
            raise BadRequest(403, "operator endpoints are off while the gateway listens beyond loopback "
                                  "without a token: set admin_token (or SOLLOL_ADMIN_TOKEN)")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = (token.strip() if scheme.lower() == "bearer" else "") or request.headers.get("x-sollol-token", "")
        if not hmac.compare_digest(given.encode(), cfg.admin_token.encode()):
            raise BadRequest(401, "operator endpoint: send 'Authorization: Bearer <admin_token>'")

    def host_param(host: str) -> str:
        try:
            address = normalize_host(host)
        except ValueError as e:
            raise BadRequest(400, str(e)) from None
        if address not in sollol.registry:
            raise BadRequest(404, f"no such host {address}; see /api/stats")
        return address

    @app.post("/api/hosts")
    async def add_host(request: Request) -> Response:
        require_admin(request)
        data = await read_json(request, cfg.max_body_bytes)
        if not isinstance(data.get("host"), str):
            raise BadRequest(400, "host is required, as host:port")
        try:
            address = sollol.add_host(data["host"], priority=int_field(data, "priority", 0),
                                      weight=float_field(data, "weight", 1.0))
        except (ValueError, TypeError) as e:
            raise BadRequest(400 if "already" not in str(e) else 409, str(e)) from None
        return json_response({"status": "added", "host": address}, 201)

    @app.delete("/api/hosts/{host}")
    async def remove_host(host: str, request: Request) -> Response:
        require_admin(request)
        address = host_param(host)
        sollol.remove_host(address)
        return json_response({"status": "removed", "host": address})

    @app.post("/api/hosts/{host}/drain")
    async def drain(host: str, request: Request) -> Response:
        require_admin(request)
        address = host_param(host)
        sollol.drain_host(address)
        return json_response({"status": "draining", "host": address})

    @app.post("/api/hosts/{host}/undrain")
    async def undrain(host: str, request: Request) -> Response:
        require_admin(request)
        address = host_param(host)
        sollol.undrain_host(address)
        return json_response({"status": "healthy", "host": address})

    @app.patch("/api/hosts/{host}")
    async def patch_host(host: str, request: Request) -> Response:
        require_admin(request)
        address = host_param(host)
        data = await read_json(request, cfg.max_body_bytes)
        unknown = set(data) - {"priority", "weight"}
        if unknown:
            raise BadRequest(400, f"unknown field(s) {', '.join(sorted(unknown))}; use priority and weight")
        try:
            if "priority" in data:
                sollol.set_priority(address, int_field(data, "priority", 0))
            if "weight" in data:
                sollol.set_weight(address, float_field(data, "weight", 1.0))
        except (ValueError, TypeError) as e:
            raise BadRequest(400, str(e)) from None
        h = sollol.registry.get(address)
        return json_response({"host": address, "priority": h.priority, "weight": h.weight})

    @app.put("/api/routing")
    async def put_routing(request: Request) -> Response:
        require_admin(request)
        data = await read_json(request, cfg.max_body_bytes)
        unknown = set(data) - {"strategy", "weights"}
        if unknown:
            raise BadRequest(400, f"unknown field(s) {', '.join(sorted(unknown))}; use strategy and weights")
        if "strategy" in data and data["strategy"] not in STRATEGIES:
            raise BadRequest(400, f"strategy must be one of {', '.join(STRATEGIES)}")
        weights = data.get("weights", {})
        if not isinstance(weights, dict):
            raise BadRequest(400, "weights must be an object, e.g. {\"latency\": 0.5}")
        try:
            if weights:
                sollol.set_weights(**weights)
            if "strategy" in data:
                sollol.set_strategy(data["strategy"])
        except ValueError as e:
            raise BadRequest(400, f"weights: {e}") from None
        return json_response({"strategy": sollol.router.strategy_name,
                              "weights": sollol.router.weights.model_dump()})

    app.include_router(batch_router(sollol, require_admin))  # /api/embed/batch, /api/batch/..., /api/batch-status

    fast = {("POST", path): endpoint for path, endpoint in (
        ("/api/chat", chat), ("/api/generate", generate), ("/api/embed", embed), ("/api/embeddings", embeddings),
        ("/v1/chat/completions", v1_chat), ("/v1/completions", v1_completions), ("/v1/embeddings", v1_embeddings),
    )}
    return FastPathApp(app, fast, sollol.proxy.reject)


class FastPathApp:
    """The request path's hot endpoints dispatched straight from a dict, everything else by FastAPI.

    The proxied endpoints take only the raw request, so FastAPI's routing and dependency solving buy
    them nothing; skipping them is a measurable share of the latency the gateway adds. They stay
    registered on the FastAPI app, so /docs still lists them.
    """

    def __init__(self, app: FastAPI, fast: dict[tuple[str, str], Any],
                 reject: Callable[..., Response]) -> None:
        self.app = app
        self.fast = fast
        self.reject = reject

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            endpoint = self.fast.get((scope["method"], scope["path"]))
            if endpoint is not None:
                request = Request(scope, receive)
                try:
                    response = await endpoint(request)
                except BadRequest as exc:
                    response = self.reject(scope["path"], exc.status, exc.message, api_for_path(scope["path"]),
                                           exc.headers)
                except Exception as exc:  # a bug must still answer in the API's shape, and be logged
                    log.exception("unexpected error on %s", scope["path"])
                    response = self.reject(scope["path"], 500, f"internal error: {type(exc).__name__}: {exc}",
                                           api_for_path(scope["path"]))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
