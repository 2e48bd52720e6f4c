"""Anthropic's Messages API as Ollama (>= 0.14) serves it: POST /v1/messages.

Whole answers are a ``message`` object; streams are SSE frames ``event: <type>`` + ``data: <json>``:
message_start, content_block_start, ping, content_block_delta (one per token), content_block_stop,
message_delta (stop_reason; usage: output_tokens, input_tokens, cache_read_input_tokens), message_stop.
With ``tools`` the simulated model calls the first tool (or the one tool_choice names) unless the
conversation ends with a tool_result, which it answers with text: a client can run a whole tool round trip
against a node.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

import orjson
from aiohttp import web

from . import render, serving
from .serving import Answer, Frames
from .wire import SSE, SimError, Stats, sse

if TYPE_CHECKING:
    from .node import NodeState, Route

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_use": "tool_use"}


class _MessageFrames(Frames):
    stream_headers = SSE

    def __init__(self, ident: str, model: str, input_tokens: int, tool: Any) -> None:
        self.ident, self.model, self.input_tokens = ident, model, input_tokens
        self.tool = tool  # (id, name, input) when the answer is a tool call

    def _message(self, content: list, stop_reason: Any, output_tokens: int, stats: Optional[Stats] = None) -> dict:
        return {"id": self.ident, "type": "message", "role": "assistant", "model": self.model, "content": content,
                "stop_reason": stop_reason, "stop_sequence": None,
                "usage": {**self._input(stats), "output_tokens": output_tokens}}

    def _input(self, stats: Optional[Stats]) -> dict:
        """Input usage as Anthropic counts it: input_tokens excludes the part read from the cache."""
        if stats is None or stats.cached_n is None:
            return {"input_tokens": self.input_tokens}
        return {"input_tokens": stats.prompt_n - stats.cached_n, "cache_read_input_tokens": stats.cached_n}

    def _block_start(self) -> dict:
        if self.tool:
            ident, name, _ = self.tool
            return {"type": "tool_use", "id": ident, "name": name, "input": {}}
        return {"type": "text", "text": ""}

    def head(self) -> bytes:
        return (sse("message_start", {"type": "message_start", "message": self._message([], None, 0)})
                + sse("content_block_start", {"type": "content_block_start", "index": 0,
                                              "content_block": self._block_start()})
                + sse("ping", {"type": "ping"}))

    def chunk(self, piece: str) -> bytes:
        delta = ({"type": "input_json_delta", "partial_json": piece} if self.tool
                 else {"type": "text_delta", "text": piece})
        return sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})

    def final(self, stats: Stats) -> bytes:
        return (sse("content_block_stop", {"type": "content_block_stop", "index": 0})
                + sse("message_delta", {"type": "message_delta",
                                        "delta": {"stop_reason": _STOP[stats.reason], "stop_sequence": None},
                                        "usage": {**self._input(stats), "output_tokens": stats.eval_n}})
                + sse("message_stop", {"type": "message_stop"}))

    def whole(self, text: str, stats: Stats) -> bytes:
        if self.tool:
            ident, name, arguments = self.tool
            content = [{"type": "tool_use", "id": ident, "name": name, "input": arguments}]
        else:
            content = [{"type": "text", "text": text}]
        return orjson.dumps(self._message(content, _STOP[stats.reason], stats.eval_n, stats))

    def error(self, message: str) -> bytes:
        return sse("error", {"type": "error", "error": {"type": "api_error", "message": message}})


async def messages(node: "NodeState", request: web.Request) -> web.StreamResponse:
    t0 = time.monotonic_ns()
    body = await node.body(request)
    await node.inject()
    name = body.get("model")
    if not isinstance(name, str) or not name.strip():
        raise SimError(400, "model: Field required")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise SimError(400, "messages: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise SimError(400, "max_tokens: Field required" if max_tokens is None
                       else "max_tokens: Input should be a positive integer")
    norm = node.known(name)
    turns = render.anthropic_turns(body.get("system"), msgs)
    prompt = render.render(turns)
    stream = body.get("stream") is True
    ident = f"msg_{node.next_id():024x}"
    tool = None if render.last_is_tool_result(turns) else render.pick_tool(body.get("tools"), body.get("tool_choice"))
    if tool is not None:
        arguments = render.tool_arguments(tool.get("input_schema"), render.last_user_text(turns))
        call = (f"toolu_{node.next_id():024x}", tool.get("name"), arguments)
        text = orjson.dumps(arguments).decode()
        answer = Answer(render.split_pieces(text, len(node.pieces)), "tool_use",
                        render.tool_call_text(call[1], arguments))
        frames = _MessageFrames(ident, name, prompt.tokens, call)
    else:
        pieces, reason = node.pieces_for(max_tokens, False)
        answer = Answer(pieces, reason, "".join(pieces))
        frames = _MessageFrames(ident, name, prompt.tokens, None)
    return await serving.serve(node, request, t0, norm, prompt, answer, stream, frames)


ROUTES: list[Route] = [("POST", "/v1/messages", messages, "anthropic")]
