"""Rendering a request into the canonical text, one module per API family (ollama, openai, anthropic,
responses) over a shared document builder (document, which also describes the text's layout).

Every family renders into the same text for the same conversation, so a conversation that moves between APIs
(or a client that mixes them) is still recognised.
"""

from __future__ import annotations

from typing import Any, Optional

from .anthropic import render_messages
from .document import Renderer
from .ollama import render_chat, render_generate
from .openai import render_chat_completions, render_completions
from .responses import render_responses

#: The renderer of each inference path.
RENDERERS: dict[str, Renderer] = {
    "/api/chat": render_chat,
    "/v1/chat/completions": render_chat_completions,
    "/api/generate": render_generate,
    "/v1/completions": render_completions,
    "/v1/messages": render_messages,
    "/v1/responses": render_responses,
}


def renderer_for(path: Any, data: Any) -> Optional[Renderer]:
    """The renderer of a request to `path` with the parsed body `data`; None where there is none (not an
    inference path, or a body that is not an object)."""
    if not isinstance(data, dict) or not isinstance(path, str):
        return None
    return RENDERERS.get(path.rstrip("/") if len(path) > 1 else path)


__all__ = ["RENDERERS", "Renderer", "renderer_for"]
