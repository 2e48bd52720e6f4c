"""Simulated Ollama servers: real HTTP servers on 127.0.0.1 that speak the Ollama API.

Used by ``--demo`` (four nodes of different speeds), by tests (failure injection: errors,
hangs, broken streams, killed and revived nodes) and by benchmarks, so they are lean: no
access log, cached bytes for the static answers, and no work per request beyond what the
answer needs.

Timing model: a node has ``capacity`` slots. Chat, generate and embed requests wait for a free
slot (like Ollama's queue with OLLAMA_NUM_PARALLEL) and hold it for their whole service time,
streaming included, so latency under load grows like a real server's. A client that goes away
frees its slot (the handler is cancelled), as Ollama stops generating for a closed connection.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, Awaitable, Callable, NamedTuple, Optional

import orjson
from aiohttp import web

__all__ = ["SimNodeSpec", "SimNode", "SimCluster", "sim_embedding", "demo_specs", "main"]

_JSON = {"Content-Type": "application/json; charset=utf-8"}
_NDJSON = {"Content-Type": "application/x-ndjson"}
_SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_MODIFIED_AT = "2024-12-17T10:21:07.123456789Z"
_CREATED = 1734430867  # _MODIFIED_AT as unix time (/v1/models "created")
_RECEIVED_MAX = 1000
_NL = orjson.OPT_APPEND_NEWLINE


@dataclass
class SimNodeSpec:
    """How one simulated node behaves. Times in milliseconds."""

    name: str = "sim"
    latency_ms: float = 50.0  # service time once a slot is held (streaming: time to first chunk)
    capacity: int = 4  # concurrent slots; further requests wait for one
    failure_rate: float = 0.0  # probability of HTTP 500 {"error": "simulated failure"}
    tokens_per_s: float = 200.0  # streaming pace after the first chunk (<= 0: no delay)
    tokens: int = 8  # tokens in a chat/generate answer
    models: list[str] = field(default_factory=lambda: ["llama3.2:latest", "nomic-embed-text:latest"])
    loaded: Optional[list[str]] = None  # what /api/ps lists; None = same as models
    embed_dim: int = 16
    embed_ms_per_input: float = 0.0  # extra embed service time per input
    seed: int = 0  # seeds the failure RNG, so runs are reproducible
    port: int = 0  # 0 = ephemeral


@lru_cache(maxsize=8192)
def _embedding(text: str, dim: int) -> tuple[float, ...]:
    seed = hashlib.sha256(text.encode("utf-8")).digest()
    raw = bytearray()
    block = 0
    while len(raw) < dim:
        raw += hashlib.sha256(seed + block.to_bytes(4, "big")).digest()
        block += 1
    values = [(b - 127.5) / 127.5 for b in raw[:dim]]  # never 0, so the norm is never 0
    norm = math.sqrt(sum(v * v for v in values))
    return tuple(v / norm for v in values)


def sim_embedding(text: str, dim: int = 16) -> list[float]:
    """Deterministic unit-length vector from sha256 of the text (tests compare exact values)."""
    return list(_embedding(text, dim))


def _norm(name: str) -> str:
    """Ollama's name rule: a name without a tag means ``name:latest``."""
    name = name.strip()
    return name if not name or ":" in name.rsplit("/", 1)[-1] else name + ":latest"


# family, default parameter size, quantization; first matching prefix wins
_FAMILIES = (
    ("nomic-embed", "nomic-bert", "137M", "F16"),
    ("all-minilm", "bert", "23M", "F16"),
    ("mxbai-embed", "bert", "334M", "F16"),
    ("llama", "llama", "3.2B", "Q4_K_M"),
    ("qwen", "qwen2", "7.6B", "Q4_K_M"),
    ("gemma3", "gemma3", "4.3B", "Q4_K_M"),
    ("gemma", "gemma", "9.2B", "Q4_K_M"),
    ("mistral", "llama", "7.2B", "Q4_K_M"),
    ("phi", "phi3", "3.8B", "Q4_K_M"),
)
_SIZE_RE = re.compile(r"(?:^|[-:_])(\d+(?:\.\d+)?)([bm])(?:$|[-_])")


class _Meta(NamedTuple):
    digest: str
    size: int
    params: int
    family: str
    details: dict


