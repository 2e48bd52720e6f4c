"""OpenAI's /v1/chat/completions and /v1/completions, as Ollama serves them: the native shapes without the
native-only fields (see render.ollama)."""

from __future__ import annotations

from typing import Any

from .document import Document, Step
from .ollama import render_chat, render_generate


def render_chat_completions(doc: Document, data: dict[str, Any]) -> Step:
    """/v1/chat/completions: messages as /api/chat carries them; runner options are not read."""
    return render_chat(doc, data, native=False)


def render_completions(doc: Document, data: dict[str, Any]) -> Step:
    """/v1/completions: a prompt (a string, or a list of one), with its suffix; no system or images."""
    return render_generate(doc, data, native=False)
