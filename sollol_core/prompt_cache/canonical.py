"""The canonical prompt: what an Ollama host will render for a request, as text, and its block hashes.

Placement by cache needs to know how much of a new prompt a host's slots already hold. The host's cache is a
prefix of tokens; the gateway cannot tokenise, but it can render every request into one canonical text that
grows the way the rendered prompt grows, and compare texts by prefix. Every API family a client may speak
(Ollama /api/chat and /api/generate, OpenAI /v1/chat/completions, /v1/completions and /v1/responses,
Anthropic /v1/messages) renders into the same text for the same conversation, so a conversation that moves
between APIs (or a client that mixes them) is still recognised.

Layout (two ASCII control characters delimit; they are replaced by spaces inside any payload)::

    \\x1fM<model key>                          header: the model, Ollama's name for it (model_key)
    \\x1fO<canonical JSON>                     runner options that force a reload (native paths, when present)
    \\x1fF<canonical JSON>                     one per tool: {"description", "name", "parameters"}
    \\x1e<role>                                 each message: system / user / assistant / tool / other
        \\x1fN<tool name>                      tool results: the tool's name (resolved from the call id)
        \\x1fT<text>                           each text part
        \\x1fS<suffix>                         fill-in-the-middle suffix (/api/generate, /v1/completions)
        \\x1fI<digest>                         each image: sha256 of its base64 data or URL (32 hex digits)
        \\x1fC<canonical JSON [name, args]>    each tool call

A message has no terminator: the next message starts with \\x1e, so a conversation extended by messages keeps
its old rendering as an exact prefix, and a text that grows (a raw prompt continued) shares its old part.
What does not change the rendered prompt (sampling options, stream, keep_alive, format, tool-call ids,
Anthropic cache_control) is left out.

Block hashes are chained: ``blocks[i] = hash((blocks[i-1], text[i*B:(i+1)*B]))``, so ``blocks[i]`` identifies
the whole prefix ``text[:(i+1)*B]`` and the longest common prefix of two keys is found by binary search.
The hash is Python's own string hash (SipHash, 64 bits): measured 3x faster than hashlib.blake2b with a
digest per block (bench/bench_prompt_hash.py), and the shadow never leaves the process. It is randomised per
process (PYTHONHASHSEED): keys must not be stored or compared across processes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
from array import array
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterable, Mapping, Optional, Sequence

import orjson

from ..cluster.hosts import model_key

MSG = "\x1e"  # starts a message
SEG = "\x1f"  # starts a segment (header field or message part)
_CLEAN = str.maketrans({MSG: " ", SEG: " "})

#: Runner options whose change makes Ollama reload the model (and so lose every slot's cache).
RUNNER_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "use_mlock", "num_thread",
                  "low_vram", "f16_kv", "numa")

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
          "tool": "tool", "function": "tool"}
_TEXT_PARTS = frozenset(("text", "input_text", "output_text"))
_IMAGE_PARTS = frozenset(("image_url", "input_image"))

DEFAULT_OFFLOAD_ABOVE_CHARS = 32768  # inline below: about 0.2 ms here (bench/bench_prompt_hash.py)
DEFAULT_CHUNK_CHARS = 32768  # the loop runs again after each piece this long (about 0.1-0.2 ms of work)


# ---------------------------------------------------------------------------------------------------------
# the key


@dataclass(frozen=True, slots=True)
class PromptKey:
    """A canonical prompt reduced to what placement needs: its chained block hashes and its length.

    ``tail`` is the text of the final partial block ("" when the text ends on a block boundary): with it,
    ``extend_with_answer`` continues the chain without the rest of the text.
    """

    model: str  # model_key of the request's model
    blocks: array  # array('q'): chained hashes; blocks[i] identifies text[:(i+1)*block_chars]; last may be partial
    chars: int  # len(canonical text)
    block_chars: int
    anchor: int  # hash of the text up to the end of the first user message: the conversation, stable as it grows
    session: Optional[str] = None  # explicit session key from the client (header, user, metadata.user_id)
    tail: str = ""

    def __repr__(self) -> str:  # the blocks of a long prompt would fill a log line
        return (f"PromptKey(model={self.model!r}, chars={self.chars}, blocks={len(self.blocks)}, "
                f"block_chars={self.block_chars}, anchor={self.anchor:#x}, session={self.session!r})")

    def __hash__(self) -> int:  # the array is not hashable; the last chained block stands for all of them
        return hash((self.model, self.chars, self.blocks[-1] if self.blocks else 0, self.session))

    def common_chars(self, other_blocks: "Sequence[int] | PromptKey") -> int:
        """Characters of the longest common prefix with `other_blocks` (a PromptKey or its blocks), in whole
        blocks; the final partial block counts when both texts end there. Binary search: chained hashes
        agree up to the first difference and never after it."""
        other = other_blocks.blocks if isinstance(other_blocks, PromptKey) else other_blocks
        if other is None:
            return 0
        return min(_common_blocks(self.blocks, other) * self.block_chars, self.chars)

    def common_blocks(self, other_blocks: "Sequence[int] | PromptKey") -> int:
        """Blocks of the longest common prefix (see common_chars)."""
        other = other_blocks.blocks if isinstance(other_blocks, PromptKey) else other_blocks
        return _common_blocks(self.blocks, other) if other is not None else 0

    def chars_of(self, nblocks: int) -> int:
        """Characters covered by the first `nblocks` blocks of this key."""
        return min(nblocks * self.block_chars, self.chars)


def _common_blocks(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if n == 0 or a[0] != b[0]:
        return 0
    if a[n - 1] == b[n - 1]:
        return n
    lo, hi = 1, n - 1  # a[lo-1] == b[lo-1]; the answer is in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if a[mid - 1] == b[mid - 1]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _chain(text: str, bc: int, h: int = 0, start: int = 0, out: Optional[list] = None,
           stop: Optional[int] = None) -> list:
    """Chained block hashes of text[start:stop] (start on a block boundary), continuing from chain state `h`."""
    if out is None:
        out = []
    ap = out.append
    end = len(text) if stop is None else min(stop, len(text))
    for i in range(start, end, bc):
        h = hash((h, text[i:i + bc]))
        ap(h)
    return out


def _key(text: str, anchor_end: int, model: str, bc: int, session: Optional[str]) -> PromptKey:
    blocks = array("q", _chain(text, bc))
    rem = len(text) % bc
    return PromptKey(model, blocks, len(text), bc, _anchor(text, blocks, bc, anchor_end), session,
                     text[len(text) - rem:] if rem else "")


ANCHOR_MAX_CHARS = 65536  # the conversation's identity is read from at most this much of its start


def _anchor(text: str, blocks: Sequence[int], bc: int, end: int) -> int:
    """A stable hash of text[:end] (the conversation up to its first user message).

    Unlike the block chain (Python's per-process string hash, fast, compared only inside one gateway), the
    anchor must be the same in every process: the rendezvous hash on it is what makes two gateways place a
    conversation alike, and a restarted gateway send it home."""
    head = text[:min(end, len(text), ANCHOR_MAX_CHARS)]
    return int.from_bytes(hashlib.blake2b(head.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big",
                          signed=True)


# ---------------------------------------------------------------------------------------------------------
# rendering


def _clean(s: str) -> str:
    if MSG in s or SEG in s:
        return s.translate(_CLEAN)
    return s


def _cjson(obj: Any) -> Optional[str]:
    """Canonical JSON (sorted keys, compact); None when the value cannot be serialised at all."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, ValueError, orjson.JSONEncodeError):
        try:
            return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
        except (TypeError, ValueError, RecursionError):
            return None


def image_digest(image: Any) -> Optional[str]:
    """sha256 (32 hex digits) of an image as a request carries it: base64 text (a data: URL counts by its
    base64 payload, so /v1 and native requests agree), a URL, or raw bytes (hashed as their base64)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = base64.b64encode(bytes(image))
    elif isinstance(image, str):
        if image.startswith("data:"):
            comma = image.find(",")
            if comma > 0:
                image = image[comma + 1:]
        data = image.encode("utf-8", "surrogatepass")
    else:
        return None
    return hashlib.sha256(data).hexdigest()[:32]


class _Doc:
    """The canonical text being built: a list of parts, its running length, the anchor position and the
    tool-call ids seen so far (a tool result names its tool by the id of the call it answers).

    `pause_at`: the renderers yield to their driver once the text grows past it (the async driver moves it
    on by a chunk and lets the event loop run; the sync driver leaves it infinite)."""

    __slots__ = ("parts", "size", "anchor", "in_user", "role", "names", "nmsgs", "pause_at")

    def __init__(self, pause_at: float = math.inf) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.anchor = -1  # end of the first user message, once known
        self.in_user = False  # the message being written is the first user message
        self.role: Optional[str] = None  # role of the message being written
        self.names: dict[str, str] = {}
        self.nmsgs = 0
        self.pause_at = pause_at

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.size += len(s)

    def seg(self, tag: str, payload: str) -> None:
        self.add(SEG + tag + _clean(payload))

    def start(self, role: str) -> None:
        if self.in_user:
            self.anchor = self.size
            self.in_user = False
        if role == "user" and self.anchor < 0:
            self.in_user = True
        self.add(MSG + role)
        self.role = role
        self.nmsgs += 1

    def call(self, name: Any, args: Any, call_id: Any = None) -> None:
        if not isinstance(name, str):
            return
        if isinstance(args, str):
            try:
                args = orjson.loads(args)
            except orjson.JSONDecodeError:
                pass  # kept as the string it is
        js = _cjson([name, args])
        if js is not None:
            self.add(SEG + "C" + js)
        if isinstance(call_id, str) and call_id:
            self.names[call_id] = name

    def tool_name(self, call_id: Any, name: Any) -> Optional[str]:
        if isinstance(call_id, str) and call_id in self.names:
            return self.names[call_id]
        if isinstance(name, str) and name:
            return name
        if isinstance(call_id, str) and call_id:
            return call_id
        return None

    def text(self) -> tuple[str, int]:
        text = "".join(self.parts)
        return text, (self.anchor if self.anchor >= 0 else len(text))


# The renderers are generators. They yield None when the text has grown past doc.pause_at (a point where
# the async driver may let the loop run), or a large image (a str) whose digest the driver sends back (the
# async driver computes it in a thread: hashlib releases the GIL). Their return value says whether the
# request could be read at all.

BIG_IMAGE_CHARS = 1 << 18  # images above this are digested by the driver (about 0.2 ms of sha256 here)


def _img(image: Any) -> Generator[Any, Any, Optional[str]]:
    if isinstance(image, str) and len(image) > BIG_IMAGE_CHARS:
        return (yield image)
    return image_digest(image)


def _role(value: Any) -> Optional[str]:
    if not isinstance(value, str) or not value:
        return None
    role = _ROLES.get(value)
    if role is None:
        low = value.lower()
        role = _ROLES.get(low) or _clean(low)
    return role


def _header(doc: _Doc, data: dict, tools: Any, native: bool) -> bool:
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        return False
    doc.seg("M", model_key(model))
    if native:
        opts = data.get("options")
        if isinstance(opts, dict):
            runner = {k: opts[k] for k in RUNNER_OPTIONS if opts.get(k) is not None}
            if runner:
                js = _cjson(runner)
                if js is not None:
                    doc.seg("O", js)
    if isinstance(tools, list):
        for tool in tools:
            js = _tool(tool)
            if js is not None:
                doc.seg("F", js)
    return True


def _tool(tool: Any) -> Optional[str]:
    """One tool, the same whichever API declared it: Ollama/OpenAI {"type": "function", "function": {...}},
    OpenAI Responses {"type": "function", "name", ...}, Anthropic {"name", "description", "input_schema"}."""
    if not isinstance(tool, dict):
        return None
    fn = tool.get("function")
    if isinstance(fn, dict):
        name, desc, params = fn.get("name"), fn.get("description"), fn.get("parameters")
    else:
        name, desc = tool.get("name"), tool.get("description")
        params = tool.get("input_schema") if "input_schema" in tool else tool.get("parameters")
    if not isinstance(name, str) or not name:
        return None
    return _cjson({"name": name, "description": desc if isinstance(desc, str) else "",
                   "parameters": params if params is not None else {}})


def _parts(content: Any, texts: list, images: list) -> Generator[Any, Any, None]:
    """Text and image parts of a message's content: a string, or a list of OpenAI / Responses parts."""
    if isinstance(content, str):
        if content:
            texts.append(content)
        return
    if not isinstance(content, list):
        return
    for part in content:
        if isinstance(part, str):  # lenient: a bare string in a list of parts
            if part:
                texts.append(part)
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            text = part.get("text")
            if isinstance(text, str) and text:
                texts.append(text)
        elif kind in _IMAGE_PARTS:
            url = part.get("image_url")
            if isinstance(url, dict):
                url = url.get("url")
            digest = yield from _img(url)
            if digest is not None:
                images.append(digest)


def _emit(doc: _Doc, role: str, texts: Iterable[str], images: Iterable[str] = (), name: Optional[str] = None,
          suffix: Optional[str] = None) -> None:
    doc.start(role)
    if name is not None:
        doc.seg("N", name)
    for t in texts:
        doc.seg("T", t)
    if suffix:
        doc.seg("S", suffix)
    for d in images:
        doc.add(SEG + "I" + d)


def _chat_message(doc: _Doc, m: dict) -> Generator[Any, Any, None]:
    """A message of Ollama /api/chat or OpenAI /v1/chat/completions (the two shapes overlap: content string
    or parts, `images`, `tool_calls` with arguments as an object or a JSON string, role tool)."""
    role = _role(m.get("role"))
    if role is None:
        return
    texts: list[str] = []
    images: list[str] = []
    yield from _parts(m.get("content"), texts, images)
    imgs = m.get("images")
    if isinstance(imgs, list):
        for img in imgs:
            digest = yield from _img(img)
            if digest is not None:
                images.append(digest)
    name = doc.tool_name(m.get("tool_call_id"), m.get("tool_name") or m.get("name")) if role == "tool" else None
    _emit(doc, role, texts, images, name)
    calls = m.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                fn = call["function"]
                doc.call(fn.get("name"), fn.get("arguments"), call.get("id"))


def _render_chat(doc: _Doc, data: dict, native: bool) -> Generator[Any, Any, bool]:
    messages = data.get("messages")
    if not isinstance(messages, list) or not _header(doc, data, data.get("tools"), native):
        return False
    roles = _ROLES
    for m in messages:
        if type(m) is not dict:
            continue
        role, content = m.get("role"), m.get("content")
        if len(m) == 2 and type(role) is str and type(content) is str and role in roles:
            # the common message, {"role", "content"}, written without the general path
            r = roles[role]
            if doc.in_user:
                doc.anchor = doc.size
                doc.in_user = False
            if r == "user" and doc.anchor < 0:
                doc.in_user = True
            doc.role = r
            doc.nmsgs += 1
            s = MSG + r + SEG + "T" + _clean(content) if content else MSG + r
            doc.parts.append(s)
            doc.size += len(s)
        else:
            yield from _chat_message(doc, m)
        if doc.size > doc.pause_at:
            yield None
    return True


def _render_prompt(doc: _Doc, data: dict, native: bool) -> Generator[Any, Any, bool]:
    """/api/generate (system + prompt + images) and /v1/completions (prompt): a system and a user message."""
    prompt = data.get("prompt")
    if isinstance(prompt, list) and not native and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        return False
    images: list[str] = []
    imgs = data.get("images") if native else None
    if isinstance(imgs, list):
        for img in imgs:
            digest = yield from _img(img)
            if digest is not None:
                images.append(digest)
    if not prompt and not images:
        return False  # a load request: nothing to cache
    if not _header(doc, data, None, native):
        return False
    system = data.get("system") if native else None
    if isinstance(system, str) and system:
        _emit(doc, "system", (system,))
    suffix = data.get("suffix")
    _emit(doc, "user", (prompt,) if prompt else (), images, suffix=suffix if isinstance(suffix, str) else None)
    return True


def _anthropic_blocks(content: Any, texts: list, images: list) -> Generator[Any, Any, None]:
    if isinstance(content, str):
        if content:
            texts.append(content)
        return
    if not isinstance(content, list):
        return
    for b in content:
        if not isinstance(b, dict):
            continue
        kind = b.get("type")
        if kind == "text":
            t = b.get("text")
            if isinstance(t, str) and t:
                texts.append(t)
        elif kind == "image":
            src = b.get("source")
            if isinstance(src, dict):
                digest = yield from _img(src.get("data") if src.get("type", "base64") == "base64" else src.get("url"))
                if digest is not None:
                    images.append(digest)


def _render_anthropic(doc: _Doc, data: dict) -> Generator[Any, Any, bool]:
    """/v1/messages: `system` (string or text blocks), messages of text / image / tool_use / tool_result
    blocks. A tool_result becomes a tool message (as Ollama converts it), in order, before the rest of the
    user message; tool_use blocks become the assistant message's tool calls."""
    messages = data.get("messages")
    if not isinstance(messages, list) or not _header(doc, data, data.get("tools"), False):
        return False
    sys_texts: list[str] = []
    yield from _anthropic_blocks(data.get("system"), sys_texts, [])
    if sys_texts:
        _emit(doc, "system", sys_texts)
    for m in messages:
        if not isinstance(m, dict):
            continue
        role = _role(m.get("role"))
        if role is None:
            continue
        content = m.get("content")
        texts: list[str] = []
        images: list[str] = []
        calls: list[dict] = []
        had_results = False
        if isinstance(content, list):
            for b in content:
                if not isinstance(b, dict):
                    continue
                kind = b.get("type")
                if kind == "tool_result":
                    had_results = True
                    rt: list[str] = []
                    ri: list[str] = []
                    yield from _anthropic_blocks(b.get("content"), rt, ri)
                    _emit(doc, "tool", rt, ri, doc.tool_name(b.get("tool_use_id"), None))
                elif kind == "tool_use":
                    calls.append(b)
                else:
                    yield from _anthropic_blocks([b], texts, images)
        else:
            yield from _anthropic_blocks(content, texts, images)
        if not (had_results and not texts and not images and not calls):
            _emit(doc, role, texts, images)
            for b in calls:
                doc.call(b.get("name"), b.get("input"), b.get("id"))
        if doc.size > doc.pause_at:
            yield None
    return True


def _render_responses(doc: _Doc, data: dict) -> Generator[Any, Any, bool]:
    """/v1/responses: `instructions` (a system message), `input` a string or a list of items: messages,
    function_call (joins the assistant message before it, as one message with tool calls) and
    function_call_output (a tool message)."""
    items = data.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not _header(doc, data, data.get("tools"), False):
        return False
    instructions = data.get("instructions")
    if isinstance(instructions, str) and instructions:
        _emit(doc, "system", (instructions,))
    for it in items:
        if not isinstance(it, dict):
            continue
        kind = it.get("type")
        texts: list[str] = []
        images: list[str] = []
        if kind == "function_call":
            if doc.role != "assistant":
                doc.start("assistant")
            doc.call(it.get("name"), it.get("arguments"), it.get("call_id"))
        elif kind == "function_call_output":
            yield from _parts(it.get("output"), texts, images)
            _emit(doc, "tool", texts, images, doc.tool_name(it.get("call_id"), None))
        elif kind in (None, "message"):
            role = _role(it.get("role"))
            if role is not None:
                yield from _parts(it.get("content"), texts, images)
                _emit(doc, role, texts, images)
        if doc.size > doc.pause_at:
            yield None
    return True


_RENDERERS: dict[str, Callable[[_Doc, dict], Generator[Any, Any, bool]]] = {
    "/api/chat": lambda doc, data: _render_chat(doc, data, True),
    "/v1/chat/completions": lambda doc, data: _render_chat(doc, data, False),
    "/api/generate": lambda doc, data: _render_prompt(doc, data, True),
    "/v1/completions": lambda doc, data: _render_prompt(doc, data, False),
    "/v1/messages": _render_anthropic,
    "/v1/responses": _render_responses,
}


def _renderer(path: Any, data: Any) -> Optional[Callable[[_Doc, dict], Generator[Any, Any, bool]]]:
    if not isinstance(data, dict) or not isinstance(path, str):
        return None
    return _RENDERERS.get(path.rstrip("/") if len(path) > 1 else path)


def _finish(doc: _Doc, ok: bool, data: dict) -> Optional[tuple[str, int, str]]:
    if not ok or doc.nmsgs == 0:
        return None
    text, anchor = doc.text()
    return text, anchor, model_key(data["model"])


def _render(path: str, data: Any) -> Optional[tuple[str, int, str]]:
    """(canonical text, end of the first user message, model key), or None. Synchronous driver."""
    renderer = _renderer(path, data)
    if renderer is None:
        return None
    doc = _Doc()
    gen = renderer(doc, data)
    try:
        req = gen.send(None)
        while True:
            req = gen.send(image_digest(req) if req is not None else None)
    except StopIteration as stop:
        return _finish(doc, bool(stop.value), data)
    except (RecursionError, MemoryError):  # absurdly nested tool arguments
        return None


async def _render_async(path: str, data: Any, chunk: int) -> Optional[tuple[str, int, str]]:
    """_render, letting the loop run after every `chunk` characters and digesting large images in a thread."""
    renderer = _renderer(path, data)
    if renderer is None:
        return None
    doc = _Doc(pause_at=chunk)
    gen = renderer(doc, data)
    try:
        req = gen.send(None)
        while True:
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


def canonical_text(path: str, data: dict) -> Optional[str]:
    """The canonical prompt of an inference request (see the module docstring); None for a path that is not
    inference, a shape that cannot be read, or a request with nothing to render (a load request)."""
    r = _render(path, data)
    return r[0] if r is not None else None


def session_key(path: str, data: Any, headers: Optional[Mapping[str, str]] = None) -> Optional[str]:
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


def prompt_key(path: str, data: dict, *, block_chars: int = 128, session: Optional[str] = None
               ) -> Optional[PromptKey]:
    """The PromptKey of a request (None where canonical_text is None)."""
    if not isinstance(block_chars, int) or block_chars < 1:
        raise ValueError("block_chars must be an int >= 1")
    r = _render(path, data)
    if r is None:
        return None
    text, anchor_end, model = r
    return _key(text, anchor_end, model, block_chars, session)


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


async def prompt_key_async(path: str, data: dict, *, block_chars: int = 128, session: Optional[str] = None,
                           offload_above_chars: int = DEFAULT_OFFLOAD_ABOVE_CHARS,
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
    out: list[int] = []
    step = (chunk // block_chars) * block_chars
    h = 0
    for start in range(0, len(text), step):
        _chain(text, block_chars, h, start, out, start + step)
        h = out[-1]
        if start + step < len(text):
            await asyncio.sleep(0)
    rem = len(text) % block_chars
    blocks = array("q", out)
    return PromptKey(model, blocks, len(text), block_chars, _anchor(text, blocks, block_chars, anchor_end), session,
                     text[len(text) - rem:] if rem else "")


def render_answer(text: str, tool_calls: Sequence[tuple[str, Any]] = ()) -> str:
    """The canonical rendering of an assistant message with this text (and tool calls), as the next turn
    will carry it."""
    doc = _Doc()
    _emit(doc, "assistant", (text,) if isinstance(text, str) and text else ())
    for name, args in tool_calls:
        doc.call(name, args)
    return "".join(doc.parts)


def extend_with_answer(key: PromptKey, text: str, tool_calls: Sequence[tuple[str, Any]] = ()) -> PromptKey:
    """The key of the prompt followed by the assistant's answer (text, and (name, arguments) tool calls),
    rendered as the next turn's canonical text will carry it. Costs the answer's length, not the prompt's:
    the chain continues from the last whole block with the key's tail."""
    bc = key.block_chars
    rest = key.tail + render_answer(text, tool_calls)
    if key.tail:
        head = key.blocks[:-1]
        h = head[-1] if head else 0
    else:
        head = key.blocks
        h = head[-1] if len(head) else 0
    head = array("q", head)
    head.extend(_chain(rest, bc, h))
    rem = len(rest) % bc
    return PromptKey(key.model, head, key.chars - len(key.tail) + len(rest), bc, key.anchor, key.session,
                     rest[len(rest) - rem:] if rem else "")