@lru_cache(maxsize=1024)
def _meta(name: str) -> _Meta:
    """Plausible, deterministic metadata for a model name (family, size, digest)."""
    base, _, tag = name.rpartition("/")[2].partition(":")
    family, psize, quant = re.match(r"[a-z]*", base).group() or "llama", "1B", "Q4_K_M"  # type: ignore[union-attr]
    for prefix, fam, default_size, q in _FAMILIES:
        if base.startswith(prefix):
            family, psize, quant = fam, default_size, q
            break
    m = _SIZE_RE.search(tag) or _SIZE_RE.search(base)
    if m:
        psize = m.group(1) + m.group(2).upper()
    params = int(float(psize[:-1]) * (1e9 if psize.endswith("B") else 1e6))
    size = params * 2 if quant == "F16" else int(params * 0.6)
    details = {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": psize,
        "quantization_level": quant,
    }
    return _Meta(hashlib.sha256(name.encode()).hexdigest(), size, params, family, details)


def _iso(t: float) -> str:
    """RFC 3339 with nanoseconds, as Go (and so Ollama) writes times."""
    s = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{int((t - s) * 1e9):09d}Z"


def _words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


class _SimError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Abort(Exception):
    """Drop the connection without finishing the answer."""


class _Stats(NamedTuple):
    total_ns: int
    load_ns: int
    prompt_n: int
    prompt_ns: int
    eval_n: int
    eval_ns: int
    reason: str

    def ollama(self) -> dict:
        return {
            "done_reason": self.reason,
            "done": True,
            "total_duration": self.total_ns,
            "load_duration": self.load_ns,
            "prompt_eval_count": self.prompt_n,
            "prompt_eval_duration": self.prompt_ns,
            "eval_count": self.eval_n,
            "eval_duration": self.eval_ns,
        }

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_n, "completion_tokens": self.eval_n,
                "total_tokens": self.prompt_n + self.eval_n}


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, headers=_JSON)


