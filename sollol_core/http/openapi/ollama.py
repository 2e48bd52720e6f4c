"""Ollama's API: inference, listings and model management."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, Field

from .base import OpenBody, model_field

__all__ = ["ToolFunction", "Tool", "ToolCall", "ChatMessage", "ChatRequest", "Timings", "ChatResponse", "GenerateRequest", "GenerateResponse", "EmbedRequest", "EmbedResponse", "EmbeddingsRequest", "EmbeddingsResponse", "ShowRequest", "ModelDetails", "ShowResponse", "TagsModel", "TagsResponse", "PsModel", "PsResponse", "VersionResponse", "PullRequest", "PushRequest", "CreateRequest", "CopyRequest", "DeleteRequest", "Progress", "HostOutcome", "ManagementResult"]


class ToolFunction(OpenBody):
    name: str
    description: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None


class Tool(OpenBody):
    type: Literal["function"] = "function"
    function: ToolFunction


class ToolCall(OpenBody):
    function: dict[str, Any] = Field(..., description='{"name": ..., "arguments": {...}}')


class ChatMessage(OpenBody):
    role: str = Field(..., examples=["user"], description="system, user, assistant or tool")
    content: str = ""
    images: Optional[list[str]] = Field(None, description="Base64-encoded images.")
    tool_calls: Optional[list[ToolCall]] = None
    thinking: Optional[str] = None


class ChatRequest(OpenBody):
    model: str = model_field()
    messages: list[ChatMessage] = Field(default_factory=list)
    tools: Optional[list[Tool]] = None
    format: Optional[Union[Literal["json"], dict[str, Any]]] = Field(None, description='"json" or a JSON schema.')
    options: Optional[dict[str, Any]] = Field(None, description="num_predict, temperature, seed, num_ctx ...")
    stream: Optional[bool] = Field(None, description="NDJSON chunks (the default) or one answer.")
    keep_alive: Optional[Union[str, float]] = Field(None, examples=["5m"])
    think: Optional[Union[bool, str]] = None


class Timings(OpenBody):
    total_duration: Optional[int] = Field(None, description="Nanoseconds.")
    load_duration: Optional[int] = None
    prompt_eval_count: Optional[int] = None
    prompt_eval_duration: Optional[int] = None
    eval_count: Optional[int] = None
    eval_duration: Optional[int] = None


class ChatResponse(Timings):
    model: str
    created_at: str
    message: ChatMessage
    done: bool
    done_reason: Optional[str] = None


class GenerateRequest(OpenBody):
    model: str = model_field()
    prompt: Optional[str] = None
    suffix: Optional[str] = None
    system: Optional[str] = None
    template: Optional[str] = None
    context: Optional[list[int]] = None
    images: Optional[list[str]] = None
    format: Optional[Union[Literal["json"], dict[str, Any]]] = None
    options: Optional[dict[str, Any]] = None
    stream: Optional[bool] = None
    raw: Optional[bool] = None
    keep_alive: Optional[Union[str, float]] = None
    think: Optional[Union[bool, str]] = None


class GenerateResponse(Timings):
    model: str
    created_at: str
    response: str
    done: bool
    done_reason: Optional[str] = None
    context: Optional[list[int]] = None


class EmbedRequest(OpenBody):
    model: str = model_field()
    input: Union[str, list[str]] = Field(..., description="One text or several.")
    truncate: Optional[bool] = None
    options: Optional[dict[str, Any]] = None
    keep_alive: Optional[Union[str, float]] = None


class EmbedResponse(OpenBody):
    model: str
    embeddings: list[list[float]]


class EmbeddingsRequest(OpenBody):
    model: str = model_field()
    prompt: str = ""
    options: Optional[dict[str, Any]] = None


class EmbeddingsResponse(OpenBody):
    embedding: list[float]


class ShowRequest(OpenBody):
    model: str = model_field()
    verbose: Optional[bool] = None


class ModelDetails(OpenBody):
    format: Optional[str] = None
    family: Optional[str] = None
    families: Optional[list[str]] = None
    parameter_size: Optional[str] = None
    quantization_level: Optional[str] = None


class ShowResponse(OpenBody):
    license: Optional[str] = None
    modelfile: Optional[str] = None
    parameters: Optional[str] = None
    template: Optional[str] = None
    details: Optional[ModelDetails] = None
    model_info: Optional[dict[str, Any]] = None
    capabilities: Optional[list[str]] = None


class TagsModel(OpenBody):
    name: str
    model: Optional[str] = None
    modified_at: Optional[str] = None
    size: Optional[int] = None
    digest: Optional[str] = None
    details: Optional[ModelDetails] = None
    hosts: list[str] = Field(default_factory=list, description="SOLLOL: the hosts that have it.")


class TagsResponse(BaseModel):
    models: list[TagsModel]


class PsModel(TagsModel):
    expires_at: Optional[str] = None
    size_vram: Optional[int] = None
    host: str = Field("", description="SOLLOL: the host it is loaded on.")


class PsResponse(BaseModel):
    models: list[PsModel]


class VersionResponse(OpenBody):
    version: str


# -- Ollama: model management ------------------------------------------------------------------------
class PullRequest(OpenBody):
    model: str = model_field()
    insecure: Optional[bool] = None
    stream: Optional[bool] = Field(None, description="Merged NDJSON progress (the default) or one answer.")


class PushRequest(PullRequest):
    pass


class CreateRequest(OpenBody):
    model: str = model_field()
    from_: Optional[str] = Field(None, alias="from", description="The model to build on.")
    files: Optional[dict[str, str]] = Field(None, description="File name -> blob digest (upload blobs first).",
                                            examples=[{"model.gguf": "sha256:" + "0" * 64}])
    adapters: Optional[dict[str, str]] = None
    template: Optional[str] = None
    license: Optional[Union[str, list[str]]] = None
    system: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None
    messages: Optional[list[ChatMessage]] = None
    quantize: Optional[str] = None
    modelfile: Optional[str] = Field(None, description="Before Ollama 0.5.5: the Modelfile's text.")
    stream: Optional[bool] = None


class CopyRequest(OpenBody):
    source: str = Field(..., min_length=1, examples=["llama3.2"])
    destination: str = Field(..., min_length=1, examples=["my-llama"])


class DeleteRequest(OpenBody):
    model: str = model_field()


class Progress(OpenBody):
    """One line of a pull, push or create stream (merged over the hosts that act)."""

    status: Optional[str] = Field(None, examples=["pulling manifest"])
    digest: Optional[str] = None
    total: Optional[int] = Field(None, description="Bytes of this layer, summed over the hosts.")
    completed: Optional[int] = None
    error: Optional[str] = None
    hosts: Optional[dict[str, str]] = Field(None, description="Last line: each host's outcome.")


class HostOutcome(OpenBody):
    status_code: Optional[int] = None
    outcome: str = Field(..., description="success, absent (did not have the model), failed, skipped, "
                                          "uploaded, already there")
    result: Any = None


class ManagementResult(OpenBody):
    """Without X-SOLLOL-Host: what each host did."""

    status: Optional[str] = Field(None, examples=["success"])
    error: Optional[str] = None
    hosts: dict[str, HostOutcome] = Field(default_factory=dict)
