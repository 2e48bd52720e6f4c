"""The HTTP surface: Ollama API, OpenAI- and Anthropic-compatible /v1, SOLLOL's own and the operator endpoints.

Bodies are forwarded byte for byte (options, format, tools, keep_alive, images ... arrive intact); the
gateway parses a body only to learn the model and whether the client asked for a stream. What the gateway
answers by itself (bad input, no host, unknown model, body too large) takes the error shape of the
endpoint's API family (api_errors), so each official SDK raises its own typed error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import quote

import orjson
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match

from ..config import STRATEGIES, normalize_host
from ..errors import BadRequest, ClientRefused, UpstreamFailure
from ..observability.metrics import CONTENT_TYPE
from ..prompt_cache.canonical import prompt_key_async, session_key
from ..request.call import Call
from ..version import __version__
from . import openapi as am
from .auth import require_admin as check_admin
from .clients import Client, ClientKeys
from .errors import ANTHROPIC, OLLAMA, OPENAI, api_for_path, error_response
from .io import entries, float_field, int_field, json_response, model_of, multipart_fields, read_body, read_json
from .routes.batch import batch_router
from .routes.management import management_router

if TYPE_CHECKING:
    from ..service import SOLLOL

log = logging.getLogger("sollol.gateway")
META_TIMEOUT_S = 15.0


def create_app(sollol: "SOLLOL") -> FastAPI:
    cfg = sollol.config
    app = FastAPI(title="SOLLOL", version=__version__,
                  description="One Ollama-compatible endpoint in front of many Ollama servers: the Ollama API, "
                              "OpenAI's (/v1/chat/completions, /v1/responses, ...) and Anthropic's "
                              "(/v1/messages), routed by model to the host that will serve it best.")
    am.install_openapi(app)

    @app.exception_handler(BadRequest)
    async def _bad_request(request: Request, exc: BadRequest) -> Response:
        # the route's template, not the path: /api/hosts/{host} must not become one label per host
        endpoint = getattr(request.scope.get("route"), "path", request.url.path)
        return sollol.proxy.reject(endpoint, exc.status, exc.message, api_for_path(request.url.path), exc.headers)

    def allowed_methods(scope: dict) -> str:
        """Every method some route takes on this path (a path may have one route per method, and included
        routers keep their own routes): each method is tried against the routes."""
        methods = [method for method in ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
                   if any(route.matches(scope | {"method": method})[0] == Match.FULL for route in app.router.routes)]
        return ", ".join(methods)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            detail = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"method {request.method} not allowed on {request.url.path}"
            headers["Allow"] = allowed_methods(request.scope) or headers.get("Allow", "")
        return error_response(api_for_path(request.url.path), exc.status_code, detail, headers=headers)

    keys = ClientKeys(cfg)

    def identify(request: Request) -> Client:
        address = request.client.host if request.client else ""
        try:
            return keys.identify(request.headers, address)
        except ClientRefused as e:
            raise BadRequest(e.status, e.message, e.headers) from None

    def stream_flag(data: dict, default: bool) -> bool:
        stream = data.get("stream")
        stream = default if stream is None else stream  # Ollama reads null as "not given"
        if not isinstance(stream, bool):
            raise BadRequest(400, "stream must be true or false")
        return stream

    async def proxy(endpoint: str, path: str, data: dict, request: Request, *, timeout: float,
                    stream_default: bool, sse: bool = False, body: Optional[bytes] = None, api: str = OLLAMA,
                    embedding: bool = False, cost: float = 1.0, inference: bool = True,
                    model: Optional[str] = None, content_type: Optional[str] = None) -> Response:
        stream = stream_flag(data, stream_default)
        model = model or model_of(data)
        client = identify(request) if inference else Client(request.client.host if request.client else "", "high")
        prompt = None
        if cfg.cache.enabled and inference and not embedding:
            prompt = await prompt_key_async(path, data, block_chars=cfg.cache.block_chars,
                                            session=session_key(path, data, request.headers))
        call = Call(endpoint=endpoint, method="POST", path=path,
                    body=body if body is not None else request.state.raw_body,
                    model=model, stream=stream, timeout=timeout, sse=sse, api=api, prompt=prompt,
                    priority=client.priority, client=client.name, cost=cost, embedding=embedding,
                    receive=request.receive, uses_slot=inference, content_type=content_type)
        return await sollol.proxy.forward(call)

    # Ollama API -----------------------------------------------------------------------------------
    # HEAD too: the ollama command line checks HEAD / before list, run, pull ...
    @app.head("/", include_in_schema=False)
    @app.get("/", response_class=PlainTextResponse, summary="liveness: 'Ollama is running'")
    async def root() -> str:
        return "Ollama is running"

    @app.post("/api/chat", summary="chat, routed by model",
              openapi_extra=am.doc(am.ChatRequest, am.ChatResponse, stream="application/x-ndjson",
                                   errors=(400, 404, 413, 502, 503)))
    async def chat(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        if "messages" in data and not isinstance(data["messages"], list):
            raise BadRequest(400, "messages must be a list")
        if not data.get("messages") and is_unload(data):
            return await unload_everywhere("/api/chat", data, request)
        return await proxy("/api/chat", "/api/chat", data, request, timeout=cfg.chat_timeout, stream_default=True)

    @app.post("/api/generate", summary="generate, routed by model",
              openapi_extra=am.doc(am.GenerateRequest, am.GenerateResponse, stream="application/x-ndjson",
                                  errors=(400, 404, 413, 502, 503)))
    async def generate(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        if not data.get("prompt") and not data.get("images") and is_unload(data):
            return await unload_everywhere("/api/generate", data, request)
        return await proxy("/api/generate", "/api/generate", data, request, timeout=cfg.chat_timeout,
                           stream_default=True)

    def is_unload(data: dict) -> bool:
        """An empty request with keep_alive 0: Ollama's way to unload a model (`ollama stop`, `ollama rm`)."""
        value = data.get("keep_alive")
        return value in (0, "0") or (isinstance(value, str) and value.strip() in ("0s", "0m", "0h"))

    async def unload_everywhere(path: str, data: dict, request: Request) -> Response:
        """Unload the model on every host that has it loaded (one host would leave it loaded on the others);
        the answer is the first host's, as from one Ollama."""
        model = model_of(data)
        hosts = [h.address for h in sollol.registry.hosts()
                 if h.state.value in ("healthy", "draining") and h.has_model(model) is not False]
        if not hosts:
            raise BadRequest(404, f"model '{model}' not found on any host")
        raw = request.state.raw_body

        async def one(address: str) -> tuple[int, bytes]:
            try:
                resp = await sollol.executor.open(address, "POST", path, raw, META_TIMEOUT_S, stream=False)
                try:
                    return resp.status, await resp.read()
                finally:
                    await resp.close()
            except UpstreamFailure as e:
                return 502, orjson.dumps({"error": f"{address}: {e}"})

        answers = await asyncio.gather(*(one(a) for a in hosts))
        for address, (status, _) in zip(hosts, answers):
            if status < 400:
                sollol.registry.forget_loaded(address, model)
        status, body = next(((st, b) for st, b in answers if st < 400), answers[0])
        return Response(body, status_code=status, media_type="application/json")

    @app.post("/api/embed", summary="embed one text or several, routed by model",
              openapi_extra=am.doc(am.EmbedRequest, am.EmbedResponse, errors=(400, 404, 413, 502, 503)))
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

    @app.post("/api/embeddings", summary="embed one text (the older endpoint)",
              openapi_extra=am.doc(am.EmbeddingsRequest, am.EmbeddingsResponse, errors=(400, 404, 413, 502, 503)))
    async def embeddings(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        return await proxy("/api/embeddings", "/api/embeddings", data, request, timeout=cfg.embedding_timeout,
                           stream_default=False, embedding=True)

    @app.post("/api/show", summary="a model's details, from a host that has it",
              openapi_extra=am.doc(am.ShowRequest, am.ShowResponse, errors=(400, 404, 502, 503)))
    async def show(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        return await proxy("/api/show", "/api/show", data, request, timeout=META_TIMEOUT_S, stream_default=False,
                           inference=False)

    @app.head("/api/version", include_in_schema=False)
    @app.get("/api/version", summary="the version of the first available host",
             openapi_extra=am.doc(answer=am.VersionResponse, errors=()))
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

    @app.head("/api/tags", include_in_schema=False)
    @app.get("/api/tags", summary="every host's models, each with the hosts that have it",
             openapi_extra=am.doc(answer=am.TagsResponse, errors=()))
    async def tags() -> Response:
        merged: dict[str, dict] = {}
        for address, data in await gather_hosts("/api/tags"):
            for m in entries(data, "models"):
                if m.get("name"):
                    entry = merged.setdefault(m["name"], dict(m) | {"hosts": []})
                    entry["hosts"].append(address)
        return json_response({"models": sorted(merged.values(), key=lambda m: m["name"])})

    @app.get("/api/ps", summary="every loaded model on every host",
             openapi_extra=am.doc(answer=am.PsResponse, errors=()))
    async def ps() -> Response:
        models = [m | {"host": address} for address, data in await gather_hosts("/api/ps")
                  for m in entries(data, "models")]
        return json_response({"models": models})

    # model management (pull, push, create, copy, delete, blobs): management.py --------------------------
    progress, managing = "application/x-ndjson", (400, 401, 403, 404, 502)
    app.include_router(management_router(sollol, {
        "pull": am.doc(am.PullRequest, am.ManagementResult, stream=progress, errors=managing, headers=am.HOST_HEADER),
        "push": am.doc(am.PushRequest, am.ManagementResult, stream=progress, errors=managing, headers=am.HOST_HEADER),
        "create": am.doc(am.CreateRequest, am.ManagementResult, stream=progress, errors=managing,
                         headers=am.HOST_HEADER),
        "copy": am.doc(am.CopyRequest, am.ManagementResult, errors=managing, headers=am.HOST_HEADER),
        "delete": am.doc(am.DeleteRequest, am.ManagementResult, errors=managing, headers=am.HOST_HEADER),
        "blob_head": {"responses": {"200": {"description": "Every host has it."},
                                    "404": {"description": "Some host lacks it."},
                                    "400": {"description": "Not a sha256 digest."}},
                      "parameters": am.doc(headers=am.HOST_HEADER)["parameters"]},
        "blob_post": am.doc(am.BINARY, am.ManagementResult, request_media="application/octet-stream",
                            answer_status=201, errors=(400, 401, 403, 502), headers=am.HOST_HEADER),
    }))

    # OpenAI-compatible ------------------------------------------------------------------------------
    @app.post("/v1/chat/completions", summary="OpenAI chat completions, routed by model",
              openapi_extra=am.doc(am.ChatCompletionRequest, am.ChatCompletion, api=OPENAI, stream="text/event-stream",
                                  errors=(400, 404, 413, 502, 503)))
    async def v1_chat(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        return await proxy("/v1/chat/completions", "/v1/chat/completions", data, request,
                           timeout=cfg.chat_timeout, stream_default=False, sse=True, api=OPENAI)

    @app.post("/v1/completions", summary="OpenAI completions, routed by model",
              openapi_extra=am.doc(am.CompletionRequest, am.Completion, api=OPENAI, stream="text/event-stream",
                                  errors=(400, 404, 413, 502, 503)))
    async def v1_completions(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        return await proxy("/v1/completions", "/v1/completions", data, request,
                           timeout=cfg.chat_timeout, stream_default=False, sse=True, api=OPENAI)

    @app.post("/v1/embeddings", summary="OpenAI embeddings, routed by model",
              openapi_extra=am.doc(am.EmbeddingRequest, am.EmbeddingList, api=OPENAI, errors=(400, 404, 413, 502, 503)))
    async def v1_embeddings(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        inp = data.get("input")
        return await proxy("/v1/embeddings", "/v1/embeddings", data, request,
                           timeout=cfg.embedding_timeout, stream_default=False, api=OPENAI, embedding=True,
                           cost=float(len(inp)) if isinstance(inp, list) else 1.0)

    @app.get("/v1/models", summary="every host's models (OpenAI)",
             openapi_extra=am.doc(answer=am.ModelList, api=OPENAI, errors=()))
    async def v1_models() -> Response:
        merged: dict[str, dict] = {}
        for _, data in await gather_hosts("/v1/models"):
            for m in entries(data, "data"):
                if m.get("id"):
                    merged.setdefault(m["id"], m)
        return json_response({"object": "list", "data": sorted(merged.values(), key=lambda x: x["id"])})

    @app.get("/v1/models/{model:path}", summary="one model (OpenAI), from a host that has it",
             openapi_extra=am.doc(answer=am.ModelObject, api=OPENAI, errors=(404, 502, 503)))
    async def v1_model(model: str) -> Response:
        call = Call(endpoint="/v1/models/{model}", method="GET", path="/v1/models/" + quote(model, safe=":@/"),
                    body=None, model=model, stream=False, timeout=META_TIMEOUT_S, api=OPENAI, uses_slot=False)
        return await sollol.proxy.forward(call)

    @app.post("/v1/responses", summary="OpenAI Responses, routed by model",
              openapi_extra=am.doc(am.ResponsesRequest, am.ResponseObject, api=OPENAI, stream="text/event-stream",
                                  errors=(400, 404, 413, 502, 503)))
    async def v1_responses(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        return await proxy("/v1/responses", "/v1/responses", data, request, timeout=cfg.chat_timeout,
                           stream_default=False, sse=True, api=OPENAI)

    @app.post("/v1/audio/transcriptions", summary="OpenAI audio transcription, routed by model",
              openapi_extra=am.doc(am.TranscriptionForm, am.Transcription, api=OPENAI,
                                   request_media="multipart/form-data", stream="text/event-stream",
                                   errors=(400, 404, 413, 502, 503)))
    async def v1_transcriptions(request: Request) -> Response:
        body = await read_body(request, cfg.max_body_bytes)
        content_type = request.headers.get("content-type", "")
        fields = multipart_fields(body, content_type, ("model", "stream"))
        model = fields.get("model", "").strip()
        if not model:
            raise BadRequest(400, "model is required (a form field)")
        stream = fields.get("stream", "false").strip().lower()
        if stream not in ("true", "false"):
            raise BadRequest(400, "stream must be true or false")
        client = identify(request)
        call = Call(endpoint="/v1/audio/transcriptions", method="POST", path="/v1/audio/transcriptions", body=body,
                    model=model, stream=stream == "true", timeout=cfg.chat_timeout, sse=True, api=OPENAI,
                    content_type=content_type, priority=client.priority, client=client.name,
                    receive=request.receive)
        return await sollol.proxy.forward(call)

    # Anthropic-compatible -----------------------------------------------------------------------------
    @app.post("/v1/messages", summary="Anthropic Messages, routed by model",
              openapi_extra=am.doc(am.MessagesRequest, am.MessageObject, api=ANTHROPIC, stream="text/event-stream",
                                  errors=(400, 404, 413, 502, 503)))
    async def v1_messages(request: Request) -> Response:
        data = await read_json(request, cfg.max_body_bytes)
        if "messages" in data and not isinstance(data["messages"], list):
            raise BadRequest(400, "messages must be a list")
        return await proxy("/v1/messages", "/v1/messages", data, request, timeout=cfg.chat_timeout,
                           stream_default=False, sse=True, api=ANTHROPIC)

    # SOLLOL's own -----------------------------------------------------------------------------------
    @app.get("/api/health", summary="ok / degraded / down (503 when no host is available)",
             openapi_extra=am.doc(answer=am.HealthResponse, errors=()))
    async def health() -> Response:
        body = sollol.get_health()
        return json_response(body, 200 if body["status"] != "down" else 503)

    @app.get("/api/stats", summary="every host's state, measurements and score; routing; executor",
             openapi_extra=am.doc(answer=am.StatsResponse, errors=()))
    async def stats() -> Response:
        return json_response(sollol.get_stats())

    @app.get("/metrics", summary="Prometheus exposition", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(sollol.metrics.exposition(), media_type=CONTENT_TYPE)

    # operator endpoints ---------------------------------------------------------------------------
    def require_admin(request: Request) -> None:
        check_admin(cfg, request)

    def host_param(host: str) -> str:
        try:
            address = normalize_host(host)
        except ValueError as e:
            raise BadRequest(400, str(e)) from None
        if address not in sollol.registry:
            raise BadRequest(404, f"no such host {address}; see /api/stats")
        return address

    @app.post("/api/hosts", summary="operator: add a host",
              openapi_extra=am.doc(am.AddHost, am.HostAnswer, answer_status=201, errors=(400, 401, 403, 409)))
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

    @app.delete("/api/hosts/{host}", summary="operator: remove a host",
                openapi_extra=am.doc(answer=am.HostAnswer, errors=(400, 401, 403, 404)))
    async def remove_host(host: str, request: Request) -> Response:
        require_admin(request)
        address = host_param(host)
        sollol.remove_host(address)
        return json_response({"status": "removed", "host": address})

    @app.post("/api/hosts/{host}/drain", summary="operator: send the host nothing new",
              openapi_extra=am.doc(answer=am.HostAnswer, errors=(400, 401, 403, 404)))
    async def drain(host: str, request: Request) -> Response:
        require_admin(request)
        address = host_param(host)
        sollol.drain_host(address)
        return json_response({"status": "draining", "host": address})

    @app.post("/api/hosts/{host}/undrain", summary="operator: send the host requests again",
              openapi_extra=am.doc(answer=am.HostAnswer, errors=(400, 401, 403, 404)))
    async def undrain(host: str, request: Request) -> Response:
        require_admin(request)
        address = host_param(host)
        sollol.undrain_host(address)
        return json_response({"status": "healthy", "host": address})

    @app.patch("/api/hosts/{host}", summary="operator: change a host's priority or weight",
               openapi_extra=am.doc(am.HostChange, am.HostAnswer, errors=(400, 401, 403, 404)))
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

    @app.put("/api/routing", summary="operator: routing strategy and weights",
             openapi_extra=am.doc(am.RoutingChange, am.RoutingAnswer, errors=(400, 401, 403)))
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
        ("/v1/messages", v1_messages), ("/v1/responses", v1_responses),
        ("/v1/audio/transcriptions", v1_transcriptions),
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