def _is_zero_keep_alive(value: Any) -> bool:
    return value in (0, "0") or (isinstance(value, str) and re.fullmatch(r"0+(\.0*)?[smh]?", value) is not None)


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SimNode:
    """One simulated Ollama server. ``start``/``stop`` run in the caller's event loop."""

    def __init__(self, spec: SimNodeSpec) -> None:
        self.spec = spec
        self.address = ""
        self.received: list[tuple[str, dict]] = []
        self.requests_served = 0
        self.in_flight = 0  # requests being handled now (queued or in service)
        self.hang = False
        self.fail_mid_stream = False
        self.failure_rate = spec.failure_rate
        self.models: list[str] = [_norm(m) for m in spec.models]
        self.loaded: list[str] = [_norm(m) for m in (spec.models if spec.loaded is None else spec.loaded)]
        self._rng = random.Random(spec.seed)
        self._port = spec.port
        self._runner: Optional[web.AppRunner] = None
        self._slots: Optional[asyncio.Semaphore] = None
        self._ids = 0
        self._tags_cache: tuple[tuple[str, ...], bytes, bytes] = ((), b"", b"")
        self._version = orjson.dumps({"version": "0.5.4-sim"})
        n = max(0, spec.tokens)
        self._pieces = tuple(f"[{spec.name}] tok0" if i == 0 else f" tok{i}" for i in range(n))
        self._json_piece = json.dumps({"node": spec.name})  # the content answered for a "format" request

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._runner is not None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 (the same port again after a stop)."""
        if self._runner is not None:
            return
        self._slots = asyncio.Semaphore(max(1, self.spec.capacity))
        app = web.Application(client_max_size=256 * 1024 * 1024)
        self._add_routes(app.router)
        # handler_cancellation: a client that goes away cancels its handler and frees its slot
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]
        self.address = f"127.0.0.1:{self._port}"

    async def stop(self) -> None:
        """Close the listener and every open connection, like a killed process."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()
        server = runner.server
        if server is not None:
            for conn in server.connections:
                if conn.transport is not None:
                    conn.transport.abort()
        await runner.cleanup()

    # -- plumbing --------------------------------------------------------------------------

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        get, post = router.add_get, router.add_post
        get("/", self._wrap(self._root))
        get("/api/version", self._wrap(self._version_h))
        get("/api/tags", self._wrap(self._tags))
        get("/api/ps", self._wrap(self._ps))
        post("/api/show", self._wrap(self._show))
        post("/api/chat", self._wrap(self._chat))
        post("/api/generate", self._wrap(self._generate))
        post("/api/embed", self._wrap(self._embed))
        post("/api/embeddings", self._wrap(self._embeddings))
        post("/api/pull", self._wrap(self._pull))
        post("/api/push", self._wrap(self._push))
        post("/api/create", self._wrap(self._create))
        post("/api/copy", self._wrap(self._copy))
        router.add_delete("/api/delete", self._wrap(self._delete))
        post("/v1/chat/completions", self._wrap(self._v1_chat, openai=True))
        post("/v1/completions", self._wrap(self._v1_completions, openai=True))
        post("/v1/embeddings", self._wrap(self._v1_embeddings, openai=True))
        get("/v1/models", self._wrap(self._v1_models, openai=True))
        get("/v1/models/{model:.+}", self._wrap(self._v1_model, openai=True))

    def _wrap(self, fn: _Handler, openai: bool = False) -> _Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            self.in_flight += 1
            try:
                try:
                    resp = await fn(request)
                except _SimError as exc:
                    resp = self._error(exc.status, exc.message, openai)
                self.requests_served += 1
                return resp
            except (_Abort, ConnectionError):
                # close() still flushes what was written (the first chunk); the response
                # returned here can then no longer be sent, which aiohttp handles quietly
                if request.transport is not None:
                    request.transport.close()
                return web.Response()
            finally:
                self.in_flight -= 1

        return handler

    @staticmethod
    def _error(status: int, message: str, openai: bool) -> web.Response:
        if not openai:
            return _json({"error": message}, status)
        etype = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        return _json({"error": {"message": message, "type": etype, "param": None, "code": None}}, status)

    async def _body(self, request: web.Request) -> dict:
        raw = await request.read()
        if not raw:
            raise _SimError(400, "missing request body")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _SimError(400, f"invalid JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise _SimError(400, "request body must be a JSON object")
        received = self.received
        received.append((request.path, body))
        if len(received) > _RECEIVED_MAX:
            del received[: len(received) - _RECEIVED_MAX]
        return body

    async def _inject(self) -> None:
        """Failure injection for the endpoints that do work (not version/tags/ps)."""
        if self.hang:
            await asyncio.get_running_loop().create_future()  # until cancelled: client gone or stop()
        rate = self.failure_rate
        if rate > 0 and self._rng.random() < rate:
            raise _SimError(500, "simulated failure")

    def _model(self, body: dict, legacy_name: bool = False) -> tuple[str, str]:
        """(name as requested, normalised name); 400 when absent, 404 when not on this node."""
        name = body.get("model") or (body.get("name") if legacy_name else None)
        if not isinstance(name, str) or not name.strip():
            raise _SimError(400, "model is required")
        norm = _norm(name)
        if norm not in self.models:
            raise _SimError(404, f"model '{name}' not found")
        return name, norm

    def _mark_loaded(self, norm: str) -> None:
        if norm not in self.loaded:
            self.loaded.append(norm)

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _pieces_for(self, limit: Any, json_mode: bool) -> tuple[tuple[str, ...], str]:
        if json_mode:
            return (self._json_piece,), "stop"
        pieces = self._pieces
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < len(pieces):
            return pieces[:limit], "length"
        return pieces, "stop"

    async def _answer(
        self,
        request: web.Request,
        t0: int,
        pieces: tuple[str, ...],
        prompt_n: int,
        reason: str,
        stream: bool,
        chunk: Callable[[str], bytes],
        final: Callable[[_Stats], bytes],
        whole: Callable[[str, _Stats], bytes],
        headers: dict,
    ) -> web.StreamResponse:
        """Serve a token answer under one slot: streamed chunk by chunk, or whole at the end."""
        spec = self.spec
        interval = 1.0 / spec.tokens_per_s if spec.tokens_per_s > 0 else 0.0
        latency = max(0.0, spec.latency_ms) / 1000.0
        prompt_ns = int(latency * 1e9)
        eval_ns = max(1, int(len(pieces) * interval * 1e9))
        assert self._slots is not None
        async with self._slots:
            waited = time.monotonic_ns() - t0
            if not stream:
                await asyncio.sleep(latency + len(pieces) * interval)
                if self.fail_mid_stream:
                    raise _Abort
                stats = _Stats(time.monotonic_ns() - t0, waited, prompt_n, prompt_ns, len(pieces), eval_ns, reason)
                return web.Response(body=whole("".join(pieces), stats), headers=headers)
            loop = asyncio.get_running_loop()
            if latency > 0:
                await asyncio.sleep(latency)
            resp = web.StreamResponse(headers=headers)
            await resp.prepare(request)  # headers go out with the first chunk, as with Ollama
            first = loop.time()
            for i, piece in enumerate(pieces):
                if i and interval:
                    delay = first + i * interval - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await resp.write(chunk(piece))
                if self.fail_mid_stream:
                    raise _Abort
            stats = _Stats(time.monotonic_ns() - t0, waited, prompt_n, prompt_ns, len(pieces), eval_ns, reason)
            await resp.write(final(stats))
            await resp.write_eof()
            return resp

    # -- static answers --------------------------------------------------------------------

    async def _root(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="Ollama is running")

    async def _version_h(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._version, headers=_JSON)

    def _listings(self) -> tuple[bytes, bytes]:
        """(/api/tags, /v1/models) bytes, rebuilt only when the model list changed."""
        key = tuple(self.models)
        if key != self._tags_cache[0]:
            tags = []
            for name in key:
                m = _meta(name)
                tags.append({"name": name, "model": name, "modified_at": _MODIFIED_AT, "size": m.size,
                             "digest": m.digest, "details": m.details})
            v1 = [{"id": name, "object": "model", "created": _CREATED, "owned_by": "library"} for name in key]
            self._tags_cache = (key, orjson.dumps({"models": tags}), orjson.dumps({"object": "list", "data": v1}))
        return self._tags_cache[1], self._tags_cache[2]

    async def _tags(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._listings()[0], headers=_JSON)

    async def _v1_models(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._listings()[1], headers=_JSON)

    async def _v1_model(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["model"]
        if _norm(name) not in self.models:
            raise _SimError(404, f"model '{name}' not found")
        return _json({"id": name, "object": "model", "created": _CREATED, "owned_by": "library"})

    async def _ps(self, request: web.Request) -> web.StreamResponse:
        expires = _iso(time.time() + 300)
        out = []
        for name in self.loaded:
            m = _meta(name)
            out.append({"name": name, "model": name, "size": m.size, "digest": m.digest, "details": m.details,
                        "expires_at": expires, "size_vram": m.size})
        return _json({"models": out})

    async def _show(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        await self._inject()
        _, norm = self._model(body, legacy_name=True)
        if self.fail_mid_stream:
            raise _Abort
        m = _meta(norm)
        embedding_length = self.spec.embed_dim if m.details["quantization_level"] == "F16" else 3072
        return _json({
            "license": "simulated model",
            "modelfile": f'# Modelfile generated by "ollama show"\nFROM {norm}\nTEMPLATE "{{{{ .Prompt }}}}"\n',
            "parameters": 'stop "<|eot_id|>"',
            "template": "{{ .Prompt }}",
            "details": m.details,
            "model_info": {
                "general.architecture": m.family,
                "general.parameter_count": m.params,
                f"{m.family}.context_length": 131072,
                f"{m.family}.embedding_length": embedding_length,
            },
            "modified_at": _MODIFIED_AT,
        })

    # -- native generation -----------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._native(request, chat=True)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        return await self._native(request, chat=False)

    async def _native(self, request: web.Request, chat: bool) -> web.StreamResponse:
        t0 = time.monotonic_ns()
        body = await self._body(request)
        await self._inject()
        model, norm = self._model(body)
        stream = body.get("stream") is not False  # Ollama streams unless told not to
        if chat:
            messages = body.get("messages")
            if messages is not None and not isinstance(messages, list):
                raise _SimError(400, "messages must be a list")
            empty = not messages
            prompt_n = sum(_words(m.get("content")) for m in messages or () if isinstance(m, dict))
        else:
            empty = not body.get("prompt") and not body.get("images")
            prompt_n = _words(body.get("prompt")) + _words(body.get("system"))

        key = "message" if chat else "response"

        def content(text: str) -> Any:
            return {"role": "assistant", "content": text} if chat else text

        if empty:  # Ollama's preload / unload call: answered at once, never streamed
            if _is_zero_keep_alive(body.get("keep_alive")):
                if norm in self.loaded:
                    self.loaded.remove(norm)
                reason = "unload"
            else:
                self._mark_loaded(norm)
                reason = "load"
            return _json({"model": model, "created_at": _iso(time.time()), key: content(""),
                          "done_reason": reason, "done": True})

        self._mark_loaded(norm)
        options = body.get("options")
        limit = options.get("num_predict") if isinstance(options, dict) else None
        pieces, reason = self._pieces_for(limit, bool(body.get("format")))
        context = list(range(1, 1 + min(64, prompt_n + len(pieces))))

        def chunk(piece: str) -> bytes:
            return orjson.dumps({"model": model, "created_at": _iso(time.time()), key: content(piece),
                                 "done": False}, option=_NL)

        def whole(text: str, stats: _Stats) -> bytes:
            out = {"model": model, "created_at": _iso(time.time()), key: content(text)}
            out.update(stats.ollama())
            if not chat:
                out["context"] = context
            return orjson.dumps(out)

        def final(stats: _Stats) -> bytes:
            return whole("", stats) + b"\n"

        return await self._answer(request, t0, pieces, max(1, prompt_n), reason, stream, chunk, final, whole,
                                  _NDJSON if stream else _JSON)

    # -- embeddings ------------------------------------------------------------------------

    async def _embed_vectors(self, t0: int, texts: list[str]) -> tuple[list[list[float]], int, int]:
        """Vectors for texts under one slot; returns (vectors, total_ns, load_ns)."""
        spec = self.spec
        assert self._slots is not None
        async with self._slots:
            started = time.monotonic()
            waited = time.monotonic_ns() - t0
            delay = (max(0.0, spec.latency_ms) + len(texts) * max(0.0, spec.embed_ms_per_input)) / 1000.0
            dim = spec.embed_dim
            vectors = [list(_embedding(t, dim)) for t in texts]  # computed within the service time, not on top
            await asyncio.sleep(max(0.0, delay - (time.monotonic() - started)))
            if self.fail_mid_stream:
                raise _Abort
            return vectors, time.monotonic_ns() - t0, waited

    @staticmethod
    def _texts(value: Any, allow_empty: bool) -> list[str]:
        if value is None:
            texts: list[str] = []
        elif isinstance(value, str):
            texts = [value] if value else []
        elif isinstance(value, list) and all(isinstance(t, str) for t in value):
            texts = value
        else:
            raise _SimError(400, "invalid input type")
        if not texts and not allow_empty:
            raise _SimError(400, "invalid input")
        return texts

    async def _embed(self, request: web.Request) -> web.StreamResponse:
        t0 = time.monotonic_ns()
        body = await self._body(request)
        await self._inject()
        model, norm = self._model(body)
        texts = self._texts(body.get("input"), allow_empty=True)
        if not texts:
            return _json({"model": model, "embeddings": []})
        self._mark_loaded(norm)
        vectors, total, load = await self._embed_vectors(t0, texts)
        return _json({"model": model, "embeddings": vectors, "total_duration": total, "load_duration": load,
                      "prompt_eval_count": sum(max(1, _words(t)) for t in texts)})

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        t0 = time.monotonic_ns()
        body = await self._body(request)
        await self._inject()
        _, norm = self._model(body)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return _json({"embedding": []})
        self._mark_loaded(norm)
        vectors, _, _ = await self._embed_vectors(t0, [prompt])
        return _json({"embedding": vectors[0]})

    # -- model management ------------------------------------------------------------------

    @staticmethod
    def _status_answer(statuses: list[dict], stream: bool) -> web.StreamResponse:
        if not stream:
            return _json({"status": "success"})
        return web.Response(body=b"".join(orjson.dumps(s, option=_NL) for s in statuses), headers=_NDJSON)

    def _name(self, body: dict) -> str:
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _SimError(400, "model is required")
        return _norm(name)

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        norm = self._name(body)
        m = _meta(norm)
        if norm not in self.models:
            self.models.append(norm)
        layer = {"status": f"pulling {m.digest[:12]}", "digest": f"sha256:{m.digest}", "total": m.size,
                 "completed": m.size}
        statuses = [{"status": "pulling manifest"}, layer, {"status": "verifying sha256 digest"},
                    {"status": "writing manifest"}, {"status": "success"}]
        return self._status_answer(statuses, body.get("stream") is not False)

    async def _push(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        _, norm = self._model(body, legacy_name=True)
        m = _meta(norm)
        statuses = [{"status": "retrieving manifest"},
                    {"status": "starting upload", "digest": f"sha256:{m.digest}", "total": m.size},
                    {"status": "pushing manifest"}, {"status": "success"}]
        return self._status_answer(statuses, body.get("stream") is not False)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        norm = self._name(body)
        source = body.get("from")
        if isinstance(source, str) and source and _norm(source) not in self.models:
            raise _SimError(404, f"model '{source}' not found")
        if norm not in self.models:
            self.models.append(norm)
        statuses = [{"status": f"using existing layer sha256:{_meta(norm).digest}"},
                    {"status": "writing manifest"}, {"status": "success"}]
        return self._status_answer(statuses, body.get("stream") is not False)

    async def _copy(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        source, dest = body.get("source"), body.get("destination")
        if not isinstance(source, str) or not isinstance(dest, str) or not source or not dest:
            raise _SimError(400, "source and destination are required")
        if _norm(source) not in self.models:
            raise _SimError(404, f"model '{source}' not found")
        if _norm(dest) not in self.models:
            self.models.append(_norm(dest))
        return web.Response()

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        _, norm = self._model(body, legacy_name=True)
        self.models.remove(norm)
        if norm in self.loaded:
            self.loaded.remove(norm)
        return web.Response()

    # -- OpenAI-compatible -----------------------------------------------------------------

    async def _v1_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._v1_text(request, chat=True)

    async def _v1_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._v1_text(request, chat=False)

    async def _v1_text(self, request: web.Request, chat: bool) -> web.StreamResponse:
        t0 = time.monotonic_ns()
        body = await self._body(request)
        await self._inject()
        model, norm = self._model(body)
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _SimError(400, "invalid message format")
            prompt_n = sum(_words(m.get("content")) for m in messages if isinstance(m, dict))
        else:
            prompt_n = _words(body.get("prompt"))
        self._mark_loaded(norm)
        stream = body.get("stream") is True  # OpenAI does not stream unless asked
        fmt = body.get("response_format")
        json_mode = isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")
        pieces, reason = self._pieces_for(body.get("max_tokens"), json_mode)
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{self._next_id()}"
        obj = "chat.completion" if chat else "text_completion"
        created = int(time.time())
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and opts.get("include_usage") is True

        def choice(text: str, finish: Optional[str], delta: bool) -> dict:
            if not chat:
                return {"text": text, "index": 0, "finish_reason": finish}
            msg = {"role": "assistant", "content": text}
            return {"index": 0, ("delta" if delta else "message"): msg, "finish_reason": finish}

        def event(choices: list, usage: Optional[dict] = None) -> bytes:
            out: dict = {"id": ident, "object": f"{obj}.chunk" if chat else obj, "created": created,
                         "model": model, "system_fingerprint": "fp_ollama", "choices": choices}
            if usage is not None:
                out["usage"] = usage
            return b"data: " + orjson.dumps(out) + b"\n\n"

        def chunk(piece: str) -> bytes:
            return event([choice(piece, None, True)])

        def final(stats: _Stats) -> bytes:
            tail = event([choice("", stats.reason, True)])
            if include_usage:
                tail += event([], stats.usage())
            return tail + b"data: [DONE]\n\n"

        def whole(text: str, stats: _Stats) -> bytes:
            return orjson.dumps({"id": ident, "object": obj, "created": created, "model": model,
                                 "system_fingerprint": "fp_ollama", "choices": [choice(text, stats.reason, False)],
                                 "usage": stats.usage()})

        return await self._answer(request, t0, pieces, max(1, prompt_n), reason, stream, chunk, final, whole,
                                  _SSE if stream else _JSON)

    async def _v1_embeddings(self, request: web.Request) -> web.StreamResponse:
        t0 = time.monotonic_ns()
        body = await self._body(request)
        await self._inject()
        model, norm = self._model(body)
        texts = self._texts(body.get("input"), allow_empty=False)
        self._mark_loaded(norm)
        vectors, _, _ = await self._embed_vectors(t0, texts)
        n = sum(max(1, _words(t)) for t in texts)
        return _json({"object": "list",
                      "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
                      "model": model, "usage": {"prompt_tokens": n, "total_tokens": n}})


class SimCluster:
    """Runs SimNodes in a background thread with its own asyncio loop (for tests, --demo, benchmarks).

    The nodes' attributes (``hang``, ``failure_rate``, ``fail_mid_stream``) may be set from any
    thread; ``kill``/``revive`` hop into the cluster's loop and wait for the result.
    """

    _TIMEOUT = 15.0

    def __init__(self, specs: list[SimNodeSpec]) -> None:
        self.nodes = [SimNode(s) for s in specs]
        self.addresses: list[str] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=2.0))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def _call(self, coro: Awaitable[Any]) -> Any:
        if self._loop is None:
            raise RuntimeError("SimCluster is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._TIMEOUT)  # type: ignore[arg-type]

    def start(self) -> "SimCluster":
        """Start the loop thread and every node; blocks until all listen."""
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop,), name="sollol-sim", daemon=True)
        self._thread.start()

        async def start_all() -> None:
            await asyncio.gather(*(n.start() for n in self.nodes))

        try:
            self._call(start_all())
        except BaseException:
            self.stop()
            raise
        self.addresses = [n.address for n in self.nodes]
        return self

    def stop(self) -> None:
        """Stop every node and the thread. Idempotent; bounded in time."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def stop_all() -> None:
            await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)

        try:
            if thread.is_alive():
                asyncio.run_coroutine_threadsafe(stop_all(), loop).result(5.0)
        except Exception:
            pass
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5.0)
        self._loop = self._thread = None

    def kill(self, index: int) -> None:
        """Stop one node now: its port refuses connections afterwards."""
        self._call(self.nodes[index].stop())

    def revive(self, index: int) -> None:
        """Start a killed node again on the same port."""
        self._call(self.nodes[index].start())

    def __enter__(self) -> "SimCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def demo_specs() -> list[SimNodeSpec]:
    """Four nodes of different speeds for --demo: fast (30 ms, 4 slots), medium (120 ms, 2),
    slow (600 ms, 1), flaky (40 ms, 2 slots, 15% failures). Every model is on at least two
    nodes, no node but "fast" has all of them."""
    llama, qwen, nomic = "llama3.2:latest", "qwen2.5:0.5b", "nomic-embed-text:latest"
    return [
        SimNodeSpec(name="fast", latency_ms=30, capacity=4, tokens_per_s=120, tokens=24,
                    models=[llama, qwen, nomic], seed=1),
        SimNodeSpec(name="medium", latency_ms=120, capacity=2, tokens_per_s=60, tokens=24,
                    models=[llama, nomic], seed=2),
        SimNodeSpec(name="slow", latency_ms=600, capacity=1, tokens_per_s=20, tokens=24,
                    models=[llama, qwen], loaded=[llama], seed=3),
        SimNodeSpec(name="flaky", latency_ms=40, capacity=2, failure_rate=0.15, tokens_per_s=90, tokens=24,
                    models=[qwen, nomic], seed=4),
    ]


def _spec_from_json(text: str) -> SimNodeSpec:
    data = orjson.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a spec must be a JSON object")
    known = {f.name for f in fields(SimNodeSpec)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown spec field(s): {', '.join(sorted(unknown))}")
    return SimNodeSpec(**data)


async def _serve(specs: list[SimNodeSpec]) -> None:
    nodes = [SimNode(s) for s in specs]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for node in nodes:
            await node.start()
            print(f"SIM {node.spec.name} {node.address}")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


def main(argv: Optional[list[str]] = None) -> None:
    """`python -m sollol_core.sim --spec '{"name":"fast","latency_ms":20,"capacity":64}' [--spec ...]`:
    runs nodes in this process (the demo set when no --spec), prints ``SIM <name> 127.0.0.1:PORT``
    per node, and runs until SIGTERM/SIGINT (exit 0)."""
    parser = argparse.ArgumentParser(prog="python -m sollol_core.sim",
                                     description="Simulated Ollama servers on 127.0.0.1.")
    parser.add_argument("--spec", action="append", default=[], metavar="JSON",
                        help="a JSON object of SimNodeSpec fields; repeat for more nodes")
    args = parser.parse_args(argv)
    try:
        specs = [_spec_from_json(s) for s in args.spec] or demo_specs()
    except (ValueError, TypeError) as exc:
        parser.error(f"--spec: {exc}")
    asyncio.run(_serve(specs))


if __name__ == "__main__":
    main()
