"""OpenAI-compatible endpoints as Ollama serves them: /v1/chat/completions, /v1/completions,
/v1/embeddings and /v1/audio/transcriptions (the Responses API is in ``responses``)."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Optional

import orjson
from aiohttp import BodyPartReader, web

from . import render, serving
from .native import texts_of
from .serving import Answer, Frames
from .wire import JSON, SSE, SimError, Stats, json_response, words

if TYPE_CHECKING:
    from .node import NodeState, Route


class _CompletionFrames(Frames):
    stream_headers = SSE

    def __init__(self, ident: str, model: str, chat: bool, include_usage: bool) -> None:
        self.ident, self.model, self.chat, self.include_usage = ident, model, chat, include_usage
        self.obj = "chat.completion" if chat else "text_completion"
        self.created = int(time.time())

    def _choice(self, text: str, finish: Optional[str], delta: bool) -> dict:
        if not self.chat:
            return {"text": text, "index": 0, "finish_reason": finish}
        msg = {"role": "assistant", "content": text}
        return {"index": 0, ("delta" if delta else "message"): msg, "finish_reason": finish}

    def _event(self, choices: list, usage: Optional[dict] = None) -> bytes:
        out: dict = {"id": self.ident, "object": f"{self.obj}.chunk" if self.chat else self.obj,
                     "created": self.created, "model": self.model, "system_fingerprint": "fp_ollama",
                     "choices": choices}
        if usage is not None:
            out["usage"] = usage
        return b"data: " + orjson.dumps(out) + b"\n\n"

    def chunk(self, piece: str) -> bytes:
        return self._event([self._choice(piece, None, True)])

    def final(self, stats: Stats) -> bytes:
        tail = self._event([self._choice("", stats.reason, True)])
        if self.include_usage:
            tail += self._event([], stats.usage())
        return tail + b"data: [DONE]\n\n"

    def whole(self, text: str, stats: Stats) -> bytes:
        return orjson.dumps({"id": self.ident, "object": self.obj, "created": self.created, "model": self.model,
                             "system_fingerprint": "fp_ollama", "choices": [self._choice(text, stats.reason, False)],
                             "usage": stats.usage()})

    def error(self, message: str) -> bytes:
        return b"data: " + orjson.dumps({"error": {"message": message, "type": "api_error", "param": None,
                                                   "code": None}}) + b"\n\n"


async def _v1_text(node: "NodeState", request: web.Request, chat: bool) -> web.StreamResponse:
    t0 = time.monotonic_ns()
    body = await node.body(request)
    await node.inject()
    model, norm = node.model(body)
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise SimError(400, "invalid message format")
        prompt = render.render(render.chat_turns(messages))
    else:
        prompt = render.render(render.generate_turns(None, body.get("prompt")))
    stream = body.get("stream") is True  # OpenAI does not stream unless asked
    fmt = body.get("response_format")
    json_mode = isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    pieces, reason = node.pieces_for(limit, json_mode)
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{node.next_id()}"
    opts = body.get("stream_options")
    include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
    frames = _CompletionFrames(ident, model, chat, include_usage)
    return await serving.serve(node, request, t0, norm, prompt, Answer(pieces, reason, "".join(pieces)), stream,
                               frames)


async def chat_completions(node: "NodeState", request: web.Request) -> web.StreamResponse:
    return await _v1_text(node, request, chat=True)


async def completions(node: "NodeState", request: web.Request) -> web.StreamResponse:
    return await _v1_text(node, request, chat=False)


async def embeddings(node: "NodeState", request: web.Request) -> web.StreamResponse:
    t0 = time.monotonic_ns()
    body = await node.body(request)
    await node.inject()
    model, norm = node.model(body)
    texts = texts_of(body.get("input"), allow_empty=False)
    vectors, _, _ = await serving.embed(node, t0, norm, texts)
    n = sum(max(1, words(t)) for t in texts)
    return json_response({"object": "list",
                          "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
                          "model": model, "usage": {"prompt_tokens": n, "total_tokens": n}})


_READ_CHUNK = 64 * 1024


async def transcriptions(node: "NodeState", request: web.Request) -> web.StreamResponse:
    """multipart/form-data with ``file`` and ``model``: {"text": ...} derived from the file's bytes (its size
    and sha256), so a test knows the answer; ``response_format`` text gives the bare text."""
    if not request.content_type.startswith("multipart/"):
        raise SimError(400, "request Content-Type must be multipart/form-data")
    reader = await request.multipart()
    fields: dict[str, str] = {}
    digest, size, filename = hashlib.sha256(), -1, ""
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):  # a nested multipart: not what Ollama takes either
            raise TypeError("nested multipart part")
        if part.name == "file":
            size, filename = 0, part.filename or ""
            while chunk := await part.read_chunk(_READ_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        elif part.name:
            fields[part.name] = (await part.text())[:1000]
    node.record(request.path, {**fields, "file": {"filename": filename, "size": size}})
    await node.inject()
    if size < 0:
        raise SimError(400, "file is required")
    name = fields.get("model")
    if not name:
        raise SimError(400, "model is required")
    norm = node.known(name)
    await serving.hold(node, norm, max(0.0, node.spec.latency_ms) / 1000.0)
    text = f"[{node.spec.name}] {size} bytes of audio, sha256 {digest.hexdigest()[:16]}"
    if fields.get("response_format") == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    return web.Response(body=orjson.dumps({"text": text}), headers=JSON)


ROUTES: list[Route] = [
    ("POST", "/v1/chat/completions", chat_completions, "openai"),
    ("POST", "/v1/completions", completions, "openai"),
    ("POST", "/v1/embeddings", embeddings, "openai"),
    ("POST", "/v1/audio/transcriptions", transcriptions, "openai"),
]
