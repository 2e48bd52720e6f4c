"""A lean HTTP/1.1 client for upstream calls: keep-alive pool per host, streaming bodies, timeouts.

Why not aiohttp or httpx: the gateway's added latency is mostly client overhead. httpx's pool throttles
a proxy at concurrency (encode/httpx#3215) and aiohttp's client costs about 0.17 ms more per call than
this (measured side by side on one node) — a large share of a 1 ms latency budget. Ollama speaks plain
HTTP/1.1 with Content-Length or chunked bodies, which is all this needs; httptools
does the parsing in C.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from dataclasses import dataclass
from typing import AsyncIterator, Optional, Union, cast

import httptools

from ..errors import UpstreamFailure

MAX_IDLE_PER_HOST = 256
PAUSE_ABOVE_BYTES = 1 << 20  # stop reading from a host while this much is waiting for a slow client


@dataclass
class StreamBody:
    """A request body sent as it is read (a model blob of several GB), never held whole.

    `length` known: sent with Content-Length (the source must yield exactly that many bytes); None:
    sent with chunked transfer encoding.
    """

    chunks: AsyncIterator[bytes]
    length: Optional[int] = None


Body = Union[bytes, StreamBody, None]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; serves one request at a time."""

    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self.parser = httptools.HttpResponseParser(self)
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.reused = False
        self.write_paused = False  # the transport's write buffer is full: wait before writing more
        # one timer per connection, moved lazily: a wait sets the deadline; a timer that fires early looks
        # again at it (a request's waits then cost no timer handles of their own)
        self._deadline = 0.0
        self._timer: Optional[asyncio.TimerHandle] = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.got_bytes = False
        self.error: Optional[BaseException] = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.body_unsent = False  # the host answered before the whole body was sent: not reusable
        self.no_body = False  # the answer to a HEAD: no body follows, whatever its headers say
        self.waiter: Optional[asyncio.Future[None]] = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection: a full Transport

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.error = UpstreamFailure(f"invalid HTTP from the host: {e}")
            self._close()
        self._wake()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        if self._timer is not None:  # a closed connection keeps no timer (nor itself) alive
            self._timer.cancel()
            self._timer = None
        if not self.complete and self.error is None:
            if self.headers_done and "content-length" not in self.headers and \
                    "chunked" not in self.headers.get("transfer-encoding", ""):
                self.complete = True  # a body delimited by the end of the connection
            else:
                self.error = UpstreamFailure("host closed the connection" if not self.headers_done
                                             else "connection closed before the answer was complete")
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()  # known here, reset once the message completes
        self.headers_done = True
        if self.no_body:
            # the parser cannot be told that a HEAD answer has no body: complete it here, and close the
            # connection afterwards rather than hand the parser a next answer in the wrong state
            self.complete = True
            self.keep_alive = False

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > PAUSE_ABOVE_BYTES and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.complete = True

    # helpers
    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def wait(self, timeout: float) -> None:
        """Until more arrives, the connection ends, or `timeout` seconds pass without news."""
        self.waiter = fut = self.loop.create_future()
        deadline = self._deadline = self.loop.time() + timeout
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._check_deadline)
        try:
            await fut
        finally:
            self.waiter = None

    def _check_deadline(self) -> None:
        self._timer = None
        fut = self.waiter
        if fut is None or fut.done():
            return  # nothing waits now: the next wait arms a timer of its own
        left = self._deadline - self.loop.time()
        if left > 0.0:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)
            return
        fut.set_exception(asyncio.TimeoutError())

    async def wait_headers(self, timeout: float) -> None:
        """Until the answer's status and headers are in (at most `timeout` s without news each time)."""
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self.wait(timeout)

    def send(self, method: str, host: str, path: str, body: Optional[bytes],
             content_type: Optional[str] = None) -> None:
        self._reset()
        self.no_body = method == "HEAD"
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
        if body is not None:
            head += f"Content-Type: {content_type or 'application/json'}\r\nContent-Length: {len(body)}\r\n\r\n"
            self.transport.write(head.encode("latin-1") + body)  # type: ignore[union-attr]  # connected: set
        else:
            self.transport.write((head + "\r\n").encode("latin-1"))  # type: ignore[union-attr]  # connected: set

    async def send_stream(self, method: str, host: str, path: str, body: StreamBody,
                          content_type: Optional[str], timeout: float) -> None:
        """Send the head, then the body as its source yields it, at the pace the host reads it.

        Stops early (leaving the connection unusable for another request) when the host answers first.
        """
        self._reset()
        head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: {content_type or 'application/octet-stream'}\r\n")
        length = body.length
        chunked = length is None
        head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {length}\r\n\r\n"
        transport = self.transport
        assert transport is not None
        transport.write(head.encode("latin-1"))
        sent = 0
        async for chunk in body.chunks:
            if self.error is not None:
                raise self.error
            if self.closed:
                raise UpstreamFailure("host closed the connection during the upload")
            if self.headers_done:  # answered already (an error): the rest is not wanted
                self.body_unsent = True
                return
            if not chunk:
                continue
            sent += len(chunk)
            if length is not None and sent > length:
                raise UpstreamFailure(f"the body is longer than its declared {length} bytes")
            transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            while self.write_paused and not self.closed and not self.headers_done:
                try:
                    await self.wait(timeout)
                except asyncio.TimeoutError:
                    raise UpstreamFailure(f"the host read none of the upload for {timeout:g} s") from None
        if chunked:
            transport.write(b"0\r\n\r\n")
        elif sent != body.length:
            self.body_unsent = True
            raise UpstreamFailure(f"the body ended after {sent} of its declared {body.length} bytes")

    def take(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self.paused and not self.closed and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    @property
    def reusable(self) -> bool:
        # a paused transport would never hear the next answer: such a connection is closed, not reused
        return (self.complete and not self.closed and self.error is None and self.keep_alive and not self.paused
                and not self.body_unsent)


class LeanResponse:
    """Status and headers are known; the body is read with read() or chunks(); close() always."""

    def __init__(self, pool: "HttpPool", host: str, conn: _Connection, timeout: float) -> None:
        self._pool = pool
        self._host = host
        self._conn = conn
        self._timeout = timeout
        self.status = conn.status
        self.headers = conn.headers
        self.content_type = conn.headers.get("content-type", "application/json")
        self._body: Optional[bytes] = None

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
                continue
            if conn.complete:
                return
            if conn.error is not None:
                raise conn.error
            try:
                await conn.wait(self._timeout)
            except asyncio.TimeoutError:
                raise UpstreamFailure(f"no data from the host for {self._timeout:g} s") from None

    async def read(self) -> bytes:
        """The whole body; kept, so a second read() returns it again."""
        if self._body is None:
            # the loop of chunks(), without an async generator: a small answer is most often in already
            conn = self._conn
            parts: list[bytes] = []
            while True:
                if conn.chunks:
                    parts.append(conn.take())
                    continue
                if conn.complete:
                    break
                if conn.error is not None:
                    raise conn.error
                try:
                    await conn.wait(self._timeout)
                except asyncio.TimeoutError:
                    raise UpstreamFailure(f"no data from the host for {self._timeout:g} s") from None
            self._body = parts[0] if len(parts) == 1 else b"".join(parts)
        return self._body

    async def close(self) -> None:
        conn, self._conn = self._conn, None  # type: ignore[assignment]  # None once closed; not read after
        if conn is None:
            return
        if conn.reusable:
            self._pool.release(self._host, conn)
        else:
            conn._close()


class HttpPool:
    """Keep-alive connections per host:port."""

    def __init__(self, connect_timeout: float = 5.0) -> None:
        self.connect_timeout = connect_timeout
        self._idle: dict[str, deque[_Connection]] = {}
        # every open connection, for close(); weak, so one that was closed and dropped leaves by itself
        self._all: weakref.WeakSet[_Connection] = weakref.WeakSet()

    async def _connect(self, host: str) -> _Connection:
        name, _, port = host.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(_Connection, name.strip("[]"), int(port)),
                                             self.connect_timeout)
        except asyncio.TimeoutError:
            raise UpstreamFailure(f"cannot connect: no answer within {self.connect_timeout:g} s") from None
        except OSError as e:
            raise UpstreamFailure(f"cannot connect: {e.strerror or e}") from None
        self._all.add(conn)
        return conn

    def _idle_conn(self, host: str) -> Optional[_Connection]:
        idle = self._idle.get(host)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                return conn
            self._all.discard(conn)
        return None

    def release(self, host: str, conn: _Connection) -> None:
        idle = self._idle.setdefault(host, deque())
        if len(idle) >= MAX_IDLE_PER_HOST:
            conn._close()
            self._all.discard(conn)
        else:
            idle.append(conn)

    async def request(self, host: str, method: str, path: str, body: Body,
                      timeout: float, content_type: Optional[str] = None) -> LeanResponse:
        """Send and wait for the status line and headers (at most `timeout` s without news).

        A StreamBody goes on a new connection (it cannot be sent twice, so no kept-alive connection the
        host may have closed meanwhile) and is read from its source only as fast as the host takes it.
        The path goes into the request line as it is: one with a space, CR, LF or any other control
        character is refused (ValueError; the routes validate or percent-encode every piece of it).
        """
        if not (path.isascii() and path.isprintable() and " " not in path):
            raise ValueError(f"refusing to send an unsafe request target to {host}: {path[:80]!r}")
        if isinstance(body, StreamBody):
            return await self._request_stream(host, method, path, body, timeout, content_type)
        conn = self._idle_conn(host)
        for attempt in (0, 1):
            if conn is None:
                conn = await self._connect(host)
            conn.send(method, host, path, body, content_type)
            try:
                await conn.wait_headers(timeout)
            except asyncio.TimeoutError:
                conn._close()
                raise UpstreamFailure(f"no answer from the host within {timeout:g} s") from None
            except UpstreamFailure:
                # a kept-alive connection the host had already closed: once more on a fresh one
                if conn.reused and not conn.got_bytes and attempt == 0:
                    self._all.discard(conn)
                    conn = None
                    continue
                self._all.discard(conn)
                raise
            except asyncio.CancelledError:
                conn._close()
                raise
            return LeanResponse(self, host, conn, timeout)
        raise UpstreamFailure("host closed the connection")  # pragma: no cover - loop always returns

    async def _request_stream(self, host: str, method: str, path: str, body: StreamBody, timeout: float,
                              content_type: Optional[str]) -> LeanResponse:
        conn = await self._connect(host)
        try:
            await conn.send_stream(method, host, path, body, content_type, timeout)
            await conn.wait_headers(timeout)
        except asyncio.TimeoutError:
            conn._close()
            self._all.discard(conn)
            raise UpstreamFailure(f"no answer from the host within {timeout:g} s") from None
        except BaseException:
            conn._close()
            self._all.discard(conn)
            raise
        return LeanResponse(self, host, conn, timeout)

    async def close(self) -> None:
        for conn in list(self._all):
            conn._close()
        self._all.clear()
        self._idle.clear()
