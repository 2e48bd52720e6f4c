"""The OpenAI-compatible API (/v1)."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, Field

from .base import OpenBody, model_field

__all__ = ["OpenAIMessage", "ChatCompletionRequest", "Usage", "ChatCompletion", "CompletionRequest", "Completion", "EmbeddingRequest", "EmbeddingList", "ModelObject", "ModelList", "ResponsesRequest", "ResponseObject", "TranscriptionForm", "Transcription"]


class OpenAIMessage(OpenBody):
    role: str = Field(..., examples=["user"])
    content: Optional[Union[str, list[dict[str, Any]]]] = None


class ChatCompletionRequest(OpenBody):
    model: str = model_field()
    messages: list[OpenAIMessage]
    stream: Optional[bool] = Field(None, description="Server-sent events when true.")
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    seed: Optional[int] = None
    stop: Optional[Union[str, list[str]]] = None
    tools: Optional[list[dict[str, Any]]] = None
    response_format: Optional[dict[str, Any]] = None


class Usage(OpenBody):
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    total_tokens: Optional[int] = None


class ChatCompletion(OpenBody):
    id: str
    object: str = Field(..., examples=["chat.completion"])
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Optional[Usage] = None


class CompletionRequest(OpenBody):
    model: str = model_field()
    prompt: Union[str, list[str]]
    stream: Optional[bool] = None
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    seed: Optional[int] = None
    suffix: Optional[str] = None


class Completion(OpenBody):
    id: str
    object: str = Field(..., examples=["text_completion"])
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Optional[Usage] = None


class EmbeddingRequest(OpenBody):
    model: str = model_field()
    input: Union[str, list[str]]
    encoding_format: Optional[Literal["float", "base64"]] = None
    dimensions: Optional[int] = None


class EmbeddingList(OpenBody):
    object: str = "list"
    data: list[dict[str, Any]]
    model: str
    usage: Optional[Usage] = None


class ModelObject(OpenBody):
    id: str
    object: str = "model"
    created: Optional[int] = None
    owned_by: Optional[str] = None


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelObject]


class ResponsesRequest(OpenBody):
    model: str = model_field()
    input: Union[str, list[dict[str, Any]]] = Field(..., description="A text, or a list of input items.")
    instructions: Optional[str] = None
    stream: Optional[bool] = Field(None, description="Server-sent events (response.output_text.delta ...).")
    max_output_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    tools: Optional[list[dict[str, Any]]] = None
    previous_response_id: Optional[str] = None


class ResponseObject(OpenBody):
    id: str
    object: Literal["response"] = "response"
    created_at: Optional[float] = None
    model: str
    status: Optional[str] = None
    output: list[dict[str, Any]] = Field(default_factory=list)
    usage: Optional[dict[str, Any]] = None


class TranscriptionForm(BaseModel):
    """multipart/form-data: the audio file and its fields."""

    file: bytes = Field(..., json_schema_extra={"format": "binary"})
    model: str = model_field()
    language: Optional[str] = None
    prompt: Optional[str] = None
    response_format: Optional[str] = None
    temperature: Optional[float] = None
    stream: Optional[bool] = None


class Transcription(OpenBody):
    text: str
