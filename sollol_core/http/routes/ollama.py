"""Ollama's API: liveness, chat, generate (and the unload it carries), embeddings, model details, version,
and the listings merged over every host.

Model management (pull, push, create, copy, delete, blobs) is in management.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import Request
from starlette.responses import PlainTextResponse, Response

from ...cluster.hosts import HostRegistry
from ...cluster.routing import Router
from ...config import SollolConfig
from ...errors import BadRequest, UpstreamFailure
from ...request.answer import Answer, Whole
from ...version import __version__
from .. import openapi as am
from ..access import CLIENT, PUBLIC, GatewayRouter, caller_of
from ..answers import to_asgi
from ..guard import Guard
from ..inbound import AsgiInbound, Inbound
from ..inference import META_TIMEOUT_S, Inference
from ..io import entries, json_response, model_of, read_inbound_json
from ..listings import SERVING, host_answers
from ..ports import Upstream
from ..roles import Caller

INFERENCE_ERRORS = (400, 404, 413, 502, 503)


def is_unload(data: dict[str, Any]) -> bool:
    """An empty request with keep_alive 0: Ollama's way to unload a model (`ollama stop`, `ollama rm`)."""
    value = data.get("keep_alive")
    return value in (0, "0") or (isinstance(value, str) and value.strip() in ("0s", "0m", "0h"))


class Unload:
    """Unload a model on every host that has it loaded (one host would leave it loaded on the others); the
    answer is the first host's that succeeded, as from one Ollama."""

    def __init__(self, registry: HostRegistry, upstream: Upstream) -> None:
        self.registry = registry
        self.upstream = upstream

    async def everywhere(self, path: str, data: dict[str, Any], raw: bytes) -> Whole:
        model = model_of(data)
        hosts = [h.address for h in self.registry.hosts()
                 if h.state.value in SERVING and h.has_model(model) is not False]
        if not hosts:
            raise BadRequest(404, f"model '{model}' not found on any host")
        answers = await asyncio.gather(*(self.one(a, path, raw) for a in hosts))
        for address, (status, _) in zip(hosts, answers):
            if status < 400:
                self.registry.forget_loaded(address, model)
        status, body = next(((st, b) for st, b in answers if st < 400), answers[0])
        return Whole(status, body)

    async def one(self, address: str, path: str, raw: bytes) -> tuple[int, bytes]:
        try:
            resp = await self.upstream.open(address, "POST", path, raw, META_TIMEOUT_S, stream=False)
            try:
                return resp.status, await resp.read()
            finally:
                await resp.close()
        except UpstreamFailure as e:
            return 502, orjson.dumps({"error": f"{address}: {e}"})


UNLOADING = "unloading a model on every host"


