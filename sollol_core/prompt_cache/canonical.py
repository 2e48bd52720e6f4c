"""The canonical prompt: what an Ollama host will render for a request, as text, and its PromptKey.

Placement by cache needs to know how much of a new prompt a host's slots already hold. The host's cache is a
prefix of tokens; the gateway cannot tokenise, but it can render every request into one canonical text that
grows the way the rendered prompt grows, and compare texts by prefix. Every API family a client may speak
(Ollama /api/chat and /api/generate, OpenAI /v1/chat/completions, /v1/completions and /v1/responses,
Anthropic /v1/messages) renders into the same text for the same conversation (render/, whose document
module describes the text's layout), so a conversation that moves between APIs (or a client that mixes them)
is still recognised. What does not change the rendered prompt (sampling options, stream, keep_alive, format,
tool-call ids, Anthropic cache_control) is left out.

The text is reduced to chained block hashes (key.PromptKey), which placement and the shadow compare.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping, Optional, Sequence

from ..cluster.hosts import model_key
from .key import PromptKey, key_of_text, key_of_text_async
from .render import renderer_for
from .render.document import Document, emit, image_digest

DEFAULT_OFFLOAD_ABOVE_CHARS = 32768  # inline below: about 0.2 ms here (bench/bench_prompt_hash.py)
DEFAULT_CHUNK_CHARS = 32768  # the loop runs again after each piece this long (about 0.1-0.2 ms of work)

#: (canonical text, end of the first user message, model key)
Rendered = tuple[str, int, str]


# ---------------------------------------------------------------------------------------------------------
# the drivers of the renderers


def _finish(doc: Document, ok: bool, data: dict[str, Any]) -> Optional[Rendered]:
    if not ok or doc.nmsgs == 0:
        return None
    text, anchor = doc.text()
    return text, anchor, model_key(data["model"])


def _render(path: str, data: Any) -> Optional[Rendered]:
    """(canonical text, end of the first user message, model key), or None. Synchronous driver."""
    renderer = renderer_for(path, data)
    if renderer is None:
        return None
    doc = Document()
    gen = renderer(doc, data)
    try:
        req = gen.send(None)
        while True:
            req = gen.send(image_digest(req) if req is not None else None)
    except StopIteration as stop:
        return _finish(doc, bool(stop.value), data)
    except (RecursionError, MemoryError):  # absurdly nested tool arguments
        return None


async def _render_async(path: str, data: Any, chunk: int) -> Optional[Rendered]:
    """_render, letting the loop run after every `chunk` characters and digesting large images in a thread."""
    renderer = renderer_for(path, data)
    if renderer is None:
        return None
    doc = Document(pause_at=chunk)
    gen = renderer(doc, data)
    try:
        req = gen.send(None)
        while True:
            res: Optional[str]
            if req is not None:
                res = await asyncio.to_thread(image_digest, req)
            else:
                res = None
                await asyncio.sleep(0)
                doc.pause_at = doc.size + chunk
            req = gen.send(res)
    except StopIteration as stop:
        return _finish(doc, bool(stop.value), data)
    except (RecursionError, MemoryError):
        return None


# ---------------------------------------------------------------------------------------------------------
# public API


def canonical_text(path: str, data: dict[str, Any]) -> Optional[str]:
    """The canonical prompt of an inference request (see the module docstring); None for a path that is not
    inference, a shape that cannot be read, or a request with nothing to render (a load request)."""
    r = _render(path, data)
    return r[0] if r is not None else None


def session_key(path: str, data: Any, headers: Optional[Mapping[str, Any]] = None) -> Optional[str]:
    """An explicit session key the client gave: the X-SOLLOL-Session header (case-insensitive), else
    OpenAI's `prompt_cache_key` or `user`, else Anthropic's `metadata.user_id`."""
    if headers is not None:
        value = headers.get("x-sollol-session")
        if value is None:  # a plain dict: look the name up without case
            value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == "x-sollol-session"),
                         None)
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str) and value.strip():
            return value.strip()
    if not isinstance(data, dict) or not isinstance(path, str):
        return None
    if path.startswith("/v1/messages"):
        meta = data.get("metadata")
        value = meta.get("user_id") if isinstance(meta, dict) else None
    elif path.startswith("/v1/"):
        value = data.get("prompt_cache_key") or data.get("user")
    else:
        value = None
    return value.strip() if isinstance(value, str) and value.strip() else None


def prompt_key(path: str, data: dict[str, Any], *, block_chars: int = 128, session: Optional[str] = None
               ) -> Optional[PromptKey]:
    """The PromptKey of a request (None where canonical_text is None)."""
    if not isinstance(block_chars, int) or block_chars < 1:
        raise ValueError("block_chars must be an int >= 1")
    r = _render(path, data)
    if r is None:
        return None
    text, anchor_end, model = r
    return key_of_text(text, anchor_end, model, block_chars, session)


def approx_chars(data: Any, limit: int) -> int:
    """A quick upper estimate of the text in a parsed body (string lengths summed), stopping once above
    `limit`; a body of very many small values counts as large (its rendering costs by the value)."""
    total = 0
    nodes = 0
    stack = [data]
    pop, push = stack.pop, stack.extend
    while stack:
        v = pop()
        nodes += 1
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, dict):
            push(v.values())
        elif isinstance(v, list):
            push(v)
        if total > limit or nodes * 64 > limit:
            return max(total, limit + 1)
    return total


async def prompt_key_async(path: str, data: dict[str, Any], *, block_chars: int = 128,
                           session: Optional[str] = None, offload_above_chars: int = DEFAULT_OFFLOAD_ABOVE_CHARS,
                           size_hint: Optional[int] = None, chunk_chars: int = DEFAULT_CHUNK_CHARS
                           ) -> Optional[PromptKey]:
    """prompt_key without holding the event loop for long: a body above `offload_above_chars` (its length
    `size_hint`, e.g. the raw body's, else estimated) is rendered and hashed in pieces of about
    `chunk_chars` characters with the loop let run between them, and its large images are digested in a
    worker thread (asyncio.to_thread; sha256 releases the GIL).

    Why not the whole key in a thread: rendering and hashing are pure Python and hold the GIL, and a loop
    waiting for the GIL gets it back only every sys.getswitchinterval() (5 ms) -- measured, a 200 KB key in a
    thread held the loop longer than made inline (bench/bench_prompt_hash.py)."""
    if not isinstance(block_chars, int) or block_chars < 1:
        raise ValueError("block_chars must be an int >= 1")
    size = size_hint if size_hint is not None else approx_chars(data, offload_above_chars)
    if size <= offload_above_chars:
        return prompt_key(path, data, block_chars=block_chars, session=session)
    chunk = max(chunk_chars, block_chars)
    r = await _render_async(path, data, chunk)
    if r is None:
        return None
    text, anchor_end, model = r
    return await key_of_text_async(text, anchor_end, model, block_chars, session, chunk)


def render_answer(text: str, tool_calls: Sequence[tuple[str, Any]] = ()) -> str:
    """The canonical rendering of an assistant message with this text (and tool calls), as the next turn
    will carry it."""
    doc = Document()
    emit(doc, "assistant", (text,) if isinstance(text, str) and text else ())
    for name, args in tool_calls:
        doc.call(name, args)
    return "".join(doc.parts)


def extend_with_answer(key: PromptKey, text: str, tool_calls: Sequence[tuple[str, Any]] = ()) -> PromptKey:
    """The key of the prompt followed by the assistant's answer (text, and (name, arguments) tool calls),
    rendered as the next turn's canonical text will carry it. Costs the answer's length, not the prompt's."""
    return key.extended(render_answer(text, tool_calls))


__all__ = ["DEFAULT_CHUNK_CHARS", "DEFAULT_OFFLOAD_ABOVE_CHARS", "approx_chars", "canonical_text",
           "extend_with_answer", "prompt_key", "prompt_key_async", "render_answer", "session_key"]
