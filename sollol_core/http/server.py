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
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import httptools

from .asgi_bridge import AsgiApp, AsgiExchange
from .exchange import Handler, Inbound, Responder, status_line
from .inbound import ClientDisconnected

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
        if self._timer is not None:  # a closed connection keeps no timer (nor itself) alive
            self._timer.cancel()
            self._timer = None
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
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.limits.max_head_bytes:
            raise _HeadTooLarge()

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
            self._paused_at = self.loop.time()
        self.read_paused.add(why)

    def _resume(self, why: str) -> None:
        if why not in self.read_paused:
            return
        self.read_paused.discard(why)
        if not self.read_paused and self.transport is not None and not self.closed:
            if self._timer_kind == "body":  # our own pause is not the client's slowness
                self._deadline += self.loop.time() - self._paused_at
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
    # One timer per connection at most, moved lazily: arming a later deadline leaves a sooner timer in place
    # (when it fires, it looks at the deadline and sleeps again), and disarming only forgets the deadline.
    # Three deadlines a request cost no timer handles at all, against six for setting and cancelling each.
    def _arm(self, kind: str, seconds: float) -> None:
        self._timer_kind = kind
        deadline = self._deadline = self.loop.time() + seconds
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._check_deadline)

    def _disarm(self) -> None:
        self._timer_kind = ""

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._timer_kind or self.closed:
            return
        left = self._deadline - self.loop.time()
        if self._timer_kind == "body" and self.read_paused:
            left = max(left, 1.0)  # not reading by our own choice: look again later
        if left > 0.001:
            self._timer = self.loop.call_at(self.loop.time() + left, self._check_deadline)
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
                await AsgiExchange(self.server.app, req, responder, self.server.address).run()
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