def ollama_routes(config: SollolConfig, inference: Inference, registry: HostRegistry, router: Router,
                  upstream: Upstream, guard: Guard) -> GatewayRouter:
    """guard: an unload through chat or generate is a management action (Guard.require_management)."""
    routes = GatewayRouter(inference.forwarder.reject)
    unload = Unload(registry, upstream)

    # HEAD too: the ollama command line checks HEAD / before list, run, pull ...
    @routes.declare(PUBLIC, "HEAD", "/", include_in_schema=False)
    @routes.declare(PUBLIC, "GET", "/", response_class=PlainTextResponse, summary="liveness: 'Ollama is running'")
    async def root() -> str:
        return "Ollama is running"

    @routes.hot_route(CLIENT, "/api/chat", summary="chat, routed by model",
                      openapi_extra=am.doc(am.ChatRequest, am.ChatResponse, stream="application/x-ndjson",
                                           errors=INFERENCE_ERRORS))
    async def chat(req: Inbound, caller: Caller) -> Answer:
        data, raw = await read_inbound_json(req, config.max_body_bytes)
        if "messages" in data and not isinstance(data["messages"], list):
            raise BadRequest(400, "messages must be a list")
        if not data.get("messages") and is_unload(data):
            guard.require_management(caller, UNLOADING)
            return await unload.everywhere("/api/chat", data, raw)
        return await inference.forward("/api/chat", "/api/chat", data, raw, req, caller,
                                       timeout=config.chat_timeout, stream_default=True)

    @routes.hot_route(CLIENT, "/api/generate", summary="generate, routed by model",
                      openapi_extra=am.doc(am.GenerateRequest, am.GenerateResponse, stream="application/x-ndjson",
                                           errors=INFERENCE_ERRORS))
    async def generate(req: Inbound, caller: Caller) -> Answer:
        data, raw = await read_inbound_json(req, config.max_body_bytes)
        if not data.get("prompt") and not data.get("images") and is_unload(data):
            guard.require_management(caller, UNLOADING)
            return await unload.everywhere("/api/generate", data, raw)
        return await inference.forward("/api/generate", "/api/generate", data, raw, req, caller,
                                       timeout=config.chat_timeout, stream_default=True)

    @routes.hot_route(CLIENT, "/api/embed", summary="embed one text or several, routed by model",
                      openapi_extra=am.doc(am.EmbedRequest, am.EmbedResponse, errors=INFERENCE_ERRORS))
    async def embed(req: Inbound, caller: Caller) -> Answer:
        data, raw = await read_inbound_json(req, config.max_body_bytes)
        body = None
        if "input" not in data and "text" in data:  # the original SOLLOL's {"text": ..., "model": ...}
            data = {k: v for k, v in data.items() if k != "text"} | {"input": data["text"]}
            body = orjson.dumps(data)
        if "input" not in data:
            raise BadRequest(400, "input is required (a string or a list of strings)")
        inp = data["input"]
        if not (isinstance(inp, str) or (isinstance(inp, list) and all(isinstance(x, str) for x in inp))):
            raise BadRequest(400, "input must be a string or a list of strings")
        return await inference.forward("/api/embed", "/api/embed", data, raw, req, caller,
                                       timeout=config.embedding_timeout, stream_default=False, body=body,
                                       embedding=True,
                                       cost=float(len(inp)) if isinstance(inp, list) else 1.0)

    @routes.hot_route(CLIENT, "/api/embeddings", summary="embed one text (the older endpoint)",
                      openapi_extra=am.doc(am.EmbeddingsRequest, am.EmbeddingsResponse, errors=INFERENCE_ERRORS))
    async def embeddings(req: Inbound, caller: Caller) -> Answer:
        data, raw = await read_inbound_json(req, config.max_body_bytes)
        return await inference.forward("/api/embeddings", "/api/embeddings", data, raw, req, caller,
                                       timeout=config.embedding_timeout, stream_default=False, embedding=True)

    @routes.declare(CLIENT, "POST", "/api/show", summary="a model's details, from a host that has it",
                    openapi_extra=am.doc(am.ShowRequest, am.ShowResponse, errors=(400, 404, 502, 503)))
    async def show(request: Request) -> Response:
        req = AsgiInbound(request.scope, request.receive)
        data, raw = await read_inbound_json(req, config.max_body_bytes)
        return to_asgi(await inference.forward("/api/show", "/api/show", data, raw, req, caller_of(request),
                                               timeout=META_TIMEOUT_S, stream_default=False, inference=False))

    @routes.declare(CLIENT, "HEAD", "/api/version", include_in_schema=False)
    @routes.declare(CLIENT, "GET", "/api/version", summary="the version of the first available host",
                    openapi_extra=am.doc(answer=am.VersionResponse, errors=()))
    async def version() -> Response:
        for host in router.route(None):
            try:
                return json_response(await upstream.get_json(host.address, "/api/version", META_TIMEOUT_S))
            except UpstreamFailure:
                continue
        return json_response({"version": "0.0.0", "sollol": __version__})

    @routes.declare(CLIENT, "HEAD", "/api/tags", include_in_schema=False)
    @routes.declare(CLIENT, "GET", "/api/tags", summary="every host's models, each with the hosts that have it",
                    openapi_extra=am.doc(answer=am.TagsResponse, errors=()))
    async def tags() -> Response:
        merged: dict[str, dict[str, Any]] = {}
        for address, data in await host_answers(registry, upstream, "/api/tags"):
            for m in entries(data, "models"):
                if m.get("name"):
                    entry = merged.setdefault(m["name"], dict(m) | {"hosts": []})
                    entry["hosts"].append(address)
        return json_response({"models": sorted(merged.values(), key=lambda m: m["name"])})

    @routes.declare(CLIENT, "GET", "/api/ps", summary="every loaded model on every host",
                    openapi_extra=am.doc(answer=am.PsResponse, errors=()))
    async def ps() -> Response:
        models = [m | {"host": address} for address, data in await host_answers(registry, upstream, "/api/ps")
                  for m in entries(data, "models")]
        return json_response({"models": models})

    return routes
