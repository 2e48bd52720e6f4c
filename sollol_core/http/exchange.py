"""One request and its answer on a connection of the gateway's own server (server.py): the request as a
native handler reads it (Inbound: the head at once, the body when asked for) and the answer it writes
(Responder: whole, or streamed with chunked transfer encoding).

Both see their connection only through `Connection`, the few things of it they use.
"""

from __future__ import annotations

import asyncio
from collections import deque
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Mapping, Optional, Protocol
from urllib.parse import unquote

from .inbound import BodyTooLarge, ClientDisconnected

__all__ = ["BodyTooLarge", "Connection", "Handler", "Inbound", "Responder", "status_line"]


class Connection(Protocol):
    """What a request and its answer use of their client connection (server._Connection)."""

    loop: asyncio.AbstractEventLoop
    peer: tuple[str, int]
    closed: bool
    closing: bool  # answering the last request: no keep-alive
    write_paused: bool

    def write(self, data: bytes) -> None: ...

    def body_drained(self, req: "Inbound") -> None:
        """The handler took body bytes: reading from the client may resume."""

    async def drained(self) -> None:
        """Until the client has read enough of what was written."""

    def close(self) -> None: ...


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d %s\r\n" % (status, _reason(status))


class Inbound:
    """One request as a native handler sees it: the head at once, the body when asked for."""

    __slots__ = ("conn", "method", "path", "raw_path", "query_string", "raw_headers", "headers",
                 "http_version", "client", "keep_alive", "expect_continue", "declared_length", "chunks",
                 "buffered", "received", "complete", "gone", "_waiter", "_continued", "state")

    def __init__(self, conn: "Connection", method: str, raw_path: bytes, query_string: bytes,
                 raw_headers: list[tuple[bytes, bytes]], http_version: str, keep_alive: bool) -> None:
        self.conn = conn
        self.method = method
        self.raw_path = raw_path
        self.path = unquote(raw_path.decode("latin-1")) if b"%" in raw_path else raw_path.decode("latin-1")
        self.query_string = query_string
        self.raw_headers = raw_headers
        # names in lower case; of a repeated header the first (reversed: the first is written last)
        self.headers: Mapping[str, str] = {n.decode("latin-1"): v.decode("latin-1") for n, v in reversed(raw_headers)}
        self.http_version = http_version
        self.client: tuple[str, int] = conn.peer
        self.keep_alive = keep_alive
        self.expect_continue = self.headers.get("expect", "").lower() == "100-continue"
        length = self.headers.get("content-length")
        self.declared_length: Optional[int] = int(length) if length and length.isdigit() else None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.received = 0
        self.complete = False
        self.gone = False
        self._waiter: Optional[asyncio.Future[None]] = None
        self._continued = False
        self.state: dict[str, Any] = {}

    @property
    def client_host(self) -> str:
        return self.client[0]

    # the body ------------------------------------------------------------------------------------
    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _ask_for_body(self) -> None:
        if self.expect_continue and not self._continued and not self.complete:
            self._continued = True
            self.conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    async def next_chunk(self) -> Optional[bytes]:
        """The next piece of the body as it arrives; None at its end. Raises ClientDisconnected."""
        self._ask_for_body()
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                self.conn.body_drained(self)
                return chunk
            if self.complete:
                return None
            if self.gone:
                raise ClientDisconnected()
            self._waiter = self.conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def body(self, limit: int) -> bytes:
        """The whole body (at most `limit` bytes: BodyTooLarge beyond, before reading it when declared)."""
        if self.declared_length is not None and self.declared_length > limit:
            raise BodyTooLarge(limit)
        parts: list[bytes] = []
        size = 0
        while True:
            chunk = await self.next_chunk()
            if chunk is None:
                break
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def wait_gone(self) -> None:
        """Returns once the client has gone away (the queue uses it to drop a waiting request)."""
        while not self.gone:
            self._waiter = self.conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


class Responder:
    """Writes one answer to its connection: whole, or streamed with chunked transfer encoding."""

    __slots__ = ("conn", "request", "started", "finished", "chunked", "head_only", "status")

    def __init__(self, conn: "Connection", request: Inbound) -> None:
        self.conn = conn
        self.request = request
        self.started = False
        self.finished = False
        self.chunked = False
        self.head_only = request.method == "HEAD"
        self.status = 0

    @property
    def gone(self) -> bool:
        return self.request.gone or self.conn.closed

    def _head(self, status: int, headers: list[tuple[bytes, bytes]], length: Optional[int]) -> bytes:
        keep = self.request.keep_alive and not self.conn.closing and self.request.complete
        out = [status_line(status)]
        for name, value in headers:
            out.append(name + b": " + value + b"\r\n")
        if length is not None:
            out.append(b"content-length: %d\r\n" % length)
        elif not self.head_only and status >= 200 and status not in (204, 304):
            if self.request.http_version == "1.1":
                self.chunked = True
                out.append(b"transfer-encoding: chunked\r\n")
            else:
                keep = False  # HTTP/1.0: the body ends with the connection
        if not keep:
            self.request.keep_alive = False
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        return b"".join(out)

    def whole(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """The whole answer in one write (headers without content-length: it is added)."""
        self.started = self.finished = True
        self.status = status
        head = self._head(status, headers, len(body))
        self.conn.write(head if self.head_only else head + body)

    def start(self, status: int, headers: list[tuple[bytes, bytes]], length: Optional[int] = None) -> None:
        self.started = True
        self.status = status
        self.conn.write(self._head(status, headers, length))

    async def send(self, chunk: bytes) -> None:
        """One piece of a streamed body, at the pace the client reads (raises ClientDisconnected)."""
        if self.gone:
            raise ClientDisconnected()
        if chunk and not self.head_only:
            self.conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if self.chunked else chunk)
            if self.conn.write_paused:
                await self.conn.drained()

    def end(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.chunked and not self.gone and not self.head_only:
            self.conn.write(b"0\r\n\r\n")


Handler = Callable[[Inbound, Responder], Awaitable[None]]
"""A native handler: reads what it needs from the Inbound, answers through the Responder."""
