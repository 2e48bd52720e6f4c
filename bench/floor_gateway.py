"""The floor of the fast lane: SOLLOL's own HTTP server and upstream pool with nothing between them.

    python bench/floor_gateway.py HOST:PORT[,HOST:PORT...]

A handler reads the body, parses it as JSON (every gateway must, to learn the model), sends it to the next
host in turn on a kept-alive connection and writes the host's answer back; no guard, no queue, no placement,
no books, no metrics. bench_gateway.py runs it beside the real gateway in the same rounds: what the real
gateway costs above it is what its stages cost, and a target below the floor cannot be met by the stages.
Listens on 127.0.0.1 only; says "gateway on http://..." on stderr like `sollol --no-ui`.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import sys

import orjson
from starlette.types import Receive, Scope, Send

from sollol_core.http.exchange import Inbound, Responder
from sollol_core.http.server import GatewayServer
from sollol_core.upstream.pool import HttpPool

ROUTES = ("/api/chat", "/v1/chat/completions", "/api/generate", "/api/embed")


async def serve(hosts: list[str]) -> None:
    pool = HttpPool()
    turn = itertools.cycle(hosts)

    async def forward(req: Inbound, out: Responder) -> None:
        body = await req.body(1 << 20)
        orjson.loads(body)
        answer = await pool.request(next(turn), "POST", req.path, body, 30.0, "application/json")
        try:
            raw = await answer.read()
        finally:
            await answer.close()
        out.whole(answer.status, [(b"content-type", answer.content_type.encode("latin-1"))], raw)

    async def not_here(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    server = GatewayServer(not_here, {("POST", path): forward for path in ROUTES})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.setblocking(False)
    await server.start(sock)
    print(f"gateway on http://127.0.0.1:{server.address[1]}", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


def main() -> None:
    import uvloop

    uvloop.run(serve(sys.argv[1].split(",")))


if __name__ == "__main__":
    main()
