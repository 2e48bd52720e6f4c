"""What the request path hands the HTTP layer: a whole answer or a stream, and what must run once its bytes
were handed to the connection, however the sending ends (the books, the slot, the in-flight count).

No HTTP framework here: the gateway's own server writes these straight to the connection, and the ASGI
adapter (http) wraps them for FastAPI routes and in-process test clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable, Mapping, Optional, Union

from .shapes import error_body

JSON = "application/json"


@dataclass(slots=True)
class Whole:
    """A whole answer. `after` runs once, after the bytes were handed over (or the sending failed)."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    after: Optional[Callable[[], None]] = None

    def done(self) -> None:
        after, self.after = self.after, None
        if after is not None:
            after()


@dataclass(slots=True)
class Streamed:
    """A streamed answer: `chunks` as they come; `on_close` runs once however the stream ends (complete,
    broken, or its client gone), after the last chunk was handed over."""

    status: int
    chunks: AsyncIterator[bytes]
    content_type: str
    on_close: Callable[[], Awaitable[None]]
    headers: Mapping[str, str] = field(default_factory=dict)
    _closed: bool = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        aclose = getattr(self.chunks, "aclose", None)
        try:
            if aclose is not None:
                await aclose()
        finally:
            await self.on_close()


Answer = Union[Whole, Streamed]


def error_answer(api: str, status: int, message: str, headers: Optional[Mapping[str, str]] = None) -> Whole:
    """The gateway's own refusal, in the API family's error shape."""
    return Whole(status, error_body(api, status, message), JSON, dict(headers) if headers else {})
