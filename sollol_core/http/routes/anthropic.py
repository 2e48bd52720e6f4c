"""Anthropic-compatible /v1/messages. Errors the gateway answers itself take Anthropic's shape (errors.py)."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from ...config import SollolConfig
from .. import openapi as am
from ..access import CLIENT, GatewayRouter
from ..errors import ANTHROPIC
from ..inference import Inference
from ..io import BadRequest, read_json


def anthropic_routes(config: SollolConfig, inference: Inference) -> GatewayRouter:
    routes = GatewayRouter()

    @routes.declare(CLIENT, "POST", "/v1/messages", hot=True, summary="Anthropic Messages, routed by model",
                    openapi_extra=am.doc(am.MessagesRequest, am.MessageObject, api=ANTHROPIC,
                                         stream="text/event-stream", errors=(400, 404, 413, 502, 503)))
    async def v1_messages(request: Request) -> Response:
        data = await read_json(request, config.max_body_bytes)
        if "messages" in data and not isinstance(data["messages"], list):
            raise BadRequest(400, "messages must be a list")
        return await inference.forward("/v1/messages", "/v1/messages", data, request, timeout=config.chat_timeout,
                                       stream_default=False, sse=True, api=ANTHROPIC)

    return routes
