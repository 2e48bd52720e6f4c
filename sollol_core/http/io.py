"""HTTP helpers every route module shares.

Reading a bounded JSON body, answering JSON, and BadRequest: bad input raised anywhere in a route and
answered by the gateway in the shape of the route's API family (errors.py).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from ..errors import BadRequest
from .inbound import BodyTooLarge, Inbound


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most `limit` bytes (413 beyond, told by Content-Length or found while reading)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"request body of {declared} bytes is over the limit of {limit} bytes "
                              f"(max_body_bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"request body is over the limit of {limit} bytes (max_body_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a dict, bounded in size; BadRequest otherwise (answered in the route's error shape)."""
    raw = await read_body(request, limit)
    data = parse_json_object(raw)
    request.state.raw_body = raw
    return data


def model_of(data: dict[str, Any]) -> str:
    """The model a request names (`model`, or Ollama's older `name`); BadRequest when it names none."""
    model = data.get("model") or data.get("name")
    if model is None:
        raise BadRequest(400, "model is required")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest(400, "model must be a non-empty string")
    return model


def entries(data: Any, key: str) -> list[dict[str, Any]]:
    """The objects listed under `key` in a host's JSON answer; none when it answered something else."""
    items = data.get(key) if isinstance(data, dict) else None
    return [m for m in items if isinstance(m, dict)] if isinstance(items, list) else []


def int_field(data: dict[str, Any], key: str, default: int) -> int:
    """A whole number (JSON true/false and 1.9 are refused, not truncated)."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise BadRequest(400, f"{key} must be a whole number")
    return int(value)


def float_field(data: dict[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(400, f"{key} must be a number")
    return float(value)


def multipart_fields(body: bytes, content_type: str, names: tuple[str, ...]) -> dict[str, str]:
    """The text fields `names` of a multipart/form-data body (the model of an audio transcription), without
    parsing its files. BadRequest when the body is not multipart/form-data with a boundary."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise BadRequest(400, "send the request as multipart/form-data (a file and its fields)")
    boundary = ""
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        raise BadRequest(400, "multipart/form-data without a boundary")
    wanted = set(names)
    found: dict[str, str] = {}
    for part in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if part.startswith(b"--"):
            break  # the closing delimiter
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        disposition = next((line for line in head.decode("latin-1").split("\r\n")
                            if line.lower().startswith("content-disposition:")), "")
        name = None
        for item in disposition.split(";")[1:]:
            key, _, v = item.strip().partition("=")
            if key.lower() == "name":
                name = v.strip().strip('"')
            elif key.lower() == "filename":
                name = None  # a file, not a field
                break
        if name in wanted and name not in found:
            found[name] = content.removesuffix(b"\r\n").decode("utf-8", errors="replace")
    return found


async def read_inbound_body(req: Inbound, limit: int) -> bytes:
    """The whole body of a hot endpoint's request, at most `limit` bytes (413 beyond)."""
    try:
        return await req.body(limit)
    except BodyTooLarge:
        declared = req.headers.get("content-length")
        size = f"of {declared} bytes " if declared and declared.isdigit() and int(declared) > limit else ""
        raise BadRequest(413, f"request body {size}is over the limit of {limit} bytes (max_body_bytes)") from None


async def read_inbound_json(req: Inbound, limit: int) -> tuple[dict[str, Any], bytes]:
    """The body of a hot endpoint's request as a dict, and its raw bytes (forwarded as they are)."""
    raw = await read_inbound_body(req, limit)
    return parse_json_object(raw), raw


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise BadRequest(400, "request body is empty; send a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(400, f"invalid JSON in request body: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "request body must be a JSON object")
    return data
