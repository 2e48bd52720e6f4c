"""SOLLOL's HTTP/1.1 server: one asyncio protocol per connection, httptools (C) for parsing.

The gateway's hot endpoints (inference) are answered natively: the handler gets the request head, reads the
body when it decides to (after checking who is asking), and writes its answer straight to the transport.
Everything else (listings, operator routes, model management, /docs) goes to the ASGI app (FastAPI)
through a small ASGI adapter, streaming request and response bodies both ways.

Why not uvicorn: measured on a 2-core machine, uvicorn's httptools protocol costs about 0.15 ms of CPU per
request for an app that answers at once, against about 0.03 ms here; for a forwarder that is half of the
whole per-request budget. uvicorn also has no deadline for a request head nor for a slow body, which a
gateway needs (a client that sends one byte a second must not hold a connection and its buffer forever).

Deadlines, per connection (ConnectionLimits):
    idle       a connection with no request in progress (a fresh one, or kept alive between requests) is
               closed after `idle_timeout_s`
    head       a request head must be complete within `header_timeout_s` of its first byte (431 above
               `max_head_bytes`)
    body       a body must arrive within `body_timeout_s` plus the time its bytes take at
               `body_min_bytes_per_s`; the time the gateway itself stops reading (backpressure) does not count
    writing    an answer the client does not read for `body_timeout_s` is cut
    count      above `max_connections` open connections a new one is answered 503 and closed
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Mapping, MutableMapping, Optional, Protocol
from urllib.parse import unquote

import httptools

from .inbound import BodyTooLarge, ClientDisconnected

log = logging.getLogger("sollol.http")

BODY_BUFFER_BYTES = 1 << 20  # unread request body kept before reading from the client pauses
MAX_PIPELINED = 16  # requests parsed ahead of the one being answered before reading pauses


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client connection may take; see the module docstring."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    body_min_bytes_per_s: float = 16384.0
    idle_timeout_s: float = 30.0
    max_connections: int = 1024
    max_head_bytes: int = 65536


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

    def __init__(self, conn: "_Connection", method: str, raw_path: bytes, query_string: bytes,
                 raw_headers: list[tuple[bytes, bytes]], http_version: str, keep_alive: bool) -> None:
        self.conn = conn
        self.method = method
        self.raw_path = raw_path
        self.path = unquote(raw_path.decode("latin-1")) if b"%" in raw_path else raw_path.decode("latin-1")
        self.query_string = query_string
        self.raw_headers = raw_headers
        headers: dict[str, str] = {}
        for name, value in raw_headers:
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        self.headers: Mapping[str, str] = headers  # names in lower case; the first of repeated ones
        self.http_version = http_version
        self.client: tuple[str, int] = conn.peer
        self.keep_alive = keep_alive
        self.expect_continue = headers.get("expect", "").lower() == "100-continue"
        length = headers.get("content-length")
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

    def __init__(self, conn: "_Connection", request: Inbound) -> None:
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


class AsgiApp(Protocol):
    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
                       send: Callable[[MutableMapping[str, Any]], Awaitable[None]]) -> None: ...


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them one at a time, in order."""

    def __init__(self, server: "GatewayServer") -> None:
        self.server = server
        self.limits = server.limits
        self.loop = server.loop
        self.transport: Optional[asyncio.Transport] = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer: tuple[str, int] = ("", 0)
        self.closed = False
        self.closing = False  # answering the last request: no keep-alive
        self.write_paused = False
        self.read_paused: set[str] = set()  # why reading is paused: "body", "pipeline"
        self._drain: Optional[asyncio.Future[None]] = None
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_kind = ""
        self._deadline = 0.0
        self._paused_at = 0.0
        # the request being parsed
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._parsing: Optional[Inbound] = None
        self._in_head = False
        # requests parsed and waiting to be answered, and the one being answered
        self._queue: deque[Inbound] = deque()
        self._active: Optional[Inbound] = None
        self._task: Optional[asyncio.Task[None]] = None

    # asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (str(peer[0]), int(peer[1]))
        self.server.connections.add(self)
        if len(self.server.connections) > self.limits.max_connections:
            self.server.refused += 1
            body = b'{"error":"too many connections to the gateway; retry later"}'
            self.write(status_line(503) + b"content-type: application/json\r\nretry-after: 1\r\n"
                       b"connection: close\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body))
            self.close()
            return
        self._arm("idle", self.limits.idle_timeout_s)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self._disarm()
        for req in (self._active, self._parsing, *self._queue):
            if req is not None:
                req.gone = True
                req._wake()
        d = self._drain
        if d is not None and not d.done():
            d.set_result(None)

    def eof_received(self) -> Optional[bool]:
        # the client closed its side: whatever it asked for, nobody reads the answer
        for req in (self._active, self._parsing, *self._queue):
            if req is not None:
                req.gone = True
                req._wake()
        return False  # close the transport

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        d = self._drain
        if d is not None and not d.done():
            d.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._timer_kind == "idle":
            self._arm("head", self.limits.header_timeout_s)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as e:
            self._refuse(400, f"malformed HTTP request: {e}")
        except _HeadTooLarge:
            self._refuse(431, "request head too large")

    # httptools callbacks --------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._in_head = True
        if self._timer_kind in ("idle", ""):
            self._arm("head", self.limits.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        self._count_head(len(name) + len(value) + 4)

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.limits.max_head_bytes:
            raise _HeadTooLarge()

    def on_headers_complete(self) -> None:
        self._in_head = False
        parsed = httptools.parse_url(self._url)
        req = Inbound(self, self.parser.get_method().decode("ascii"), parsed.path or b"/", parsed.query or b"",
                      self._headers, self.parser.get_http_version(), self.parser.should_keep_alive())
        self._parsing = req
        if req.declared_length or "chunked" in req.headers.get("transfer-encoding", "").lower():
            self._arm("body", self.limits.body_timeout_s)
        else:
            self._disarm()
        if self._active is None:
            self._start(req)
        else:
            self._queue.append(req)
            if len(self._queue) >= MAX_PIPELINED:
                self._pause("pipeline")

    def on_body(self, body: bytes) -> None:
        req = self._parsing
        if req is None:
            return
        req.chunks.append(body)
        req.buffered += len(body)
        req.received += len(body)
        if self._timer_kind == "body":
            self._deadline += len(body) / self.limits.body_min_bytes_per_s
        if req.buffered > BODY_BUFFER_BYTES:
            self._pause("body")
        req._wake()

    def on_message_complete(self) -> None:
        req = self._parsing
        if req is not None:
            req.complete = True
            req._wake()
        self._parsing = None
        if self._timer_kind == "body":
            self._disarm()

    # reading and writing --------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    async def drained(self) -> None:
        """Until the client has read enough of what was written (cut after body_timeout_s)."""
        if not self.write_paused or self.closed:
            return
        self._drain = self.loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._drain), self.limits.body_timeout_s)
        except asyncio.TimeoutError:
            log.info("client %s read nothing for %g s: connection closed", self.peer[0], self.limits.body_timeout_s)
            self.close()
        finally:
            self._drain = None
        if self.closed:
            raise ClientDisconnected()

    def body_drained(self, req: Inbound) -> None:
        if req.buffered <= BODY_BUFFER_BYTES // 2:
            self._resume("body")

    def _pause(self, why: str) -> None:
        if not self.read_paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
            self._paused_at = time.monotonic()
        self.read_paused.add(why)

    def _resume(self, why: str) -> None:
        if why not in self.read_paused:
            return
        self.read_paused.discard(why)
        if not self.read_paused and self.transport is not None and not self.closed:
            if self._timer_kind == "body":  # our own pause is not the client's slowness
                self._deadline += time.monotonic() - self._paused_at
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.close()
        self.closed = True

    def _refuse(self, status: int, message: str) -> None:
        """A request that cannot be parsed: answered (when nothing else is being answered) and closed."""
        if self._active is None and not self.closed:
            body = b'{"error":"%s"}' % message.replace('"', "'").encode("latin-1", "replace")
            self.write(status_line(status) + b"content-type: application/json\r\nconnection: close\r\n"
                       b"content-length: %d\r\n\r\n%b" % (len(body), body))
        self.close()

    # deadlines --------------------------------------------------------------------------------------
    def _arm(self, kind: str, seconds: float) -> None:
        self._disarm()
        self._timer_kind = kind
        self._deadline = time.monotonic() + seconds
        self._timer = self.loop.call_later(seconds, self._check_deadline)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_kind = ""

    def _check_deadline(self) -> None:
        self._timer = None
        left = self._deadline - time.monotonic()
        if self._timer_kind == "body" and self.read_paused:
            left = max(left, 1.0)  # not reading by our own choice: look again later
        if left > 0.001:
            self._timer = self.loop.call_later(left, self._check_deadline)
            return
        kind, self._timer_kind = self._timer_kind, ""
        self.server.cut[kind] = self.server.cut.get(kind, 0) + 1
        if kind == "idle":
            self.close()
        elif kind == "head":
            log.info("client %s sent no complete request head within %g s: connection closed", self.peer[0],
                     self.limits.header_timeout_s)
            self._refuse(408, "request head not received in time")
        else:
            log.info("client %s sent its request body too slowly: connection closed", self.peer[0])
            req = self._parsing
            if req is not None:
                req.gone = True
                req._wake()
            self._refuse(408, "request body not received in time")

    # answering --------------------------------------------------------------------------------------
    def _start(self, req: Inbound) -> None:
        self._active = req
        self._task = self.loop.create_task(self._answer(req))
        self.server.tasks.add(self._task)
        self._task.add_done_callback(self.server.tasks.discard)

    async def _answer(self, req: Inbound) -> None:
        responder = Responder(self, req)
        try:
            handler = self.server.handlers.get((req.method, req.path))
            if handler is not None:
                await handler(req, responder)
            else:
                await _Asgi(self.server.app, req, responder).run()
        except ClientDisconnected:
            pass
        except asyncio.CancelledError:
            self.close()
            raise
        except Exception:  # a bug: the client hears 500 when nothing was sent yet, else the connection ends
            log.exception("unexpected error answering %s %s", req.method, req.path)
            if not responder.started and not self.closed:
                responder.whole(500, [(b"content-type", b"application/json")], b'{"error":"internal error"}')
            else:
                self.close()
        finally:
            self._done(req, responder)

    def _done(self, req: Inbound, responder: Responder) -> None:
        self._active = None
        self._task = None
        if self.closed:
            return
        if not responder.finished:
            self.close()  # a stream that did not end cleanly: the connection cannot carry another answer
            return
        if not req.keep_alive or not req.complete or self.server.stopping:
            # an unread body (refused before it was read) would be taken for the next request: close
            self.close()
            return
        self._resume("pipeline")
        if self._queue:
            self._start(self._queue.popleft())
        elif self._parsing is None and not self._in_head:
            self._arm("idle", self.limits.idle_timeout_s)


