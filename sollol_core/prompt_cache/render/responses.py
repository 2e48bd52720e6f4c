"""OpenAI's /v1/responses, as Ollama serves it."""

from __future__ import annotations

from typing import Any

from .document import Document, Step, canonical_role, emit, header, parts


def render_responses(doc: Document, data: dict[str, Any]) -> Step:
    """/v1/responses: `instructions` (a system message), `input` a string or a list of items: messages,
    function_call (joins the assistant message before it, as one message with tool calls) and
    function_call_output (a tool message)."""
    items = data.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not header(doc, data, data.get("tools"), False):
        return False
    instructions = data.get("instructions")
    if isinstance(instructions, str) and instructions:
        emit(doc, "system", (instructions,))
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
            yield from parts(it.get("output"), texts, images)
            emit(doc, "tool", texts, images, doc.tool_name(it.get("call_id"), None))
        elif kind in (None, "message"):
            role = canonical_role(it.get("role"))
            if role is not None:
                yield from parts(it.get("content"), texts, images)
                emit(doc, role, texts, images)
        if doc.size > doc.pause_at:
            yield None
    return True
