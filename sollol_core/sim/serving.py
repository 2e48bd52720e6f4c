"""How a request is served: wait for the model to load, take a slot, prefill what the slot does not
hold, then answer token by token (streamed) or whole. The API modules only say how the bytes look
(a ``Frames``); timing, slots, cache and the injected mid-stream failures are all here.

Time to the first token = latency_ms + prefill (uncached characters x prefill_ms_per_kchar / 1000), plus
the load when the model was not loaded (or was loaded with other runner options); then one token every
1/tokens_per_s. With prefill_ms_per_kchar = 0 and load_ms = 0 this is the simulator's original timing, to
the millisecond.

The figures an answer reports add up as Ollama's do: total_duration runs from the handler's start, so it
includes the wait for a slot; load_duration is the load (warm_load_ms on a loaded model), prompt_eval_duration
the prefill, and eval_duration the rest of the service (latency_ms and the tokens). What total_duration has
beyond those three is the time the request waited inside the node.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from aiohttp import web

from .kv_slots import Prefill
from .metadata import embedding
from .node import runner_of
from .render import Prompt
from .wire import JSON, NDJSON, NL, RUNNER_GONE, Abort, SimError, Stats

if TYPE_CHECKING:
    from .node import NodeState


class Answer(NamedTuple):
    pieces: tuple[str, ...]  # what is sent, one piece per token
    reason: str  # "stop", "length" (or an API's own word, chosen by its Frames)
    cache_text: str  # what the slot holds after the prompt once answered (the answer as the next turn renders it)


class Frames:
    """How one API writes an answer. Subclasses fill in chunk/final/whole; the defaults are Ollama's NDJSON."""

    stream_headers: dict = NDJSON
    whole_headers: dict = JSON

    def head(self) -> bytes:
        """Written before the first token (SSE preambles such as message_start)."""
        return b""

    def chunk(self, piece: str) -> bytes:
        raise NotImplementedError

    def final(self, stats: Stats) -> bytes:
        raise NotImplementedError

    def whole(self, text: str, stats: Stats) -> bytes:
        raise NotImplementedError

    def error(self, message: str) -> bytes:
        """An error after the stream began (Ollama: an {"error": ...} line in the 200 stream)."""
        return orjson.dumps({"error": message}, option=NL)


async def serve(node: "NodeState", request: web.Request, t0: int, norm: str, prompt: Prompt, answer: Answer,
                stream: bool, frames: Frames, options: Any = None) -> web.StreamResponse:
    """Serve a token answer under one slot of the model: streamed chunk by chunk, or whole at the end.
    `options`: the request's Ollama options (its runner options; None: the model's defaults)."""
    spec = node.spec
    load_ns = await node.admit(norm, runner_of(options))
    pool = node.pool(norm)
    slot, reused = await pool.acquire(prompt.text)
    try:
        pieces = answer.pieces
        interval = 1.0 / spec.tokens_per_s if spec.tokens_per_s > 0 else 0.0
        latency = max(0.0, spec.latency_ms) / 1000.0
        # at least one character is evaluated, as llama.cpp re-evaluates the last token of a cached prompt
        uncached = max(1, len(prompt.text) - reused) if prompt.text else 0
        prefill = uncached * max(0.0, spec.prefill_ms_per_kchar) / 1e6
        prompt_ns = round(prefill * 1e9)
        node.record_prefill(Prefill(request.path, norm, slot.index, len(prompt.text), len(prompt.text) - uncached,
                                    load_ns))
        eval_ns = max(1, int((latency + len(pieces) * interval) * 1e9))
        cached_n = (prompt.tokens * (len(prompt.text) - uncached) // len(prompt.text)
                    if spec.report_cached_tokens and prompt.text else None)

        def stats() -> Stats:  # the warm load is reported, not slept: total is never below the parts
            total = max(time.monotonic_ns() - t0, load_ns + prompt_ns + eval_ns)
            return Stats(total, load_ns, prompt.tokens, prompt_ns, len(pieces), eval_ns, answer.reason, cached_n)

        if not stream:
            await asyncio.sleep(latency + prefill + len(pieces) * interval)
            slot.cache = prompt.text + answer.cache_text
            if node.fail_mid_stream:
                raise Abort
            if node.error_line_mid_stream:  # nothing sent yet: Ollama answers the error with a status
                raise SimError(500, RUNNER_GONE)
            return web.Response(body=frames.whole("".join(pieces), stats()), headers=frames.whole_headers)
        loop = asyncio.get_running_loop()
        if latency + prefill > 0:
            await asyncio.sleep(latency + prefill)
        slot.cache = prompt.text  # evaluated: kept even if the answer breaks off
        resp = web.StreamResponse(headers=frames.stream_headers)
        await resp.prepare(request)  # headers go out with the first chunk, as with Ollama
        head = frames.head()
        first = loop.time()
        for i, piece in enumerate(pieces):
            if i and interval:
                delay = first + i * interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            data = frames.chunk(piece)
            if head:
                data, head = head + data, b""
            await resp.write(data)
            if node.fail_mid_stream:
                raise Abort
            if node.error_line_mid_stream:
                await resp.write(frames.error(RUNNER_GONE))
                await resp.write_eof()
                return resp
        slot.cache = prompt.text + answer.cache_text
        await resp.write(head + frames.final(stats()))
        await resp.write_eof()
        return resp
    finally:
        pool.release(slot)


async def embed(node: "NodeState", t0: int, norm: str, texts: list[str],
                options: Any = None) -> tuple[list[list[float]], int, int]:
    """Vectors for texts under one slot of the model; (vectors, total_ns, load_ns). The slot's cache is
    left as it was."""
    spec = node.spec
    load_ns = await node.admit(norm, runner_of(options))
    pool = node.pool(norm)
    slot, _ = await pool.acquire("")
    try:
        started = time.monotonic()
        delay = (max(0.0, spec.latency_ms) + len(texts) * max(0.0, spec.embed_ms_per_input)) / 1000.0
        dim = spec.embed_dim
        vectors = [list(embedding(t, dim)) for t in texts]  # computed within the service time, not on top
        await asyncio.sleep(max(0.0, delay - (time.monotonic() - started)))
        if node.fail_mid_stream:
            raise Abort
        return vectors, time.monotonic_ns() - t0, load_ns
    finally:
        pool.release(slot)


async def hold(node: "NodeState", norm: str, seconds: float) -> int:
    """Hold a slot of the model for a fixed service time (transcriptions); returns load_ns."""
    load_ns = await node.admit(norm)
    pool = node.pool(norm)
    slot, _ = await pool.acquire("")
    try:
        await asyncio.sleep(max(0.0, seconds))
        return load_ns
    finally:
        pool.release(slot)
