"""What the inference routes of every API family share: the stream flag, and the Call they hand to the
request path, filed under the client the guard admitted (roles.Caller).

A route parses just enough of the body (the model, whether it streams); the body itself is forwarded byte
for byte. The parsed body travels with the Call, and the request path makes the canonical prompt from it
only where placement can gain from it (the fast lane: request.placement.Placement.uses_prompt).
"""

from __future__ import annotations

from typing import Any, Optional

from ..config import SollolConfig
from ..errors import BadRequest
from ..prompt_cache.canonical import session_key
from ..request.answer import Answer
from ..request.call import HIGH, Call
from ..request.shapes import OLLAMA, ApiFamily
from .inbound import Inbound
from .io import model_of
from .ports import Forwarder
from .roles import Caller

META_TIMEOUT_S = 15.0  # a host's listings, version and model details, and an unload


def stream_flag(data: dict[str, Any], default: bool) -> bool:
    stream = data.get("stream")
    stream = default if stream is None else stream  # Ollama reads null as "not given"
    if not isinstance(stream, bool):
        raise BadRequest(400, "stream must be true or false")
    return stream


class Inference:
    """Builds the Call of an inference request and forwards it."""

    def __init__(self, config: SollolConfig, forwarder: Forwarder) -> None:
        self.config = config
        self.forwarder = forwarder

    async def forward(self, endpoint: str, path: str, data: dict[str, Any], raw: bytes, req: Inbound,
                      caller: Caller, *, timeout: float, stream_default: bool, sse: bool = False,
                      body: Optional[bytes] = None, api: str = OLLAMA, embedding: bool = False, cost: float = 1.0,
                      inference: bool = True, model: Optional[str] = None) -> Answer:
        """Forward the request whose JSON body `data` (raw bytes `raw`) was read (`body` replaces the raw
        body when the route rewrote it), for the client the guard admitted. inference=False: a request
        that takes no slot (model details)."""
        stream = stream_flag(data, stream_default)
        model = model or model_of(data)
        sent = body if body is not None else raw
        # the session names a conversation for the prompt key, which only a prompt that long is given
        # (Placement.uses_prompt)
        prompted = inference and not embedding and self.config.cache.enabled and \
            len(sent) >= self.config.cache.min_prompt_chars
        call = Call(endpoint=endpoint, method="POST", path=path, body=sent,
                    model=model, stream=stream, timeout=timeout, sse=sse, api=ApiFamily(api),
                    data=data if inference else None,
                    session=session_key(path, data, req.headers) if prompted else None,
                    priority=caller.priority if inference else HIGH, client=caller.name, cost=cost,
                    embedding=embedding, gone=req.wait_gone, uses_slot=inference)
        return await self.forwarder.forward(call)

    async def forward_call(self, call: Call) -> Answer:
        """A Call the route built itself (a multipart body, a GET)."""
        return await self.forwarder.forward(call)
