"""The gateway's own errors as Starlette responses, in the shape of the API family a client speaks (the
shapes themselves, and why each SDK needs its own, are in request.shapes: the request path answers in them
too)."""

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
