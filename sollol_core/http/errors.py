"""Errors in the shape of the API family a client speaks.

Wherever the gateway answers by itself (bad input, no host, model not found, the queue's 503, a missing
key), the official SDKs must see their own error shape and raise their own typed errors:

    ollama     {"error": "..."}
    openai     {"error": {"message": "...", "type": "...", "param": null, "code": ...}}
    anthropic  {"type": "error", "error": {"type": "...", "message": "..."}}

After the first byte of a stream the failure is a frame of the stream instead (`stream_error_frame`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import orjson
from starlette.responses import Response

OLLAMA, OPENAI, ANTHROPIC = "ollama", "openai", "anthropic"

_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
                 429: "rate_limit_error", 503: "service_unavailable"}
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
                    429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}


def api_for_path(path: str) -> str:
    """The API family a path belongs to: /v1/messages is Anthropic's, the rest of /v1 OpenAI's."""
    if path.startswith("/v1/messages"):
        return ANTHROPIC
    if path.startswith("/v1/"):
        return OPENAI
    return OLLAMA


def error_payload(api: str, status: int, message: str, code: Optional[str] = None) -> dict[str, Any]:
    if api == OPENAI:
        etype = _OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": etype, "param": None, "code": code}}
    if api == ANTHROPIC:
        etype = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": etype, "message": message}}
    return {"error": message}


def error_body(api: str, status: int, message: str, code: Optional[str] = None) -> bytes:
    return orjson.dumps(error_payload(api, status, message, code))


def error_response(api: str, status: int, message: str, *, headers: Optional[Mapping[str, str]] = None,
                   code: Optional[str] = None) -> Response:
    return Response(error_body(api, status, message, code), status_code=status, media_type="application/json",
                    headers=dict(headers) if headers else None)


def stream_error_frame(api: str, sse: bool, message: str) -> bytes:
    """The last frame of a stream that broke after its first byte, in the stream's own framing."""
    if api == ANTHROPIC:
        return b"event: error\ndata: " + error_body(ANTHROPIC, 500, message) + b"\n\n"
    if sse:
        return b"data: " + orjson.dumps({"error": {"message": message, "type": "api_error", "param": None,
                                                   "code": None}}) + b"\n\n"
    return orjson.dumps({"error": message}) + b"\n"
