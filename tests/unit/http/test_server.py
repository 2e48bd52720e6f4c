"""The gateway's HTTP/1.1 server on 127.0.0.1: native handlers and ASGI, keep-alive, pipelining, bodies in
pieces, HEAD, and the deadlines that cut slow and idle clients."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import PlainTextResponse, StreamingResponse

from sollol_core.http.exchange import BodyTooLarge, Inbound, Responder
from sollol_core.http.server import ConnectionLimits, GatewayServer

JSON = [(b"content-type", b"application/json")]


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> PlainTextResponse:
        return PlainTextResponse("hello from asgi")

    @app.head("/hello")
    async def hello_head() -> PlainTextResponse:
        return PlainTextResponse("hello from asgi")

    @app.post("/count")
    async def count(request: Request) -> dict[str, int]:
        n = 0
        pieces = 0
        async for chunk in request.stream():
            n += len(chunk)
            pieces += 1
        return {"bytes": n, "pieces": pieces}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def gen():  # type: ignore[no-untyped-def]
            for i in range(3):
                yield f"part{i}\n".encode()
                await asyncio.sleep(0.01)
        return StreamingResponse(gen(), media_type="application/x-ndjson")

    @app.get("/wait-disconnect")
    async def wait_disconnect(request: Request) -> PlainTextResponse:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                SEEN.append("disconnect")
                return PlainTextResponse("")

    return app


SEEN: list[str] = []


async def echo(req: Inbound, out: Responder) -> None:
    if req.headers.get("authorization") == "Bearer no":
        out.whole(401, JSON, b'{"error":"no"}')  # refused before the body is read
        return
    try:
        body = await req.body(1000)
    except BodyTooLarge:
        out.whole(413, JSON, b'{"error":"too large"}')
        return
    out.whole(200, JSON, b'{"echo":%d}' % len(body))


async def chunks(req: Inbound, out: Responder) -> None:
    out.start(200, [(b"content-type", b"application/x-ndjson")])
    for i in range(3):
        await out.send(b'{"n":%d}\n' % i)
    out.end()


class Served:
    def __init__(self, limits: ConnectionLimits = ConnectionLimits()) -> None:
        self.limits = limits

    async def __aenter__(self) -> "Served":
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.server = GatewayServer(make_app(), {("POST", "/echo"): echo, ("GET", "/chunks"): chunks}, self.limits)
        await self.server.start(self.sock)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.server.stop(1.0)
        self.sock.close()


async def raw(port: int, data: bytes, read_until: bytes = b"", timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    got = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            got += chunk
            if read_until and got.count(b"HTTP/1.1") >= read_until.count(b"HTTP/1.1") and got.endswith(read_until):
                break
    finally:
        writer.close()
    return got


async def test_native_and_asgi_on_one_kept_alive_connection():
    async with Served() as s, httpx.AsyncClient(base_url=s.url, trust_env=False) as http:
        r = await http.post("/echo", content=b"x" * 10)
        assert (r.status_code, r.json()) == (200, {"echo": 10})
        r = await http.get("/hello")
        assert (r.status_code, r.text) == (200, "hello from asgi")
        r = await http.get("/stream")
        assert r.text == "part0\npart1\npart2\n" and r.headers["transfer-encoding"] == "chunked"
        r = await http.get("/chunks")
        assert r.text == '{"n":0}\n{"n":1}\n{"n":2}\n'
        r = await http.get("/nothing-here")
        assert r.status_code == 404
        assert len(s.server.connections) == 1  # every answer above came over one kept-alive connection


async def test_pipelined_requests_are_answered_in_order():
    async with Served() as s:
        data = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nz")
        got = await raw(s.port, data)
    answers = got.split(b"HTTP/1.1 ")[1:]
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"200 OK"] * 3
    assert answers[0].endswith(b'{"echo":3}') and answers[1].endswith(b"hello from asgi")
    assert answers[2].endswith(b'{"echo":1}') and b"connection: close" in answers[2]


async def test_chunked_upload_through_asgi_arrives_in_pieces():
    async def body():  # type: ignore[no-untyped-def]
        for _ in range(4):
            yield b"y" * 70000
            await asyncio.sleep(0.01)

    async with Served() as s, httpx.AsyncClient(base_url=s.url, trust_env=False) as http:
        r = await http.post("/count", content=body())
        assert r.json()["bytes"] == 280000 and r.json()["pieces"] >= 2


async def test_expect_continue_is_answered_when_the_body_is_asked_for():
    async with Served() as s:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"abcd")
        rest = await asyncio.wait_for(reader.readuntil(b'{"echo":4}'), 5)
        assert rest.startswith(b"HTTP/1.1 200 OK")
        writer.close()


async def test_refused_before_the_body_closes_the_connection_and_never_reads_it():
    async with Served() as s:
        got = await raw(s.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer no\r\n"
                                b"Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 401 Unauthorized") and b"100 Continue" not in got
    assert b"connection: close" in got


async def test_declared_body_over_the_limit_is_413_without_reading_it():
    async with Served() as s:
        got = await raw(s.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 413")


async def test_head_answers_headers_only():
    async with Served() as s:
        got = await raw(s.port, b"HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 15" in head and body == b""


async def test_http_1_0_stream_ends_with_the_connection():
    async with Served() as s:
        got = await raw(s.port, b"GET /stream HTTP/1.0\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 OK") and b"transfer-encoding" not in got
    assert got.endswith(b"part0\npart1\npart2\n")


async def test_malformed_request_is_400_and_closed():
    async with Served() as s:
        got = await raw(s.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400")


async def test_a_head_that_never_ends_is_cut():
    async with Served(ConnectionLimits(header_timeout_s=0.3)) as s:
        t0 = time.monotonic()
        got = await raw(s.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Slow: 1", timeout=5)
        took = time.monotonic() - t0
        assert got.startswith(b"HTTP/1.1 408") and took < 4
        assert s.server.cut == {"head": 1}


async def test_a_trickling_body_is_cut():
    async with Served(ConnectionLimits(body_timeout_s=0.3, body_min_bytes_per_s=1000)) as s:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
        closed = False
        for _ in range(40):  # a byte every 0.1 s: far below 1000 bytes/s
            try:
                writer.write(b"a")
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            try:
                if await asyncio.wait_for(reader.read(100), 0.1) == b"" or reader.at_eof():
                    closed = True
                    break
            except asyncio.TimeoutError:
                pass
        writer.close()
        assert closed and s.server.cut == {"body": 1}


async def test_idle_connection_is_closed_before_and_between_requests():
    async with Served(ConnectionLimits(idle_timeout_s=0.3)) as s:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        assert await asyncio.wait_for(reader.read(100), 5) == b""  # nothing sent: closed
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.readuntil(b"hello from asgi"), 5)).startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(reader.read(100), 5) == b""  # then idle: closed
        writer.close()
        assert s.server.cut == {"idle": 2}


async def test_connections_over_the_limit_are_answered_503():
    async with Served(ConnectionLimits(max_connections=2)) as s:
        held = [await asyncio.open_connection("127.0.0.1", s.port) for _ in range(2)]
        await asyncio.sleep(0.05)
        got = await raw(s.port, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in got
        for _, w in held:
            w.close()
        await asyncio.sleep(0.05)
        got = await raw(s.port, b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 200")
        assert s.server.refused == 1


async def test_client_leaving_is_heard_by_the_asgi_app():
    SEEN.clear()
    async with Served() as s:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(b"GET /wait-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        for _ in range(100):
            if SEEN:
                break
            await asyncio.sleep(0.02)
    assert SEEN == ["disconnect"]


@pytest.mark.parametrize("grace", [0.2])
async def test_stop_ends_a_stream_that_does_not_finish(grace: float):
    async def forever(req: Inbound, out: Responder) -> None:
        out.start(200, [(b"content-type", b"text/plain")])
        while True:
            await out.send(b"tick\n")
            await asyncio.sleep(0.05)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    server = GatewayServer(make_app(), {("GET", "/forever"): forever})
    await server.start(sock)
    reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
    writer.write(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"tick\n")
    t0 = time.monotonic()
    await server.stop(grace)
    assert time.monotonic() - t0 < 3 and not server.tasks and not server.connections
    writer.close()
    sock.close()
