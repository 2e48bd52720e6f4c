"""The request bodies and answers of every endpoint, as models for the OpenAPI document (/docs, fuzzers).

Documentation only: the routes read their bodies themselves (the hot path never validates with these; a
body is forwarded byte for byte), so each route gets its schema through `openapi_extra` (see `doc`), and
`install_openapi` puts the models into the document's components. Fields are the ones Ollama, OpenAI and
Anthropic document; bodies allow more (they pass through to the host as they are).
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

REF = "#/components/schemas/{model}"
_REGISTERED: dict[str, type[BaseModel]] = {}


class _Open(BaseModel):
    """A body that may carry more than the fields shown (passed through to the host)."""

    model_config = ConfigDict(extra="allow")


def _model() -> Any:
    return Field(..., min_length=1, description="Model name, e.g. llama3.2 or llama3.2:latest.",
                 examples=["llama3.2"])


# -- errors ------------------------------------------------------------------------------------------
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


# -- Ollama: inference -------------------------------------------------------------------------------
class ToolFunction(_Open):
    name: str
    description: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None


class Tool(_Open):
    type: Literal["function"] = "function"
    function: ToolFunction


class ToolCall(_Open):
    function: dict[str, Any] = Field(..., description='{"name": ..., "arguments": {...}}')


class ChatMessage(_Open):
    role: str = Field(..., examples=["user"], description="system, user, assistant or tool")
    content: str = ""
    images: Optional[list[str]] = Field(None, description="Base64-encoded images.")
    tool_calls: Optional[list[ToolCall]] = None
    thinking: Optional[str] = None


class ChatRequest(_Open):
    model: str = _model()
    messages: list[ChatMessage] = Field(default_factory=list)
    tools: Optional[list[Tool]] = None
    format: Optional[Union[Literal["json"], dict[str, Any]]] = Field(None, description='"json" or a JSON schema.')
    options: Optional[dict[str, Any]] = Field(None, description="num_predict, temperature, seed, num_ctx ...")
    stream: Optional[bool] = Field(None, description="NDJSON chunks (the default) or one answer.")
    keep_alive: Optional[Union[str, float]] = Field(None, examples=["5m"])
    think: Optional[Union[bool, str]] = None


class Timings(_Open):
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


class GenerateRequest(_Open):
    model: str = _model()
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


class EmbedRequest(_Open):
    model: str = _model()
    input: Union[str, list[str]] = Field(..., description="One text or several.")
    truncate: Optional[bool] = None
    options: Optional[dict[str, Any]] = None
    keep_alive: Optional[Union[str, float]] = None


class EmbedResponse(_Open):
    model: str
    embeddings: list[list[float]]


class EmbeddingsRequest(_Open):
    model: str = _model()
    prompt: str = ""
    options: Optional[dict[str, Any]] = None


class EmbeddingsResponse(_Open):
    embedding: list[float]


class ShowRequest(_Open):
    model: str = _model()
    verbose: Optional[bool] = None


class ModelDetails(_Open):
    format: Optional[str] = None
    family: Optional[str] = None
    families: Optional[list[str]] = None
    parameter_size: Optional[str] = None
    quantization_level: Optional[str] = None


class ShowResponse(_Open):
    license: Optional[str] = None
    modelfile: Optional[str] = None
    parameters: Optional[str] = None
    template: Optional[str] = None
    details: Optional[ModelDetails] = None
    model_info: Optional[dict[str, Any]] = None
    capabilities: Optional[list[str]] = None


class TagsModel(_Open):
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


class VersionResponse(_Open):
    version: str


# -- Ollama: model management ------------------------------------------------------------------------
class PullRequest(_Open):
    model: str = _model()
    insecure: Optional[bool] = None
    stream: Optional[bool] = Field(None, description="Merged NDJSON progress (the default) or one answer.")


class PushRequest(PullRequest):
    pass


class CreateRequest(_Open):
    model: str = _model()
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


class CopyRequest(_Open):
    source: str = Field(..., min_length=1, examples=["llama3.2"])
    destination: str = Field(..., min_length=1, examples=["my-llama"])


class DeleteRequest(_Open):
    model: str = _model()


class Progress(_Open):
    """One line of a pull, push or create stream (merged over the hosts that act)."""

    status: Optional[str] = Field(None, examples=["pulling manifest"])
    digest: Optional[str] = None
    total: Optional[int] = Field(None, description="Bytes of this layer, summed over the hosts.")
    completed: Optional[int] = None
    error: Optional[str] = None
    hosts: Optional[dict[str, str]] = Field(None, description="Last line: each host's outcome.")


class HostOutcome(_Open):
    status_code: Optional[int] = None
    outcome: str = Field(..., description="success, absent (did not have the model), failed, skipped, "
                                          "uploaded, already there")
    result: Any = None


class ManagementResult(_Open):
    """Without X-SOLLOL-Host: what each host did."""

    status: Optional[str] = Field(None, examples=["success"])
    error: Optional[str] = None
    hosts: dict[str, HostOutcome] = Field(default_factory=dict)


# -- OpenAI ------------------------------------------------------------------------------------------
class OpenAIMessage(_Open):
    role: str = Field(..., examples=["user"])
    content: Optional[Union[str, list[dict[str, Any]]]] = None


class ChatCompletionRequest(_Open):
    model: str = _model()
    messages: list[OpenAIMessage]
    stream: Optional[bool] = Field(None, description="Server-sent events when true.")
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    seed: Optional[int] = None
    stop: Optional[Union[str, list[str]]] = None
    tools: Optional[list[dict[str, Any]]] = None
    response_format: Optional[dict[str, Any]] = None


class Usage(_Open):
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    total_tokens: Optional[int] = None


class ChatCompletion(_Open):
    id: str
    object: str = Field(..., examples=["chat.completion"])
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Optional[Usage] = None


class CompletionRequest(_Open):
    model: str = _model()
    prompt: Union[str, list[str]]
    stream: Optional[bool] = None
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    seed: Optional[int] = None
    suffix: Optional[str] = None


class Completion(_Open):
    id: str
    object: str = Field(..., examples=["text_completion"])
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Optional[Usage] = None


class EmbeddingRequest(_Open):
    model: str = _model()
    input: Union[str, list[str]]
    encoding_format: Optional[Literal["float", "base64"]] = None
    dimensions: Optional[int] = None


class EmbeddingList(_Open):
    object: str = "list"
    data: list[dict[str, Any]]
    model: str
    usage: Optional[Usage] = None


class ModelObject(_Open):
    id: str
    object: str = "model"
    created: Optional[int] = None
    owned_by: Optional[str] = None


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelObject]


class ResponsesRequest(_Open):
    model: str = _model()
    input: Union[str, list[dict[str, Any]]] = Field(..., description="A text, or a list of input items.")
    instructions: Optional[str] = None
    stream: Optional[bool] = Field(None, description="Server-sent events (response.output_text.delta ...).")
    max_output_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    tools: Optional[list[dict[str, Any]]] = None
    previous_response_id: Optional[str] = None


class ResponseObject(_Open):
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
    model: str = _model()
    language: Optional[str] = None
    prompt: Optional[str] = None
    response_format: Optional[str] = None
    temperature: Optional[float] = None
    stream: Optional[bool] = None


class Transcription(_Open):
    text: str


# -- Anthropic ---------------------------------------------------------------------------------------
class AnthropicMessage(_Open):
    role: Literal["user", "assistant"]
    content: Union[str, list[dict[str, Any]]] = Field(..., description="A text, or content blocks (text, image, "
                                                                        "tool_use, tool_result).")


class AnthropicTool(_Open):
    name: str
    description: Optional[str] = None
    input_schema: dict[str, Any]


class MessagesRequest(_Open):
    model: str = _model()
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


class AnthropicUsage(_Open):
    input_tokens: int
    output_tokens: int


class MessageObject(_Open):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[dict[str, Any]]
    model: str
    stop_reason: Optional[str] = None
    stop_sequence: Optional[str] = None
    usage: AnthropicUsage


# -- SOLLOL ------------------------------------------------------------------------------------------
class HealthResponse(_Open):
    """Everyone gets the status; the operator also the hosts (their addresses are not everyone's to see)."""

    status: Literal["ok", "degraded", "down"]
    hosts_total: Optional[int] = None
    hosts_available: Optional[int] = None
    hosts: Optional[dict[str, dict[str, Any]]] = None
    timestamp: Optional[str] = None


class StatsResponse(_Open):
    hosts: list[dict[str, Any]]
    routing: dict[str, Any]
    gateway: dict[str, Any]
    executor: dict[str, Any]
    components: dict[str, Any]
    timestamp: str


class AddHost(BaseModel):
    host: str = Field(..., description="host:port", examples=["10.0.0.2:11434"])
    priority: int = Field(0, ge=0)
    weight: float = Field(1.0, gt=0)


class HostChange(BaseModel):
    priority: Optional[int] = Field(None, ge=0)
    weight: Optional[float] = Field(None, gt=0)


class HostAnswer(_Open):
    status: Optional[str] = None
    host: str
    priority: Optional[int] = None
    weight: Optional[float] = None


class RoutingChange(BaseModel):
    strategy: Optional[Literal["performance", "p2c", "round_robin", "priority"]] = None
    weights: Optional[dict[str, float]] = Field(None, examples=[{"latency": 0.5}])


class RoutingAnswer(BaseModel):
    strategy: str
    weights: dict[str, float]


class EmbedBatchRequest(BaseModel):
    docs: list[str] = Field(..., min_length=1)
    model: str = Field(..., min_length=1, examples=["nomic-embed-text"])
    ids: Optional[list[str]] = Field(None, description="One unique id per document.")


class BatchQueued(BaseModel):
    job_id: str
    queued: int


class BatchJob(_Open):
    job_id: Optional[str] = None
    status: Optional[str] = Field(None, description="queued, in_progress, done or failed")
    results: Optional[list[dict[str, Any]]] = Field(None, description='[{"id", "embedding"}] in document order')
    errors: Optional[list[dict[str, Any]]] = None
    offset: Optional[int] = None
    limit: Optional[int] = None
    next_offset: Optional[int] = None


class BatchStatus(_Open):
    queued: Optional[int] = None
    in_progress: Optional[int] = None
    done: Optional[int] = None
    failed: Optional[int] = None
    dask: Optional[dict[str, Any]] = None
    jobs: Optional[list[dict[str, Any]]] = None


class BatchTriggered(_Open):
    triggered: bool
    queued: int
    reason: Optional[str] = None


# -- wiring into the document -------------------------------------------------------------------------
def _ref(model: type[BaseModel]) -> dict[str, Any]:
    _REGISTERED[model.__name__] = model
    return {"$ref": REF.format(model=model.__name__)}


BINARY: dict[str, Any] = {"type": "string", "format": "binary",
                          "description": "The blob's bytes (sent on as they arrive)."}


def _content(model: Union[type[BaseModel], dict[str, Any], None], media: str) -> dict[str, Any]:
    if isinstance(model, dict):
        return {media: {"schema": model}}
    return {media: {"schema": _ref(model) if model is not None else {}}}


def doc(request: Union[type[BaseModel], dict[str, Any], None] = None, answer: Optional[type[BaseModel]] = None, *,
        api: str = "ollama", stream: Optional[str] = None, request_media: str = "application/json",
        answer_media: str = "application/json", answer_status: int = 200, errors: tuple[int, ...] = (400,),
        headers: Optional[dict[str, str]] = None, query: Optional[dict[str, tuple[str, str]]] = None) -> dict[str, Any]:
    """openapi_extra for one route: its body, its answer (and its stream's media type), its errors."""
    error_models: dict[str, type[BaseModel]] = {"openai": OpenAIError, "anthropic": AnthropicError}
    error_model = error_models.get(api, OllamaError)
    extra: dict[str, Any] = {}
    if request is not None:
        extra["requestBody"] = {"required": True, "content": _content(request, request_media)}
    content = _content(answer, answer_media) if answer is not None else {}
    if stream is not None:
        content[stream] = {"schema": {"type": "string", "description": "a stream: " + (
            "server-sent events" if stream == "text/event-stream" else "one JSON object a line")}}
    responses: dict[str, Any] = {str(answer_status): {"description": "The answer.", "content": content}}
    if answer_status != 200:
        responses["200"] = {"description": "Nothing to do."}
    for status in errors:
        responses[str(status)] = {"description": _ERROR_TEXT.get(status, "Error."),
                                  "content": _content(error_model, "application/json")}
    extra["responses"] = responses
    parameters = [{"name": name, "in": "header", "required": False, "schema": {"type": "string"},
                   "description": text} for name, text in (headers or {}).items()]
    parameters += [{"name": name, "in": "query", "required": False, "schema": {"type": kind},
                    "description": text} for name, (kind, text) in (query or {}).items()]
    if parameters:
        extra["parameters"] = parameters
    return extra


_ERROR_TEXT = {400: "Bad input.", 401: "Missing or wrong API key (client routes once api_keys is set) or operator "
                                 "token (operator routes once admin_token is set).",
               403: "Refused: a Host or Origin this gateway does not serve, or an operator route beyond "
                    "loopback without admin_token.",
               415: "A JSON route got a Content-Type other than application/json.",
               429: "Over the key's rate, or its batch quota.",
               404: "No host has the model (or no such host / job).", 413: "Body over max_body_bytes.",
               502: "Every host tried failed.", 503: "No host available."}

HOST_HEADER = {"X-SOLLOL-Host": "host:port to act on only that host, or 'all'. Without: see the README."}


def _guard_answers(path: str, method: str, responses: dict[str, Any]) -> None:
    """The refusals of the guard (guard.py), which every route may answer: 401 and 403 (a root or health
    request can still be refused for its Host or Origin), and 415 for a body that is not JSON."""
    family = "anthropic" if path.startswith("/v1/messages") else "openai" if path.startswith("/v1/") else "ollama"
    models: dict[str, type[BaseModel]] = {"openai": OpenAIError, "anthropic": AnthropicError}
    model = models.get(family, OllamaError)
    statuses = [403] if path in ("/", "/api/health") else [401, 403]
    if method in ("post", "put", "patch", "delete") and path not in ("/api/blobs/{digest}",
                                                                      "/v1/audio/transcriptions"):
        statuses.append(415)
    for status in statuses:
        responses.setdefault(str(status), {"description": _ERROR_TEXT[status],
                                           "content": _content(model, "application/json")})


def install_openapi(app: FastAPI) -> None:
    """The document FastAPI builds, with the models above in its components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        # no route validates with FastAPI (each reads its own body and answers 400 in its API's shape):
        # the 422 FastAPI documents for routes with path parameters never comes
        for path, item in schema.get("paths", {}).items():
            for method, operation in item.items():
                responses = operation.get("responses", {})
                responses.pop("422", None)
                _guard_answers(path, method, responses)
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        for name, model in sorted(_REGISTERED.items()):
            js = model.model_json_schema(ref_template=REF)
            components.update(js.pop("$defs", {}))
            components[name] = js
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
