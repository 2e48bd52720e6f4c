"""The Anthropic Messages API (/v1/messages)."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import Field

from .base import OpenBody, model_field

__all__ = ["AnthropicMessage", "AnthropicTool", "MessagesRequest", "AnthropicUsage", "MessageObject"]


class AnthropicMessage(OpenBody):
    role: Literal["user", "assistant"]
    content: Union[str, list[dict[str, Any]]] = Field(..., description="A text, or content blocks (text, image, "
                                                                        "tool_use, tool_result).")


class AnthropicTool(OpenBody):
    name: str
    description: Optional[str] = None
    input_schema: dict[str, Any]


class MessagesRequest(OpenBody):
    model: str = model_field()
    messages: list[AnthropicMessage]
    max_tokens: int = Field(..., ge=1)
    system: Optional[Union[str, list[dict[str, Any]]]] = None
    stream: Optional[bool] = Field(None, description="Server-sent events (message_start ... message_stop).")
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    stop_sequences: Optional[list[str]] = None
    tools: Optional[list[AnthropicTool]] = None
    tool_choice: Optional[dict[str, Any]] = None
    thinking: Optional[dict[str, Any]] = None
    metadata: Optional[dict[str, Any]] = None


class AnthropicUsage(OpenBody):
    input_tokens: int
    output_tokens: int


class MessageObject(OpenBody):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[dict[str, Any]]
    model: str
    stop_reason: Optional[str] = None
    stop_sequence: Optional[str] = None
    usage: AnthropicUsage
