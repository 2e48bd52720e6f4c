"""The request path's answers (request.answer) on the wire: written straight to a connection of the
gateway's own server, or wrapped as ASGI responses for FastAPI routes and in-process clients.

Either way a whole answer's `after` and a stream's `on_close` run exactly once, however the sending ends
(the client may leave before the first byte: Starlette then never starts a body generator, so its
bookkeeping is tied to the response object, not to the generator).
"""

from __future__ import annotations

from typing import Any, Mapping

from starlette.responses import Response, StreamingResponse

from ..request.answer import Answer, Streamed, Whole
from .exchange import Responder
from .inbound import ClientDisconnected

_CONTENT_TYPES: dict[str, tuple[bytes, bytes]] = {}


def _content_type(value: str) -> tuple[bytes, bytes]:
    header = _CONTENT_TYPES.get(value)
    if header is None:
        header = _CONTENT_TYPES[value] = (b"content-type", value.encode("latin-1"))
    return header


def _headers(content_type: str, extra: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    headers = [_content_type(content_type)]
    for name, value in extra.items():
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return headers


async def write_answer(answer: Answer, out: Responder) -> None:
    """Write an answer to the gateway server's connection."""
    if isinstance(answer, Whole):
        try:
            out.whole(answer.status, _headers(answer.content_type, answer.headers), answer.body)
        finally:
            answer.done()
        return
    try:
        out.start(answer.status, _headers(answer.content_type, answer.headers))
        async for chunk in answer.chunks:
            await out.send(chunk)
        out.end()
    except ClientDisconnected:
        pass
    finally:
        await answer.close()


class _WholeResponse(Response):
    def __init__(self, answer: Whole) -> None:
        super().__init__(answer.body, status_code=answer.status, media_type=answer.content_type,
                         headers=dict(answer.headers) if answer.headers else None)
        self._answer = answer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._answer.done()


class _StreamedResponse(StreamingResponse):
    def __init__(self, answer: Streamed) -> None:
        super().__init__(answer.chunks, status_code=answer.status, media_type=answer.content_type,
                         headers=dict(answer.headers) if answer.headers else None)
        self._answer = answer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._answer.close()


def to_asgi(answer: Answer) -> Response:
    """The answer as a Starlette response (for FastAPI routes and ASGI servers)."""
    return _WholeResponse(answer) if isinstance(answer, Whole) else _StreamedResponse(answer)
