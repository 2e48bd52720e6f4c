"""Errors in the shape of the API family a client speaks, as Starlette responses (the shapes themselves are
request.shapes: the request path answers in them too).

Wherever the gateway answers by itself (bad input, no host, model not found, the queue's 503, a missing
key), the official SDKs must see their own error shape and raise their own typed errors:

    ollama     {"error": "..."}
    openai     {"error": {"message": "...", "type": "...", "param": null, "code": ...}}
    anthropic  {"type": "error", "error": {"type": "...", "message": "..."}}

After the first byte of a stream the failure is a frame of the stream instead (`stream_error_frame`).
"""

from __future__ import annotations

from typing import Mapping, Optional

from starlette.responses import Response

from ..request.shapes import ANTHROPIC, OLLAMA, OPENAI, api_for_path, error_body, error_payload, stream_error_frame

__all__ = ["ANTHROPIC", "OLLAMA", "OPENAI", "api_for_path", "error_body", "error_payload", "error_response",
           "stream_error_frame"]


def error_response(api: str, status: int, message: str, *, headers: Optional[Mapping[str, str]] = None,
                   code: Optional[str] = None) -> Response:
    return Response(error_body(api, status, message, code), status_code=status, media_type="application/json",
                    headers=dict(headers) if headers else None)
