"""Anthropic's /v1/messages, as Ollama serves it."""

from __future__ import annotations

from typing import Any, Generator, Optional

from .document import Document, Step, canonical_role, emit, header, image_step


def _blocks(content: Any, texts: list[str], images: list[str]) -> Generator[Optional[str], Optional[str], None]:
    """Text and image blocks of a content: a string or a list of blocks."""
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
                digest = yield from image_step(src.get("data") if src.get("type", "base64") == "base64"
                                               else src.get("url"))
                if digest is not None:
                    images.append(digest)


def render_messages(doc: Document, data: dict[str, Any]) -> Step:
    """/v1/messages: `system` (string or text blocks), messages of text / image / tool_use / tool_result
    blocks. A tool_result becomes a tool message (as Ollama converts it), in order, before the rest of the
    user message; tool_use blocks become the assistant message's tool calls."""
    messages = data.get("messages")
    if not isinstance(messages, list) or not header(doc, data, data.get("tools"), False):
        return False
    sys_texts: list[str] = []
    yield from _blocks(data.get("system"), sys_texts, [])
    if sys_texts:
        emit(doc, "system", sys_texts)
    for m in messages:
        if not isinstance(m, dict):
            continue
        role = canonical_role(m.get("role"))
        if role is None:
            continue
        content = m.get("content")
        texts: list[str] = []
        images: list[str] = []
        calls: list[dict[str, Any]] = []
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
                    yield from _blocks(b.get("content"), rt, ri)
                    emit(doc, "tool", rt, ri, doc.tool_name(b.get("tool_use_id"), None))
                elif kind == "tool_use":
                    calls.append(b)
                else:
                    yield from _blocks([b], texts, images)
        else:
            yield from _blocks(content, texts, images)
        if not (had_results and not texts and not images and not calls):
            emit(doc, role, texts, images)
            for b in calls:
                doc.call(b.get("name"), b.get("input"), b.get("id"))
        if doc.size > doc.pause_at:
            yield None
    return True
