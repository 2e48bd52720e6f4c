"""The models wired into the OpenAPI document: each route's request and answers (`doc`, through
`openapi_extra`), and `install_openapi`, which puts every model the routes named into the components."""

from __future__ import annotations

from typing import Any, Optional, Union

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from .errors import AnthropicError, OllamaError, OpenAIError

__all__ = ["BINARY", "HOST_HEADER", "doc", "install_openapi"]

REF = "#/components/schemas/{model}"
_REGISTERED: dict[str, type[BaseModel]] = {}


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
