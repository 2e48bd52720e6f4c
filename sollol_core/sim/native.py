"""Ollama's own generation and embedding endpoints: /api/chat, /api/generate, /api/embed, /api/embeddings."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from . import render, serving
from .metadata import iso
from .node import runner_of
from .serving import Answer, Frames
from .wire import NL, SimError, Stats, is_zero_keep_alive, json_response, words

if TYPE_CHECKING:
    from .node import NodeState, Route


class _NativeFrames(Frames):
    def __init__(self, model: str, chat: bool, context: list[int]) -> None:
        self.model = model
        self.key = "message" if chat else "response"
        self.chat = chat
        self.context = context

    def _content(self, text: str) -> Any:
        return {"role": "assistant", "content": text} if self.chat else text

    def chunk(self, piece: str) -> bytes:
        return orjson.dumps({"model": self.model, "created_at": iso(time.time()), self.key: self._content(piece),
                             "done": False}, option=NL)

    def whole(self, text: str, stats: Stats) -> bytes:
        out = {"model": self.model, "created_at": iso(time.time()), self.key: self._content(text)}
        out.update(stats.ollama())
        if not self.chat:
            out["context"] = self.context
        return orjson.dumps(out)

    def final(self, stats: Stats) -> bytes:
        return self.whole("", stats) + b"\n"


async def _native(node: "NodeState", request: web.Request, chat: bool) -> web.StreamResponse:
    t0 = time.monotonic_ns()
    body = await node.body(request)
    await node.inject()
    model, norm = node.model(body)
    stream = body.get("stream") is not False  # Ollama streams unless told not to
    if chat:
        messages = body.get("messages")
        if messages is not None and not isinstance(messages, list):
            raise SimError(400, "messages must be a list")
        empty = not messages
        prompt = render.render(render.chat_turns(messages or []))
    else:
        empty = not body.get("prompt") and not body.get("images")
        if body.get("raw") is True:
            raw = body.get("prompt")
            prompt = render.raw(raw if isinstance(raw, str) else "")
        else:
            prompt = render.render(render.generate_turns(body.get("system"), body.get("prompt")))

    key = "message" if chat else "response"
    if empty:  # Ollama's preload / unload call: answered at once, never streamed
        if is_zero_keep_alive(body.get("keep_alive")):
            node.unload(norm)
            reason = "unload"
        else:
            await node.ensure_loaded(norm, runner_of(body.get("options")) if "options" in body else None)
            reason = "load"
        content: Any = {"role": "assistant", "content": ""} if chat else ""
        return json_response({"model": model, "created_at": iso(time.time()), key: content,
                              "done_reason": reason, "done": True})

    options = body.get("options")
    limit = options.get("num_predict") if isinstance(options, dict) else None
    pieces, reason = node.pieces_for(limit, bool(body.get("format")))
    context = list(range(1, 1 + min(64, prompt.tokens + len(pieces))))
    answer = Answer(pieces, reason, "".join(pieces))
    return await serving.serve(node, request, t0, norm, prompt, answer, stream, _NativeFrames(model, chat, context),
                               options)


async def chat(node: "NodeState", request: web.Request) -> web.StreamResponse:
    return await _native(node, request, chat=True)


async def generate(node: "NodeState", request: web.Request) -> web.StreamResponse:
    return await _native(node, request, chat=False)


def texts_of(value: Any, allow_empty: bool) -> list[str]:
    """An embedding input: a string or a list of strings."""
    if value is None:
        texts: list[str] = []
    elif isinstance(value, str):
        texts = [value] if value else []
    elif isinstance(value, list) and all(isinstance(t, str) for t in value):
        texts = value
    else:
        raise SimError(400, "invalid input type")
    if not texts and not allow_empty:
        raise SimError(400, "invalid input")
    return texts


async def embed(node: "NodeState", request: web.Request) -> web.StreamResponse:
    t0 = time.monotonic_ns()
    body = await node.body(request)
    await node.inject()
    model, norm = node.model(body)
    texts = texts_of(body.get("input"), allow_empty=True)
    if not texts:
        return json_response({"model": model, "embeddings": []})
    vectors, total, load = await serving.embed(node, t0, norm, texts, body.get("options"))
    return json_response({"model": model, "embeddings": vectors, "total_duration": total, "load_duration": load,
                          "prompt_eval_count": sum(max(1, words(t)) for t in texts)})


async def embeddings(node: "NodeState", request: web.Request) -> web.StreamResponse:
    t0 = time.monotonic_ns()
    body = await node.body(request)
    await node.inject()
    _, norm = node.model(body)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return json_response({"embedding": []})
    vectors, _, _ = await serving.embed(node, t0, norm, [prompt], body.get("options"))
    return json_response({"embedding": vectors[0]})


ROUTES: list[Route] = [
    ("POST", "/api/chat", chat, "ollama"),
    ("POST", "/api/generate", generate, "ollama"),
    ("POST", "/api/embed", embed, "ollama"),
    ("POST", "/api/embeddings", embeddings, "ollama"),
]
