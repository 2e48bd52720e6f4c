"""The canonical text being built, and the pieces every API family's renderer shares.

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

The renderers are generators. They yield None when the text has grown past doc.pause_at (a point where the
async driver may let the loop run), or a large image (a str) whose digest the driver sends back (the async
driver computes it in a thread: hashlib releases the GIL). Their return value says whether the request could
be read at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from typing import Any, Callable, Generator, Iterable, Optional

import orjson

from ...cluster.hosts import model_key

MSG = "\x1e"  # starts a message
SEG = "\x1f"  # starts a segment (header field or message part)
_CLEAN = str.maketrans({MSG: " ", SEG: " "})

#: Runner options whose change makes Ollama reload the model (and so lose every slot's cache).
RUNNER_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "use_mlock", "num_thread",
                  "low_vram", "f16_kv", "numa")

#: The roles of every API family, as the canonical text names them.
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
         "tool": "tool", "function": "tool"}
_TEXT_PARTS = frozenset(("text", "input_text", "output_text"))
_IMAGE_PARTS = frozenset(("image_url", "input_image"))

BIG_IMAGE_CHARS = 1 << 18  # images above this are digested by the driver (about 0.2 ms of sha256 here)

#: What a renderer step yields (None: a pause; a str: an image to digest), is sent back (the digest) and returns.
Step = Generator[Optional[str], Optional[str], bool]
Renderer = Callable[["Document", dict[str, Any]], Step]


def clean(s: str) -> str:
    """The payload with the two delimiters replaced by spaces."""
    if MSG in s or SEG in s:
        return s.translate(_CLEAN)
    return s


def cjson(obj: Any) -> Optional[str]:
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


class Document:
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
        self.add(SEG + tag + clean(payload))

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
        js = cjson([name, args])
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


def image_step(img: Any) -> Generator[Optional[str], Optional[str], Optional[str]]:
    """The digest of an image; a large one is yielded to the driver, which sends its digest back."""
    if isinstance(img, str) and len(img) > BIG_IMAGE_CHARS:
        return (yield img)
    return image_digest(img)


def canonical_role(value: Any) -> Optional[str]:
    """The canonical role of a message's role field; None when it has none."""
    if not isinstance(value, str) or not value:
        return None
    r = ROLES.get(value)
    if r is None:
        low = value.lower()
        r = ROLES.get(low) or clean(low)
    return r


def header(doc: Document, data: dict[str, Any], tools: Any, native: bool) -> bool:
    """The model, the runner options (native paths) and the tools; False when the request names no model."""
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        return False
    doc.seg("M", model_key(model))
    if native:
        opts = data.get("options")
        if isinstance(opts, dict):
            runner = {k: opts[k] for k in RUNNER_OPTIONS if opts.get(k) is not None}
            if runner:
                js = cjson(runner)
                if js is not None:
                    doc.seg("O", js)
    if isinstance(tools, list):
        for tool in tools:
            js = tool_json(tool)
            if js is not None:
                doc.seg("F", js)
    return True


def tool_json(tool: Any) -> Optional[str]:
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
    return cjson({"name": name, "description": desc if isinstance(desc, str) else "",
                  "parameters": params if params is not None else {}})


def parts(content: Any, texts: list[str], images: list[str]) -> Generator[Optional[str], Optional[str], None]:
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
            digest = yield from image_step(url)
            if digest is not None:
                images.append(digest)


def emit(doc: Document, role: str, texts: Iterable[str], images: Iterable[str] = (), name: Optional[str] = None,
         suffix: Optional[str] = None) -> None:
    """One whole message: its role, the tool's name (a tool result), its texts, a suffix and its images."""
    doc.start(role)
    if name is not None:
        doc.seg("N", name)
    for t in texts:
        doc.seg("T", t)
    if suffix:
        doc.seg("S", suffix)
    for d in images:
        doc.add(SEG + "I" + d)
