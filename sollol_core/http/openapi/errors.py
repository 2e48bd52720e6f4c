"""The error answers of each API family."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field

__all__ = ["OllamaError", "OpenAIErrorBody", "OpenAIError", "AnthropicErrorBody", "AnthropicError"]


class OllamaError(BaseModel):
    error: str = Field(..., description="What went wrong.")


class OpenAIErrorBody(BaseModel):
    message: str
    type: str = Field(..., examples=["invalid_request_error"])
    param: Optional[str] = None
    code: Optional[str] = None


class OpenAIError(BaseModel):
    error: OpenAIErrorBody


class AnthropicErrorBody(BaseModel):
    type: str = Field(..., examples=["not_found_error"])
    message: str


class AnthropicError(BaseModel):
    type: Literal["error"] = "error"
    error: AnthropicErrorBody
