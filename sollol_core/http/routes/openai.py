"""OpenAI-compatible /v1: chat completions, completions, embeddings, Responses, audio transcriptions, and the
model list merged over every host. Errors the gateway answers itself take OpenAI's shape (errors.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.responses import Response

from ...cluster.hosts import HostRegistry
from ...config import SollolConfig
from ...errors import BadRequest
from ...request.answer import Answer
from ...request.call import Call
from .. import openapi as am
from ..access import CLIENT, GatewayRouter
from ..answers import to_asgi
from ..errors import OPENAI
from ..inbound import Inbound
from ..inference import META_TIMEOUT_S, Inference
from ..io import entries, json_response, multipart_fields, read_inbound_body, read_inbound_json
from ..listings import host_answers
from ..ports import Upstream
from ..roles import Caller

INFERENCE_ERRORS = (400, 404, 413, 502, 503)


def openai_routes(config: SollolConfig, inference: Inference, registry: HostRegistry,
                  upstream: Upstream) -> GatewayRouter:
    routes = GatewayRouter(inference.forwarder.reject)

    @routes.hot_route(CLIENT, "/v1/chat/completions",
                    summary="OpenAI chat completions, routed by model",
                    openapi_extra=am.doc(am.ChatCompletionRequest, am.ChatCompletion, api=OPENAI,
                                         stream="text/event-stream", errors=INFERENCE_ERRORS))
    async def v1_chat(req: Inbound, caller: Caller) -> Answer:
        data, raw = await read_inbound_json(req, config.max_body_bytes)
        return await inference.forward("/v1/chat/completions", "/v1/chat/completions", data, raw, req, caller,
                                       timeout=config.chat_timeout, stream_default=False, sse=True, api=OPENAI)

    @routes.hot_route(CLIENT, "/v1/completions", summary="OpenAI completions, routed by model",
                    openapi_extra=am.doc(am.CompletionRequest, am.Completion, api=OPENAI, stream="text/event-stream",
                                         errors=INFERENCE_ERRORS))
    async def v1_completions(req: Inbound, caller: Caller) -> Answer:
        data, raw = await read_inbound_json(req, config.max_body_bytes)
        return await inference.forward("/v1/completions", "/v1/completions", data, raw, req, caller,
                                       timeout=config.chat_timeout, stream_default=False, sse=True, api=OPENAI)

    @routes.hot_route(CLIENT, "/v1/embeddings", summary="OpenAI embeddings, routed by model",
                    openapi_extra=am.doc(am.EmbeddingRequest, am.EmbeddingList, api=OPENAI,
                                         errors=INFERENCE_ERRORS))
    async def v1_embeddings(req: Inbound, caller: Caller) -> Answer:
        data, raw = await read_inbound_json(req, config.max_body_bytes)
        inp = data.get("input")
        return await inference.forward("/v1/embeddings", "/v1/embeddings", data, raw, req, caller,
                                       timeout=config.embedding_timeout, stream_default=False, api=OPENAI,
                                       embedding=True, cost=float(len(inp)) if isinstance(inp, list) else 1.0)

    @routes.declare(CLIENT, "GET", "/v1/models", summary="every host's models (OpenAI)",
                    openapi_extra=am.doc(answer=am.ModelList, api=OPENAI, errors=()))
    async def v1_models() -> Response:
        merged: dict[str, dict[str, Any]] = {}
        for _, data in await host_answers(registry, upstream, "/v1/models"):
            for m in entries(data, "data"):
                if m.get("id"):
                    merged.setdefault(m["id"], m)
        return json_response({"object": "list", "data": sorted(merged.values(), key=lambda x: x["id"])})

    @routes.declare(CLIENT, "GET", "/v1/models/{model:path}", summary="one model (OpenAI), from a host that has it",
                    openapi_extra=am.doc(answer=am.ModelObject, api=OPENAI, errors=(404, 502, 503)))
    async def v1_model(model: str) -> Response:
        call = Call(endpoint="/v1/models/{model}", method="GET", path="/v1/models/" + quote(model, safe=":@/"),
                    body=None, model=model, stream=False, timeout=META_TIMEOUT_S, api=OPENAI, uses_slot=False)
        return to_asgi(await inference.forward_call(call))

    @routes.hot_route(CLIENT, "/v1/responses", summary="OpenAI Responses, routed by model",
                    openapi_extra=am.doc(am.ResponsesRequest, am.ResponseObject, api=OPENAI,
                                         stream="text/event-stream", errors=INFERENCE_ERRORS))
    async def v1_responses(req: Inbound, caller: Caller) -> Answer:
        data, raw = await read_inbound_json(req, config.max_body_bytes)
        return await inference.forward("/v1/responses", "/v1/responses", data, raw, req, caller,
                                       timeout=config.chat_timeout, stream_default=False, sse=True, api=OPENAI)

    @routes.hot_route(CLIENT, "/v1/audio/transcriptions", body="any",
                    summary="OpenAI audio transcription, routed by model",
                    openapi_extra=am.doc(am.TranscriptionForm, am.Transcription, api=OPENAI,
                                         request_media="multipart/form-data", stream="text/event-stream",
                                         errors=INFERENCE_ERRORS))
    async def v1_transcriptions(req: Inbound, caller: Caller) -> Answer:
        body = await read_inbound_body(req, config.max_body_bytes)
        content_type = req.headers.get("content-type", "")
        fields = multipart_fields(body, content_type, ("model", "stream"))
        model = fields.get("model", "").strip()
        if not model:
            raise BadRequest(400, "model is required (a form field)")
        stream = fields.get("stream", "false").strip().lower()
        if stream not in ("true", "false"):
            raise BadRequest(400, "stream must be true or false")
        call = Call(endpoint="/v1/audio/transcriptions", method="POST", path="/v1/audio/transcriptions", body=body,
                    model=model, stream=stream == "true", timeout=config.chat_timeout, sse=True, api=OPENAI,
                    content_type=content_type, priority=caller.priority, client=caller.name, gone=req.wait_gone)
        return await inference.forward_call(call)

    return routes
