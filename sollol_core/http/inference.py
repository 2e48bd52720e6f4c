"""What the inference routes of every API family share: who is asking, the stream flag, and the Call they
hand to the request path.

A route parses just enough of the body (the model, whether it streams, the canonical prompt when the
prompt cache may use it); the body itself is forwarded byte for byte.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import Request
from starlette.responses import Response

from ..config import SollolConfig
from ..prompt_cache.canonical import prompt_key_async, session_key
from ..request.call import HIGH, Call
from .clients import Client, ClientKeys, ClientRefused
from .errors import OLLAMA
from .io import BadRequest, model_of
from .ports import Forwarder

META_TIMEOUT_S = 15.0  # a host's listings, version and model details, and an unload


def stream_flag(data: dict[str, Any], default: bool) -> bool:
    stream = data.get("stream")
    stream = default if stream is None else stream  # Ollama reads null as "not given"
    if not isinstance(stream, bool):
        raise BadRequest(400, "stream must be true or false")
    return stream


def address_of(request: Request) -> str:
    return request.client.host if request.client else ""


class Inference:
    """Builds the Call of an inference request and forwards it. One per gateway: the client keys keep
    each key's rate across every route."""

    def __init__(self, config: SollolConfig, forwarder: Forwarder, keys: ClientKeys) -> None:
        self.config = config
        self.forwarder = forwarder
        self.keys = keys

    def identify(self, request: Request) -> Client:
        """The client and its priority class; BadRequest (401, 429, 400) when it is refused."""
        try:
            return self.keys.identify(request.headers, address_of(request))
        except ClientRefused as e:
            raise BadRequest(e.status, e.message, e.headers) from None

    async def forward(self, endpoint: str, path: str, data: dict[str, Any], request: Request, *, timeout: float,
                      stream_default: bool, sse: bool = False, body: Optional[bytes] = None, api: str = OLLAMA,
                      embedding: bool = False, cost: float = 1.0, inference: bool = True,
                      model: Optional[str] = None) -> Response:
        """Forward the request whose JSON body `data` was read by io.read_json (`body` replaces the raw
        body when the route rewrote it). inference=False: a request that takes no slot and needs no key
        (model details)."""
        stream = stream_flag(data, stream_default)
        model = model or model_of(data)
        client = self.identify(request) if inference else Client(address_of(request), HIGH)
        prompt = None
        cache = self.config.cache
        if cache.enabled and inference and not embedding:
            prompt = await prompt_key_async(path, data, block_chars=cache.block_chars,
                                            session=session_key(path, data, request.headers))
        call = Call(endpoint=endpoint, method="POST", path=path,
                    body=body if body is not None else request.state.raw_body,
                    model=model, stream=stream, timeout=timeout, sse=sse, api=api, prompt=prompt,
                    priority=client.priority, client=client.name, cost=cost, embedding=embedding,
                    receive=request.receive, uses_slot=inference)
        return await self.forwarder.forward(call)

    async def forward_call(self, call: Call) -> Response:
        """A Call the route built itself (a multipart body, a GET)."""
        return await self.forwarder.forward(call)
