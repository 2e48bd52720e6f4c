"""Anthropic-compatible /v1/messages. Errors the gateway answers itself take Anthropic's shape (errors.py)."""

from __future__ import annotations

from ...config import SollolConfig
from ...errors import BadRequest
from ...request.answer import Answer
from .. import openapi as am
from ..access import CLIENT, GatewayRouter
from ..errors import ANTHROPIC
from ..inbound import Inbound
from ..inference import Inference
from ..io import read_inbound_json
from ..roles import Caller


def anthropic_routes(config: SollolConfig, inference: Inference) -> GatewayRouter:
    routes = GatewayRouter(inference.forwarder.reject)

    @routes.hot_route(CLIENT, "/v1/messages", summary="Anthropic Messages, routed by model",
                    openapi_extra=am.doc(am.MessagesRequest, am.MessageObject, api=ANTHROPIC,
                                         stream="text/event-stream", errors=(400, 404, 413, 502, 503)))
    async def v1_messages(req: Inbound, caller: Caller) -> Answer:
        data, raw = await read_inbound_json(req, config.max_body_bytes)
        if "messages" in data and not isinstance(data["messages"], list):
            raise BadRequest(400, "messages must be a list")
        return await inference.forward("/v1/messages", "/v1/messages", data, raw, req, caller,
                                       timeout=config.chat_timeout, stream_default=False, sse=True, api=ANTHROPIC)

    return routes