class _HeadTooLarge(Exception):
    pass


class _Asgi:
    """One request through the ASGI app (FastAPI): scope, receive and send over the connection."""

    def __init__(self, app: AsgiApp, req: Inbound, responder: Responder) -> None:
        self.app = app
        self.req = req
        self.responder = responder
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.length: Optional[int] = None
        self._body_done = False

    async def run(self) -> None:
        req = self.req
        conn = req.conn
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": req.http_version,
            "method": req.method, "scheme": "http", "path": req.path, "raw_path": req.raw_path,
            "query_string": req.query_string, "root_path": "", "headers": req.raw_headers,
            "client": req.client, "server": conn.server.address, "state": {},
        }
        await self.app(scope, self.receive, self.send)
        if not self.responder.started:
            self.responder.whole(500, [(b"content-type", b"application/json")], b'{"error":"no answer"}')
        elif not self.responder.finished:
            self.responder.conn.close()

    async def receive(self) -> dict[str, Any]:
        req = self.req
        if not self._body_done:
            try:
                chunk = await req.next_chunk()
            except ClientDisconnected:
                self._body_done = True
                return {"type": "http.disconnect"}
            if chunk is None:
                self._body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            more = not (req.complete and not req.chunks)
            self._body_done = not more
            return {"type": "http.request", "body": chunk, "more_body": more}
        await req.wait_gone()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        r = self.responder
        if kind == "http.response.start":
            self.status = int(message["status"])
            headers = [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers", ())]
            length = None
            kept = []
            for n, v in headers:
                if n == b"content-length":
                    length = int(v)
                elif n in (b"connection", b"transfer-encoding"):
                    continue  # the server frames the body
                else:
                    kept.append((n, v))
            self.headers, self.length = kept, length
            return
        if kind != "http.response.body" or r.finished:
            return
        body = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        if not r.started:
            if not more:
                if self.length is not None and self.length != len(body) and r.head_only:
                    r.start(self.status, self.headers, self.length)  # HEAD: the length of what GET would send
                    r.end()
                    return
                r.whole(self.status, self.headers, body)
                return
            r.start(self.status, self.headers, self.length)
        if body:
            await r.send(body)
        if not more:
            r.end()


class GatewayServer:
    """Serves one listening socket in the running loop until stop()."""

    def __init__(self, app: AsgiApp, handlers: Mapping[tuple[str, str], Handler],
                 limits: ConnectionLimits = ConnectionLimits()) -> None:
        self.app = app
        self.handlers = dict(handlers)
        self.limits = limits
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.refused = 0  # connections answered 503 (max_connections)
        self.cut: dict[str, int] = {}  # connections closed by a deadline, by kind
        self.stopping = False
        self.address: tuple[str, int] = ("", 0)
        self._server: Optional[asyncio.AbstractServer] = None

    async def start(self, sock: Any) -> None:
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(lambda: _Connection(self), sock=sock, backlog=2048)
        name = sock.getsockname()
        self.address = (str(name[0]), int(name[1]))

    @property
    def in_flight(self) -> int:
        return sum(1 for c in self.connections if c._active is not None)

    async def stop(self, grace: float) -> None:
        """Stop listening; answers in progress get `grace` seconds, then every connection is closed."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn._active is None:
                conn.close()
        deadline = self.loop.time() + grace
        while self.tasks and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
