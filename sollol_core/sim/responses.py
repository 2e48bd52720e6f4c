"""OpenAI's Responses API as Ollama (>= 0.14) serves it: POST /v1/responses.

``input`` is a string or a list of items (messages with string content or input_text parts,
function_call, function_call_output); ``instructions`` is the system text. Whole answers are a
``response`` object; streams are SSE events (``event:`` and ``data:`` lines, every event with its
sequence_number): response.created, response.in_progress, response.output_item.added,
response.content_part.added, response.output_text.delta (one per token), response.output_text.done,
response.content_part.done, response.output_item.done, response.completed. With ``tools`` the simulated
model calls a function (function_call item, response.function_call_arguments.delta/done) unless the input
ends with a function_call_output.
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


class _ResponseFrames(Frames):
    stream_headers = SSE

    def __init__(self, node: "NodeState", body: dict, model: str, input_tokens: int, call: Optional[tuple]) -> None:
        n = node.next_id()
        self.ident = f"resp_{n:024x}"
        self.item_id = f"{'fc' if call else 'msg'}_{n:024x}"
        self.body, self.model, self.input_tokens, self.call = body, model, input_tokens, call
        self.created = int(time.time())
        self.seq = 0
        self.text = ""

    def _event(self, kind: str, **fields: Any) -> bytes:
        out = sse(kind, {"type": kind, "sequence_number": self.seq, **fields})
        self.seq += 1
        return out

    def _item(self, status: str, text: Optional[str]) -> dict:
        if self.call:
            call_id, name, arguments = self.call
            return {"type": "function_call", "id": self.item_id, "call_id": call_id, "name": name,
                    "arguments": arguments if text is not None else "", "status": status}
        content = [] if text is None else [self._part(text)]
        return {"type": "message", "id": self.item_id, "status": status, "role": "assistant", "content": content}

    @staticmethod
    def _part(text: str) -> dict:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def _response(self, status: str, text: Optional[str], stats: Optional[Stats]) -> dict:
        body = self.body
        limit = body.get("max_output_tokens")
        incomplete = stats is not None and stats.reason == "length"
        out = {
            "id": self.ident, "object": "response", "created_at": self.created,
            "status": "incomplete" if incomplete else status,
            "completed_at": int(time.time()) if stats is not None else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": limit if isinstance(limit, int) else None,
            "model": self.model,
            "output": [] if text is None else [self._item("incomplete" if incomplete else "completed", text)],
            "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": None,
            "store": False,
            "temperature": body.get("temperature"),
            "text": {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") if isinstance(body.get("tools"), list) else [],
            "top_p": body.get("top_p"),
            "truncation": "disabled",
            "usage": None,
            "user": None,
            "metadata": {},
        }
        if stats is not None:
            out["usage"] = {"input_tokens": stats.prompt_n, "input_tokens_details": {"cached_tokens": stats.cached_n or 0},
                            "output_tokens": stats.eval_n, "output_tokens_details": {"reasoning_tokens": 0},
                            "total_tokens": stats.prompt_n + stats.eval_n}
        return out

    def head(self) -> bytes:
        common = {"output_index": 0, "item_id": self.item_id}
        out = (self._event("response.created", response=self._response("in_progress", None, None))
               + self._event("response.in_progress", response=self._response("in_progress", None, None))
               + self._event("response.output_item.added", output_index=0, item=self._item("in_progress", None)))
        if not self.call:
            out += self._event("response.content_part.added", **common, content_index=0, part=self._part(""))
        return out

    def chunk(self, piece: str) -> bytes:
        self.text += piece
        if self.call:
            return self._event("response.function_call_arguments.delta", output_index=0, item_id=self.item_id,
                               delta=piece)
        return self._event("response.output_text.delta", output_index=0, item_id=self.item_id, content_index=0,
                           delta=piece, logprobs=[])

    def final(self, stats: Stats) -> bytes:
        text = self.call[2] if self.call else self.text
        done = "incomplete" if stats.reason == "length" else "completed"
        if self.call:
            out = self._event("response.function_call_arguments.done", output_index=0, item_id=self.item_id,
                              name=self.call[1], arguments=text)
        else:
            out = (self._event("response.output_text.done", output_index=0, item_id=self.item_id, content_index=0,
                               text=text, logprobs=[])
                   + self._event("response.content_part.done", output_index=0, item_id=self.item_id,
                                 content_index=0, part=self._part(text)))
        out += self._event("response.output_item.done", output_index=0, item=self._item(done, text))
        kind = "response.incomplete" if done == "incomplete" else "response.completed"
        return out + self._event(kind, response=self._response("completed", text, stats))

    def whole(self, text: str, stats: Stats) -> bytes:
        return orjson.dumps(self._response("completed", self.call[2] if self.call else text, stats))

    def error(self, message: str) -> bytes:
        return self._event("error", code="server_error", message=message, param=None)


async def create(node: "NodeState", request: web.Request) -> web.StreamResponse:
    t0 = time.monotonic_ns()
    body = await node.body(request)
    await node.inject()
    model, norm = node.model(body)
    items = body.get("input")
    if items is None or items == "" or items == []:
        raise SimError(400, "input is required")
    turns = render.responses_turns(body.get("instructions"), items)
    prompt = render.render(turns)
    stream = body.get("stream") is True
    tool = None if render.last_is_tool_result(turns) else render.pick_tool(body.get("tools"), body.get("tool_choice"))
    call = None
    if tool is not None:
        name = tool.get("name") or (tool.get("function") or {}).get("name")
        arguments = render.tool_arguments(tool.get("parameters"), render.last_user_text(turns))
        text = orjson.dumps(arguments).decode()
        call = (f"call_{node.next_id():024x}", name, text)
        answer = Answer(render.split_pieces(text, len(node.pieces)), "stop", render.tool_call_text(name, arguments))
    else:
        pieces, reason = node.pieces_for(body.get("max_output_tokens"), False)
        answer = Answer(pieces, reason, "".join(pieces))
    return await serving.serve(node, request, t0, norm, prompt, answer, stream,
                               _ResponseFrames(node, body, model, prompt.tokens, call))


ROUTES: list[Route] = [("POST", "/v1/responses", create, "openai")]
