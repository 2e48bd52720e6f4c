"""The ASGI side of the gateway's own server: a request the native handlers do not answer goes to the ASGI
app (FastAPI) with its scope, and the app's receive and send run over the connection, streaming request and
response bodies both ways."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, MutableMapping, Optional

from starlette.types import Receive, Scope, Send

from .exchange import Inbound, Responder
from .inbound import ClientDisconnected

AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AsgiExchange:
    """One request through the ASGI app (FastAPI): scope, receive and send over the connection."""

    def __init__(self, app: AsgiApp, req: Inbound, responder: Responder,
                 server_address: Optional[tuple[str, int]]) -> None:
        self.app = app
        self.server_address = server_address
        self.req = req
        self.responder = responder
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.length: Optional[int] = None
        self._body_done = False

    async def run(self) -> None:
        req = self.req
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": req.http_version,
            "method": req.method, "scheme": "http", "path": req.path, "raw_path": req.raw_path,
            "query_string": req.query_string, "root_path": "", "headers": req.raw_headers,
            "client": req.client, "server": self.server_address, "state": {},
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
