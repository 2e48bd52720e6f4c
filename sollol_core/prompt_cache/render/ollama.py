"""Ollama's native inference APIs: /api/chat and /api/generate.

OpenAI's /v1/chat/completions and /v1/completions carry the same shapes (Ollama serves them by converting to
these), so their renderers are these with native=False: no runner options in the header, no `system` or
`images` fields on a completion, and a prompt may come as a list of one string.
"""

from __future__ import annotations

from typing import Any, Generator, Optional

from .document import MSG, ROLES, SEG, Document, Step, canonical_role, clean, emit, header, image_step, parts


def _chat_message(doc: Document, m: dict[str, Any]) -> Generator[Optional[str], Optional[str], None]:
    """A message of Ollama /api/chat or OpenAI /v1/chat/completions (the two shapes overlap: content string
    or parts, `images`, `tool_calls` with arguments as an object or a JSON string, role tool)."""
    role = canonical_role(m.get("role"))
    if role is None:
        return
    texts: list[str] = []
    images: list[str] = []
    yield from parts(m.get("content"), texts, images)
    imgs = m.get("images")
    if isinstance(imgs, list):
        for img in imgs:
            digest = yield from image_step(img)
            if digest is not None:
                images.append(digest)
    name = doc.tool_name(m.get("tool_call_id"), m.get("tool_name") or m.get("name")) if role == "tool" else None
    emit(doc, role, texts, images, name)
    calls = m.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                fn = call["function"]
                doc.call(fn.get("name"), fn.get("arguments"), call.get("id"))


def render_chat(doc: Document, data: dict[str, Any], native: bool = True) -> Step:
    """/api/chat (native) and /v1/chat/completions: the tools, then each message in order."""
    messages = data.get("messages")
    if not isinstance(messages, list) or not header(doc, data, data.get("tools"), native):
        return False
    roles = ROLES
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
            s = MSG + r + SEG + "T" + clean(content) if content else MSG + r
            doc.parts.append(s)
            doc.size += len(s)
        else:
            yield from _chat_message(doc, m)
        if doc.size > doc.pause_at:
            yield None
    return True


def render_generate(doc: Document, data: dict[str, Any], native: bool = True) -> Step:
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
            digest = yield from image_step(img)
            if digest is not None:
                images.append(digest)
    if not prompt and not images:
        return False  # a load request: nothing to cache
    if not header(doc, data, None, native):
        return False
    system = data.get("system") if native else None
    if isinstance(system, str) and system:
        emit(doc, "system", (system,))
    suffix = data.get("suffix")
    emit(doc, "user", (prompt,) if prompt else (), images, suffix=suffix if isinstance(suffix, str) else None)
    return True
